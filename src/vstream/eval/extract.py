"""`vstream extract-features`: videos or image folders to feature files (STAR.md §5), batched, sharded, resumable."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vstream.errors import VStreamError
from vstream.features import save_features
from vstream.stream.clips import Encoder, encode_clip
from vstream.stream.sources import IMAGE_SUFFIXES, VIDEO_SUFFIXES

log = logging.getLogger(__name__)


def list_inputs(inputs: Sequence[Path]) -> list[Path]:
    """The videos and image folders named, or found one level inside the folders named."""
    found = []
    for path in inputs:
        if path.is_file():
            found.append(path)
        elif path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
            found.append(path)  # an image folder itself
        elif path.is_dir():
            found += [p for p in sorted(path.iterdir()) if p.suffix.lower() in VIDEO_SUFFIXES or p.is_dir()]
        else:
            raise VStreamError(f"{path}: no such video or folder")
    return sorted(found)


def extract_features(
    inputs: Sequence[Path],
    output_dir: Path,
    encoder: Encoder,
    *,
    fps: float = 1.0,
    batch_size: int = 32,
    num_chunks: int = 1,
    chunk_idx: int = 0,
) -> dict[str, Any]:
    """Encode every input of this shard that has no features file yet; returns counts (failures listed)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    mine = list_inputs(inputs)[chunk_idx::num_chunks]
    counts: dict[str, Any] = {"inputs": len(mine), "extracted": 0, "already_done": 0, "failed": []}
    for path in tqdm(mine, desc="features", unit="video"):
        target = output_dir / f"{path.stem if path.is_file() else path.name}.safetensors"
        if target.exists():
            counts["already_done"] += 1
            continue
        try:
            features, times = encode_clip(path, encoder, fps, batch_size)
        except VStreamError as exc:
            log.warning("%s", exc)
            counts["failed"].append(str(exc))  # the errors of sources and of encode_clip name the file
            continue
        save_features(target, features, {"fps": str(fps), "source": str(path), "times": json.dumps(times)})
        counts["extracted"] += 1
    return counts
