"""The server's sessions: each a StreamSession with its id, thumbnails, standing questions and events.

The model is shared by every session; each has its own source, memory and frame handler threads. Sources are
resolved here, with the server's rules: URLs and generated streams as given, files only under the media root,
`push` for frames the client sends.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vstream.errors import AccessDeniedError, ConfigError, LimitError, NotFoundError, SourceError
from vstream.memory import MemoryConfig
from vstream.memory.config import apply_memory_changes
from vstream.model.assistant import VStream
from vstream.model.generation import GenerationOptions
from vstream.serve.events import EventHub
from vstream.serve.settings import ServeSettings
from vstream.serve.thumbnails import Thumbnails, anchor_times, data_url
from vstream.serve.watches import SessionMonitor, Verdict, model_verdict
from vstream.stream.push import PushSource
from vstream.stream.session import StreamSession
from vstream.stream.sources import LIVE_SCHEMES, VideoSource, open_source
from vstream.stream.synthetic import parse_synthetic

log = logging.getLogger(__name__)

MAX_SYNTHETIC_S = 6 * 3600
"""Longest generated stream a client may ask for (it is written to the server's disk first)."""

STATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class ServedSession:
    """One stream the server watches."""

    id: str
    source: str
    kind: str
    session: StreamSession
    monitor: SessionMonitor
    thumbnails: Thumbnails
    name: str | None = None
    push: PushSource | None = None
    upload: Path | None = None
    created: float = field(default_factory=time.time)

    def info(self) -> dict[str, Any]:
        """The fields of `SessionInfo`."""
        status = self.session.status()
        latest = self.session.frame_handler.latest
        snapshot = latest.snapshot if latest else None
        dropped = status["frames_dropped"] + (self.push.dropped if self.push else 0)
        return {
            "id": self.id,
            "name": self.name,
            "source": self.source,
            "kind": self.kind,
            "state": status["state"],
            "created": self.created,
            "position": status["position"],
            "latest_frame_time": status["latest_frame_time"],
            "frames_read": status["frames_read"],
            "frames_in_memory": status["frames_in_memory"],
            "frames_dropped": dropped,
            "lag_s": status.get("frame_lag_s_p50"),
            "pending": self.session.frame_handler.pending + (self.push.pending if self.push else 0),
            "memory_tokens": snapshot.num_tokens if snapshot else 0,
            "memory_capacity": self.session.memory.config.num_tokens,
            "memory_fill": snapshot.token_counts() if snapshot else {},
            "questions_answered": status["questions_answered"],
            "watches": len(self.monitor.watches()),
            "end_reason": status["end_reason"],
        }

    def push_ack(self) -> dict[str, Any]:
        """The fields of `PushAck`."""
        push = self.push
        assert push is not None
        return {
            "received": push.received,
            "dropped": push.dropped + self.session.metrics.frames_dropped,
            "pending": push.pending + self.session.frame_handler.pending,
            "position": push.last_time,
        }

    def memory(self) -> dict[str, Any]:
        """What the memory holds: its latest snapshot's items (times, weights, a thumbnail where the server has
        one) and the newest frame."""
        latest = self.session.frame_handler.latest
        if latest is None:
            return {
                "frames_seen": 0,
                "latest_time": None,
                "num_tokens": 0,
                "token_counts": {},
                "items": [],
                "newest_frame": None,
            }
        view = latest.snapshot.summary()
        for item in view["items"]:
            times = anchor_times(item)
            found = self.thumbnails.nearest(times[0], tolerance=_tolerance(item)) if times else None
            item["thumbnail"] = data_url(found[1]) if found else None
        newest = self.thumbnails.newest()
        view["newest_frame"] = {"time": newest[0], "thumbnail": data_url(newest[1])} if newest else None
        return view

    def on_batch(self, frames: list) -> None:
        """Frame-handler observer: thumbnails of the new frames; forget those the memory no longer needs."""
        self.thumbnails.add(frames)
        latest = self.session.frame_handler.latest
        self.thumbnails.prune(latest.snapshot if latest else None)

    def close(self) -> None:
        """Stop the stream and its watches; delete its upload."""
        if self.push is not None:
            self.push.end()
        self.monitor.stop()
        self.session.close()
        if self.upload is not None:
            self.upload.unlink(missing_ok=True)


class SessionManager:
    """Opens, lists, finds and closes the server's sessions, within its limits.

    Args:
        model: the loaded model every session shares; settings: the server's limits and folders.
        verdict: how standing questions are answered (default: by the model).
    """

    def __init__(self, model: VStream, settings: ServeSettings, verdict: Verdict | None = None) -> None:
        self.model, self.settings = model, settings
        self.verdict = verdict or model_verdict
        self._sessions: dict[str, ServedSession] = {}
        self._opening = 0
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- lookup
    def get(self, session_id: str) -> ServedSession:
        with self._lock:
            served = self._sessions.get(session_id)
        if served is None:
            raise NotFoundError(f"no session {session_id!r} (it may have been closed)")
        return served

    def all(self) -> list[ServedSession]:
        with self._lock:
            return list(self._sessions.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    # ----------------------------------------------------------------- open / close
    def open(self, source: str, options: dict[str, Any], *, upload: Path | None = None) -> ServedSession:
        """Open a session on `source` with the stream options of `StreamOptions`; starts playing at once."""
        with self._lock:  # count the sessions being opened too, so that parallel requests cannot pass the limit
            if len(self._sessions) + self._opening >= self.settings.max_sessions:
                raise LimitError(
                    f"the server already has {self.settings.max_sessions} sessions (--max-sessions); close one "
                    "with DELETE /v1/sessions/{id}",
                    "sessions",
                )
            self._opening += 1
        try:
            return self._open(source, options, upload)
        finally:
            with self._lock:
                self._opening -= 1

    def _open(self, source: str, options: dict[str, Any], upload: Path | None) -> ServedSession:
        kind, video, push = self._resolve(source, options, upload)
        memory_config = self._memory_config(options.get("memory"))
        resume = self.state_path(options["resume_from"], must_exist=True) if options.get("resume_from") else None
        session = StreamSession(
            self.model,
            video,
            fps=options["fps"],
            speed=options["speed"],
            memory_config=memory_config,
            resume_from=resume,
            prefill=options.get("prefill", False),
        )
        watch_options = GenerationOptions(max_new_tokens=self.settings.watch_tokens)
        served = ServedSession(
            id=f"{self.settings.replica}-{secrets.token_hex(4)}",
            source=source if upload is None else upload.name,
            kind=kind,
            session=session,
            monitor=SessionMonitor(session, EventHub(), self.verdict, watch_options),
            thumbnails=Thumbnails(),
            name=options.get("name"),
            push=push,
            upload=upload,
        )
        session.frame_handler.on_batch = served.on_batch
        with self._lock:
            self._sessions[served.id] = served
        session.start()
        log.info("session %s opened on %s (%s)", served.id, served.source, kind)
        return served

    def close(self, session_id: str, *, wait: bool = False) -> None:
        """Forget a session at once and stop it in the background (a live source may take seconds to let go)."""
        with self._lock:
            served = self._sessions.pop(session_id, None)
        if served is None:
            raise NotFoundError(f"no session {session_id!r} (it may have been closed)")
        closing = threading.Thread(target=served.close, name=f"vstream-close-{session_id}", daemon=True)
        closing.start()
        if wait:
            closing.join()
        log.info("session %s closed", session_id)

    def close_all(self) -> None:
        """Stop every session (at shutdown)."""
        with self._lock:
            ids = list(self._sessions)
        closing = [threading.Thread(target=self.close, args=(i,), kwargs={"wait": True}) for i in ids]
        for thread in closing:
            thread.start()
        for thread in closing:
            thread.join()

    # ----------------------------------------------------------------- saved states
    def state_path(self, name: str, *, must_exist: bool = False) -> Path:
        """The file of a saved state by name (only plain names: no folders)."""
        if not STATE_NAME.match(name or ""):
            raise ConfigError(f"a state name is letters, digits, '.', '_' and '-' (at most 64); got {name!r}")
        path = self.settings.state_dir / f"{name}.safetensors"
        if must_exist and not path.is_file():
            raise NotFoundError(f"no saved state {name!r} (GET /v1/states lists them)")
        return path

    def states(self) -> list[str]:
        folder = self.settings.state_dir
        return (
            sorted(p.name.removesuffix(".safetensors") for p in folder.glob("*.safetensors")) if folder.is_dir() else []
        )

    # ----------------------------------------------------------------- sources
    def _resolve(
        self, source: str, options: dict[str, Any], upload: Path | None
    ) -> tuple[str, VideoSource, PushSource | None]:
        """(kind, source, push source or None) for a session's `source` string."""
        fps = options["fps"]
        if upload is not None:
            try:
                return "upload", open_source(upload, fps), None
            except SourceError as exc:
                raise SourceError(str(exc).replace(str(upload), "the upload")) from None
        if source == "push":
            push = PushSource()
            return "push", push, push
        scheme = source.split("://", 1)[0].lower() if "://" in source else ""
        if scheme in LIVE_SCHEMES:
            return "url", open_source(source, fps, reconnect_for=options.get("reconnect_s", 30.0)), None
        if source == "synthetic" or source.startswith("synthetic:"):
            seconds, _ = parse_synthetic(source)
            if seconds > MAX_SYNTHETIC_S:
                raise ConfigError(f"{source}: generated streams are at most {MAX_SYNTHETIC_S} s long on this server")
            return "synthetic", open_source(source, fps), None
        path = self._media_path(source)
        try:
            return "file", open_source(path, fps), None
        except SourceError as exc:  # named as the client named it: the server's folders are not its business
            raise SourceError(str(exc).replace(str(path), source)) from None

    def _media_path(self, name: str) -> Path:
        root = self.settings.media_root
        if root is None:
            raise AccessDeniedError(
                f"{name}: this server opens no files of its own (start it with --media-root FOLDER to allow it)"
            )
        if name.startswith("/dev/"):
            raise AccessDeniedError(f"{name}: devices are not opened through the API")
        try:
            path = (root / Path(name).expanduser()).resolve()
        except (OSError, RuntimeError) as exc:  # a name too long, a symlink loop
            raise SourceError(f"{name[:200]}: not a path the server can read ({exc.__class__.__name__})") from None
        if not path.is_relative_to(root):
            raise AccessDeniedError(f"{name}: outside the server's media root")
        return path

    def _memory_config(self, changes: dict[str, Any] | None) -> MemoryConfig | None:
        if not changes:
            return None
        return apply_memory_changes(self.model.memory_config(), changes)


def _tolerance(item: dict[str, Any]) -> float:
    """How far a thumbnail's time may be from an item's own: exact for single frames, within a centroid's span."""
    if item["time_start"] == item["time_end"]:
        return 1e-6
    return float(item["time_end"] - item["time_start"])
