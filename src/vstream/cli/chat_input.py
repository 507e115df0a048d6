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
    `read()` returns None at the end of input (Ctrl-D, end of file, or Ctrl-C at the prompt). Use it in a `with`
    block: on a terminal, keys typed between prompts (while an answer prints) are then kept for the next prompt.
    """

    def __init__(self, prompt: Callable[[], str], status: Callable[[], str], stdin: TextIO | None = None) -> None:
        self.prompt, self.status = prompt, status
        self.stdin = sys.stdin if stdin is None else stdin
        self.live = self.stdin is sys.stdin and _is_terminal(sys.stdin) and _is_terminal(sys.stdout)
        self._session = None
        self._terminal_before: list | None = None  # the terminal's settings before `__enter__` held it
        if self.live:
            from prompt_toolkit import PromptSession

            self._session = PromptSession()

    def __enter__(self) -> ChatInput:
        """On a terminal, keep every key typed between prompts for the next prompt (see `_hold_keys`)."""
        if self.live:
            self._terminal_before = _hold_keys(sys.stdin)
        return self

    def __exit__(self, *exc: object) -> None:
        """Give the terminal its settings back."""
        if self._terminal_before is not None:
            _set_terminal(sys.stdin, self._terminal_before)
            self._terminal_before = None

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


def _hold_keys(stream: TextIO) -> list | None:
    """Switch the terminal out of line mode and echo between prompts; its settings before (None: left as it was).

    In line mode the terminal driver acts on some keys itself. A Ctrl-D typed while no prompt reads (an answer
    printing, or the moment before the next prompt takes the terminal) is taken there as the end of an empty line
    and left as a NUL byte, which the next prompt reads as Ctrl-@: the Ctrl-D is lost and the chat does not end.
    Out of line mode every key waits as typed; prompt_toolkit restores these settings after each prompt.
    Ctrl-C still interrupts an answer (ISIG stays on).
    """
    try:
        import termios
    except ImportError:  # not a POSIX terminal
        return None
    try:
        before = termios.tcgetattr(stream.fileno())
    except (termios.error, OSError, ValueError):
        return None
    held = [*before[:6], list(before[6])]
    held[3] &= ~(termios.ICANON | termios.ECHO)  # lflag
    held[6][termios.VMIN], held[6][termios.VTIME] = 1, 0
    return before if _set_terminal(stream, held) else None


def _set_terminal(stream: TextIO, settings: list) -> bool:
    """Apply terminal settings now; False where they cannot be set."""
    import termios

    try:
        termios.tcsetattr(stream.fileno(), termios.TCSANOW, settings)
    except (termios.error, OSError, ValueError):
        return False
    return True


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
