"""The question handler: answers from the latest published snapshot, never waiting for the encoder."""

from __future__ import annotations

import time
from collections.abc import Iterator

from vstream.errors import NotReadyError, SourceError
from vstream.model.answer import Answer, AnswerStream
from vstream.model.assistant import VStream
from vstream.model.generation import GenerationOptions
from vstream.model.prompts import Conversation
from vstream.stream.frame_handler import FrameHandler
from vstream.stream.metrics import Metrics, QuestionRecord


class QuestionHandler:
    """Answers questions about a stream from whatever the frame handler last published.

    Several questions may be in flight from several threads: the model interleaves their decoding steps.
    """

    def __init__(self, model: VStream, frame_handler: FrameHandler, metrics: Metrics) -> None:
        self.model, self.frame_handler, self.metrics = model, frame_handler, metrics

    def stream(
        self, question: str, *, conversation: Conversation | None = None, options: GenerationOptions | None = None
    ) -> AnswerStream:
        """Text pieces of the answer as they are produced; `.answer` once done."""
        published = self.frame_handler.latest
        if published is None and self.frame_handler.end_reason not in (None, "end of stream", "stopped"):
            raise SourceError(f"no frame reached the memory: {self.frame_handler.end_reason}")
        if published is None:
            raise NotReadyError(
                "nothing has streamed yet: no frame has reached the memory, so there is nothing "
                "to answer from; ask again in a moment"
            )
        age = time.monotonic() - published.at
        inner = self.model.stream_answer(published.snapshot, question, conversation=conversation, options=options)

        def produce(outer: AnswerStream) -> Iterator[str]:
            yield from inner
            answer = inner.answer
            self.metrics.question(
                QuestionRecord(question, answer.latest_frame_time, age, answer.ttft_s, answer.total_s)
            )
            outer.answer = answer

        return AnswerStream(produce)

    def ask(
        self, question: str, *, conversation: Conversation | None = None, options: GenerationOptions | None = None
    ) -> Answer:
        """The whole answer, from the latest snapshot."""
        return self.stream(question, conversation=conversation, options=options).result()
