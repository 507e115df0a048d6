"""A live source fed by its owner: frames pushed one at a time (a browser's camera, a phone, a robot).

source = PushSource()
session = StreamSession(model, source, autostart=True)
source.push_image(jpeg_bytes, time=0.0)   # or source.push(rgb_array, time=0.0)
source.end()                              # the stream ends; its memory stays for questions
"""

from __future__ import annotations

import io
import math
import threading
from collections import deque
from collections.abc import Iterator

import numpy as np

from vstream.errors import SourceError
from vstream.stream.sources import StreamFrame, VideoSource

MAX_SIDE = 4096
"""Largest width or height of a pushed frame, in pixels."""


class PushSource(VideoSource):
    """Frames handed in by `push`, yielded in order; live, so the frame handler drops the oldest when behind.

    Args:
        name: shown in status and logs.
        max_queue: frames waiting to be read at most; beyond it the oldest is dropped and counted in `dropped`.
    """

    live = True

    def __init__(self, name: str = "push", *, max_queue: int = 32) -> None:
        self.name, self.max_queue = name, max_queue
        self.received = self.dropped = 0
        self.last_time: float | None = None
        self._queue: deque[StreamFrame] = deque()
        self._cond = threading.Condition()
        self._ended = False

    def push(self, image: np.ndarray, time_s: float) -> None:
        """Add one `(H, W, 3)` uint8 RGB frame at stream time `time_s` seconds (never earlier than the last)."""
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise SourceError(f"{self.name}: a frame is an (H, W, 3) uint8 RGB image; got {_describe(image)}")
        if not isinstance(time_s, (int, float)) or not math.isfinite(time_s) or time_s < 0:
            raise SourceError(f"{self.name}: a frame's time is seconds >= 0; got {time_s!r}")
        with self._cond:
            if self._ended:
                raise SourceError(f"{self.name}: the stream has ended; no more frames are taken")
            if self.last_time is not None and time_s < self.last_time:
                raise SourceError(
                    f"{self.name}: frame times must not go backwards: {time_s:g} s after {self.last_time:g} s"
                )
            self.last_time = float(time_s)
            self._queue.append(StreamFrame(time=float(time_s), image=image, index=self.received))
            self.received += 1
            if len(self._queue) > self.max_queue:
                self._queue.popleft()
                self.dropped += 1
            self._cond.notify_all()

    def push_image(self, data: bytes, time_s: float) -> None:
        """Add one frame given as the bytes of a JPEG or PNG (or any image Pillow reads)."""
        self.push(decode_image(data, self.name), time_s)

    def end(self) -> None:
        """End the stream: frames already pushed are still read, then the source ends."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def pending(self) -> int:
        """Frames pushed and not yet read."""
        return len(self._queue)

    def frames(self) -> Iterator[StreamFrame]:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._ended)
                if not self._queue:
                    return
                frame = self._queue.popleft()
            yield frame

    def close(self) -> None:
        self.end()


def decode_image(data: bytes, name: str = "frame") -> np.ndarray:
    """The RGB array of an encoded image; a `SourceError` naming the problem if it is not one."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise SourceError(f"{name}: an empty image")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if max(image.size) > MAX_SIDE:
                raise SourceError(f"{name}: the image is {image.size[0]}×{image.size[1]}; at most {MAX_SIDE} a side")
            return np.asarray(image.convert("RGB"))
    except UnidentifiedImageError as exc:
        raise SourceError(f"{name}: not an image (JPEG or PNG) Pillow can read ({len(data)} bytes)") from exc
    except (OSError, ValueError) as exc:
        raise SourceError(f"{name}: a broken image ({exc})") from exc


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    return type(value).__name__
