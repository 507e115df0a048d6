"""PushSource: frames handed in by their owner, in order, bounded, checked; a session builds its memory from them.
Thumbnails: bounded by the memory's size, whatever the stream's length."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from vstream.errors import SourceError
from vstream.memory import MemoryItem, MemorySnapshot
from vstream.stream.push import PushSource, decode_image
from vstream.stream.session import StreamSession
from vstream.stream.sources import StreamFrame

from conftest import grey_level


def grey(level: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    return np.full((*size, 3), 8 * level, np.uint8)


def encoded(image: np.ndarray, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=format)
    return buffer.getvalue()


def test_pushed_frames_come_out_in_order_and_the_source_ends_after_the_last():
    source = PushSource()
    for i in range(3):
        source.push(grey(i), float(i))
    source.end()
    frames = list(source.frames())
    assert [f.time for f in frames] == [0.0, 1.0, 2.0]
    assert [grey_level(f.image) for f in frames] == [0, 1, 2]
    with pytest.raises(SourceError, match="ended"):
        source.push(grey(3), 3.0)


def test_a_reader_waits_for_frames_pushed_later():
    source = PushSource()
    got: list[float] = []
    reader = threading.Thread(target=lambda: got.extend(f.time for f in source.frames()))
    reader.start()
    source.push(grey(1), 0.5)
    source.push_image(encoded(grey(2)), 1.5)
    source.end()
    reader.join(10)
    assert got == [0.5, 1.5]


def test_bad_frames_are_refused_with_the_reason_and_leave_the_stream_as_it_was():
    source = PushSource()
    source.push(grey(1), 2.0)
    with pytest.raises(SourceError, match="backwards"):
        source.push(grey(2), 1.0)
    with pytest.raises(SourceError, match="not an image"):
        source.push_image(b"\x00garbage", 3.0)
    with pytest.raises(SourceError, match=">= 0"):
        source.push(grey(2), float("nan"))
    with pytest.raises(SourceError, match=r"\(H, W, 3\) uint8"):
        source.push(np.zeros((4, 4), np.uint8), 3.0)
    source.push(grey(3), 3.0)  # still takes good frames, at any time not before the last good one
    source.end()
    assert [f.time for f in source.frames()] == [2.0, 3.0]
    assert source.received == 2


def test_a_full_queue_drops_the_oldest_frames_and_counts_them():
    source = PushSource(max_queue=3)
    for i in range(5):
        source.push(grey(i), float(i))
    source.end()
    assert source.dropped == 2
    assert [f.time for f in source.frames()] == [2.0, 3.0, 4.0]


def test_decode_image_reads_jpeg_and_png():
    image = grey(10)
    assert np.array_equal(decode_image(encoded(image, "PNG")), image)
    assert abs(int(decode_image(encoded(image, "JPEG")).mean()) - 80) <= 2
    with pytest.raises(SourceError, match="empty"):
        decode_image(b"")


def test_a_session_builds_its_memory_from_pushed_frames(tiny_model):
    source = PushSource()
    with StreamSession(tiny_model, source) as session:
        for i in range(6):
            source.push_image(encoded(grey(i)), float(i))
        source.end()
        assert session.wait(30)
        answer = session.ask("What is there?")
    assert answer.latest_frame_time == 5.0 and answer.frames_seen == 6
    assert session.status()["end_reason"] == "end of stream"


def test_thumbnails_stay_bounded_by_the_memory_not_the_stream():
    from vstream.serve.thumbnails import RECENT, Thumbnails

    thumbs = Thumbnails()
    for t in range(200):
        thumbs.add([StreamFrame(time=float(t), image=grey(t % 30))])
        kept = (MemoryItem("retrieved", 0, 4, 3.0, 3.0), MemoryItem("temporal", 4, 4, 0.0, float(t), t / 2, t + 1.0))
        thumbs.prune(MemorySnapshot(None, kept, t + 1, float(t)))  # tokens are not read
        assert len(thumbs) <= RECENT + 2
    assert thumbs.nearest(3.0, tolerance=0)[0] == 3.0  # the retrieved frame the memory still refers to
    assert thumbs.newest()[0] == 199.0
    assert thumbs.nearest(50.0, tolerance=0) is None  # long gone
