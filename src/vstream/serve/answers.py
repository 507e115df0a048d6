"""Answers as the API gives them: the `done` record, and the SSE events of an answer being decoded."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from vstream.errors import VStreamError
from vstream.model.answer import Answer, AnswerStream
from vstream.serve.sse import sse

log = logging.getLogger(__name__)


def answer_info(answer: Answer) -> dict[str, Any]:
    """The fields of `AnswerInfo`."""
    return {
        "answer": answer.text,
        "latest_frame_time": answer.latest_frame_time,
        "frames_seen": answer.frames_seen,
        "ttft_s": round(answer.ttft_s, 6),
        "total_s": round(answer.total_s, 6),
        "prompt_tokens": answer.prompt_tokens,
        "memory_tokens": answer.memory_tokens,
        "new_tokens": answer.new_tokens,
        "stop_reason": answer.stop_reason,
    }


def answer_events(stream: AnswerStream, done: Callable[[Answer], None]) -> Iterator[str]:
    """`token` events as the answer is decoded, then `done` (or `error`, once the stream has begun)."""
    try:
        for piece in stream:
            yield sse({"text": piece}, "token")
        assert stream.answer is not None
        done(stream.answer)
        yield sse(answer_info(stream.answer), "done")
    except VStreamError as exc:
        yield sse({"detail": str(exc)}, "error")
    except Exception as exc:  # the response has begun: the client gets the reason, the server goes on
        log.exception("answering failed")
        yield sse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, "error")
