"""Video sources on one interface: files, live URLs, cameras, image folders and feature files.

Each yields `StreamFrame`s in order, with their time in seconds from the first frame (a file whose
timestamps start at 1000 s still starts at 0), sampled at a target fps. Any container and codec FFmpeg
decodes works (through PyAV), with variable frame rate, rotation metadata and odd sizes. A file that is
not a video, is empty or cannot be decoded raises a one-line `SourceError` naming it; a file cut short
yields the frames it has.

    source = open_source("clip.mp4", fps=1)
    for frame in source.frames():  # frame.time, frame.image (H, W, 3) uint8
        ...
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
from torch import Tensor

from vstream.errors import SourceError
from vstream.features import FEATURE_SUFFIXES

log = logging.getLogger(__name__)

LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "rtp", "srt", "tcp")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".ts", ".flv", ".m4v")
"""File endings taken for videos when a folder of them is listed (any file FFmpeg reads can be opened by name)."""


@dataclass
class StreamFrame:
    """One frame of a stream.

    Attributes:
        time: stream time in seconds, from the first frame of the stream.
        image: `(H, W, 3)` uint8 RGB, upright (rotation metadata applied); None for feature sources.
        features: `(P, D)` precomputed features (feature sources only).
        index: position among the frames the source yielded.
        read_s: seconds spent reading and decoding it.
    """

    time: float
    image: np.ndarray | None = None
    features: Tensor | None = None
    index: int = 0
    read_s: float = 0.0
    arrived: float = field(default_factory=time.monotonic)


class VideoSource(ABC):
    """A stream of frames. `frames()` may be called once; `close()` releases whatever it holds."""

    name: str
    live: bool = False

    @abstractmethod
    def frames(self) -> Iterator[StreamFrame]:
        """The frames, in order, sampled at the source's fps."""

    def close(self) -> None:
        """Release the source (files, connections)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class FpsSampler:
    """Keeps the first frame at or after each multiple of 1/fps seconds from `start` on (all frames from `start`
    when fps is None)."""

    def __init__(self, fps: float | None, start: float = 0.0) -> None:
        if fps is not None and not fps > 0:
            raise SourceError(f"fps must be > 0, got {fps!r}")
        self.fps = fps
        self.next_due = math.ceil(start * fps - 1e-6) / fps if fps else start  # the grid of a play from 0

    def take(self, t: float) -> bool:
        """Whether the frame at stream time `t` is kept."""
        if t + 1e-6 < self.next_due:
            return False
        if self.fps is None:
            return True
        self.next_due = (math.floor(t * self.fps + 1e-6) + 1) / self.fps
        return True


class _PyAVSource(VideoSource):
    """Shared decoding loop for everything PyAV opens."""

    def __init__(self, name: str, fps: float | None, start: float = 0.0) -> None:
        self.name, self.fps, self.start = name, fps, start
        self._container: Any = None
        self._yielded = 0

    def _open(self) -> Any:
        raise NotImplementedError

    def _decode(self, container: Any, offset: float = 0.0) -> Iterator[StreamFrame]:
        """Frames of an open container; stream times from the container's first frame, plus `offset`."""
        if not container.streams.video:
            raise SourceError(f"{self.name}: no video stream in it")
        stream = container.streams.video[0]
        if not self.live:
            stream.thread_type = "AUTO"  # frame threads: faster, but they hold frames back; not for live sources
        sampler, previous = FpsSampler(self.fps, self.start), -math.inf
        first = None if self.live or stream.start_time is None else float(stream.start_time * stream.time_base)
        began = time.perf_counter()
        for count, frame in enumerate(container.decode(stream)):
            pts = frame.time if frame.time is not None else count / float(stream.average_rate or 25)
            first = pts if first is None else first
            t = offset + pts - first
            if t < previous:  # out of order or a timestamp jump backwards: keep time monotonic
                t = previous
            previous = t
            if not sampler.take(t):
                continue
            image = frame.to_ndarray(format="rgb24")
            if frame.rotation:
                image = np.ascontiguousarray(np.rot90(image, k=round(frame.rotation / 90)))
            read = time.perf_counter() - began
            yield StreamFrame(time=t, image=image, index=self._yielded, read_s=read)
            self._yielded += 1
            began = time.perf_counter()

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


class FileSource(_PyAVSource):
    """A video file decoded with PyAV, sampled at `fps`, optionally from `start` seconds on."""

    def __init__(self, path: str | os.PathLike, fps: float | None = 1.0, start: float = 0.0) -> None:
        super().__init__(str(path), fps, start)
        self.path = Path(path)
        try:
            if not self.path.exists():
                raise SourceError(f"{self.path}: no such file")
            if self.path.is_dir():
                raise SourceError(f"{self.path}: is a folder (for image folders the source is the folder of images)")
            if self.path.stat().st_size == 0:
                raise SourceError(f"{self.path}: empty file")
        except OSError as exc:  # a name too long, a folder that cannot be read, ...
            raise SourceError(f"{self.path}: cannot read it ({_reason(exc)})") from exc
        self._probe()

    def _probe(self) -> None:
        """Fail now, not in the reader thread, if FFmpeg cannot read the file or it has no video."""
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise SourceError(f"{self.path}: no video stream in it")
        except av.FFmpegError as exc:
            raise SourceError(f"{self.path}: not a video FFmpeg can read ({_reason(exc)})") from exc

    def frames(self) -> Iterator[StreamFrame]:
        try:
            self._container = av.open(str(self.path))
        except av.FFmpegError as exc:
            raise SourceError(f"{self.path}: not a video FFmpeg can read ({_reason(exc)})") from exc
        try:
            if self.start > 0:
                self._container.seek(int(max(self.start - 2.0, 0.0) * av.time_base), any_frame=False)
            yield from self._decode(self._container)
        except av.FFmpegError as exc:
            if not self._yielded:
                raise SourceError(f"{self.path}: cannot decode it ({_reason(exc)})") from exc
            log.warning("%s: stopped after %d frames: %s", self.path, self._yielded, _reason(exc))
        finally:
            self.close()


class LiveSource(_PyAVSource):
    """A network stream (RTSP, RTMP, HTTP progressive or HLS, UDP, ...) that reconnects with backoff.

    Args:
        connect_timeout: seconds to keep trying to reach the stream at the start before giving up.
        read_timeout: seconds without data after which the connection counts as dropped.
        reconnect_for: seconds to keep trying to reconnect after a drop (0: end at the first drop).
    """

    live = True

    def __init__(
        self,
        url: str,
        fps: float | None = 1.0,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 10.0,
        reconnect_for: float = 30.0,
    ) -> None:
        super().__init__(url, fps)
        self.url, self.connect_timeout, self.read_timeout = url, connect_timeout, read_timeout
        self.reconnect_for = reconnect_for
        self.reconnects = 0

    def _options(self) -> dict[str, str]:
        # probe one second, not FFmpeg's default five: a live stream must not be buffered before it starts
        options = {"analyzeduration": "1000000", "probesize": "1000000"}
        if self.url.startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = "tcp"
        return options

    def _connect(self, deadline: float) -> Any:
        delay, last = 0.25, None
        while True:
            try:
                return av.open(
                    self.url, options=self._options(), timeout=(min(self.connect_timeout, 10.0), self.read_timeout)
                )
            except (av.FFmpegError, OSError) as exc:
                last = exc
            if time.monotonic() + delay > deadline:
                raise SourceError(f"{self.url}: cannot connect ({_reason(last)}); gave up after retrying")
            time.sleep(delay)
            delay = min(delay * 2, 4.0)

    def frames(self) -> Iterator[StreamFrame]:
        deadline = time.monotonic() + self.connect_timeout
        started, offset = None, 0.0
        while True:
            self._container = self._connect(deadline)
            if started is None:
                started = time.monotonic()
            else:  # stream time went on while we were away: resume at the wall-clock time since the start
                offset = max(offset, time.monotonic() - started)
            try:
                for frame in self._decode(self._container, offset):
                    offset = frame.time
                    yield frame
                reason = "the stream ended"
            except av.ExitError:  # PyAV's timeout interrupts the read
                reason = f"no data for {self.read_timeout:g} s"
            except av.FFmpegError as exc:
                reason = _reason(exc)
            finally:
                self.close()
            if self.reconnect_for <= 0:
                log.info("%s: %s", self.url, reason)
                return
            log.warning("%s: %s; reconnecting", self.url, reason)
            self.reconnects += 1
            deadline = time.monotonic() + self.reconnect_for


class CameraSource(LiveSource):
    """A camera through video4linux2 (`/dev/videoN`)."""

    def __init__(self, device: str = "/dev/video0", fps: float | None = 1.0, **kwargs: Any) -> None:
        if not Path(device).exists():
            raise SourceError(f"{device}: no such camera device")
        super().__init__(device, fps, reconnect_for=0, **kwargs)

    def _connect(self, deadline: float) -> Any:
        try:
            return av.open(self.url, format="v4l2")
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(f"{self.url}: cannot open the camera ({_reason(exc)})") from exc


class ImageFolderSource(VideoSource):
    """A folder of images in name order (numbers compared as numbers), played at `fps` images per second."""

    def __init__(self, folder: str | os.PathLike, fps: float = 1.0) -> None:
        self.folder, self.name = Path(folder), str(folder)
        if not fps > 0:
            raise SourceError(f"fps must be > 0 for an image folder, got {fps!r}")
        self.fps = fps
        self.files = sorted((p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural)
        if not self.files:
            raise SourceError(f"{self.folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
        self.skipped = 0

    def frames(self) -> Iterator[StreamFrame]:
        from PIL import Image, UnidentifiedImageError

        for index, path in enumerate(self.files):
            began = time.perf_counter()
            try:
                with Image.open(path) as image:
                    array = np.asarray(image.convert("RGB"))
            except (OSError, UnidentifiedImageError) as exc:
                self.skipped += 1
                log.warning("%s: skipped, not a readable image (%s)", path, exc)
                continue
            yield StreamFrame(time=index / self.fps, image=array, index=index, read_s=time.perf_counter() - began)


class FeatureFileSource(VideoSource):
    """Precomputed features (`.safetensors` or `.npy`, STAR.md §5), one frame per row, at the times the file
    stores; a file that stores none is played at `fps` (default 1, as the released files are)."""

    def __init__(self, path: str | os.PathLike, fps: float | None = None) -> None:
        from vstream.features import read_feature_clip

        self.name = str(path)
        clip = read_feature_clip(path)
        self.features = clip.features
        self.times = clip.frame_times(fps, name=self.name)
        self.fps = clip.fps or fps or 1.0

    def frames(self) -> Iterator[StreamFrame]:
        for index, (features, t) in enumerate(zip(self.features, self.times, strict=True)):
            yield StreamFrame(time=t, features=features, index=index)


class ClipWindow(VideoSource):
    """The frames of another source from `start` to `end` seconds, times unchanged (a clip of a longer file, as
    RVS-Movie's `clip_start_time`/`clip_end_time` name it); a video file seeks to `start` instead of decoding up
    to it."""

    def __init__(self, inner: VideoSource, start: float | None = None, end: float | None = None) -> None:
        self.inner, self.start, self.end = inner, start, end
        self.name, self.live, self.fps = inner.name, inner.live, getattr(inner, "fps", None)
        if isinstance(inner, FileSource) and start:
            inner.start = start

    def frames(self) -> Iterator[StreamFrame]:
        frames = self.inner.frames()
        try:
            for frame in frames:
                if self.end is not None and frame.time > self.end + 1e-6:
                    break
                if self.start is None or frame.time >= self.start - 1e-6:
                    yield frame
        finally:
            frames.close()

    def close(self) -> None:
        self.inner.close()


AUTO = "auto"
"""As `fps`: 1 frame a second, except for a feature file, which is played at the times it stores."""


def open_source(spec: str | os.PathLike, fps: float | str | None = AUTO, **options: Any) -> VideoSource:
    """The source a string names: a URL, `/dev/videoN`, a folder of images, a feature file, a video file,
    or `synthetic[:SECONDS[:SEED]]` (a stream of the synthetic world, generated on the spot).

    `fps`: frames taken a second (None: every frame); `"auto"`: 1, or a feature file's own times. A number that
    contradicts a feature file's stored frame rate is an error.
    """
    text = str(spec)
    path = Path(text).expanduser()
    if path.suffix in FEATURE_SUFFIXES and "://" not in text:
        return FeatureFileSource(path, None if fps == AUTO else fps)
    if fps == AUTO:
        fps = 1.0
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in LIVE_SCHEMES:
        return LiveSource(text, fps, **options)
    if scheme:
        raise SourceError(f"{text}: unknown URL scheme {scheme!r} (known: {', '.join(LIVE_SCHEMES)})")
    if text == "synthetic" or text.startswith("synthetic:"):
        from vstream.stream.synthetic import parse_synthetic, synthetic_clip

        return FileSource(synthetic_clip(*parse_synthetic(text)), fps, **options)
    if text.startswith("/dev/video"):
        return CameraSource(text, fps, **options)
    if _is_dir(path):
        return ImageFolderSource(path, fps or 1.0)
    return FileSource(path, fps, **options)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long, ...: not a folder; FileSource says what is wrong with it
        return False


def _natural(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _reason(exc: BaseException | None) -> str:
    """A one-line reason from an FFmpeg or OS error."""
    if exc is None:
        return "unknown error"
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())
