"""RTSP, RTMP and UDP sources, served or pushed at real pace by real processes (an FFmpeg binary, a relay)."""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vstream.stream.sources import LiveSource

from conftest import encode_video, free_port

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def ffmpeg():
    """The FFmpeg command-line binary of imageio-ffmpeg (a dev dependency): a real encoder and RTMP server."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """8 s at 5 fps; frame i is grey level 8·i, so a receiver can tell which frames it got."""
    return encode_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=40, fps=5)


def _publish(ffmpeg: str, clip: Path, *output: str) -> subprocess.Popen:
    """FFmpeg sending the clip at its real pace, with a keyframe every second, as a camera or encoder does."""
    encode = ["-c:v", "libx264", "-g", "5", "-preset", "ultrafast", "-tune", "zerolatency"]
    command = [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-i", str(clip), *encode, *output]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL)


def _receive(source: LiveSource) -> tuple[list[tuple[float, float, int]], float]:
    """(stream time, arrival, grey level) of every frame, and when the source ended, from now."""
    began, arrivals = time.monotonic(), []
    for frame in source.frames():
        arrivals.append((frame.time, time.monotonic() - began, round(frame.image.mean() / 8)))
    return arrivals, time.monotonic() - began


def _check_real_pace(arrivals: list[tuple[float, float, int]], ended: float, least: int) -> None:
    times = [t for t, _, _ in arrivals]
    levels = [level for _, _, level in arrivals]
    assert len(arrivals) >= least and times[0] == 0.0 and times == sorted(times)
    assert all((b - a) % 32 == 1 for a, b in itertools.pairwise(levels))  # every frame, in order (8·i wraps at 256)
    assert times[-1] == pytest.approx((len(times) - 1) / 5, abs=0.05)  # stream time from the first frame
    assert arrivals[-1][1] - arrivals[0][1] > 0.6 * times[-1] - 1.0  # paced by the sender, not read at once
    assert ended < arrivals[-1][1] + 6  # the end of the stream ends the source, no hang


def test_an_rtsp_stream_from_a_server_is_waited_for_then_played_at_its_pace(ffmpeg, clip):
    relay = subprocess.Popen([sys.executable, str(TESTS / "rtsp_server.py")], stdout=subprocess.PIPE, text=True)
    url = f"rtsp://127.0.0.1:{relay.stdout.readline().split()[1]}/live"
    publisher: list[subprocess.Popen] = []
    # the camera comes online a second after the player starts asking (the server answers 404 until then)
    timer = threading.Timer(
        1.0, lambda: publisher.append(_publish(ffmpeg, clip, "-f", "rtsp", "-rtsp_transport", "tcp", url))
    )
    timer.start()
    try:
        arrivals, ended = _receive(LiveSource(url, fps=None, connect_timeout=15, read_timeout=3, reconnect_for=0))
    finally:
        timer.join()
        for process in (*publisher, relay):
            process.terminate()
            process.wait(10)
    _check_real_pace(arrivals, ended, least=25)
    assert arrivals[0][1] > 1.0  # nothing before the stream existed


def test_an_rtmp_stream_from_a_server_is_played_at_its_pace(ffmpeg, clip):
    port = free_port()
    url = f"rtmp://127.0.0.1:{port}/live/camera"
    server = _publish(ffmpeg, clip, "-f", "flv", "-listen", "1", url)  # FFmpeg as the RTMP server
    try:
        arrivals, ended = _receive(LiveSource(url, fps=None, connect_timeout=15, read_timeout=3, reconnect_for=0))
    finally:
        server.terminate()
        server.wait(10)
    _check_real_pace(arrivals, ended, least=30)


def test_sampling_a_live_stream_at_a_lower_fps(ffmpeg, clip):
    port = free_port()
    url = f"rtmp://127.0.0.1:{port}/live/camera"
    server = _publish(ffmpeg, clip, "-f", "flv", "-listen", "1", url)
    try:
        times = [round(f.time, 1) for f in LiveSource(url, fps=1, read_timeout=3, reconnect_for=0).frames()]
    finally:
        server.terminate()
        server.wait(10)
    assert times == [float(t) for t in range(len(times))] and len(times) >= 6


def _push_udp(port: int, seconds: float, fps: int = 5) -> subprocess.Popen:
    """A sender process pushing MPEG-TS over UDP at real pace, as an encoder or a camera on a LAN does."""
    command = [
        sys.executable,
        str(TESTS / "live_server.py"),
        "--udp",
        str(port),
        "--seconds",
        str(seconds),
        "--fps",
        str(fps),
    ]
    return subprocess.Popen(command, stderr=subprocess.DEVNULL)


def test_a_udp_stream_pushed_by_another_process_arrives_at_its_pace_and_ends_when_it_stops():
    port = free_port(socket.SOCK_DGRAM)
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
    assert all((b - a) % 32 == 1 for a, b in itertools.pairwise(levels))  # every frame, in order (8·i wraps at 256)
    assert times[-1] == pytest.approx((len(times) - 1) / 5, abs=0.05)  # stream time from the first frame
    assert arrivals[-1][1] - arrivals[0][1] > 2.4  # paced by the sender, not read at once
    assert ended < arrivals[-1][1] + 6  # silence ends the stream after read_timeout, no hang


def test_a_udp_stream_that_pauses_is_picked_up_again_and_time_goes_on():
    port = free_port(socket.SOCK_DGRAM)
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
