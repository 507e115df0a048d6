"""Standing questions: asked again at each memory update (or every N seconds); an event each time the answer flips.

A watch's value is its answer read as yes/no, or, with `match`, whether the answer contains those words. One
monitor thread per session checks its watches in turn, always on the newest snapshot (those published while
it was busy are skipped), and announces the session's end.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vstream.errors import NotFoundError, VStreamError
from vstream.eval.closed import answer_tokens, yes_no
from vstream.memory import MemorySnapshot
from vstream.model.generation import GenerationOptions
from vstream.serve.events import EventHub
from vstream.stream.frame_handler import Published
from vstream.stream.session import StreamSession

log = logging.getLogger(__name__)


@dataclass
class Watch:
    """A standing question and what it last found."""

    id: str
    question: str
    every_s: float | None = None
    match: str | None = None
    value: bool | None = None
    answer: str | None = None
    checks: int = 0
    stream_time: float | None = None
    last_check: float = 0.0
    last_snapshot: Any = field(default=None, repr=False)

    def info(self) -> dict[str, Any]:
        """The fields of `WatchInfo`."""
        return {k: getattr(self, k) for k in ("id", "question", "every_s", "match", "value", "answer", "checks")} | {
            "stream_time": self.stream_time
        }


Verdict = Callable[[StreamSession, Watch, MemorySnapshot, GenerationOptions], tuple[bool | None, str]]
"""Asks a watch's question about a snapshot of a session: (value, or None when the answer says neither; the
answer's text)."""


def read_value(answer: str, match: str | None) -> bool | None:
    """A watch's value from its answer: yes/no, or whether the answer has the words of `match` in order."""
    if match is None:
        verdict = yes_no(answer)
        return None if verdict is None else verdict == "yes"
    words, wanted = answer_tokens(answer), answer_tokens(match)
    return any(words[i : i + len(wanted)] == wanted for i in range(len(words) - len(wanted) + 1))


def model_verdict(
    session: StreamSession, watch: Watch, snapshot: MemorySnapshot, options: GenerationOptions
) -> tuple[bool | None, str]:
    """The model's answer to the watch's question about `snapshot`."""
    text = session.model.answer(snapshot, watch.question, options=options).text
    return read_value(text, watch.match), text


class SessionMonitor:
    """The watches of one session and the thread that checks them.

    Args:
        session: the stream; hub: where events go; verdict: how a question is answered (the model by default;
            tests of the event plumbing may give a stand-in); options: decoding options of the checks.
    """

    def __init__(self, session: StreamSession, hub: EventHub, verdict: Verdict, options: GenerationOptions) -> None:
        self.session, self.hub, self.verdict, self.options = session, hub, verdict, options
        self._watches: dict[str, Watch] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vstream-watches", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- watches
    def add(self, question: str, every_s: float | None = None, match: str | None = None) -> Watch:
        """Register a standing question."""
        with self._lock:
            watch = Watch(f"w-{next(self._ids)}", question, every_s, match)
            self._watches[watch.id] = watch
        return watch

    def remove(self, watch_id: str) -> None:
        with self._lock:
            if self._watches.pop(watch_id, None) is None:
                raise NotFoundError(f"no watch {watch_id!r} on this session")

    def watches(self) -> list[Watch]:
        with self._lock:
            return list(self._watches.values())

    def stop(self, timeout: float = 10.0) -> None:
        """Stop checking (after the check under way) and end the event subscriptions."""
        self._stop.set()
        self._thread.join(timeout)
        self.hub.close()

    # ----------------------------------------------------------------- the thread
    def _run(self) -> None:
        handler, seen, announced = self.session.frame_handler, None, False
        while not self._stop.is_set():
            latest = handler.wait_published(seen, timeout=0.25)
            if latest is not None and latest is not seen:
                seen = latest
            ended = handler.end_reason is not None and handler.wait(0)
            for watch in self._due(seen, ended):
                if self._stop.is_set():
                    return
                self._check(watch, seen)
            if ended and not announced and handler.latest is seen:
                announced = True
                self.hub.publish("state", {"state": "ended", "end_reason": handler.end_reason})
            if announced:
                self._stop.wait(0.25)  # nothing changes any more; watches added now are still checked once

    def _due(self, published: Published | None, ended: bool) -> list[Watch]:
        """Watches to check now: on a new snapshot, or when their period has passed (not once the stream ended:
        its memory no longer changes)."""
        if published is None:
            return []
        now = time.monotonic()
        return [
            w
            for w in self.watches()
            if w.last_snapshot is not published
            or (w.every_s is not None and not ended and now - w.last_check >= w.every_s)
        ]

    def _check(self, watch: Watch, published: Published) -> None:
        watch.last_check, watch.last_snapshot = time.monotonic(), published
        try:
            value, text = self.verdict(self.session, watch, published.snapshot, self.options)
        except VStreamError as exc:
            log.warning("watch %s (%r) could not be checked: %s", watch.id, watch.question, exc)
            return
        except Exception:  # a failure of one check never stops the session's watches
            log.exception("watch %s (%r) failed", watch.id, watch.question)
            return
        watch.checks += 1
        watch.answer, watch.stream_time = text, published.snapshot.latest_time
        if value is None or value == watch.value:
            return
        previous, watch.value = watch.value, value
        self.hub.publish(
            "watch",
            {
                "watch_id": watch.id,
                "question": watch.question,
                "value": value,
                "previous": previous,
                "answer": text,
                "stream_time": watch.stream_time,
                "wall_time": time.time(),
            },
        )
