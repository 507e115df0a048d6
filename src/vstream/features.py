"""Frame features on disk (STAR.md §5): one `.safetensors` file per video, key `feature`, `(T, P, D)` at 1 fps.

Images are stored as `(P, D)`. These files are what feature extraction writes and what training and the
benchmarks read; the format is part of vstream's public interface.
"""

from __future__ import annotations

import os
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from vstream.errors import FeatureFileError

FEATURE_KEY = "feature"


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
    path = Path(path)
    if not path.is_file():
        raise FeatureFileError(f"{path}: no such features file")
    try:
        with safe_open(str(path), framework="pt") as f:
            names = list(f.keys())
            if FEATURE_KEY not in names:
                raise FeatureFileError(f"{path}: no '{FEATURE_KEY}' tensor (it holds {names})")
            features = f.get_tensor(FEATURE_KEY)
    except FeatureFileError:
        raise
    except Exception as exc:  # safetensors raises several unrelated types for a damaged file
        raise FeatureFileError(f"{path}: not a readable safetensors file ({exc})") from exc
    if features.dim() == 2:
        features = features.unsqueeze(0)
    if features.dim() != 3 or features.shape[0] == 0:
        raise FeatureFileError(
            f"{path}: '{FEATURE_KEY}' has shape {tuple(features.shape)}; expected (T, P, D) or (P, D)"
        )
    return features
