"""Reading the user's lines in `vstream chat`: a live status line on a terminal, plain lines from a pipe."""

from __future__ import annotations

import sys
from collections.abc import Callable
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
            try:
                return self._session.prompt(self.prompt, bottom_toolbar=self.status, refresh_interval=REFRESH_S)
            except (EOFError, KeyboardInterrupt):
                return None
        print(self.prompt(), end="", flush=True)
        line = self.stdin.readline()
        return line.rstrip("\n") if line else None


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
