"""A live stream served over HTTP by a real server process on localhost, consumed at its real pace."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vstream.model import GenerationOptions
from vstream.stream import StreamSession
from vstream.stream.sources import LiveSource

from conftest import free_port

SERVER = Path(__file__).with_name("live_server.py")


@pytest.fixture
def live_server():
    """Start the server process; yields a function giving its URL; stops it afterwards."""
    processes = []

    def start(*args: str) -> str:
        process = subprocess.Popen([sys.executable, str(SERVER), *args], stdout=subprocess.PIPE, text=True)
        processes.append(process)
        line = process.stdout.readline().split()
        assert line[:1] == ["READY"], line
        return f"http://127.0.0.1:{line[1]}/live.ts"

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)


@pytest.fixture
def web_folder(tmp_path):
    """A plain HTTP server process serving `tmp_path` (as a CDN serves HLS segments); yields its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(10)


def test_a_live_http_stream_arrives_at_its_real_pace(live_server):
    url = live_server("--seconds", "4", "--fps", "5")
    began, arrivals = time.monotonic(), []
    for frame in LiveSource(url, fps=None, reconnect_for=0).frames():
        arrivals.append((frame.time, time.monotonic() - began))
    times = [t for t, _ in arrivals]
    assert len(arrivals) == 20 and times == sorted(times) and times[-1] == pytest.approx(3.8, abs=0.05)
    assert arrivals[-1][1] > 3.6  # the last frame cannot come before it is sent: a real-time stream, not a download
    late = [(t, at) for t, at in arrivals if 2.0 <= t <= 3.4]  # after a second of probing, frames come as sent
    for t, at in late:
        assert at - late[0][1] == pytest.approx(t - late[0][0], abs=0.35)


def test_a_dropped_connection_reconnects_and_time_goes_on(live_server):
    url = live_server("--seconds", "2", "--fps", "5", "--drop-after", "1.5")
    source = LiveSource(url, fps=None, reconnect_for=3.0)
    times = []
    for frame in source.frames():
        times.append(frame.time)
        if source.reconnects and len(times) > 12:
            break
    assert source.reconnects >= 1 and times == sorted(times) and times[-1] > 1.5


def test_questions_about_a_live_stream(live_server, tiny_model):
    url = live_server("--seconds", "4", "--fps", "5")
    session = StreamSession(tiny_model, LiveSource(url, fps=2, reconnect_for=0)).start()
    assert session.frame_handler.wait_encoded(1.0, timeout=20)
    answer = session.ask("What is on screen?", options=GenerationOptions(max_new_tokens=4, min_new_tokens=4))
    assert answer.frames_seen >= 1 and answer.latest_frame_time <= session.position
    assert session.wait(20) and session.status()["end_reason"] == "end of stream"
    assert session.status()["frames_in_memory"] >= 7  # about 4 s at 2 fps
    session.close()


def test_an_hls_playlist_over_http(tmp_path, web_folder):
    import av
    import numpy as np

    with av.open(
        str(tmp_path / "index.m3u8"), "w", format="hls", options={"hls_time": "1", "hls_playlist_type": "vod"}
    ) as container:
        stream = container.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(20):
            image = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 8 * i, np.uint8), format="rgb24")
            for packet in stream.encode(image):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    source = LiveSource(f"{web_folder}/index.m3u8", fps=1, connect_timeout=10, reconnect_for=0)
    frames = list(source.frames())
    assert [round(f.time, 1) for f in frames] == [0.0, 1.0, 2.0, 3.0]
    assert [round(f.image.mean() / 8) for f in frames] == [0, 5, 10, 15]


def test_a_live_hls_playlist_is_followed_as_it_grows(tmp_path, web_folder):
    encoder = subprocess.Popen([sys.executable, str(SERVER), "--seconds", "8", "--fps", "5", "--hls", str(tmp_path)])
    try:
        playlist = tmp_path / "live.m3u8"
        deadline = time.monotonic() + 20
        while not (playlist.exists() and "#EXTINF" in playlist.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        source = LiveSource(f"{web_folder}/live.m3u8", fps=None, connect_timeout=10, reconnect_for=0)
        began, arrivals = time.monotonic(), []
        for frame in source.frames():
            arrivals.append((frame.time, time.monotonic() - began, round(frame.image.mean() / 8)))
    finally:
        encoder.wait(30)
    times, levels = [t for t, _, _ in arrivals], [level for _, _, level in arrivals]
    assert len(arrivals) >= 20 and times[0] == 0.0 and times == sorted(times)
    assert all((b - a) % 32 == 1 for a, b in itertools.pairwise(levels))  # in order, none lost (8·i wraps)
    assert levels[-1] == 39 % 32  # the stream's last frame: the source ended with the playlist
    assert arrivals[-1][1] - arrivals[0][1] > 3.0  # segments were fetched as they appeared, not all at once
