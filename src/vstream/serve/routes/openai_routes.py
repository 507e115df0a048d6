"""The OpenAI-compatible endpoints: `GET /v1/models` and `POST /v1/chat/completions` about a session."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request

from vstream.errors import ConfigError, NotFoundError, NotReadyError, SourceError
from vstream.model.answer import Answer, AnswerStream
from vstream.model.generation import GenerationOptions
from vstream.serve.protocol import ChatCompletionRequest, ChatMessage
from vstream.serve.routes.sessions import manager_of
from vstream.serve.sessions import ServedSession, SessionManager
from vstream.serve.sse import sse, sse_response

router = APIRouter(prefix="/v1", tags=["openai"])

SESSION_URL = "vstream://sessions/"
FIRST_FRAME_S = 30.0
"""How long a chat request that opened a session waits for its first frame."""


@router.get("/models")
def models(request: Request) -> dict[str, Any]:
    """The served model, as OpenAI lists models."""
    name = request.app.state.settings.served_model_name
    return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "vstream"}]}


@router.post("/chat/completions")
def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    """Answer the last user message about the stream its `video_url` part names (`vstream://sessions/ID`, or a URL
    or `synthetic:...`, which opens a session for it); earlier turns are the conversation's history."""
    return _complete(body, request, None)


@router.post("/sessions/{session_id}/chat/completions")
def session_chat_completions(session_id: str, body: ChatCompletionRequest, request: Request) -> Any:
    """The same about one session, named in the path (an OpenAI client with `base_url=.../v1/sessions/ID`; a router
    can send it to the replica that holds the session); a `video_url` part is then not needed."""
    return _complete(body, request, session_id)


def _complete(body: ChatCompletionRequest, request: Request, session_id: str | None) -> Any:
    settings = request.app.state.settings
    if body.model != settings.served_model_name:
        raise NotFoundError(
            f"model {body.model!r} is not served here; this server serves {settings.served_model_name!r}"
        )
    manager = manager_of(request)
    video, turns, question = _read_messages(body.messages, needs_video=session_id is None)
    if session_id is not None:
        if video is not None and video != SESSION_URL + session_id:
            raise ConfigError(f"the path names session {session_id} but a video_url part names {video}")
        served = manager.get(session_id)
    else:
        served = _session_for(manager, video)
    conversation = request.app.state.model.processor.conversation()
    conversation.turns.extend(turns)
    options = GenerationOptions(
        max_new_tokens=body.max_completion_tokens or body.max_tokens or settings.max_new_tokens,
        temperature=body.temperature or 0.0,
        top_p=body.top_p or 1.0,
        seed=body.seed,
    )
    stream = served.session.stream(question, conversation=conversation, options=options)
    metrics, model = request.app.state.metrics, settings.served_model_name
    reply_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if not body.stream:
        answer = stream.result()
        metrics.answered(answer, "chat")
        return {
            "id": reply_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.text},
                    "finish_reason": _finish(answer),
                }
            ],
            "usage": _usage(answer),
            "vstream": _extra(served, answer),
        }
    include_usage = bool((body.stream_options or {}).get("include_usage"))
    chunks = _chunks(stream, served, reply_id, created, model, include_usage, metrics)
    return sse_response(chunks)


def _chunks(
    stream: AnswerStream, served: ServedSession, reply_id: str, created: int, model: str, usage: bool, metrics: Any
) -> Iterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> str:
        choices = [{"index": 0, "delta": delta, "finish_reason": finish}]
        body = {"id": reply_id, "object": "chat.completion.chunk", "created": created, "model": model}
        return sse({**body, "choices": choices, **extra})

    yield chunk({"role": "assistant", "content": ""}, None)
    for piece in stream:
        yield chunk({"content": piece}, None)
    answer = stream.answer
    assert answer is not None
    metrics.answered(answer, "chat")
    yield chunk({}, _finish(answer), vstream=_extra(served, answer))
    if usage:
        body = {"id": reply_id, "object": "chat.completion.chunk", "created": created, "model": model}
        yield sse({**body, "choices": [], "usage": _usage(answer)})
    yield sse("[DONE]")


def _read_messages(
    messages: list[ChatMessage], needs_video: bool = True
) -> tuple[str | None, list[tuple[str, str]], str]:
    """(the video URL, earlier (question, answer) turns, the question) of a chat request."""
    video, turns, pending = None, [], None
    for message in messages:
        if message.role in ("system", "developer", "tool"):
            continue
        text, url = _parts(message)
        video = url or video
        if message.role == "user":
            pending = text if pending is None else f"{pending}\n{text}"
        elif pending is not None:
            turns.append((pending, text))
            pending = None
    if video is None and needs_video:
        raise ConfigError(
            'name the stream in a user message: {"type": "video_url", "video_url": {"url": "vstream://sessions/ID"}}'
        )
    if not pending or not pending.strip():
        raise ConfigError("the last message must be a user message with a question in a text part")
    return video, turns, pending.strip()


def _parts(message: ChatMessage) -> tuple[str, str | None]:
    if message.content is None or isinstance(message.content, str):
        return message.content or "", None
    texts, url = [], None
    for part in message.content:
        kind = part.get("type")
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind == "video_url":
            target = part.get("video_url")
            url = target.get("url") if isinstance(target, dict) else target
            if not isinstance(url, str) or not url:
                raise ConfigError('a video_url part is {"type": "video_url", "video_url": {"url": "..."}}')
        else:
            raise ConfigError(f"content parts of type {kind!r} are not taken here (only text and video_url)")
    return "\n".join(texts), url


def _session_for(manager: SessionManager, url: str) -> ServedSession:
    """The session a `video_url` names, or a new one on that URL (waiting for its first frame)."""
    if url.startswith(SESSION_URL):
        return manager.get(url.removeprefix(SESSION_URL).strip("/"))
    served = manager.open(url, {"fps": 1.0, "speed": 1.0})
    handler = served.session.frame_handler
    if handler.wait_published(None, timeout=FIRST_FRAME_S) is None:
        if handler.end_reason is not None:
            manager.close(served.id, wait=True)
            raise SourceError(f"{url}: the stream ended before its first frame ({handler.end_reason})")
        raise NotReadyError(
            f"{url}: no frame in {FIRST_FRAME_S:g} s; the session {served.id} keeps trying: ask again with "
            f"vstream://sessions/{served.id}"
        )
    return served


def _finish(answer: Answer) -> str:
    return "length" if answer.stop_reason == "length" else "stop"


def _usage(answer: Answer) -> dict[str, int]:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.new_tokens,
        "total_tokens": answer.prompt_tokens + answer.new_tokens,
    }


def _extra(served: ServedSession, answer: Answer) -> dict[str, Any]:
    return {
        "session_id": served.id,
        "latest_frame_time": answer.latest_frame_time,
        "frames_seen": answer.frames_seen,
        "ttft_s": round(answer.ttft_s, 6),
        "total_s": round(answer.total_s, 6),
    }
