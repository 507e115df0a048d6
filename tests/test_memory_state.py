"""Memory state: bounded size, save/load that resumes a stream exactly, bad input, concurrent readers."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from vstream.errors import MemoryInputError, StateFileError
from vstream.memory import SemanticAttention, build_memory, load_memory

from conftest import attention_for, random_stream, scene_stream, small_config

KINDS = {
    "star": {},
    "star-buffer": {"retrieval_source": "buffer", "retrieval_buffer": 20},
    "star-exact": {"retrieval_source": "exact"},
    "star-no-spatial": {"memories": ("abstract", "temporal", "retrieved")},
    "uniform": {"kind": "uniform", "num_frames": 6, "frame_pool": 2},
    "sliding": {"kind": "sliding", "num_frames": 6, "frame_pool": 2},
    "drop": {"kind": "drop", "num_frames": 6, "frame_pool": 2},
    "merge": {"kind": "merge", "num_frames": 6, "frame_pool": 2},
}


def make(name, tmp_path, **extra):
    config = small_config(**KINDS[name])
    attention = attention_for(config) if config.uses("abstract") else None
    store = tmp_path / "frames" if config.retrieval_source == "exact" and config.kind == "star" else None
    return build_memory(config, attention, store_dir=store, **extra)


def feed(memory, frames, start, stop, chunk=3):
    for t in range(start, stop, chunk):
        memory.update(frames[t : min(t + chunk, stop)], np.arange(t, min(t + chunk, stop), dtype=float))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", list(KINDS))
def test_save_load_gives_identical_readouts_now_and_after_more_updates(tmp_path, name, dtype):
    config = small_config(**KINDS[name])
    frames = random_stream(150, config, dtype=dtype)
    original = make(name, tmp_path)
    feed(original, frames, 0, 97)
    original.save(tmp_path / "state.safetensors")
    restored = load_memory(tmp_path / "state.safetensors")
    before, after = original.readout(), restored.readout()
    assert torch.equal(before.tokens, after.tokens) and before.tokens.dtype == dtype
    assert before.items == after.items and after.frames_seen == 97 and after.latest_time == 96.0
    feed(original, frames, 97, 150)
    feed(restored, frames, 97, 150)
    assert torch.equal(original.readout().tokens, restored.readout().tokens)
    assert original.readout().items == restored.readout().items


def test_a_resumed_stream_matches_an_uninterrupted_one(tmp_path):
    config = small_config()
    frames = random_stream(300, config)
    uninterrupted, first = make("star", tmp_path), make("star", tmp_path)
    feed(uninterrupted, frames, 0, 300, chunk=1)
    feed(first, frames, 0, 180, chunk=1)
    first.save(tmp_path / "state.safetensors")
    del first
    resumed = load_memory(tmp_path / "state.safetensors", attention_for(config))
    feed(resumed, frames, 180, 300, chunk=1)
    assert torch.equal(uninterrupted.readout().tokens, resumed.readout().tokens)


def test_loading_checks_the_file_and_the_weights(tmp_path):
    config = small_config()
    memory = make("star", tmp_path)
    feed(memory, random_stream(20, config), 0, 20)
    path = tmp_path / "state.safetensors"
    memory.save(path)
    with pytest.raises(StateFileError, match="other abstract-memory weights"):
        load_memory(path, attention_for(config, seed=99))
    with pytest.raises(StateFileError, match="no such memory state file"):
        load_memory(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(StateFileError, match="not a readable safetensors file"):
        load_memory(tmp_path / "junk.safetensors")
    save_file({"x": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(StateFileError, match="not a vstream memory state"):
        load_memory(tmp_path / "other.safetensors")
    save_file({"x": torch.zeros(2)}, tmp_path / "bad.safetensors", metadata={"vstream-memory": "{not json"})
    with pytest.raises(StateFileError, match="header is not JSON"):
        load_memory(tmp_path / "bad.safetensors")
    save_file({"x": torch.zeros(2)}, tmp_path / "old.safetensors", metadata={"vstream-memory": '{"version": 1}'})
    with pytest.raises(StateFileError, match="header lacks"):
        load_memory(tmp_path / "old.safetensors")
    with pytest.raises(StateFileError, match="already seen frames"):
        memory.restore_from(path)
    other = build_memory(small_config(temporal_clusters=3), attention_for(config))
    with pytest.raises(StateFileError, match="another config"):
        other.restore_from(path)
    assert other.readout().is_empty and other.state_bytes() == 0


def test_a_state_saved_before_readout_order_existed_still_loads(tmp_path):
    config = small_config()
    memory = make("star", tmp_path)
    feed(memory, random_stream(40, config), 0, 40)
    memory.save(tmp_path / "state.safetensors")
    with safe_open(str(tmp_path / "state.safetensors"), framework="pt") as f:
        header = json.loads(f.metadata()["vstream-memory"])
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    del header["config"]["readout_order"]  # as an older vstream wrote it
    save_file(tensors, tmp_path / "old.safetensors", metadata={"vstream-memory": json.dumps(header)})
    restored = load_memory(tmp_path / "old.safetensors")
    assert restored.config.readout_order == "time" and restored.config == config
    assert torch.equal(restored.readout().tokens, memory.readout().tokens)
    assert restored.readout().items == memory.readout().items


def test_an_empty_memory_saves_and_loads(tmp_path):
    memory = make("star", tmp_path)
    memory.save(tmp_path / "empty.safetensors")
    restored = load_memory(tmp_path / "empty.safetensors")
    assert restored.readout().is_empty and restored.state_bytes() == 0


@pytest.mark.parametrize("name", ["star", "merge", "uniform"])
def test_state_size_after_10000_frames_equals_the_size_after_100(tmp_path, name):
    config = small_config(**KINDS[name])
    memory = make(name, tmp_path)
    gen = torch.Generator().manual_seed(0)
    sizes = {}
    for start in range(0, 10_000, 50):
        frames = torch.randn(50, config.num_patches, config.feature_dim, generator=gen)
        for offset in range(50):
            memory.update(frames[offset], float(start + offset))
        if start + 50 in (100, 10_000):
            sizes[start + 50] = memory.state_bytes()
    assert sizes[100] == sizes[10_000] > 0
    assert memory.readout().num_tokens == config.num_tokens


@pytest.mark.parametrize(
    ("features", "times", "message"),
    [
        (torch.zeros(3, 8, 16), [1, 2, 3], "features have shape (3, 8, 16); expected (P, D) or (n, P, D)"),
        (torch.zeros(64, 16, dtype=torch.float64), 1.0, "features have dtype torch.float64"),
        ([[0.0]], 1.0, "features must be a torch.Tensor"),
        (torch.zeros(2, 64, 16), [5.0], "got 2 frames but 1 timestamps"),
        (torch.zeros(2, 64, 16), [7.0, 6.5], "timestamps go backwards within the chunk"),
        (torch.zeros(64, 16), 3.0, "timestamp 3.0 s is earlier than the last frame's 4.0 s"),
        (torch.zeros(64, 16), float("nan"), "timestamps must be finite"),
        (torch.zeros(64, 16), "soon", "timestamps must be numbers"),
        (torch.full((64, 16), float("nan")), 9.0, "features contain NaN or infinite values"),
    ],
)
def test_bad_input_raises_and_leaves_the_memory_intact(tmp_path, features, times, message):
    config = small_config()
    memory = make("star", tmp_path)
    feed(memory, random_stream(5, config), 0, 5)
    before = memory.readout()
    memory.save(tmp_path / "before.safetensors")
    with pytest.raises(MemoryInputError) as info:
        memory.update(features, times)
    assert message in str(info.value)
    after = memory.readout()
    assert torch.equal(before.tokens, after.tokens) and before.items == after.items
    memory.save(tmp_path / "after.safetensors")
    assert (tmp_path / "before.safetensors").read_bytes() == (tmp_path / "after.safetensors").read_bytes()


def test_missing_attention_is_a_config_error():
    from vstream.errors import ConfigError

    with pytest.raises(ConfigError, match="the abstract memory needs the model's q/k projections"):
        build_memory(small_config())
    with pytest.raises(ConfigError, match="semantic attention maps 1024→32"):
        build_memory(small_config(), SemanticAttention.random())
    with pytest.raises(ConfigError, match="store_dir"):
        build_memory(small_config(retrieval_source="exact"), attention_for(small_config()))


def test_readouts_taken_while_another_thread_updates_are_consistent(tmp_path):
    config = small_config()
    memory = make("star", tmp_path)
    frames, times, _ = scene_stream([100, 150, 150], config, noise=0.5)
    errors: list[BaseException] = []

    def writer():
        try:
            for t in range(len(times)):
                memory.update(frames[t], times[t])
                time.sleep(0.0005)  # as a frame handler does between frames, which lets readers in
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    checked = 0
    while thread.is_alive() or checked == 0:
        snapshot = memory.readout()
        seen = snapshot.frames_seen
        if seen == 0:
            continue
        temporal = sum(item.weight for item in snapshot.items_of("temporal"))
        assert temporal + len(snapshot.items_of("spatial")) == seen
        assert snapshot.latest_time == seen - 1
        assert len(snapshot.items_of("abstract")) == min(seen - 1, config.abstract_slots)
        assert sum(item.num_tokens for item in snapshot.items) == snapshot.num_tokens
        assert max(item.time_end for item in snapshot.items) == seen - 1
        checked += 1
    thread.join()
    assert not errors and checked > 10
