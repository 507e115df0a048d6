"""Video sources: real files encoded by real codecs, folders of images, feature files, URLs, bad input."""

from __future__ import annotations

import struct
import time

import numpy as np
import pytest
import torch
from PIL import Image

from vstream.errors import SourceError
from vstream.features import save_features
from vstream.stream.sources import (
    CameraSource,
    FeatureFileSource,
    FileSource,
    ImageFolderSource,
    LiveSource,
    open_source,
)

from conftest import SHARED_DATA, encode_video, grey_level


def times_and_frames(source):
    frames = list(source.frames())
    return [round(f.time, 3) for f in frames], [grey_level(f.image) for f in frames]


def test_file_is_sampled_at_the_target_fps(tmp_path):
    path = encode_video(tmp_path / "clip.mp4", frames=30, fps=10)
    assert times_and_frames(FileSource(path, fps=1)) == ([0.0, 1.0, 2.0], [0, 10, 20])
    assert times_and_frames(FileSource(path, fps=2.5))[1] == [0, 4, 8, 12, 16, 20, 24, 28]
    assert len(list(FileSource(path, fps=None).frames())) == 30


def test_stream_time_starts_at_zero_and_variable_frame_rate_is_followed(tmp_path):
    times = [1000 + t for t in (0, 0.1, 0.5, 1.7, 2.0, 2.4, 3.2)]
    path = encode_video(tmp_path / "vfr.mp4", times)
    stamps, levels = times_and_frames(FileSource(path, fps=1))
    assert stamps == [0.0, 1.7, 2.0, 3.2] and levels == [0, 3, 4, 6]


@pytest.mark.parametrize(
    ("codec", "suffix", "pix_fmt"),
    [
        ("mpeg4", ".mkv", "yuv420p"),
        ("libvpx", ".webm", "yuv420p"),
        ("mjpeg", ".avi", "yuvj420p"),
        ("libx264", ".ts", "yuv420p"),
        ("libx264", ".mov", "yuv444p"),
    ],
)
def test_any_container_and_codec(tmp_path, codec, suffix, pix_fmt):
    path = encode_video(tmp_path / f"clip{suffix}", frames=20, fps=10, codec=codec, pix_fmt=pix_fmt)
    assert times_and_frames(FileSource(path, fps=2)) == ([0.0, 0.5, 1.0, 1.5], [0, 5, 10, 15])


def test_odd_sizes(tmp_path):
    path = encode_video(tmp_path / "odd.mp4", frames=5, size=(65, 49), pix_fmt="yuv444p")
    frame = next(FileSource(path).frames())
    assert frame.image.shape == (49, 65, 3) and frame.image.dtype == np.uint8


def test_rotation_metadata_is_applied(tmp_path):
    import av

    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        for _ in range(5):
            image = np.zeros((32, 64, 3), np.uint8)
            image[:, :8] = 255  # a white stripe along the left edge
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = path.read_bytes()  # set the track's display matrix to "rotate 90° clockwise", as phones write it
    identity = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    rotated = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    at = data.rfind(identity)
    path.write_bytes(data[:at] + rotated + data[at + len(identity) :])
    image = next(FileSource(path).frames()).image
    assert image.shape == (64, 32, 3)  # upright: portrait
    assert image[:8].mean() > 200 and image[-8:].mean() < 50  # the left edge is now the top


def test_start_skips_to_a_time(tmp_path):
    path = encode_video(tmp_path / "clip.mp4", frames=30, fps=5)
    stamps, levels = times_and_frames(FileSource(path, fps=1, start=3.0))
    assert stamps == [3.0, 4.0, 5.0] and levels == [15, 20, 25]


def test_bad_files_give_one_line_errors_naming_them(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.mp4").write_text("these are not video frames\n" * 50)
    good = encode_video(tmp_path / "good.mp4", frames=30)
    (tmp_path / "cut.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # index at the end: lost
    cases = {
        tmp_path / "missing.mp4": "missing.mp4: no such file",
        tmp_path / "empty.mp4": "empty.mp4: empty file",
        tmp_path / "notes.mp4": "notes.mp4: not a video FFmpeg can read",
        tmp_path / "cut.mp4": "cut.mp4: not a video FFmpeg can read",
    }
    for path, message in cases.items():
        with pytest.raises(SourceError) as info:
            list(FileSource(path).frames())
        assert message in str(info.value) and "\n" not in str(info.value)


def test_a_stream_cut_short_yields_the_frames_it_has(tmp_path):
    whole = encode_video(tmp_path / "whole.ts", frames=30, fps=5)
    (tmp_path / "cut.ts").write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    stamps, levels = times_and_frames(FileSource(tmp_path / "cut.ts", fps=1))
    assert 2 <= len(stamps) < 6 and levels == [5 * int(t) for t in stamps]


def test_image_folder_in_name_order_with_unreadable_files_skipped(tmp_path):
    for i in (1, 2, 10, 3):
        Image.fromarray(np.full((20, 30, 3), 8 * i, np.uint8)).save(tmp_path / f"shot_{i}.png")
    (tmp_path / "shot_4.jpg").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    source = open_source(tmp_path, fps=2)
    assert isinstance(source, ImageFolderSource)
    assert times_and_frames(source) == ([0.0, 0.5, 1.0, 2.0], [1, 2, 3, 10])  # shot_4 (at 1.5 s) unreadable
    assert source.skipped == 1
    (tmp_path / "none").mkdir()
    with pytest.raises(SourceError, match="no images"):
        open_source(tmp_path / "none")


def test_feature_files_are_a_source(tmp_path):
    features = torch.randn(5, 16, 32)
    save_features(tmp_path / "clip.safetensors", features)
    source = open_source(tmp_path / "clip.safetensors")
    assert isinstance(source, FeatureFileSource)
    frames = list(source.frames())
    assert [f.time for f in frames] == [0, 1, 2, 3, 4] and torch.equal(frames[3].features, features[3])


def test_source_names_are_dispatched():
    assert isinstance(open_source("rtsp://camera.local/stream"), LiveSource)
    assert isinstance(open_source("https://example.com/live.m3u8"), LiveSource)
    assert isinstance(open_source("synthetic:3"), FileSource)
    with pytest.raises(SourceError, match="unknown URL scheme 'gopher'"):
        open_source("gopher://old.net/video")
    with pytest.raises(SourceError, match="/dev/video99: no such camera device"):
        CameraSource("/dev/video99")


def test_an_unreachable_url_fails_within_a_bounded_time():
    began = time.monotonic()
    with pytest.raises(SourceError) as info:
        list(LiveSource("http://127.0.0.1:9/live.ts", connect_timeout=1.5).frames())
    assert time.monotonic() - began < 10
    assert "http://127.0.0.1:9/live.ts: cannot connect" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skipif(not (SHARED_DATA / "example.mp4").is_file(), reason="../shared/data is not here")
def test_the_real_example_clip():
    frames = list(open_source(SHARED_DATA / "example.mp4", fps=1).frames())
    assert len(frames) == 39 and frames[0].time == 0.0 and frames[-1].time == pytest.approx(38.038, abs=0.01)
    assert frames[0].image.shape == (360, 480, 3)
