"""Small JPEGs of the frames a session's memory stands for, kept bounded, for the memory endpoint and the page."""

from __future__ import annotations

import base64
import bisect
import io
import threading

import numpy as np

from vstream.memory import MemorySnapshot
from vstream.memory.snapshot import MemoryItem
from vstream.stream.sources import StreamFrame

WIDTH = 160
"""Largest thumbnail width in pixels."""

RECENT = 8
"""Thumbnails of the newest frames always kept (besides those the memory still refers to)."""


def jpeg_thumbnail(image: np.ndarray, width: int = WIDTH) -> bytes:
    """A JPEG of `image` `(H, W, 3)` at most `width` pixels wide."""
    from PIL import Image

    picture = Image.fromarray(image)
    if picture.width > width:
        picture = picture.resize((width, max(1, round(picture.height * width / picture.width))))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


def data_url(jpeg: bytes) -> str:
    """A `data:` URL of a JPEG, for an `<img src>`."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


class Thumbnails:
    """Thumbnails by stream time: the `RECENT` newest, plus those of the frames the latest snapshot names.

    `add` is the frame handler's batch observer; `prune` drops what the memory no longer refers to, so the count
    stays bounded by the memory's size.
    """

    def __init__(self) -> None:
        self._times: list[float] = []
        self._jpegs: dict[float, bytes] = {}
        self._lock = threading.Lock()

    def add(self, frames: list[StreamFrame]) -> None:
        """Keep thumbnails of these frames (those without an image, e.g. features, are skipped)."""
        made = [(frame.time, jpeg_thumbnail(frame.image)) for frame in frames if frame.image is not None]
        with self._lock:
            for t, jpeg in made:
                if t not in self._jpegs:
                    bisect.insort(self._times, t)
                self._jpegs[t] = jpeg

    def nearest(self, t: float | None, tolerance: float = float("inf")) -> tuple[float, bytes] | None:
        """The held thumbnail whose time is nearest `t` (within `tolerance` seconds)."""
        if t is None:
            return None
        with self._lock:
            if not self._times:
                return None
            i = bisect.bisect_left(self._times, t)
            candidates = [self._times[j] for j in (i - 1, i) if 0 <= j < len(self._times)]
            best = min(candidates, key=lambda c: abs(c - t))
            return (best, self._jpegs[best]) if abs(best - t) <= tolerance else None

    def newest(self) -> tuple[float, bytes] | None:
        with self._lock:
            return (self._times[-1], self._jpegs[self._times[-1]]) if self._times else None

    def prune(self, snapshot: MemorySnapshot | None) -> None:
        """Forget every thumbnail but the newest ones and the frames `snapshot`'s items stand for."""
        keep_times = [t for item in snapshot.items for t in anchor_times(item)] if snapshot else []
        keep = {found[0] for t in keep_times if (found := self.nearest(t)) is not None}
        with self._lock:
            keep.update(self._times[-RECENT:])
            self._times = [t for t in self._times if t in keep]
            self._jpegs = {t: self._jpegs[t] for t in self._times}

    def __len__(self) -> int:
        return len(self._times)


def anchor_times(item: MemoryItem | dict) -> list[float]:
    """The frame times a memory item is shown by: a single frame's own time, a centroid's mean time."""
    get = item.get if isinstance(item, dict) else lambda name: getattr(item, name)
    if get("memory") == "abstract":
        return []
    if get("time_start") == get("time_end"):
        return [get("time_start")]
    return [get("time_mean") if get("time_mean") is not None else get("time_end")]
