"""Reading the user's lines in `vstream chat`: a live status line on a terminal, plain lines from a pipe."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

REFRESH_S = 0.5
"""How often the position shown on a terminal is redrawn while the user types."""


class ChatInput:
    """The lines a user types, each read under a prompt that shows where the stream is.

    On a terminal the prompt and a bottom status bar are redrawn every `REFRESH_S` seconds (prompt_toolkit),
    so the position moves while the user types. From a pipe or a file the prompt is printed once per line.
    `read()` returns None at the end of input (Ctrl-D, end of file, or Ctrl-C at the prompt).
    """

    def __init__(self, prompt: Callable[[], str], status: Callable[[], str], stdin: TextIO | None = None) -> None:
        self.prompt, self.status = prompt, status
        self.stdin = sys.stdin if stdin is None else stdin
        self.live = self.stdin is sys.stdin and _is_terminal(sys.stdin) and _is_terminal(sys.stdout)
        self._session = None
        if self.live:
            from prompt_toolkit import PromptSession

            self._session = PromptSession()

    def read(self) -> str | None:
        """The next line typed, without its newline; None when input has ended."""
        if self._session is not None:
            from prompt_toolkit.patch_stdout import patch_stdout

            # what the stream's threads print or log meanwhile goes above the prompt, not through it
            with patch_stdout(raw=True), _logging_to(sys.stderr):
                try:
                    return self._session.prompt(self.prompt, bottom_toolbar=self.status, refresh_interval=REFRESH_S)
                except (EOFError, KeyboardInterrupt):
                    return None
        print(self.prompt(), end="", flush=True)
        line = self.stdin.readline()
        return line.rstrip("\n") if line else None


@contextmanager
def _logging_to(stream: TextIO) -> Iterator[None]:
    """Point the root logger's console handlers at `stream` for a while (they keep the stream they were made with)."""
    handlers = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]
    previous = [h.stream for h in handlers]
    for handler in handlers:
        handler.setStream(stream)
    try:
        yield
    finally:
        for handler, old in zip(handlers, previous, strict=True):
            handler.setStream(old)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
