"""A training record's media as features: feature files as stored, raw videos, image folders and images encoded.

Feature files keep the times they store (STAR.md §5); a video is decoded at `fps` by the same sources as streaming
and encoded by the vision tower a batch at a time, so an hour of video never sits in memory as images.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from torch import Tensor

from vstream.errors import TrainingDataError
from vstream.features import FEATURE_KEY, FEATURE_SUFFIXES, read_feature_clip
from vstream.stream.clips import Encoder, encode_clip
from vstream.stream.sources import IMAGE_SUFFIXES

"""RGB frames `(H, W, 3)` uint8 -> patch features `(T, P, D)` (the model's `VStream.encode_frames`)."""


@dataclass(frozen=True)
class MediaRoots:
    """Where a record's media path is looked up (absolute paths are used as they are).

    A relative path is tried under each given root in this order, and the first that exists wins; under `features`
    it is also tried with its ending replaced by `.safetensors` and `.npy` (`clips/v1.mp4` finds
    `clips/v1.safetensors`). With no root given it is taken relative to the working directory.
    """

    features: Path | None = None
    videos: Path | None = None
    images: Path | None = None

    def candidates(self, name: str) -> list[Path]:
        """The paths tried for `name`, in order."""
        path = Path(name).expanduser()
        if path.is_absolute():
            return [path]
        tried = []
        if self.features is not None:
            tried.append(Path(self.features) / path)
            if path.suffix not in FEATURE_SUFFIXES:
                tried += [Path(self.features) / path.with_suffix(suffix) for suffix in FEATURE_SUFFIXES]
        tried += [Path(root) / path for root in (self.videos, self.images) if root is not None]
        return tried or [path]

    def find(self, name: str) -> Path | None:
        """The first candidate that exists, or None."""
        return next((path for path in self.candidates(name) if path.exists()), None)


def media_kind(path: Path) -> str:
    """`features` for a `.safetensors`/`.npy` file, `video` for a video file or a folder of images, else `image`
    for an image file (by its ending)."""
    if path.suffix in FEATURE_SUFFIXES:
        return "features"
    if path.suffix.lower() in IMAGE_SUFFIXES and not path.is_dir():
        return "image"
    return "video"


def feature_file_shape(path: Path) -> tuple[int, ...]:
    """The shape of a feature file's array, read from its header only (no tensor is loaded), so that a whole
    training set can be checked in seconds; a file that cannot be read raises TrainingDataError."""
    try:
        if path.suffix == ".npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            if not np.issubdtype(array.dtype, np.floating):
                raise TrainingDataError(f"features must be floating point, got {array.dtype}")
            return tuple(array.shape)
        with safe_open(str(path), framework="pt") as f:
            if FEATURE_KEY not in f.keys():  # noqa: SIM118 (a safe_open handle has no __contains__)
                raise TrainingDataError(f"no '{FEATURE_KEY}' tensor in it (it holds {list(f.keys())})")
            shape = tuple(f.get_slice(FEATURE_KEY).get_shape())
            times = (f.metadata() or {}).get("times")
        if times is not None and len(shape) == 3 and len(json.loads(times)) != shape[0]:
            raise TrainingDataError(f"{shape[0]} rows of features but {len(json.loads(times))} times in its metadata")
        return shape
    except TrainingDataError:
        raise
    except Exception as exc:  # numpy and safetensors raise several unrelated types for a damaged file
        raise TrainingDataError(f"not a readable features file ({' '.join(str(exc).split())})") from exc


def media_problems(media: Sequence[tuple[Path, str]], feature_shape: tuple[int, int] | None = None) -> dict[int, str]:
    """What is wrong with each `(path, kind)` (by index): a missing file or folder, a feature file that cannot be
    read, or whose shape is not `(T, P, D)`/`(P, D)` with `(P, D) == feature_shape` (default: the most common)."""
    reasons: dict[int, str] = {}
    shapes: dict[int, tuple[int, ...]] = {}
    for index, (path, kind) in enumerate(media):
        if not path.exists():
            reasons[index] = f"{path}: no such file or folder"
        elif kind == "features":
            try:
                shapes[index] = feature_file_shape(path)
            except TrainingDataError as exc:
                reasons[index] = f"{path}: {exc}"
    for index, shape in list(shapes.items()):
        if len(shape) not in (2, 3) or 0 in shape:
            reasons[index] = f"{media[index][0]}: features of shape {shape}; expected (T, P, D) or (P, D)"
            del shapes[index]
    common = Counter(shape[-2:] for shape in shapes.values()).most_common(1)
    expected = tuple(feature_shape) if feature_shape else (common[0][0] if common else None)
    whose = "the model's" if feature_shape else "as most files of the set"
    for index, shape in shapes.items():
        if tuple(shape[-2:]) != expected:
            reasons[index] = (
                f"{media[index][0]}: features of shape {shape}; expected (T, {expected[0]}, {expected[1]}) ({whose})"
            )
    return reasons


def load_media(
    path: Path,
    kind: str,
    *,
    encoder: Encoder | None,
    fps: float = 1.0,
    batch_size: int = 16,
) -> tuple[Tensor, list[float]]:
    """Features `(T, P, D)` float32 on the CPU and the stream time of each row.

    Feature files: as stored, with their stored times (else 1 fps, as the released files are). Videos and image
    folders: the frames `open_source(path, fps)` yields, at their stream times, encoded `batch_size` at a time.
    Images: one frame at time 0.
    """
    if kind == "features":
        clip = read_feature_clip(path)
        return clip.features.float(), clip.frame_times(None, name=str(path))
    if encoder is None:
        raise TrainingDataError(
            f"{path}: a raw {kind}, and no vision tower to encode it; load the model with its vision tower, "
            "or extract features first (`vstream extract-features`)"
        )
    if kind == "image":
        with torch.no_grad():
            return _encode(encoder, [_read_image(path)]), [0.0]
    features, times = encode_clip(path, encoder, fps, batch_size)
    return features.float(), times


def _encode(encoder: Encoder, frames: list[np.ndarray]) -> Tensor:
    return encoder(frames).detach().float().cpu()


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise TrainingDataError(f"{path}: not a readable image ({exc})") from exc
