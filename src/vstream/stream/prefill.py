"""Keeping the LLM's state of [prompt start + memory] ready for the newest snapshot, off the question path."""

from __future__ import annotations

import logging
import threading

from vstream.errors import VStreamError
from vstream.model.assistant import VStream
from vstream.stream.frame_handler import FrameHandler, Published

log = logging.getLogger(__name__)


class PrefixWarmer:
    """A thread that prefills the memory of each new snapshot into the LLM's KV cache before anyone asks.

    The prompt puts the memory before the question, so a question about a prefilled snapshot prefills only its
    own tokens. Only the newest snapshot is prefilled (those published meanwhile are skipped), so on a slow LLM the
    warmer falls behind gracefully; it shares the LLM's lock with the questions, step by step.
    """

    def __init__(self, model: VStream, frame_handler: FrameHandler) -> None:
        self.model, self.frame_handler = model, frame_handler
        self.prefilled = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start prefilling in the background."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vstream-prefill", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the prefill under way, if any."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        seen: Published | None = None
        while not self._stop.is_set():
            latest = self.frame_handler.wait_published(seen, timeout=0.5)
            if latest is seen or latest is None:
                if self.frame_handler.end_reason is not None:
                    return  # the stream is over and its last snapshot is ready
                continue
            seen = latest
            try:
                self.model.prefill(latest.snapshot)
                self.prefilled += 1
            except (VStreamError, RuntimeError) as exc:  # never let it stop the stream; questions still work
                log.warning("prefilling the memory failed: %s", exc)
