"""The frame handler: reads a source, encodes frames in batches, writes the memory, publishes snapshots.

Two threads. The reader pulls frames from the source (pacing a file to real time, or N× real time) into
a small queue of pending frames; it never waits for the encoder: when the queue is full the oldest
pending frame is dropped and counted ("newest wins"). The worker takes the pending frames as one batch,
encodes them, updates the memory and publishes a new snapshot; a reader of `latest` always gets a
complete one. At speed 0 (as fast as possible, for files) nothing is dropped: the reader waits instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import torch

from vstream.errors import SourceError
from vstream.memory import BaseMemory, MemorySnapshot
from vstream.stream.clips import Encoder
from vstream.stream.metrics import FrameRecord, Metrics
from vstream.stream.sources import StreamFrame, VideoSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Published:
    """A snapshot as published: the memory's readout and the wall clock (monotonic) when it was made."""

    snapshot: MemorySnapshot
    at: float


class FrameHandler:
    """Source → pending queue → encoder → memory → published snapshot.

    Args:
        source: where frames come from; memory: where they go.
        encoder: turns RGB frames into features (unused for feature sources).
        speed: 1 plays a file at real time, 2 twice as fast, 0 as fast as possible (no drops); live sources
            come at their own pace.
        batch_size: frames encoded together at most.
        max_pending: frames waiting for the encoder at most; beyond it the oldest is dropped.
        time_offset: added to every frame's time (to continue a saved stream).
        on_batch: called (in the encoder thread) with each batch once its snapshot is published, e.g. to keep
            thumbnails of the frames; an error in it is logged, never stops the stream.
    """

    def __init__(
        self,
        source: VideoSource,
        memory: BaseMemory,
        encoder: Encoder | None,
        *,
        speed: float = 1.0,
        batch_size: int = 8,
        max_pending: int = 8,
        time_offset: float = 0.0,
        metrics: Metrics | None = None,
        on_batch: Callable[[list[StreamFrame]], None] | None = None,
    ) -> None:
        self.source, self.memory, self.encoder = source, memory, encoder
        self.on_batch = on_batch
        self.speed, self.batch_size, self.max_pending = speed, batch_size, max_pending
        self.time_offset = time_offset
        self.metrics = metrics or Metrics()
        self.latest: Published | None = None
        self.position: float | None = None  # stream time of the newest frame read
        self.end_reason: str | None = None
        self._cond = threading.Condition()
        self._pending: deque[StreamFrame] = deque()
        self._gate = float("inf")
        self._at_gate = False
        self._busy = False
        self._source_done = False
        self._stop = False
        self._paused_since: float | None = None
        self._paused_total = 0.0
        self._threads: list[threading.Thread] = []

    # ----------------------------------------------------------------- control
    def start(self) -> None:
        """Start reading and encoding in the background."""
        if self._threads:
            return
        self._threads = [
            threading.Thread(target=self._guard(self._read), name="vstream-reader", daemon=True),
            threading.Thread(target=self._guard(self._work), name="vstream-encoder", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def pause(self) -> None:
        """Stop taking frames (a file waits; a live stream's frames are skipped and counted) until `resume`."""
        with self._cond:
            if self._paused_since is None:
                self._paused_since = time.monotonic()

    def resume(self) -> None:
        """Take frames again; the real-time clock does not count the pause."""
        with self._cond:
            if self._paused_since is not None:
                self._paused_total += time.monotonic() - self._paused_since
                self._paused_since = None
                self._cond.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused_since is not None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop both threads (the batch being encoded is finished) and close the source."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)  # the reader closes the source itself (never from another thread mid-decode)
        if not self._threads:
            self.source.close()
        if self.end_reason is None:
            self.end_reason = "stopped"

    @property
    def pending(self) -> int:
        """Frames read and waiting for the encoder."""
        return len(self._pending)

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the stream has ended and every frame read is in the memory; False on timeout."""
        return self._wait_for(lambda: (self._source_done or self._stop) and self._drained(), timeout)

    def hold_at(self, t: float) -> None:
        """Let no frame later than stream time `t` in (`inf` lets everything in)."""
        with self._cond:
            self._gate = t
            self._at_gate = False  # until the reader reaches the new hold time
            self._cond.notify_all()

    def wait_held(self, timeout: float | None = None) -> bool:
        """Wait until every frame up to the hold time is in the memory (or the stream ended); False on timeout."""
        return self._wait_for(lambda: (self._at_gate or self._source_done or self._stop) and self._drained(), timeout)

    def wait_position(self, t: float, timeout: float | None = None) -> bool:
        """Wait until a frame at stream time ≥ `t` has been read (or the stream ended); False on timeout."""
        return self._wait_for(lambda: self._source_done or self._stop or (self.position or -1.0) >= t, timeout)

    def wait_encoded(self, t: float, timeout: float | None = None) -> bool:
        """Wait until the published memory holds a frame at stream time ≥ `t`; False on timeout or at the end."""

        def encoded() -> bool:
            return self.latest is not None and (self.latest.snapshot.latest_time or 0.0) >= t

        self._wait_for(lambda: encoded() or (self._source_done and self._drained()), timeout)
        return encoded()

    def wait_published(self, seen: Published | None, timeout: float | None = None) -> Published | None:
        """Wait for a snapshot other than `seen`; the newest one (still `seen` on timeout, at the end or at stop)."""
        self._wait_for(
            lambda: self.latest is not seen or self._stop or (self._source_done and self._drained()), timeout
        )
        return self.latest

    def _drained(self) -> bool:
        return not self._pending and not self._busy

    def _wait_for(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        with self._cond:
            return bool(self._cond.wait_for(predicate, timeout))

    # ----------------------------------------------------------------- threads
    def _guard(self, body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except Exception as exc:  # the thread's end: record why, stop the other thread, never die silently
                log.exception("stream %s failed", self.source.name)
                with self._cond:
                    self.end_reason = self.end_reason or f"{type(exc).__name__}: {exc}"
                    self._source_done = True
                    self._stop = True
                    self._cond.notify_all()

        return run

    def _read(self) -> None:
        started, reason = None, "end of stream"
        frames = self.source.frames()
        try:
            for frame in frames:
                frame.time += self.time_offset
                with self._cond:
                    if self._stop:
                        break
                    if self._paused_since is not None and self.source.live:
                        self.metrics.count("frames_skipped")
                        continue
                    while (self._paused_since is not None or frame.time > self._gate) and not self._stop:
                        self._at_gate = frame.time > self._gate
                        self._cond.notify_all()
                        self._cond.wait()
                    self._at_gate = False
                if started is None:
                    started = (time.monotonic(), frame.time)
                self._pace(frame, started)
                frame.arrived = time.monotonic()
                self.metrics.count("frames_read")
                with self._cond:
                    if self._stop:
                        break
                    self._push(frame)
            if self._stop:
                reason = "stopped"
        except SourceError as exc:
            reason = f"source error: {exc}"
        except Exception as exc:  # anything else a source raises ends the stream, with its reason kept
            log.exception("reading %s failed", self.source.name)
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            frames.close()
            with self._cond:
                self.end_reason = self.end_reason or reason
                self._source_done = True
                self._cond.notify_all()

    def _pace(self, frame: StreamFrame, started: tuple[float, float]) -> None:
        if self.speed <= 0 or self.source.live:
            return
        due = started[0] + self._paused_total + (frame.time - started[1]) / self.speed
        delay = due - time.monotonic()
        if delay > 0:
            with self._cond:
                self._cond.wait_for(lambda: self._stop, timeout=delay)

    def _push(self, frame: StreamFrame) -> None:
        """Queue a frame (lock held): newest wins when full, except at speed 0 where the reader waits."""
        if self.speed <= 0 and not self.source.live:
            while len(self._pending) >= self.max_pending and not self._stop:
                self._cond.wait()
        elif len(self._pending) >= self.max_pending:
            self._pending.popleft()
            self.metrics.count("frames_dropped")
        self._pending.append(frame)
        self.position = frame.time
        self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._batch_ready() and not self._stop:
                    self._cond.wait()
                if self._stop or (not self._pending and self._source_done):
                    return
                batch = [self._pending.popleft() for _ in range(min(self.batch_size, len(self._pending)))]
                self._busy = True
                self._cond.notify_all()
            try:
                self._process(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    @property
    def deterministic(self) -> bool:
        """Whether batches are cut by frame count, not by timing: a file at speed 0 (the simulated clock)."""
        return self.speed <= 0 and not self.source.live

    def _batch_ready(self) -> bool:
        """Whether the worker takes a batch now (lock held).

        In real time it takes whatever is pending, to keep up. On the simulated clock it takes only full batches,
        or what is left at a hold time or at the end, so that the memory (whose k-means sees a batch at a time)
        is a function of the frames alone, the same on every run and every machine.
        """
        if not self._pending:
            return self._source_done
        if not self.deterministic:
            return True
        return len(self._pending) >= min(self.batch_size, self.max_pending) or self._at_gate or self._source_done

    def _process(self, batch: list[StreamFrame]) -> None:
        began = time.perf_counter()
        if batch[0].features is not None:
            features = torch.stack([frame.features for frame in batch])
        else:
            features = self.encoder([frame.image for frame in batch])
        encoded = time.perf_counter()
        self.memory.update(features, [frame.time for frame in batch])
        self.latest = Published(self.memory.readout(), time.monotonic())
        updated = time.perf_counter()
        for frame in batch:
            share = 1.0 / len(batch)
            self.metrics.frame(
                FrameRecord(
                    frame.time,
                    frame.read_s,
                    (encoded - began) * share,
                    (updated - encoded) * share,
                    self.latest.at - frame.arrived,
                )
            )
        if self.on_batch is not None:
            try:
                self.on_batch(batch)
            except Exception:  # an observer's failure is not the stream's
                log.exception("the frame observer of %s failed", self.source.name)
