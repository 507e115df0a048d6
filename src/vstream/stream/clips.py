"""A whole clip as features: frames decoded and encoded a batch at a time (benchmarks, feature extraction,
training from raw videos)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vstream.errors import VStreamError
from vstream.stream.sources import ClipWindow, open_source

Encoder = Callable[[Sequence[np.ndarray]], Tensor]
"""RGB frames `(H, W, 3)` uint8 -> features `(n, P, D)`."""


def encode_clip(
    path: Path,
    encoder: Encoder,
    fps: float,
    batch_size: int = 32,
    *,
    start: float | None = None,
    end: float | None = None,
) -> tuple[Tensor, list[float]]:
    """Features `(T, P, D)` on the CPU and stream times of a video or image folder at `fps` (from `start` to `end`
    seconds when given).

    Frames are encoded a batch at a time as they are decoded, so an hour of video never sits in RAM as images.
    """
    parts, times, batch = [], [], []
    source = open_source(path, fps)
    if start is not None or end is not None:
        source = ClipWindow(source, start, end)
    with torch.no_grad():
        for frame in source.frames():
            batch.append(frame.image)
            times.append(round(frame.time, 4))
            if len(batch) == batch_size:
                parts.append(encoder(batch).cpu())
                batch = []
        if batch:
            parts.append(encoder(batch).cpu())
    if not parts:
        raise VStreamError(f"{path}: no frames")
    return torch.cat(parts), times
