"""Errors vstream raises on purpose; each names what was wrong and how to fix it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """A bad record of an input file (annotations, training data): where it is and what is wrong; files are
    checked whole and their problems listed together, none skipped silently."""

    position: str
    reason: str

    def __str__(self) -> str:
        return f"{self.position}: {self.reason}"


class VStreamError(Exception):
    """Base class of every error vstream raises deliberately."""


class ConfigError(VStreamError, ValueError):
    """A configuration value is out of range, unknown or inconsistent with another one."""


class MemoryInputError(VStreamError, ValueError):
    """Frames or timestamps given to a memory have the wrong shape, type, order or values."""


class StateFileError(VStreamError):
    """A saved memory state cannot be read, or does not fit what it is loaded into."""


class CheckpointError(VStreamError):
    """A checkpoint cannot be found or loaded, or its weights do not match its config (names them)."""


class FeatureFileError(VStreamError):
    """A features file (`.safetensors`, STAR.md §5) is missing, unreadable or of the wrong shape."""


class GenerationError(VStreamError, ValueError):
    """A question cannot be answered as asked (an empty memory, a bad option, a placeholder in the text)."""


class SourceError(VStreamError):
    """A video source cannot be opened or read (names the file, URL or device and why)."""


class SessionError(VStreamError):
    """A stream session was asked for something its state does not allow (e.g. asking after it was closed)."""


class AnnotationError(VStreamError):
    """A benchmark's annotation file cannot be read, or has bad records (all of them listed)."""


class TrainingDataError(VStreamError):
    """Training data cannot be read, or has bad records (all of them listed, with their position and reason)."""


class NotReadyError(GenerationError):
    """A question came before any frame reached the memory: there is nothing to answer from yet."""


class NotFoundError(VStreamError, LookupError):
    """A session, watch, saved state or model that the request names does not exist."""


class AccessDeniedError(VStreamError):
    """A request reaches outside what the server allows (a path outside its media root)."""


class LimitError(VStreamError):
    """A request goes over one of the server's limits (`kind`: `sessions` or `upload`)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def bad_records(source: object, problems: Sequence[Problem], error: type[VStreamError]) -> VStreamError:
    """The error that lists a file's bad records (the first 20, and how many more), to raise when any."""
    shown = "; ".join(str(p) for p in problems[:20])
    more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
    return error(f"{source}: {len(problems)} bad records: {shown}{more}")
