"""What lets several servers stand behind one router: session ids that name their replica, and a chat route that
names its session in the path (so the official `openai` client can ask one session through any router)."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("fastapi")
import httpx2 as httpx
from openai import OpenAI
from serve_server import InProcessServer

from vstream.errors import ConfigError
from vstream.serve.app import build_app
from vstream.serve.settings import ServeSettings


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    settings = ServeSettings(
        model="tiny", replica="r2", max_new_tokens=6, state_dir=folder / "s", upload_dir=folder / "u"
    )
    with InProcessServer(build_app(settings, model=tiny_model)) as running:
        yield running


def test_session_ids_start_with_the_replica_name(server):
    client = httpx.Client(base_url=server.url(), timeout=60)
    info = client.post("/v1/sessions", json={"source": "synthetic:8", "speed": 0}).json()
    assert info["id"].startswith("r2-") and len(info["id"]) == len("r2-") + 8
    assert client.get(f"/v1/sessions/{info['id']}").json()["source"] == "synthetic:8"


def test_the_openai_client_asks_a_session_named_in_its_base_url(server):
    client = httpx.Client(base_url=server.url(), timeout=60)
    session_id = client.post("/v1/sessions", json={"source": "synthetic:6", "speed": 0}).json()["id"]
    deadline = time.monotonic() + 60
    while client.get(f"/v1/sessions/{session_id}").json()["state"] != "ended":
        assert time.monotonic() < deadline, "the stream did not end"
        time.sleep(0.05)
    openai = OpenAI(base_url=server.url(f"/v1/sessions/{session_id}"), api_key="none")
    reply = openai.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "What happens?"}])
    extra = reply.model_extra["vstream"]
    assert extra["session_id"] == session_id and extra["latest_frame_time"] == 5.0
    assert reply.usage.completion_tokens == 6 and reply.choices[0].finish_reason == "length"
    pieces = openai.chat.completions.create(
        model="tiny", stream=True, messages=[{"role": "user", "content": "What happens?"}]
    )
    assert "".join(c.choices[0].delta.content or "" for c in pieces if c.choices) == reply.choices[0].message.content

    other = f"vstream://sessions/{session_id}x"
    content = [{"type": "video_url", "video_url": {"url": other}}, {"type": "text", "text": "Hi?"}]
    wrong = client.post(
        f"/v1/sessions/{session_id}/chat/completions",
        json={"model": "tiny", "messages": [{"role": "user", "content": content}]},
    )
    assert wrong.status_code == 422 and "names session" in wrong.json()["detail"]


def test_a_bad_replica_name_is_refused():
    with pytest.raises(ConfigError, match="--replica"):
        ServeSettings(replica="R 2")


def push_frames(client: httpx.Client, session_id: str, times: list[float]) -> None:
    import io

    import numpy as np
    from PIL import Image

    files = []
    for t in times:
        buffer = io.BytesIO()
        Image.fromarray(np.full((32, 32, 3), int(t * 30) % 256, np.uint8)).save(buffer, format="PNG")
        files.append(("frames", (f"{t}.png", buffer.getvalue(), "image/png")))
    reply = client.post(f"/v1/sessions/{session_id}/frames", files=files, data={"times": str(list(times))})
    assert reply.status_code == 200, reply.text


def ended(client: httpx.Client, session_id: str) -> dict:
    deadline = time.monotonic() + 60
    while (info := client.get(f"/v1/sessions/{session_id}").json())["state"] != "ended":
        assert time.monotonic() < deadline, "the stream did not end"
        time.sleep(0.05)
    return info


def test_a_saved_memory_starts_a_new_session_where_the_old_one_stopped(server):
    client = httpx.Client(base_url=server.url(), timeout=60)
    first = client.post("/v1/sessions", json={"source": "push"}).json()["id"]
    push_frames(client, first, [0, 1, 2, 3])
    client.post(f"/v1/sessions/{first}/end")
    assert ended(client, first)["frames_in_memory"] == 4
    saved = client.post(f"/v1/sessions/{first}/save", json={"name": "lobby-monday"})
    assert saved.json() == {"state": "lobby-monday", "frames": 4, "latest_frame_time": 3.0}
    assert "lobby-monday" in client.get("/v1/states").json()["states"]

    second = client.post("/v1/sessions", json={"source": "push", "resume_from": "lobby-monday"}).json()["id"]
    push_frames(client, second, [0, 1])  # a new stream's own times: they continue after the saved memory's
    client.post(f"/v1/sessions/{second}/end")
    info = ended(client, second)
    assert info["frames_in_memory"] == 6 and info["latest_frame_time"] == 5.0
    memory = client.get(f"/v1/sessions/{second}/memory").json()
    assert memory["frames_seen"] == 6 and min(item["time_start"] for item in memory["items"]) == 0.0

    assert client.post("/v1/sessions", json={"source": "push", "resume_from": "nobody"}).status_code == 404
    assert client.post(f"/v1/sessions/{first}/save", json={"name": "../escape"}).status_code == 422


def test_a_session_can_run_the_no_memory_baseline_at_stars_token_budget(server, tiny_model):
    client = httpx.Client(base_url=server.url(), timeout=60)
    body = {"source": "synthetic:12", "speed": 0, "memory": {"kind": "recent", "num_frames": 2}}
    session_id = client.post("/v1/sessions", json=body).json()["id"]
    deadline = time.monotonic() + 60
    while (info := client.get(f"/v1/sessions/{session_id}").json())["state"] != "ended":
        assert time.monotonic() < deadline, "the stream did not end"
        time.sleep(0.05)
    budget = tiny_model.memory_config().num_tokens
    assert info["memory_capacity"] <= budget and info["memory_tokens"] == info["memory_capacity"]
    items = client.get(f"/v1/sessions/{session_id}/memory").json()["items"]
    assert [item["memory"] for item in items] == ["recent", "recent"]
    assert [item["time_start"] for item in items] == [10.0, 11.0]  # the newest two frames only
