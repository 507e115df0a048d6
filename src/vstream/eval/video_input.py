"""A benchmark's video as the evaluation reads it: all its features at once (offline) or as a stream (online)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vstream.errors import VStreamError
from vstream.features import FEATURE_SUFFIXES, read_feature_clip
from vstream.stream.clips import encode_clip
from vstream.stream.sources import ClipWindow, FeatureFileSource, VideoSource, open_source

if TYPE_CHECKING:
    from vstream.model import VStream

DEFAULT_FPS = 1.0
"""Frames a second taken from a video when no `--fps` is given."""


def clip_features(
    model: VStream, source: Path, fps: float | None, start: float | None, end: float | None
) -> tuple[torch.Tensor, list[float]]:
    """Features `(T, P, D)` and times of a video (at `fps`) or a feature file (at its own times; an `fps` that
    contradicts them is an error), cut to [start, end] when given."""
    if source.suffix in FEATURE_SUFFIXES:
        clip = read_feature_clip(source)
        times = clip.frame_times(fps, name=str(source))
        rows = [i for i, t in enumerate(times) if (start is None or t >= start) and (end is None or t <= end)]
        if not rows:
            raise VStreamError(f"{source}: no frames between {start} s and {end} s")
        return clip.features[rows[0] : rows[-1] + 1], times[rows[0] : rows[-1] + 1]
    return encode_clip(source, model.encode_frames, fps or DEFAULT_FPS, start=start, end=end)


def stream_source(source: Path, fps: float | None, start: float | None, end: float | None) -> VideoSource:
    """The stream to play: a feature file at its own times, or a video at `fps`, cut to the clip if it has one."""
    stream = FeatureFileSource(source, fps) if source.suffix in FEATURE_SUFFIXES else open_source(source, fps or 1.0)
    return ClipWindow(stream, start, end) if start is not None or end is not None else stream


def past_the_end(at: float | None, last: float | None, step: float) -> str | None:
    """A warning when a question is asked after the video's last frame (the annotations and the video disagree)."""
    if at is None or last is None or at <= last + step + 1e-6:
        return None
    return f"asked at {at:g} s but the video ends at {last:g} s: answered from the whole video"
