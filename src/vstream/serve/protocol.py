"""Request and response bodies of the HTTP API (docs/serve.md), as pydantic models: checked on the way in,
documented in `/docs`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """Unknown fields are an error (a misspelt option must not be ignored)."""

    model_config = ConfigDict(extra="forbid")


class StreamOptions(Strict):
    """How a session plays its source."""

    fps: float = Field(1.0, gt=0, le=60, description="frames taken a second")
    speed: float = Field(1.0, ge=0, le=1000, description="files: 1 real time, 0 as fast as possible")
    memory: dict[str, Any] | None = Field(None, description="memory sizes to change, e.g. {'temporal_clusters': 8}")
    prefill: bool = Field(False, description="prefill each new memory snapshot into the LLM in the background")
    resume_from: str | None = Field(None, description="a state saved with /save: start with that memory")
    reconnect_s: float = Field(30.0, ge=0, le=86400, description="URLs: seconds to keep reconnecting after a drop")
    name: str | None = Field(None, max_length=200, description="a label shown in lists")


class SessionCreate(StreamOptions):
    """`POST /v1/sessions`."""

    source: str = Field(
        ...,
        min_length=1,
        max_length=4096,
        description="a URL, a path under the media root, synthetic:SECONDS[:SEED], or push",
    )


class SessionInfo(BaseModel):
    """Where a session stands."""

    id: str
    name: str | None
    source: str
    kind: Literal["url", "file", "upload", "synthetic", "push"]
    state: str
    created: float
    position: float | None
    latest_frame_time: float | None
    frames_read: int
    frames_in_memory: int
    frames_dropped: int
    lag_s: float | None
    pending: int
    memory_tokens: int
    memory_capacity: int
    memory_fill: dict[str, int]
    questions_answered: int
    watches: int
    end_reason: str | None


class SessionList(BaseModel):
    sessions: list[SessionInfo]


class SaveRequest(Strict):
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class SavedState(BaseModel):
    state: str
    frames: int
    latest_frame_time: float | None


class StateList(BaseModel):
    states: list[str]


class PushAck(BaseModel):
    """What the server holds of a pushed stream after a frame (or a batch) came in."""

    received: int
    dropped: int
    pending: int
    position: float | None


class QuestionRequest(Strict):
    """`POST /v1/sessions/{id}/questions`."""

    question: str = Field(..., min_length=1, max_length=8000)
    max_new_tokens: int | None = Field(None, ge=1, le=8192)
    temperature: float = Field(0.0, ge=0, le=5)
    top_p: float = Field(1.0, gt=0, le=1)
    stream: bool = True


class AnswerInfo(BaseModel):
    """A finished answer (the SSE `done` event, or the reply with `stream: false`)."""

    answer: str
    latest_frame_time: float | None
    frames_seen: int
    ttft_s: float
    total_s: float
    prompt_tokens: int
    memory_tokens: int
    new_tokens: int
    stop_reason: str


class WatchCreate(Strict):
    """`POST /v1/sessions/{id}/watches`: a standing yes/no question (or an open one with `match`)."""

    question: str = Field(..., min_length=1, max_length=2000)
    every_s: float | None = Field(None, gt=0, le=86400, description="wall seconds between checks (None: each update)")
    match: str | None = Field(None, min_length=1, max_length=200, description="true when the answer has these words")


class WatchInfo(BaseModel):
    id: str
    question: str
    every_s: float | None
    match: str | None
    value: bool | None
    answer: str | None
    checks: int
    stream_time: float | None


class WatchList(BaseModel):
    watches: list[WatchInfo]


class ChatMessage(BaseModel):
    """One message of an OpenAI chat request; `content` is text or a list of parts (`text`, `video_url`)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(BaseModel):
    """`POST /v1/chat/completions` (the fields vstream uses; others that OpenAI clients send are accepted)."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(None, ge=1, le=8192)
    temperature: float | None = Field(None, ge=0, le=5)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=1, description="one answer per request")
    seed: int | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
