"""Events of one session (standing questions flipping, the session ending), fanned out to SSE subscribers.

Publishers are threads; subscribers are the server's event loop. Each subscriber gets the recent history first,
then every new event; a subscriber that stops reading loses its oldest events, never blocks a publisher.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

HISTORY = 100
"""Events replayed to a new subscriber."""

QUEUE = 256
"""Events waiting for one subscriber at most."""


class EventHub:
    """Fan-out of `(name, data)` events from threads to asyncio subscribers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._history: deque[tuple[str, dict[str, Any]]] = deque(maxlen=HISTORY)
        self._subscribers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = []
        self._closed = False

    def publish(self, name: str, data: dict[str, Any]) -> None:
        """Send an event to every subscriber (any thread)."""
        with self._lock:
            self._history.append((name, data))
            subscribers = list(self._subscribers)
        for loop, queue in subscribers:
            with contextlib.suppress(RuntimeError):  # the loop is closed: that subscriber is gone
                loop.call_soon_threadsafe(_offer, queue, (name, data))

    def close(self) -> None:
        """End every subscription (after the events already sent)."""
        with self._lock:
            self._closed = True
            subscribers, self._subscribers = list(self._subscribers), []
        for loop, queue in subscribers:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_offer, queue, None)

    async def subscribe(self, heartbeat_s: float = 15.0) -> AsyncIterator[tuple[str, dict[str, Any]] | None]:
        """The history, then each new event; `None` every `heartbeat_s` without one (to keep proxies open)."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE)
        loop = asyncio.get_running_loop()
        with self._lock:
            history, closed = list(self._history), self._closed
            if not closed:
                self._subscribers.append((loop, queue))
        try:
            for event in history:
                yield event
            if closed:
                return
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), heartbeat_s)
                except asyncio.TimeoutError:
                    yield None
                    continue
                if event is None:
                    return
                yield event
        finally:
            with self._lock:
                if (loop, queue) in self._subscribers:
                    self._subscribers.remove((loop, queue))


def _offer(queue: asyncio.Queue, event: Any) -> None:
    if queue.full():
        queue.get_nowait()  # the slowest subscriber loses its oldest event
    queue.put_nowait(event)
