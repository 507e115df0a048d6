"""An answer about a memory snapshot, whole (`Answer`) or as it is decoded (`AnswerStream`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from vstream.memory import MemorySnapshot
from vstream.model.engine import Generation


@dataclass(frozen=True)
class Answer:
    """An answer with what it cost.

    Attributes:
        prompt_tokens: tokens the LLM read (text tokens plus memory tokens); memory_tokens: of those, the memory.
        new_tokens: tokens generated (the EOS included when reached); stop_reason: `eos` or `length`.
        ttft_s: seconds from the call to the first generated token; total_s: to the last.
        frames_seen, latest_frame_time: the memory snapshot the answer is about.
    """

    question: str
    text: str
    prompt_tokens: int
    memory_tokens: int
    new_tokens: int
    ttft_s: float
    total_s: float
    tokens_per_s: float
    stop_reason: str
    frames_seen: int
    latest_frame_time: float | None

    @classmethod
    def of(cls, question: str, snapshot: MemorySnapshot, generation: Generation) -> Answer:
        """The answer to `question` that `generation` decoded from `snapshot`."""
        return cls(
            question=question,
            memory_tokens=snapshot.num_tokens,
            frames_seen=snapshot.frames_seen,
            latest_frame_time=snapshot.latest_time,
            **asdict(generation),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields."""
        return asdict(self)


class AnswerStream:
    """Text pieces of an answer as they are produced; `answer` holds the whole `Answer` once the stream is done.

    Args:
        produce: given this stream, yields the pieces and sets `stream.answer` at the end.
    """

    def __init__(self, produce: Callable[[AnswerStream], Iterator[str]]) -> None:
        self.answer: Answer | None = None
        self._pieces = produce(self)

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def result(self) -> Answer:
        """Consume what is left and return the `Answer`."""
        for _ in self._pieces:
            pass
        assert self.answer is not None
        return self.answer
