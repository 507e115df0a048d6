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
    assert session.frames.wait_encoded(1.0, timeout=20)
    answer = session.ask("What is on screen?", options=GenerationOptions(max_new_tokens=4, min_new_tokens=4))
    assert answer.frames_seen >= 1 and answer.latest_frame_time <= session.position
    assert session.wait(20) and session.status()["end_reason"] == "end of stream"
    assert session.status()["frames_in_memory"] >= 7  # about 4 s at 2 fps
    session.close()


def test_an_hls_playlist_over_http(tmp_path):
    import socket

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
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        source = LiveSource(f"http://127.0.0.1:{port}/index.m3u8", fps=1, connect_timeout=10, reconnect_for=0)
        frames = list(source.frames())
    finally:
        server.terminate()
        server.wait(10)
    assert [round(f.time, 1) for f in frames] == [0.0, 1.0, 2.0, 3.0]
    assert [round(f.image.mean() / 8) for f in frames] == [0, 5, 10, 15]


def _free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _push_udp(port: int, seconds: float, fps: int = 5) -> subprocess.Popen:
    """A sender process pushing MPEG-TS over UDP at real pace, as an encoder or a camera on a LAN does."""
    command = [sys.executable, str(SERVER), "--udp", str(port), "--seconds", str(seconds), "--fps", str(fps)]
    return subprocess.Popen(command, stderr=subprocess.DEVNULL)


def test_a_udp_stream_pushed_by_another_process_arrives_at_its_pace_and_ends_when_it_stops():
    port = _free_udp_port()
    sender = _push_udp(port, seconds=4)
    try:
        source = LiveSource(f"udp://127.0.0.1:{port}", fps=None, read_timeout=2.0, reconnect_for=0)
        began, arrivals = time.monotonic(), []
        for frame in source.frames():
            arrivals.append((frame.time, time.monotonic() - began, round(frame.image.mean() / 8)))
        ended = time.monotonic() - began
    finally:
        sender.wait(20)
    times = [t for t, _, _ in arrivals]
    levels = [level for _, _, level in arrivals]
    assert len(arrivals) >= 15 and times[0] == 0.0 and times == sorted(times)
    assert levels == list(range(levels[0], levels[0] + len(levels)))  # every frame sent, in order, none lost
    assert times[-1] == pytest.approx((len(times) - 1) / 5, abs=0.05)  # stream time from the first frame
    assert arrivals[-1][1] - arrivals[0][1] > 2.4  # paced by the sender, not read at once
    assert ended < arrivals[-1][1] + 6  # silence ends the stream after read_timeout, no hang


def test_a_udp_stream_that_pauses_is_picked_up_again_and_time_goes_on():
    import threading

    port = _free_udp_port()
    senders = [_push_udp(port, seconds=2)]

    def encoder_comes_back() -> None:  # the same encoder restarts on the same port after 2 s of silence
        senders[0].wait(20)
        time.sleep(2.0)
        senders.append(_push_udp(port, seconds=2))

    threading.Thread(target=encoder_comes_back, daemon=True).start()
    source = LiveSource(f"udp://127.0.0.1:{port}", fps=None, read_timeout=1.0, reconnect_for=8.0)
    times = []
    try:
        for frame in source.frames():
            times.append(frame.time)
            if len(senders) == 2 and len(times) >= 16:
                break
    finally:
        source.close()
        for process in senders:
            process.wait(20)
    assert source.reconnects >= 1 and len(times) >= 16 and times == sorted(times)
    gap = max(b - a for a, b in itertools.pairwise(times))
    assert gap > 1.5  # the silence shows as a jump in stream time, not as frames squeezed together
