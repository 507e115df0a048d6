"""Frames pushed by the client into a `push` session: a WebSocket, a batch POST, and the end of the stream."""

from __future__ import annotations

import base64
import binascii
import json
import struct
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool

from vstream.errors import ConfigError, NotFoundError, SourceError
from vstream.serve.protocol import PushAck
from vstream.serve.routes.sessions import manager_of
from vstream.serve.sessions import ServedSession, SessionManager

router = APIRouter(prefix="/v1", tags=["frames"])

TIME = struct.Struct("<d")


def push_session(manager: SessionManager, session_id: str) -> ServedSession:
    """The session, which must take pushed frames."""
    served = manager.get(session_id)
    if served.push is None:
        raise ConfigError(f"session {session_id} plays {served.source!r}; only a 'push' session takes frames")
    return served


def parse_frame(message: dict[str, Any]) -> tuple[float, bytes]:
    """(time, image bytes) of a WebSocket message: binary = float64 LE time + image; text = JSON time + base64."""
    if message.get("bytes") is not None:
        data = message["bytes"]
        if len(data) <= TIME.size:
            raise SourceError("a binary frame is 8 bytes of float64 time (little-endian) followed by the image")
        return TIME.unpack_from(data)[0], data[TIME.size :]
    try:
        payload = json.loads(message.get("text") or "")
        return float(payload["time"]), base64.b64decode(payload["image"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise SourceError(f'a text frame is JSON {{"time": seconds, "image": base64}}; {exc}') from exc


@router.websocket("/sessions/{session_id}/frames")
async def frames_socket(websocket: WebSocket, session_id: str) -> None:
    """Take frames one message each; answer each with the push counters, or `{"error": ...}` for a bad one."""
    await websocket.accept()
    try:
        served = push_session(websocket.app.state.sessions, session_id)
    except (NotFoundError, ConfigError) as exc:
        await websocket.send_json({"error": str(exc)})
        await websocket.close(code=1008)
        return
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                t, image = parse_frame(message)
                await run_in_threadpool(served.push.push_image, image, t)
                await websocket.send_json(served.push_ack())
            except SourceError as exc:
                await websocket.send_json({"error": str(exc)})
    except WebSocketDisconnect:
        return


@router.post("/sessions/{session_id}/frames", response_model=PushAck)
async def push_frames(
    session_id: str,
    request: Request,
    frames: Annotated[list[UploadFile], File(description="JPEG or PNG images, in time order")],
    times: Annotated[str, Form(description="their stream times in seconds, a JSON list")],
) -> dict[str, Any]:
    """Take a batch of frames with their times."""
    served = push_session(manager_of(request), session_id)
    try:
        stamps = json.loads(times)
        if not isinstance(stamps, list) or not all(isinstance(t, (int, float)) for t in stamps):
            raise ValueError("not a list of numbers")
    except ValueError as exc:
        raise ConfigError(f"times: a JSON list of seconds, one per frame ({exc})") from exc
    if len(stamps) != len(frames):
        raise ConfigError(f"{len(frames)} frames but {len(stamps)} times")
    for upload, t in zip(frames, stamps, strict=True):
        data = await upload.read()
        await run_in_threadpool(served.push.push_image, data, float(t))
    return served.push_ack()


@router.post("/sessions/{session_id}/end", response_model=PushAck)
def end_push(session_id: str, request: Request) -> dict[str, Any]:
    """End a pushed stream: the frames already sent go into the memory, which stays for questions."""
    served = push_session(manager_of(request), session_id)
    served.push.end()
    return served.push_ack()
