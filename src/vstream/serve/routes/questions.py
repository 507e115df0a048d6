"""Questions about a session: answered now (streamed as SSE), or standing (watches) with their events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from vstream.model.generation import GenerationOptions
from vstream.serve.answers import answer_events, answer_info
from vstream.serve.protocol import AnswerInfo, QuestionRequest, WatchCreate, WatchInfo, WatchList
from vstream.serve.routes.sessions import manager_of
from vstream.serve.sessions import ServedSession
from vstream.serve.sse import sse, sse_response

router = APIRouter(prefix="/v1", tags=["questions"])


@router.post(
    "/sessions/{session_id}/questions",
    response_model=AnswerInfo,
    responses={200: {"content": {"text/event-stream": {}}, "description": "token events, then done"}},
)
def ask(session_id: str, body: QuestionRequest, request: Request) -> Any:
    """Answer from the session's latest memory snapshot: `token` events as it is decoded, then `done` with the
    stream time it is about and its latency (`stream: false`: the `done` object alone)."""
    served = manager_of(request).get(session_id)
    settings, metrics = request.app.state.settings, request.app.state.metrics
    options = GenerationOptions(
        max_new_tokens=body.max_new_tokens or settings.max_new_tokens, temperature=body.temperature, top_p=body.top_p
    )
    stream = served.session.stream(body.question, options=options)  # an empty memory fails here: 409
    if not body.stream:
        answer = stream.result()
        metrics.answered(answer, "questions")
        return answer_info(answer)
    return sse_response(answer_events(stream, lambda answer: metrics.answered(answer, "questions")))


@router.post("/sessions/{session_id}/watches", status_code=201, response_model=WatchInfo)
def add_watch(session_id: str, body: WatchCreate, request: Request) -> dict[str, Any]:
    """Register a standing question, asked at each memory update (or every `every_s` seconds)."""
    served = manager_of(request).get(session_id)
    return served.monitor.add(body.question, body.every_s, body.match).info()


@router.get("/sessions/{session_id}/watches", response_model=WatchList)
def list_watches(session_id: str, request: Request) -> dict[str, Any]:
    """The session's standing questions and what each last found."""
    return {"watches": [w.info() for w in manager_of(request).get(session_id).monitor.watches()]}


@router.delete("/sessions/{session_id}/watches/{watch_id}", status_code=204)
def delete_watch(session_id: str, watch_id: str, request: Request) -> Response:
    """Stop asking a standing question."""
    manager_of(request).get(session_id).monitor.remove(watch_id)
    return Response(status_code=204)


@router.get("/sessions/{session_id}/events", response_class=StreamingResponse)
async def events(session_id: str, request: Request) -> StreamingResponse:
    """Server-Sent Events: `watch` each time a standing question's value is first known or flips, `state` when the
    session ends (recent ones first, then live)."""
    served = manager_of(request).get(session_id)
    return sse_response(_events(served))


async def _events(served: ServedSession) -> AsyncIterator[str]:
    async for event in served.monitor.hub.subscribe():
        if event is None:
            yield ": keep-alive\n\n"
        else:
            yield sse(event[1], event[0])
