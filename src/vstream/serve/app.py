"""The FastAPI application: `build_app(settings)` loads the model once (in the lifespan), holds the sessions on
`app.state`, checks the API key, maps vstream's errors to HTTP codes in one place, and serves the web page.

    app = build_app(ServeSettings(model="smol", media_root="videos"))
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from vstream import __version__
from vstream.errors import (
    AccessDeniedError,
    LimitError,
    NotFoundError,
    NotReadyError,
    SessionError,
    VStreamError,
)
from vstream.model.assistant import VStream
from vstream.serve.metrics import ServerMetrics
from vstream.serve.routes import openai_routes, push, questions, sessions
from vstream.serve.sessions import SessionManager
from vstream.serve.settings import ServeSettings
from vstream.serve.watches import Verdict

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
OPEN_PATHS = ("/health", "/static/", "/favicon.ico")
"""Paths that need no API key (besides the page at `/`)."""


def build_app(settings: ServeSettings, *, model: VStream | None = None, verdict: Verdict | None = None) -> FastAPI:
    """The server's application.

    Args:
        settings: how it runs; model: an already loaded model (default: load `settings.model` at startup);
        verdict: how standing questions are answered (default: by the model).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loaded = model or _load_model(settings)
        manager = SessionManager(loaded, settings, verdict)
        app.state.model, app.state.sessions = loaded, manager
        app.state.metrics = ServerMetrics(manager.all)
        log.info("serving %s as %r", settings.model, settings.served_model_name)
        try:
            yield
        finally:
            manager.close_all()

    app = FastAPI(
        title="vstream",
        version=__version__,
        summary="Questions about live video streams, answered from a bounded memory (Flash-VStream).",
        lifespan=lifespan,
        max_body_size=settings.max_upload_bytes,  # 413 past it, whether the length is announced or not
    )
    app.state.settings = settings
    _add_error_handlers(app, settings)
    app.add_middleware(ApiKeyGuard, settings=settings)
    for router in (sessions.router, push.router, questions.router, openai_routes.router):
        app.include_router(router)

    @app.get("/health", tags=["server"])
    def health(request: Request) -> dict[str, Any]:
        """Liveness: the model is loaded and the server answers (no key needed)."""
        manager = getattr(request.app.state, "sessions", None)
        return {"status": "ok", "model": settings.served_model_name, "sessions": len(manager) if manager else 0}

    @app.get("/metrics", tags=["server"], include_in_schema=False)
    def metrics(request: Request) -> Any:
        from fastapi.responses import Response
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _load_model(settings: ServeSettings) -> VStream:
    return VStream.from_pretrained(settings.model, dtype=settings.dtype, device=settings.device)


# --------------------------------------------------------------------------- errors
STATUS = (
    (NotFoundError, 404),
    (AccessDeniedError, 403),
    (NotReadyError, 409),
    (SessionError, 409),
    (VStreamError, 422),
)
"""vstream's errors and their HTTP codes, the first match wins (`LimitError` by its kind)."""


def status_of(exc: VStreamError) -> int:
    """The HTTP status of a vstream error."""
    if isinstance(exc, LimitError):
        return 413 if exc.kind == "upload" else 429
    return next(code for kind, code in STATUS if isinstance(exc, kind))


def _add_error_handlers(app: FastAPI, settings: ServeSettings) -> None:
    @app.exception_handler(VStreamError)
    async def vstream_error(request: Request, exc: VStreamError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status_of(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 413:
            detail = (
                f"the request is larger than the server's limit of {settings.max_upload_mb:g} MiB (--max-upload-mb)"
            )
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in error.get('loc', ()) if p != 'body') or 'body'}: {error.get('msg')}"
            for error in exc.errors()
        ]
        return JSONResponse({"detail": "; ".join(problems) or "malformed request"}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)


# --------------------------------------------------------------------------- key
def key_ok(settings: ServeSettings, header: str | None, token: str | None) -> bool:
    """Whether a request carries the server's key (`Authorization: Bearer KEY`, or `?token=KEY`)."""
    if not settings.api_key:
        return True
    given = header[7:].strip() if header and header.lower().startswith("bearer ") else token
    return given is not None and hmac.compare_digest(given.encode(), settings.api_key.encode())


class ApiKeyGuard:
    """ASGI middleware: requests and WebSockets without the server's key get 401 (a WebSocket is refused with
    close code 1008), except on the open paths."""

    def __init__(self, app: Any, settings: ServeSettings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or not self.settings.api_key:
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == "/" or path.startswith(OPEN_PATHS)):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        header = headers.get(b"authorization", b"").decode("latin-1") or None
        token = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
        if key_ok(self.settings, header, token):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008, "reason": "a valid API key is needed"})
        response = JSONResponse(
            {"detail": "a valid API key is needed: Authorization: Bearer KEY (or ?token=KEY)"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)
        return None
