"""Frame features on disk (STAR.md §5): one file per video, `(T, P, D)`, with the times of its frames.

- `.safetensors`, key `feature`: what `vstream extract-features` writes, with metadata `fps` and `times` (the
  stream time of each row, JSON). Files without them are the released ones, at 1 fps.
- `.npy`: a bare `(T, P, D)` array (the released RVS-Movie keyframe features), at a frame rate the user states
  (`--fps`, default 1).

Images are stored as `(P, D)`. These files are what feature extraction writes and what training and the
benchmarks read; the format is part of vstream's public interface.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from vstream.errors import FeatureFileError

FEATURE_KEY = "feature"
FEATURE_SUFFIXES = (".safetensors", ".npy")
RELEASED_FPS = 1.0
"""The frame rate of feature files that do not state theirs (the released ones)."""


@dataclass(frozen=True)
class FeatureClip:
    """The features of one video and what its file says about their times.

    Attributes:
        features: `(T, P, D)`.
        fps, times: as stored in the file (None when it does not say).
    """

    features: Tensor
    fps: float | None = None
    times: tuple[float, ...] | None = None

    def frame_times(self, fps: float | None = None, *, name: str = "features") -> list[float]:
        """The stream time of each row: the stored times, else rows at the stored fps, else at `fps` (default 1).

        An `fps` that contradicts the file's own is an error: the questions would see the wrong part of the video.
        """
        if fps is not None and not fps > 0:
            raise FeatureFileError(f"{name}: fps must be > 0, got {fps}")
        if fps is not None and self.fps is not None and not math.isclose(fps, self.fps, rel_tol=1e-6):
            raise FeatureFileError(
                f"{name}: its features were extracted at {self.fps:g} fps, not {fps:g}; "
                "leave --fps out to use the file's own times"
            )
        if self.times is not None:
            return list(self.times)
        rate = self.fps or fps or RELEASED_FPS
        return [index / rate for index in range(len(self.features))]


def save_features(path: str | os.PathLike, features: Tensor, metadata: dict[str, str] | None = None) -> None:
    """Write `(T, P, D)` video (or `(P, D)` image) features to `path`, atomically."""
    if not isinstance(features, Tensor) or features.dim() not in (2, 3):
        raise FeatureFileError(
            f"features must be a (T, P, D) or (P, D) tensor, got {getattr(features, 'shape', features)}"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({FEATURE_KEY: features.detach().contiguous().cpu()}, tmp, metadata=metadata)
    os.replace(tmp, path)


def load_features(path: str | os.PathLike) -> Tensor:
    """Read the features of one video `(T, P, D)` (an image file gives `(1, P, D)`); clear errors name the file."""
    return read_feature_clip(path).features


def read_feature_clip(path: str | os.PathLike) -> FeatureClip:
    """Read a `.safetensors` or `.npy` features file with the fps and times it stores."""
    path = Path(path)
    try:
        exists = path.is_file()
    except OSError as exc:  # a name too long, ...
        raise FeatureFileError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    if not exists:
        raise FeatureFileError(f"{path}: no such features file")
    if path.suffix == ".npy":
        features, metadata = _read_npy(path), {}
    else:
        features, metadata = _read_safetensors(path)
    if features.dim() == 2:
        features = features.unsqueeze(0)
    if features.dim() != 3 or features.shape[0] == 0:
        raise FeatureFileError(f"{path}: features of shape {tuple(features.shape)}; expected (T, P, D) or (P, D)")
    return FeatureClip(features, *_stored_times(path, metadata, len(features)))


def _read_safetensors(path: Path) -> tuple[Tensor, dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            names = list(f.keys())
            if FEATURE_KEY not in names:
                raise FeatureFileError(f"{path}: no '{FEATURE_KEY}' tensor (it holds {names})")
            return f.get_tensor(FEATURE_KEY), f.metadata() or {}
    except FeatureFileError:
        raise
    except Exception as exc:  # safetensors raises several unrelated types for a damaged file
        raise FeatureFileError(f"{path}: not a readable safetensors file ({exc})") from exc


def _read_npy(path: Path) -> Tensor:
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, OSError or EOFError for a damaged file
        raise FeatureFileError(f"{path}: not a readable .npy array ({exc})") from exc
    if not np.issubdtype(array.dtype, np.floating):
        raise FeatureFileError(f"{path}: features must be floating point, got {array.dtype}")
    return torch.from_numpy(np.ascontiguousarray(array))


def _stored_times(path: Path, metadata: dict[str, str], rows: int) -> tuple[float | None, tuple[float, ...] | None]:
    try:
        fps = float(metadata["fps"]) if "fps" in metadata else None
        times = tuple(float(t) for t in json.loads(metadata["times"])) if "times" in metadata else None
    except (ValueError, TypeError) as exc:
        raise FeatureFileError(f"{path}: unreadable 'fps' or 'times' metadata ({exc})") from exc
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise FeatureFileError(f"{path}: its metadata says fps={fps}")
    if times is not None and len(times) != rows:
        raise FeatureFileError(f"{path}: {rows} rows of features but {len(times)} times in its metadata")
    if times is not None and any(b < a for a, b in itertools.pairwise(times)):
        raise FeatureFileError(f"{path}: the times in its metadata go backwards")
    return fps, times
