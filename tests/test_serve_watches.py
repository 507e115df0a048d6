"""Standing questions: an event each time a watch's value flips, over real HTTP (SSE) from a server in this process.

The flip is driven by a stand-in verdict (true once the memory holds a frame at 5 s or later), because the tiny
random model's answers are not the thing under test here: the monitor, the event fan-out and the SSE route are.
The model's own verdicts are tested with vstream-smol at the end, on a stream whose answer is known.
"""

from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
import httpx2 as httpx
from PIL import Image
from serve_server import InProcessServer

from vstream.serve.app import build_app
from vstream.serve.settings import ServeSettings
from vstream.serve.watches import read_value


def late_enough(session, watch, snapshot, options):
    """Stand-in verdict: true once the memory holds a frame at 5 s or later."""
    value = snapshot.latest_time is not None and snapshot.latest_time >= 5
    return value, "yes" if value else "no"


def jpeg(level: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), level, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def push(client: httpx.Client, session_id: str, times: list[float]) -> None:
    files = [("frames", (f"{t}.jpg", jpeg(int(t * 20) % 256), "image/jpeg")) for t in times]
    reply = client.post(f"/v1/sessions/{session_id}/frames", files=files, data={"times": json.dumps(times)})
    assert reply.status_code == 200, reply.text


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def read_events(client: httpx.Client, session_id: str, events: list, stop: threading.Event) -> None:
    with client.stream("GET", f"/v1/sessions/{session_id}/events", timeout=60) as response:
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
                if name == "state" or stop.is_set():
                    return


def test_a_watch_emits_an_event_when_its_value_flips_and_the_end_is_announced(tiny_model, tmp_path):
    settings = ServeSettings(model="tiny", state_dir=tmp_path / "states", upload_dir=tmp_path / "uploads")
    with InProcessServer(build_app(settings, model=tiny_model, verdict=late_enough)) as server:
        client = httpx.Client(base_url=server.url(), timeout=30)
        session_id = client.post("/v1/sessions", json={"source": "push"}).json()["id"]
        watch = client.post(f"/v1/sessions/{session_id}/watches", json={"question": "Is it late?"})
        assert watch.status_code == 201 and watch.json()["value"] is None
        events: list = []
        stop = threading.Event()
        reader = threading.Thread(target=read_events, args=(client, session_id, events, stop), daemon=True)
        reader.start()

        push(client, session_id, [0, 1, 2, 3, 4])
        watches = f"/v1/sessions/{session_id}/watches"
        wait_for(lambda: client.get(watches).json()["watches"][0]["value"] is False, what="the first verdict (no)")
        push(client, session_id, [5, 6, 7])
        wait_for(lambda: client.get(watches).json()["watches"][0]["value"] is True, what="the flip to yes")
        client.post(f"/v1/sessions/{session_id}/end")
        reader.join(30)
        stop.set()

        flips = [data for name, data in events if name == "watch"]
        assert [(f["previous"], f["value"]) for f in flips] == [(None, False), (False, True)]
        assert flips[0]["stream_time"] < 5 <= flips[1]["stream_time"]
        assert all(f["watch_id"] == watch.json()["id"] and f["question"] == "Is it late?" for f in flips)
        assert events[-1] == ("state", {"state": "ended", "end_reason": "end of stream"})
        info = client.get(watches).json()["watches"][0]
        assert info["checks"] >= 2 and info["stream_time"] == 7.0

        # a subscriber that comes later gets the history, then the end of the stream
        late: list = []
        read_events(client, session_id, late, threading.Event())
        assert late == events


def test_a_watch_every_n_seconds_is_asked_again_on_an_unchanged_memory(tiny_model, tmp_path):
    calls = []

    def counting(session, watch, snapshot, options):
        calls.append(snapshot.latest_time)
        return None, "maybe"  # neither yes nor no: the value stays unknown and no event is sent

    settings = ServeSettings(model="tiny", state_dir=tmp_path / "s", upload_dir=tmp_path / "u")
    with InProcessServer(build_app(settings, model=tiny_model, verdict=counting)) as server:
        client = httpx.Client(base_url=server.url(), timeout=30)
        session_id = client.post("/v1/sessions", json={"source": "push"}).json()["id"]
        push(client, session_id, [0])
        wait_for(lambda: client.get(f"/v1/sessions/{session_id}").json()["frames_in_memory"] == 1, what="a frame")
        client.post(f"/v1/sessions/{session_id}/watches", json={"question": "Anyone?", "every_s": 0.2})
        wait_for(lambda: len(calls) >= 3, timeout=20, what="three checks of one snapshot")
        assert set(calls) == {0.0}
        info = client.get(f"/v1/sessions/{session_id}/watches").json()["watches"][0]
        assert info["value"] is None and info["answer"] == "maybe"


@pytest.mark.parametrize(
    ("answer", "match", "value"),
    [
        ("Yes, a person is at the door.", None, True),
        ("No.", None, False),
        ("yes and no", None, None),
        ("I cannot tell.", None, None),
        ("a red circle", "red circle", True),
        ("A red square and a blue circle", "red circle", False),
        ("The screen shows a Red Circle.", "red circle", True),
    ],
)
def test_a_watch_reads_its_answer_as_yes_no_or_by_its_words(answer, match, value):
    assert read_value(answer, match) == value


def test_the_shipped_model_watches_an_open_question_by_its_words(tmp_path):
    """vstream-smol's own verdict: 'What is on the screen now?' matched against the scene the stream ends on."""
    from vstream.model import VStream
    from vstream.stream.synthetic import synthetic_plan

    model = VStream.from_pretrained("smol")
    source = "synthetic:20:3"
    truth = synthetic_plan(source).scene_at(19).state_at(19).label
    settings = ServeSettings(model="smol", state_dir=tmp_path / "s", upload_dir=tmp_path / "u", watch_tokens=8)
    with InProcessServer(build_app(settings, model=model)) as server:
        client = httpx.Client(base_url=server.url(), timeout=30)
        session_id = client.post("/v1/sessions", json={"source": source, "speed": 4}).json()["id"]
        client.post(
            f"/v1/sessions/{session_id}/watches", json={"question": "What is on the screen now?", "match": truth}
        )
        wait_for(
            lambda: client.get(f"/v1/sessions/{session_id}").json()["state"] == "ended", timeout=60, what="the end"
        )
        final = wait_for(
            lambda: (
                (w := client.get(f"/v1/sessions/{session_id}/watches").json()["watches"][0])["stream_time"] == 19.0
                and w
            ),
            what="the check of the last snapshot",
        )
        assert final["value"] is True, (truth, final["answer"])
