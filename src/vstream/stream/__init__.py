"""Real time: video sources, the frame and question handlers running side by side, and stream sessions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vstream._lazy import lazy_exports

_EXPORTS = {
    "FrameHandler": "vstream.stream.frame_handler",
    "QuestionHandler": "vstream.stream.question_handler",
    "StreamFrame": "vstream.stream.sources",
    "StreamSession": "vstream.stream.session",
    "TimedAnswer": "vstream.stream.session",
    "VideoSource": "vstream.stream.sources",
    "open_source": "vstream.stream.sources",
}
__all__ = [
    "FrameHandler",
    "QuestionHandler",
    "StreamFrame",
    "StreamSession",
    "TimedAnswer",
    "VideoSource",
    "open_source",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from vstream.stream.frame_handler import FrameHandler
    from vstream.stream.question_handler import QuestionHandler
    from vstream.stream.session import StreamSession, TimedAnswer
    from vstream.stream.sources import StreamFrame, VideoSource, open_source
