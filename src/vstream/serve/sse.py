"""Server-Sent Events: the text of one event, and the streaming response that carries them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi.responses import StreamingResponse

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no buffering by proxies (nginx)


def sse(data: Any, event: str | None = None) -> str:
    """One event: `event: NAME` (if any) and `data: JSON` (a string is sent as it is), then a blank line."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return head + "".join(f"data: {line}\n" for line in text.split("\n")) + "\n"


def sse_response(events: Iterator[str] | AsyncIterator[str]) -> StreamingResponse:
    """A `text/event-stream` response of already formatted events."""
    return StreamingResponse(events, media_type="text/event-stream", headers=HEADERS)
