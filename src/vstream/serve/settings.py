"""ServeSettings: everything `vstream serve` is started with, checked at construction."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from vstream.errors import ConfigError
from vstream.paths import cache_dir


@dataclass
class ServeSettings:
    """How the server runs.

    Attributes:
        model: checkpoint folder, Hub id, `smol` or `tiny-random`; loaded once and shared by every session.
        served_model_name: the model's id in `/v1/models` and chat requests (default: `model`).
        api_key: when set, every route but `/health`, `/` and `/static` needs `Authorization: Bearer KEY`.
        max_sessions: sessions open at once at most (429 beyond).
        max_upload_mb: largest upload, in MiB (413 beyond).
        media_root: the folder whose files sessions may open by path (None: no server files at all).
        state_dir: where `/save` writes memory states and `resume_from` reads them.
        upload_dir: where uploads are kept while their session lives.
        max_new_tokens: default answer length; watch_tokens: answer length of a standing question.
        device, dtype: as for every command (`--device`, `--dtype`).
        replica: the first part of every session id (`r2-3f2a9c1b`), so that a router in front of several servers
            can send each session's requests to the server that holds it.
    """

    model: str = "smol"
    served_model_name: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_sessions: int = 16
    max_upload_mb: float = 512.0
    media_root: Path | None = None
    state_dir: Path = field(default_factory=lambda: cache_dir() / "serve" / "states")
    upload_dir: Path = field(default_factory=lambda: cache_dir() / "serve" / "uploads")
    max_new_tokens: int = 256
    watch_tokens: int = 16
    device: str | None = None
    dtype: str = "auto"
    replica: str = "s"

    def __post_init__(self) -> None:
        if self.api_key is None:
            self.api_key = os.environ.get("VSTREAM_API_KEY") or None
        if self.served_model_name is None:
            self.served_model_name = self.model
        if not isinstance(self.max_sessions, int) or self.max_sessions < 1:
            raise ConfigError(f"--max-sessions must be an integer >= 1, got {self.max_sessions!r}")
        if not self.max_upload_mb > 0:
            raise ConfigError(f"--max-upload-mb must be > 0, got {self.max_upload_mb!r}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"--port must be in 1..65535, got {self.port!r}")
        for name in ("max_new_tokens", "watch_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)!r}")
        if not re.fullmatch(r"[a-z][a-z0-9]{0,15}", self.replica or ""):
            raise ConfigError(f"--replica is a lowercase letter then up to 15 letters or digits, got {self.replica!r}")
        if self.media_root is not None:
            self.media_root = Path(self.media_root).expanduser().resolve()
            if not self.media_root.is_dir():
                raise ConfigError(f"--media-root {self.media_root}: no such folder")
        self.state_dir = Path(self.state_dir).expanduser()
        self.upload_dir = Path(self.upload_dir).expanduser()

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
