"""Per-frame and per-question metrics of a stream session: bounded, thread-safe, summarised on demand."""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

log = logging.getLogger("vstream.metrics")

WINDOW = 1000
"""Records kept for percentiles (the counters cover the whole stream)."""


@dataclass(frozen=True)
class FrameRecord:
    """One frame through the frame handler.

    Attributes:
        time: stream time of the frame; read_s: reading and decoding it; encode_s: its share of its batch's
        encoding; update_s: its share of the memory update; lag_s: wall seconds from its arrival to the
        published snapshot that holds it.
    """

    time: float
    read_s: float
    encode_s: float
    update_s: float
    lag_s: float


@dataclass(frozen=True)
class QuestionRecord:
    """One question through the question handler.

    Attributes:
        snapshot_age_s: wall seconds since the snapshot it read was published; ttft_s, total_s: as in `Answer`.
    """

    question: str
    latest_frame_time: float | None
    snapshot_age_s: float
    ttft_s: float
    total_s: float


class Metrics:
    """Counters for the whole stream and the latest `WINDOW` records of each kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.frames: deque[FrameRecord] = deque(maxlen=WINDOW)
        self.questions: deque[QuestionRecord] = deque(maxlen=WINDOW)
        self.frames_read = self.frames_encoded = self.frames_dropped = self.frames_skipped = 0
        self.questions_answered = 0

    def frame(self, record: FrameRecord) -> None:
        with self._lock:
            self.frames.append(record)
            self.frames_encoded += 1
        log.debug(
            "frame t=%.2f read %.1f ms encode %.1f ms update %.1f ms lag %.1f ms",
            record.time,
            record.read_s * 1e3,
            record.encode_s * 1e3,
            record.update_s * 1e3,
            record.lag_s * 1e3,
        )

    def question(self, record: QuestionRecord) -> None:
        with self._lock:
            self.questions.append(record)
            self.questions_answered += 1
        log.info(
            "question answered: ttft %.0f ms, total %.0f ms, snapshot age %.0f ms, latest frame %s s",
            record.ttft_s * 1e3,
            record.total_s * 1e3,
            record.snapshot_age_s * 1e3,
            record.latest_frame_time,
        )

    def count(self, name: str, amount: int = 1) -> None:
        """Add to a counter (`frames_read`, `frames_dropped`, `frames_skipped`)."""
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def summary(self) -> dict[str, Any]:
        """Counters and p50/p95 of every timing, JSON-able."""
        with self._lock:
            frames, questions = list(self.frames), list(self.questions)
            out: dict[str, Any] = {
                name: getattr(self, name)
                for name in ("frames_read", "frames_encoded", "frames_dropped", "frames_skipped", "questions_answered")
            }
        for name, records in (("frame", frames), ("question", questions)):
            if not records:
                continue
            fields = [k for k, v in asdict(records[0]).items() if k.endswith("_s")]
            for key in fields:
                values = np.array([getattr(r, key) for r in records])
                out[f"{name}_{key}_p50"] = round(float(np.percentile(values, 50)), 6)
                out[f"{name}_{key}_p95"] = round(float(np.percentile(values, 95)), 6)
        return out
