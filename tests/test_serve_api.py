"""`vstream serve` over HTTP, as clients use it (docs/serve.md is the contract).

The server runs as a real process on a free localhost port (tests/serve_server.py) with the tiny random model;
sessions play generated clips, files under `--media-root`, a live HTTP stream from a real server process
(tests/live_server.py) and frames pushed over a WebSocket. Answers are read as Server-Sent Events, as plain JSON
and through the official `openai` client. A second server with a key and tight limits checks the status codes.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest
from openai import OpenAI
from PIL import Image
from serve_server import RemoteServer
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect

from conftest import encode_video, free_port

LIVE_SERVER = Path(__file__).with_name("live_server.py")
KEY = "secret"
TOKENS = 8
"""`--max-new-tokens` of the servers: answers of the tiny model are quick."""


# ---------------------------------------------------------------------------------------------------------------
# helpers


def wait_until(read: Callable[[], dict], done: Callable[[dict], bool], timeout: float = 30.0, what: str = "") -> dict:
    """Call `read` until `done(value)` or the deadline; the last value either way (failing at the deadline)."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value):
        if time.monotonic() > deadline:
            pytest.fail(f"not {what or 'done'} after {timeout:g} s: {value}")
        time.sleep(0.1)
        value = read()
    return value


def session_of(api: httpx.Client, sid: str) -> dict:
    response = api.get(f"/v1/sessions/{sid}")
    assert response.status_code == 200, response.text
    return response.json()


def wait_session(api: httpx.Client, sid: str, done: Callable[[dict], bool], timeout: float = 30.0, what: str = ""):
    return wait_until(lambda: session_of(api, sid), done, timeout, what)


def ended(info: dict) -> bool:
    return info["state"] == "ended"


def sse_events(lines: Iterator[str]) -> list[tuple[str, dict]]:
    """(event, data) of each Server-Sent Event in a stream of lines (`event:` and `data:` fields)."""
    events, name, data = [], "message", []
    for line in lines:
        if line == "":
            if data:
                events.append((name, json.loads("\n".join(data))))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:") :].removeprefix(" "))
    if data:
        events.append((name, json.loads("\n".join(data))))
    return events


def ask_sse(api: httpx.Client, sid: str, question: str, **options: object) -> list[tuple[str, dict]]:
    body = {"question": question, "stream": True, **options}
    with api.stream("POST", f"/v1/sessions/{sid}/questions", json=body) as response:
        assert response.status_code == 200, response.read().decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        return sse_events(response.iter_lines())


def ask(api: httpx.Client, sid: str, question: str = "What is on the screen now?", **options: object) -> dict:
    response = api.post(f"/v1/sessions/{sid}/questions", json={"question": question, "stream": False, **options})
    assert response.status_code == 200, response.text
    return response.json()


def image_bytes(level: int, size: tuple[int, int] = (64, 48), kind: str = "JPEG") -> bytes:
    """A flat grey image of `level`, encoded as JPEG or PNG."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (level, level, level)).save(buffer, format=kind)
    return buffer.getvalue()


def frame_message(t: float, image: bytes) -> bytes:
    """One pushed frame: 8 bytes of little-endian float64 stream time, then the image."""
    return struct.pack("<d", t) + image


def noise_video(path: Path, frames: int, size: tuple[int, int], fps: int = 10) -> Path:
    """A real H.264 file of random noise (which does not compress: a large file from few frames)."""
    import av

    rng = np.random.default_rng(0)
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, fps)
        stream.options = {"crf": "10", "preset": "ultrafast"}
        for i in range(frames):
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def metric_values(text: str, name: str) -> list[float]:
    """The values of every sample of metric `name` (any labels) in Prometheus text."""
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})?\s+(\S+)", re.MULTILINE)
    return [float(value) for value in pattern.findall(text)]


class LiveStreams:
    """Starts tests/live_server.py processes (each prints `READY <port>`) and stops them at the end."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []

    def start(self, *args: str) -> tuple[str, subprocess.Popen]:
        process = subprocess.Popen([sys.executable, str(LIVE_SERVER), *args], stdout=subprocess.PIPE, text=True)
        self.processes.append(process)
        line = process.stdout.readline().split()
        assert line[:1] == ["READY"], line
        return f"http://127.0.0.1:{line[1]}/live.ts", process

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                process.wait(10)


# ---------------------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """The open server's media root: a 4 s clip at 2 fps, a 20 s clip at 1 fps, and random bytes named .mp4."""
    root = tmp_path_factory.mktemp("media")
    encode_video(root / "short.mp4", frames=8, fps=2)  # frames at 0.0, 0.5, ..., 3.5
    encode_video(root / "long.mp4", frames=20, fps=1)  # frames at 0, 1, ..., 19
    (root / "corrupt.mp4").write_bytes(np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    return root


@pytest.fixture(scope="module")
def server(tiny_checkpoint, media, tmp_path_factory):
    cache = tmp_path_factory.mktemp("serve-cache")
    args = ["--model", str(tiny_checkpoint), "--max-new-tokens", str(TOKENS), "--media-root", str(media)]
    with RemoteServer(args, env={"VSTREAM_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}) as remote:
        yield remote


@pytest.fixture(scope="module")
def api(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url(), timeout=60, trust_env=False) as client:
        yield client


@pytest.fixture
def sessions(api) -> Iterator[Callable[..., dict]]:
    """`create(**body)`: POST /v1/sessions, check 201, return the session; every session is deleted afterwards."""
    created: list[str] = []

    def create(**body: object) -> dict:
        response = api.post("/v1/sessions", json=body)
        assert response.status_code == 201, response.text
        info = response.json()
        created.append(info["id"])
        return info

    yield create
    for sid in created:
        api.delete(f"/v1/sessions/{sid}")


@pytest.fixture(scope="module")
def finished(api) -> Iterator[dict]:
    """A generated 20 s clip played as fast as possible to its end: 20 frames at 0..19 s, a memory that stays."""
    response = api.post("/v1/sessions", json={"source": "synthetic:20", "fps": 1, "speed": 0, "name": "finished"})
    assert response.status_code == 201, response.text
    sid = response.json()["id"]
    yield wait_session(api, sid, ended, 60, "ended")
    api.delete(f"/v1/sessions/{sid}")


@pytest.fixture(scope="module")
def playing(api) -> Iterator[dict]:
    """A generated 2 min clip played in real time: it keeps playing through the tests that need a neighbour."""
    response = api.post("/v1/sessions", json={"source": "synthetic:120:5", "fps": 1, "speed": 1, "name": "neighbour"})
    assert response.status_code == 201, response.text
    info = response.json()
    yield wait_session(api, info["id"], lambda s: s["frames_in_memory"] >= 1, 60, "playing")
    api.delete(f"/v1/sessions/{info['id']}")


@pytest.fixture
def live_streams() -> Iterator[LiveStreams]:
    streams = LiveStreams()
    yield streams
    streams.close()


@pytest.fixture
def openai_client(server) -> OpenAI:
    return OpenAI(base_url=server.url("/v1"), api_key="unused", max_retries=0, timeout=60)


def video_message(url: str, text: str) -> list[dict]:
    content = [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": text}]
    return [{"role": "user", "content": content}]


# ---------------------------------------------------------------------------------------------------------------
# the server and its documents


def test_health_models_docs_and_openapi(api, tiny_checkpoint):
    assert api.get("/health").status_code == 200
    models = api.get("/v1/models")
    assert models.status_code == 200, models.text
    listed = models.json()
    assert listed["object"] == "list" and [m["id"] for m in listed["data"]] == [str(tiny_checkpoint)]
    assert listed["data"][0]["object"] == "model"
    docs = api.get("/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    schema = api.get("/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/v1/sessions", "/v1/sessions/upload", "/v1/models", "/v1/chat/completions"} <= paths.keys(), sorted(paths)
    assert any(p.startswith("/v1/sessions/") and p.endswith("/questions") for p in paths), sorted(paths)


# ---------------------------------------------------------------------------------------------------------------
# sessions on generated clips and files


def test_a_generated_clip_plays_to_its_end_and_answers_over_sse(api, finished):
    sid = finished["id"]
    assert finished["kind"] == "synthetic" and finished["source"] == "synthetic:20" and finished["name"] == "finished"
    assert finished["frames_in_memory"] == 20 and finished["frames_dropped"] == 0  # speed 0: nothing dropped
    assert finished["latest_frame_time"] == 19.0 and finished["end_reason"]
    assert 0 < finished["memory_tokens"] <= finished["memory_capacity"]
    before = finished["questions_answered"]

    events = ask_sse(api, sid, "What is on the screen now?")
    names = [name for name, _ in events]
    assert names[-1] == "done" and names.count("done") == 1 and "error" not in names, names
    tokens = [data["text"] for name, data in events if name == "token"]
    assert len(tokens) >= 2 and names[: len(tokens)] == ["token"] * len(tokens), names
    done = events[-1][1]
    assert done["answer"] == "".join(tokens)
    assert done["latest_frame_time"] == 19.0 and done["frames_seen"] == 20
    assert done["ttft_s"] > 0 and done["total_s"] >= done["ttft_s"]
    assert 1 <= done["new_tokens"] <= TOKENS and isinstance(done["stop_reason"], str) and done["stop_reason"]
    assert done["memory_tokens"] == finished["memory_tokens"] and done["prompt_tokens"] > done["memory_tokens"]

    plain = ask(api, sid, "What is on the screen now?")  # the same memory, decoded greedily: the same answer
    assert plain.keys() >= done.keys() and plain["answer"] == done["answer"]
    assert plain["latest_frame_time"] == 19.0 and plain["frames_seen"] == 20
    short = ask(api, sid, "What is on the screen now?", max_new_tokens=2)
    assert 1 <= short["new_tokens"] <= 2
    assert session_of(api, sid)["questions_answered"] == before + 3


def test_a_generated_clip_at_real_speed_plays_as_time_goes(api, sessions):
    info = sessions(source="synthetic:30", fps=1, speed=1)
    assert info["kind"] == "synthetic" and info["state"] in ("playing", "idle")
    began = time.monotonic()
    info = wait_session(api, info["id"], lambda s: (s["latest_frame_time"] or 0) >= 2.0, 20, "at 2 s")
    assert time.monotonic() - began >= 1.0  # real time: the third frame is not there at once
    assert info["state"] == "playing" and info["latest_frame_time"] < 25
    answer = ask(api, info["id"])
    assert 2.0 <= answer["latest_frame_time"] <= session_of(api, info["id"])["position"]


def test_two_sessions_keep_separate_memories(api, sessions):
    short = sessions(source="short.mp4", fps=2, speed=0)
    long = sessions(source="long.mp4", fps=1, speed=0)
    assert short["kind"] == long["kind"] == "file"
    short = wait_session(api, short["id"], ended, 60, "ended")
    long = wait_session(api, long["id"], ended, 60, "ended")
    assert (short["frames_in_memory"], short["latest_frame_time"]) == (8, 3.5)
    assert (long["frames_in_memory"], long["latest_frame_time"]) == (20, 19.0)
    listed = {s["id"] for s in api.get("/v1/sessions").json()["sessions"]}
    assert {short["id"], long["id"]} <= listed

    answers: dict[str, dict] = {}

    def question(sid: str) -> None:
        answers[sid] = ask(api, sid, "What happened so far?")

    threads = [threading.Thread(target=question, args=(s["id"],)) for s in (short, long)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert answers[short["id"]]["latest_frame_time"] == 3.5 and answers[short["id"]]["frames_seen"] == 8
    assert answers[long["id"]]["latest_frame_time"] == 19.0 and answers[long["id"]]["frames_seen"] == 20

    for info, end in ((short, 3.5), (long, 19.0)):
        response = api.get(f"/v1/sessions/{info['id']}/memory")
        assert response.status_code == 200, response.text
        memory = response.json()
        assert memory["latest_time"] == end and memory["frames_seen"] == info["frames_in_memory"]
        assert memory["newest_frame"]["time"] == end
        items = memory["items"]
        assert sum(item["num_tokens"] for item in items) == memory["num_tokens"] == info["memory_tokens"]
        timed = [item for item in items if item["time_end"] is not None]
        assert max(item["time_end"] for item in timed) == end
        assert min(item["time_start"] for item in timed) >= 0.0
    long_times = [i["time_end"] for i in api.get(f"/v1/sessions/{long['id']}/memory").json()["items"] if i["time_end"]]
    assert max(long_times) > 3.5  # the long clip's memory holds its own later frames, not the short clip's end


def test_a_memory_size_can_be_changed_per_session(api, sessions, finished):
    small = sessions(source="synthetic:20", fps=1, speed=0, memory={"temporal_clusters": 2})
    small = wait_session(api, small["id"], ended, 60, "ended")
    assert small["memory_capacity"] < finished["memory_capacity"]
    assert small["memory_fill"]["temporal"] < finished["memory_fill"]["temporal"]


def test_a_session_is_deleted(api, sessions):
    sid = sessions(source="synthetic:10", speed=0)["id"]
    assert api.delete(f"/v1/sessions/{sid}").status_code == 204
    assert api.get(f"/v1/sessions/{sid}").status_code == 404
    assert sid not in {s["id"] for s in api.get("/v1/sessions").json()["sessions"]}


# ---------------------------------------------------------------------------------------------------------------
# the OpenAI-compatible route


def test_the_openai_client_asks_a_session(api, finished, openai_client, tiny_checkpoint):
    sid = finished["id"]
    assert [m.id for m in openai_client.models.list()] == [str(tiny_checkpoint)]
    messages = video_message(f"vstream://sessions/{sid}", "What is on the screen now?")
    reply = openai_client.chat.completions.create(model=str(tiny_checkpoint), messages=messages)
    text = reply.choices[0].message.content
    assert isinstance(text, str) and text and reply.choices[0].message.role == "assistant"
    extra = reply.model_extra["vstream"]
    assert extra["session_id"] == sid and extra["latest_frame_time"] == 19.0
    assert extra["ttft_s"] > 0 and extra["total_s"] >= extra["ttft_s"]

    chunks = openai_client.chat.completions.create(model=str(tiny_checkpoint), messages=messages, stream=True)
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([p for p in pieces if p]) >= 2 and "".join(pieces) == text  # the same memory, greedy: same text

    history = [
        {"role": "system", "content": "You are terse."},
        *video_message(f"vstream://sessions/{sid}", "What is there?"),
        {"role": "assistant", "content": "A circle."},
        {"role": "user", "content": "And what colour is it?"},
    ]
    followup = openai_client.chat.completions.create(model=str(tiny_checkpoint), messages=history)
    assert followup.model_extra["vstream"]["session_id"] == sid and followup.choices[0].message.content


def test_the_openai_route_refuses_an_unknown_session(openai_client, tiny_checkpoint):
    import openai

    with pytest.raises(openai.NotFoundError):
        openai_client.chat.completions.create(
            model=str(tiny_checkpoint), messages=video_message("vstream://sessions/s-00000000", "What is there?")
        )


def test_a_plain_url_in_a_chat_request_opens_a_session(api, openai_client, tiny_checkpoint):
    messages = video_message("synthetic:12:3", "What is on the screen now?")
    reply = openai_client.chat.completions.create(model=str(tiny_checkpoint), messages=messages)
    sid = reply.to_dict()["vstream"]["session_id"]
    try:
        info = session_of(api, sid)
        assert info["source"] == "synthetic:12:3" and info["kind"] == "synthetic"
        assert 0.0 <= reply.model_extra["vstream"]["latest_frame_time"] <= 11.0  # it waited for the first frame
        again = openai_client.chat.completions.create(
            model=str(tiny_checkpoint), messages=video_message(f"vstream://sessions/{sid}", "And now?")
        )
        assert again.model_extra["vstream"]["session_id"] == sid
        assert again.model_extra["vstream"]["latest_frame_time"] >= reply.model_extra["vstream"]["latest_frame_time"]
    finally:
        api.delete(f"/v1/sessions/{sid}")


# ---------------------------------------------------------------------------------------------------------------
# live streams and failing sources


def test_a_live_http_stream_is_watched_as_it_comes(api, live_streams, sessions):  # sessions go first
    url, _ = live_streams.start("--seconds", "6", "--fps", "5")
    info = sessions(source=url, fps=2, speed=1)
    assert info["kind"] == "url" and info["source"] == url
    first = wait_session(api, info["id"], lambda s: s["frames_in_memory"] >= 2, 30, "two frames")
    events = ask_sse(api, info["id"], "What is on the screen now?")
    assert [name for name, _ in events][-1] == "done"
    done = events[-1][1]
    assert 0.0 <= done["latest_frame_time"] <= 6.0 and done["frames_seen"] >= 2
    later = wait_session(
        api, info["id"], lambda s: s["latest_frame_time"] >= first["latest_frame_time"] + 1.5, 20, "later frames"
    )
    assert later["latest_frame_time"] <= 6.0


def test_a_stopped_live_stream_ends_only_its_own_session(api, playing, live_streams, sessions):
    url, process = live_streams.start("--seconds", "30", "--fps", "5")
    began = time.monotonic()
    sid = sessions(source=url, fps=2, reconnect_s=1)["id"]  # give up one second after the stream drops
    wait_session(api, sid, lambda s: s["frames_in_memory"] >= 1, 30, "a first frame")
    process.terminate()  # the stream stops for good: no reconnection can find it again
    process.wait(10)
    info = wait_session(api, sid, ended, 30, "ended")
    assert "cannot connect" in info["end_reason"]
    assert 0.0 <= info["latest_frame_time"] <= time.monotonic() - began  # a live stream: no frame from the future
    assert ask(api, sid)["latest_frame_time"] == info["latest_frame_time"]  # its memory stays for questions
    neighbour = session_of(api, playing["id"])
    assert neighbour["state"] == "playing" and neighbour["end_reason"] is None
    assert ask(api, playing["id"])["latest_frame_time"] > playing["latest_frame_time"]
    started = time.monotonic()
    assert api.delete(f"/v1/sessions/{sid}").status_code == 204
    assert time.monotonic() - started < 2  # DELETE does not wait for the source to let go


def test_an_unreachable_url_fails_only_its_own_session(api, playing):
    """A URL is connected to in the background (docs/serve.md): the session is made, then ends with the reason."""
    url = f"http://127.0.0.1:{free_port()}/nothing.ts"
    response = api.post("/v1/sessions", json={"source": url})
    assert response.status_code == 201, response.text
    sid = response.json()["id"]
    try:
        info = wait_session(api, sid, ended, 60, "ended")
        assert "cannot connect" in info["end_reason"] and info["frames_in_memory"] == 0
        question = api.post(f"/v1/sessions/{sid}/questions", json={"question": "Anything?", "stream": False})
        assert question.status_code == 422 and "no frame reached the memory" in question.json()["detail"]
    finally:
        api.delete(f"/v1/sessions/{sid}")
    neighbour = session_of(api, playing["id"])
    assert neighbour["state"] == "playing" and neighbour["end_reason"] is None
    assert ask(api, playing["id"])["latest_frame_time"] >= playing["latest_frame_time"]


@pytest.mark.parametrize(
    "source",
    ["corrupt.mp4", "missing.mp4", "synthetic:1", "synthetic:99999", "ftp://127.0.0.1/x.mp4", "0" * 3000],
)
def test_a_source_that_cannot_be_opened_is_422(api, source):
    count = len(api.get("/v1/sessions").json()["sessions"])
    response = api.post("/v1/sessions", json={"source": source, "speed": 0})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail.startswith(source.split(":")[0])  # named as the client named it
    assert "/tmp" not in detail and str(Path.home()) not in detail  # the server's folders are not disclosed
    assert len(api.get("/v1/sessions").json()["sessions"]) == count


# ---------------------------------------------------------------------------------------------------------------
# pushed frames


def ws_url(server: RemoteServer, sid: str, query: str = "") -> str:
    return server.url(f"/v1/sessions/{sid}/frames{query}").replace("http://", "ws://", 1)


def test_frames_pushed_over_a_websocket_build_a_memory(api, server, sessions):
    info = sessions(source="push", name="camera")
    sid = info["id"]
    assert info["kind"] == "push" and info["frames_in_memory"] == 0
    with connect(ws_url(server, sid), proxy=None, open_timeout=10) as ws:
        for i in range(6):
            ws.send(frame_message(float(i), image_bytes(40 * i, size=(320, 240))))
            ack = json.loads(ws.recv(timeout=30))
            assert "error" not in ack, ack
            assert ack["received"] == i + 1 and ack["position"] == float(i) and ack["dropped"] >= 0, ack
            assert ack["pending"] >= 0
    received = ack["received"]
    info = wait_session(
        api, sid, lambda s: s["frames_in_memory"] + s["frames_dropped"] >= received and s["pending"] == 0, 30, "encoded"
    )
    assert info["frames_in_memory"] + info["frames_dropped"] == received  # drops only as reported
    assert info["frames_dropped"] >= ack["dropped"]
    assert info["frames_in_memory"] >= 1 and info["latest_frame_time"] == 5.0  # dropped oldest first
    answer = ask(api, sid, "What changed?")
    assert answer["latest_frame_time"] == 5.0 and answer["frames_seen"] == info["frames_in_memory"]

    memory = api.get(f"/v1/sessions/{sid}/memory").json()
    assert memory["latest_time"] == 5.0 and memory["newest_frame"]["time"] == 5.0
    thumbnails = [memory["newest_frame"]["thumbnail"]]
    for item in memory["items"]:
        if item["memory"] in ("retrieved", "spatial"):
            assert item["thumbnail"], item
            thumbnails.append(item["thumbnail"])
        assert item["time_end"] is None or 0.0 <= item["time_end"] <= 5.0
    for thumbnail in thumbnails:
        head, _, data = thumbnail.partition(",")
        assert head.startswith("data:image/") and head.endswith(";base64")
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            assert 0 < image.width <= 160  # pushed at 320 px wide


def test_a_bad_pushed_frame_is_an_error_and_the_connection_stays(api, server, sessions):
    sid = sessions(source="push")["id"]
    with connect(ws_url(server, sid), proxy=None, open_timeout=10) as ws:

        def send(message: bytes | str) -> dict:
            ws.send(message)
            return json.loads(ws.recv(timeout=30))

        assert send(frame_message(0.0, image_bytes(10)))["received"] == 1
        garbage = send(frame_message(1.0, b"\x00not an image at all" * 10))
        assert isinstance(garbage.get("error"), str) and garbage["error"], garbage
        assert isinstance(send(b"abc").get("error"), str)  # shorter than the 8 bytes of time
        ok = send(frame_message(2.0, image_bytes(20, kind="PNG")))
        assert "error" not in ok and ok["received"] == 2 and ok["position"] == 2.0, ok
        backwards = send(frame_message(1.5, image_bytes(30)))
        assert isinstance(backwards.get("error"), str) and backwards["error"], backwards
        text = send(json.dumps({"time": 3.0, "image": base64.b64encode(image_bytes(40)).decode()}))
        assert "error" not in text and text["received"] == 3 and text["position"] == 3.0, text
    info = wait_session(api, sid, lambda s: s["frames_in_memory"] + s["frames_dropped"] >= 3 and s["pending"] == 0)
    assert info["frames_in_memory"] + info["frames_dropped"] == 3 and info["latest_frame_time"] == 3.0


def test_frames_posted_in_a_batch_then_the_end(api, sessions):
    sid = sessions(source="push")["id"]
    files = [("frames", (f"f{i}.jpg", image_bytes(30 * i), "image/jpeg")) for i in range(4)]
    response = api.post(f"/v1/sessions/{sid}/frames", files=files, data={"times": json.dumps([0.0, 0.5, 1.0, 1.5])})
    assert response.status_code == 200, response.text
    ack = response.json()
    assert ack["received"] == 4 and ack["position"] == 1.5 and ack["dropped"] >= 0 and ack["pending"] >= 0
    more = api.post(
        f"/v1/sessions/{sid}/frames",
        files=[("frames", ("g.png", image_bytes(200, kind="PNG"), "image/png"))],
        data={"times": "[2.5]"},
    )
    assert more.status_code == 200 and more.json()["received"] == 5 and more.json()["position"] == 2.5, more.text
    mismatched = api.post(f"/v1/sessions/{sid}/frames", files=files[:2], data={"times": "[3.0]"})
    assert mismatched.status_code == 422, mismatched.text

    info = wait_session(api, sid, lambda s: s["frames_in_memory"] + s["frames_dropped"] >= 5 and s["pending"] == 0)
    assert info["frames_in_memory"] + info["frames_dropped"] == 5 and info["latest_frame_time"] == 2.5
    assert api.post(f"/v1/sessions/{sid}/end").status_code in (200, 204)
    info = wait_session(api, sid, ended, 20, "ended")
    assert info["end_reason"]
    answer = ask(api, sid)  # the memory stays for questions
    assert answer["latest_frame_time"] == 2.5 and answer["frames_seen"] == info["frames_in_memory"]


def test_a_question_before_any_frame_is_409(api, sessions):
    sid = sessions(source="push")["id"]
    for stream in (False, True):
        response = api.post(f"/v1/sessions/{sid}/questions", json={"question": "What is there?", "stream": stream})
        assert response.status_code == 409, response.text
        assert isinstance(response.json()["detail"], str) and response.json()["detail"]


# ---------------------------------------------------------------------------------------------------------------
# standing questions


def test_standing_questions_are_added_listed_and_removed(api, sessions):
    sid = sessions(source="push")["id"]
    response = api.post(f"/v1/sessions/{sid}/watches", json={"question": "Is a person at the door?"})
    assert response.status_code == 201, response.text
    first = response.json()
    assert isinstance(first["id"], str) and first["id"]
    assert first["question"] == "Is a person at the door?" and first["every_s"] is None and first["match"] is None
    assert first["value"] is None and first["answer"] is None and first["checks"] == 0 and first["stream_time"] is None
    body = {"question": "What is on the screen now?", "every_s": 3600, "match": "red circle"}
    second = api.post(f"/v1/sessions/{sid}/watches", json=body)
    assert second.status_code == 201, second.text
    second = second.json()
    assert (second["every_s"], second["match"]) == (3600, "red circle") and second["id"] != first["id"]

    def listed() -> list[dict]:
        response = api.get(f"/v1/sessions/{sid}/watches")
        assert response.status_code == 200, response.text
        body = response.json()
        return body["watches"] if isinstance(body, dict) else body

    assert [w["id"] for w in listed()] == [first["id"], second["id"]]
    assert session_of(api, sid)["watches"] == 2
    assert api.delete(f"/v1/sessions/{sid}/watches/{first['id']}").status_code in (200, 204)
    assert [w["id"] for w in listed()] == [second["id"]]
    assert session_of(api, sid)["watches"] == 1
    assert api.delete(f"/v1/sessions/{sid}/watches/{first['id']}").status_code == 404
    assert api.post(f"/v1/sessions/{sid}/watches", json={"every_s": 5}).status_code == 422
    assert api.post(f"/v1/sessions/{sid}/watches", json={"question": "Yes?", "every_s": -1}).status_code == 422
    assert api.post("/v1/sessions/s-00000000/watches", json={"question": "Yes?"}).status_code == 404


# ---------------------------------------------------------------------------------------------------------------
# errors and metrics


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        {"fps": 1},
        {"source": "synthetic:10", "fps": "fast"},
        {"source": "synthetic:10", "speed": -1},
        {"source": "synthetic:10", "fps": 0},
        {"source": "synthetic:10", "memory": {"no_such_memory_field": 3}},
        {"source": "synthetic:10", "colour": "red"},
    ],
    ids=["not-json", "not-an-object", "no-source", "fps-fast", "negative-speed", "zero-fps", "memory-field", "extra"],
)
def test_a_malformed_session_body_is_422(api, body):
    count = len(api.get("/v1/sessions").json()["sessions"])
    if isinstance(body, bytes):
        response = api.post("/v1/sessions", content=body, headers={"content-type": "application/json"})
    else:
        response = api.post("/v1/sessions", json=body)
    assert response.status_code == 422, response.text
    assert "detail" in response.json()
    assert len(api.get("/v1/sessions").json()["sessions"]) == count


def test_malformed_questions_are_422(api, finished):
    path = f"/v1/sessions/{finished['id']}/questions"
    for body in ({}, {"question": ""}, {"question": "Why?", "max_new_tokens": "many"}, {"question": "Why?", "x": 1}):
        response = api.post(path, json=body)
        assert response.status_code == 422, (body, response.text)
    assert api.post(path, content=b"question?", headers={"content-type": "application/json"}).status_code == 422


def test_an_unknown_session_is_404(api):
    sid = "s-00000000"
    for method, path in [
        ("GET", f"/v1/sessions/{sid}"),
        ("DELETE", f"/v1/sessions/{sid}"),
        ("GET", f"/v1/sessions/{sid}/memory"),
        ("GET", f"/v1/sessions/{sid}/watches"),
        ("POST", f"/v1/sessions/{sid}/end"),
    ]:
        response = api.request(method, path)
        assert response.status_code == 404, (method, path, response.text)
        assert isinstance(response.json()["detail"], str)
    response = api.post(f"/v1/sessions/{sid}/questions", json={"question": "What is there?", "stream": False})
    assert response.status_code == 404, response.text


def test_metrics_are_prometheus_text(api, finished):
    ask(api, finished["id"])
    response = api.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    sessions = metric_values(text, "vstream_sessions")
    assert sessions and sum(sessions) >= 1, text[:2000]
    questions = metric_values(text, "vstream_questions_total")
    assert questions and sum(questions) >= 1, text[:2000]
    for name in ("vstream_frames_read_total", "vstream_ttft_seconds_count", "vstream_answer_seconds_count"):
        assert metric_values(text, name), name
    assert sum(metric_values(text, "vstream_frames_read_total")) >= finished["frames_read"]


# ---------------------------------------------------------------------------------------------------------------
# a server with a key and tight limits


@pytest.fixture(scope="module")
def guarded_media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("guarded-media")
    encode_video(root / "clip.mp4", frames=6, fps=2)
    (root / "sub").mkdir()
    encode_video(root / "sub" / "inner.mp4", frames=4, fps=1)
    os.symlink("/etc/hostname", root / "link.mp4")  # inside by name, outside in fact
    return root


@pytest.fixture(scope="module")
def guarded(tiny_checkpoint, guarded_media, tmp_path_factory):
    cache = tmp_path_factory.mktemp("guarded-cache")
    args = ["--model", str(tiny_checkpoint), "--max-new-tokens", str(TOKENS), "--api-key", KEY]
    args += ["--max-sessions", "2", "--max-upload-mb", "1", "--media-root", str(guarded_media)]
    with RemoteServer(args, env={"VSTREAM_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}) as remote:
        yield remote


@pytest.fixture
def keyed(guarded) -> Iterator[httpx.Client]:
    """A client with the key; every session left at the end is deleted (the tests share a limit of 2)."""
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=guarded.url(), headers=headers, timeout=60, trust_env=False) as client:
        yield client
        for info in client.get("/v1/sessions").json()["sessions"]:
            client.delete(f"/v1/sessions/{info['id']}")


def test_the_key_is_needed_but_not_for_health(guarded, keyed):
    with httpx.Client(base_url=guarded.url(), timeout=30, trust_env=False) as bare:
        assert bare.get("/health").status_code == 200
        for response in (
            bare.get("/v1/sessions"),
            bare.get("/v1/sessions", headers={"Authorization": "Bearer wrong"}),
            bare.get("/v1/sessions?token=wrong"),
            bare.get("/v1/models"),
            bare.get("/metrics"),
            bare.post("/v1/sessions", json={"source": "synthetic:10"}),
        ):
            assert response.status_code == 401, (response.request.url, response.text)
            assert isinstance(response.json()["detail"], str)
        token = bare.get(f"/v1/sessions?token={KEY}")
        assert token.status_code == 200 and isinstance(token.json()["sessions"], list)
    assert keyed.get("/v1/sessions").status_code == 200
    assert keyed.get("/metrics").status_code == 200

    import openai

    wrong = OpenAI(base_url=guarded.url("/v1"), api_key="wrong", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    right = OpenAI(base_url=guarded.url("/v1"), api_key=KEY, max_retries=0, timeout=30)
    assert len(right.models.list().data) == 1


def test_a_websocket_takes_the_key_as_a_token(guarded, keyed):
    created = keyed.post("/v1/sessions", json={"source": "push"})
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    refused = (InvalidHandshake, ConnectionClosed)  # at the handshake, or closed at once
    with pytest.raises(refused), connect(ws_url(guarded, sid), proxy=None, open_timeout=10) as ws:
        ws.send(frame_message(0.0, image_bytes(10)))
        json.loads(ws.recv(timeout=10))
    assert session_of(keyed, sid)["frames_read"] == 0
    with connect(ws_url(guarded, sid, f"?token={KEY}"), proxy=None, open_timeout=10) as ws:
        ws.send(frame_message(0.0, image_bytes(10)))
        assert json.loads(ws.recv(timeout=30))["received"] == 1


def test_paths_outside_the_media_root_are_403(keyed, guarded_media):
    for source in ("../x.mp4", "/etc/passwd", "sub/../../x.mp4", "link.mp4", str(guarded_media.parent / "x.mp4")):
        response = keyed.post("/v1/sessions", json={"source": source})
        assert response.status_code == 403, (source, response.text)
        assert isinstance(response.json()["detail"], str)
    for source in ("sub/inner.mp4", str(guarded_media / "clip.mp4")):  # relative to, or inside, the root
        response = keyed.post("/v1/sessions", json={"source": source, "speed": 0})
        assert response.status_code == 201, (source, response.text)
        assert response.json()["kind"] == "file"
        assert keyed.delete(f"/v1/sessions/{response.json()['id']}").status_code == 204


def test_uploads_over_the_limit_are_413(keyed, guarded_media, tmp_path):
    big = noise_video(tmp_path / "big.mp4", frames=20, size=(320, 240))
    assert big.stat().st_size > 1.2 * 2**20
    with big.open("rb") as file:
        response = keyed.post("/v1/sessions/upload", files={"file": ("big.mp4", file, "video/mp4")})
    assert response.status_code == 413, response.text
    assert keyed.get("/v1/sessions").json()["sessions"] == []

    small = (guarded_media / "clip.mp4").read_bytes()
    response = keyed.post(
        "/v1/sessions/upload", files={"file": ("clip.mp4", small, "video/mp4")}, data={"fps": "2", "speed": "0"}
    )
    assert response.status_code == 201, response.text
    info = response.json()
    assert info["kind"] == "upload"
    info = wait_session(keyed, info["id"], ended, 30, "ended")
    assert info["frames_in_memory"] == 6 and info["latest_frame_time"] == 2.5
    assert ask(keyed, info["id"])["latest_frame_time"] == 2.5


def test_more_sessions_than_the_limit_are_429(keyed):
    def create() -> httpx.Response:
        return keyed.post("/v1/sessions", json={"source": "push"})

    first, second = create(), create()
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    third = create()
    assert third.status_code == 429, third.text
    assert isinstance(third.json()["detail"], str)
    assert len(keyed.get("/v1/sessions").json()["sessions"]) == 2
    assert keyed.delete(f"/v1/sessions/{first.json()['id']}").status_code == 204
    assert create().status_code == 201  # a freed place can be taken again
