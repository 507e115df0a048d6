"""`vstream serve`: the HTTP API and the web page, on uvicorn (docs/serve.md)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from vstream.cli.model_args import add_device_arguments
from vstream.errors import ConfigError

log = logging.getLogger(__name__)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `vstream serve`."""
    parser.add_argument("--model", default="smol", help="checkpoint folder, Hub id, 'smol' (shipped) or 'tiny-random'")
    parser.add_argument("--served-model-name", default=None, help="the model's id in /v1/models (default: --model)")
    add_device_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (or $VSTREAM_API_KEY)")
    parser.add_argument("--max-sessions", type=int, default=16, help="sessions open at once at most")
    parser.add_argument("--max-upload-mb", type=float, default=512.0, help="largest upload or request body, in MiB")
    parser.add_argument("--media-root", type=Path, default=None, help="folder whose files sessions may open by path")
    parser.add_argument("--state-dir", type=Path, default=None, help="where saved memory states go")
    parser.add_argument("--upload-dir", type=Path, default=None, help="where uploads are kept while in use")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="default answer length")
    parser.add_argument("--watch-tokens", type=int, default=16, help="answer length of standing questions")
    parser.add_argument(
        "--replica", default="s", help="first part of session ids, to route sessions to servers (e.g. r1, r2)"
    )
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def cmd_serve(args: argparse.Namespace) -> int:
    """Load the model and serve until interrupted."""
    try:
        import uvicorn

        from vstream.serve.app import build_app
    except ImportError as exc:
        raise ConfigError(f"vstream serve needs the serve extra: pip install 'vstream[serve]' ({exc})") from exc
    from vstream.serve.settings import ServeSettings

    folders = {k: v for k, v in (("state_dir", args.state_dir), ("upload_dir", args.upload_dir)) if v is not None}
    settings = ServeSettings(
        model=args.model,
        served_model_name=args.served_model_name,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        max_sessions=args.max_sessions,
        max_upload_mb=args.max_upload_mb,
        media_root=args.media_root,
        max_new_tokens=args.max_new_tokens,
        watch_tokens=args.watch_tokens,
        device=args.device,
        dtype=args.dtype,
        replica=args.replica,
        **folders,
    )
    logging.getLogger("vstream").setLevel(args.log_level.upper())
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        log.warning("listening on %s without --api-key: anyone who reaches it can use the model", settings.host)
    uvicorn.run(build_app(settings), host=settings.host, port=settings.port, log_level=args.log_level)
    return 0
