"""Sessions: open (from a source or an upload), list, inspect, save, close; saved states; memory inspection."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from vstream.errors import ConfigError, LimitError
from vstream.serve.protocol import SavedState, SaveRequest, SessionCreate, SessionInfo, SessionList, StateList
from vstream.serve.sessions import SessionManager

router = APIRouter(prefix="/v1", tags=["sessions"])

CHUNK = 1 << 20


def manager_of(request: Request) -> SessionManager:
    """The server's session manager."""
    return request.app.state.sessions


@router.post("/sessions", status_code=201, response_model=SessionInfo)
def create_session(body: SessionCreate, request: Request) -> dict[str, Any]:
    """Open a session on a source (URL, file under the media root, `synthetic:SECONDS[:SEED]`, or `push`)."""
    options = body.model_dump(exclude={"source"})
    return manager_of(request).open(body.source, options).info()


@router.post("/sessions/upload", status_code=201, response_model=SessionInfo)
async def upload_session(
    request: Request,
    file: Annotated[UploadFile, File(description="a video file")],
    fps: Annotated[float, Form()] = 1.0,
    speed: Annotated[float, Form()] = 1.0,
    memory: Annotated[str | None, Form(description="memory sizes to change, as a JSON object")] = None,
    prefill: Annotated[bool, Form()] = False,
    resume_from: Annotated[str | None, Form()] = None,
    name: Annotated[str | None, Form()] = None,
) -> dict[str, Any]:
    """Open a session on an uploaded video (kept on the server while the session lives)."""
    settings = request.app.state.settings
    try:
        fields = {"fps": fps, "speed": speed, "prefill": prefill, "resume_from": resume_from, "name": name}
        options = SessionCreate(source="upload", memory=json.loads(memory) if memory else None, **fields)
    except (ValidationError, ValueError) as exc:
        raise ConfigError(f"bad upload options: {exc}") from exc
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    target = settings.upload_dir / f"{secrets.token_hex(6)}-{_safe_name(file.filename)}"
    try:
        await _save_upload(file, target, settings.max_upload_bytes, settings.max_upload_mb)
        served = await run_in_threadpool(
            manager_of(request).open, "upload", options.model_dump(exclude={"source"}), upload=target
        )
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return served.info()


async def _save_upload(file: UploadFile, target: Path, limit: int, limit_mb: float) -> None:
    written = 0
    with open(target, "wb") as out:
        while chunk := await file.read(CHUNK):
            written += len(chunk)
            if written > limit:
                raise LimitError(f"the upload is larger than the server's limit of {limit_mb:g} MiB", "upload")
            out.write(chunk)


def _safe_name(name: str | None) -> str:
    stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(name or "upload").name)[-80:]
    return stem.lstrip(".") or "upload"


@router.get("/sessions", response_model=SessionList)
def list_sessions(request: Request) -> dict[str, Any]:
    """Every open session."""
    return {"sessions": [served.info() for served in manager_of(request).all()]}


@router.get("/sessions/{session_id}", response_model=SessionInfo)
def get_session(session_id: str, request: Request) -> dict[str, Any]:
    """Where a session stands: state, position, frames, drops, lag, memory fill, why it ended."""
    return manager_of(request).get(session_id).info()


@router.delete("/sessions/{session_id}", status_code=204)
def delete_session(session_id: str, request: Request) -> Response:
    """Stop a session and forget it."""
    manager_of(request).close(session_id)
    return Response(status_code=204)


@router.post("/sessions/{session_id}/save", response_model=SavedState)
def save_session(session_id: str, request: Request, body: SaveRequest | None = None) -> dict[str, Any]:
    """Write the session's memory to the server's state folder; a new session can start from it (`resume_from`)."""
    manager = manager_of(request)
    served = manager.get(session_id)
    name = (body.name if body else None) or f"{served.id}-{served.session.memory.frames_seen}"
    path = manager.state_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    served.session.save(path)
    memory = served.session.memory
    return {"state": name, "frames": memory.frames_seen, "latest_frame_time": memory.latest_time}


@router.get("/states", response_model=StateList)
def list_states(request: Request) -> dict[str, Any]:
    """The memory states saved on this server."""
    return {"states": manager_of(request).states()}


@router.get("/sessions/{session_id}/memory")
def get_memory(session_id: str, request: Request) -> dict[str, Any]:
    """What the memory holds: each token group with its memory, times and weight, and thumbnails of the frames the
    retrieved and spatial memories (and, where held, the temporal centroids) stand for."""
    return manager_of(request).get(session_id).memory()
