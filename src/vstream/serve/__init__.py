"""The HTTP server: sessions watching streams, questions answered over SSE, an OpenAI-compatible chat endpoint,
standing questions, memory inspection, Prometheus metrics and a web page (`vstream serve`; docs/serve.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vstream._lazy import lazy_exports

_EXPORTS = {"ServeSettings": "vstream.serve.settings", "build_app": "vstream.serve.app"}
__all__ = ["ServeSettings", "build_app"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from vstream.serve.app import build_app
    from vstream.serve.settings import ServeSettings
