"""Readout (STAR.md §3): token count and order, provenance of every token, dtypes and devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vstream.memory import MemoryConfig, SemanticAttention, build_memory, pool

from conftest import DEVICES, attention_for, random_stream, scene_stream, small_config

ORDER = ["abstract", "temporal", "retrieved", "spatial"]


def test_released_sizes_give_681_tokens_and_fewer_early_in_the_stream():
    config = MemoryConfig()
    memory = build_memory(config, SemanticAttention.random())
    gen = torch.Generator().manual_seed(0)
    assert memory.readout().is_empty
    for t in range(30):
        memory.update(torch.randn(256, 1024, generator=gen), float(t))
        entered = t  # the newest frame is the spatial memory
        expected = min(entered, 25) + 16 * min(entered, 25) + 64 * min(entered, 3) + 64
        snapshot = memory.readout()
        assert snapshot.num_tokens == expected == len(snapshot.token_memories())
        assert snapshot.tokens.shape == (expected, 1024)
    assert snapshot.num_tokens == 681
    assert snapshot.token_counts() == {"abstract": 25, "temporal": 400, "retrieved": 192, "spatial": 64}


def test_order_and_provenance_of_every_token():
    config = small_config(temporal_clusters=5, spatial_frames=2)
    frames, times, _ = scene_stream([30, 50, 20, 45, 25], config, noise=0.3)
    times = times * 0.5 + 100.0  # 2 fps, starting at 100 s
    memory = build_memory(config, attention_for(config))
    memory.update(frames, times)
    snapshot = memory.readout()
    names = [item.memory for item in snapshot.items]
    assert names == sorted(names, key=ORDER.index)  # grouped, in STAR.md order
    start = 0
    for item in snapshot.items:  # contiguous token runs, frame-major
        assert item.token_start == start
        start = item.token_end
    assert start == snapshot.num_tokens
    temporal = snapshot.items_of("temporal")
    assert [i.time_mean for i in temporal] == sorted(i.time_mean for i in temporal)
    for name in ("retrieved", "spatial"):  # single frames, oldest first, tokens = the frame at s_s×s_s
        items = snapshot.items_of(name)
        assert [i.time_start for i in items] == sorted(i.time_start for i in items)
        for item in items:
            assert item.time_start == item.time_end and item.weight == 1.0
            index = int(np.flatnonzero(times == item.time_start)[0])
            expected = pool(frames[index], config.spatial_pool)
            assert torch.allclose(snapshot.tokens[item.token_start : item.token_end], expected, atol=1e-6)
    assert [i.time_start for i in snapshot.items_of("spatial")] == [times[-2], times[-1]]
    assert snapshot.item_of_token(snapshot.num_tokens - 1) == snapshot.items_of("spatial")[-1]
    assert snapshot.latest_time == times[-1] and snapshot.frames_seen == len(times)
    summary = snapshot.summary()
    assert summary["num_tokens"] == snapshot.num_tokens and len(summary["items"]) == len(snapshot.items)


@pytest.mark.parametrize(
    "memories", [("abstract", "spatial"), ("temporal", "retrieved", "spatial"), ("abstract", "temporal", "retrieved")]
)
def test_switched_off_memories_are_absent(memories):
    config = small_config(memories=memories)
    memory = build_memory(config, attention_for(config) if "abstract" in memories else None)
    memory.update(random_stream(40, config), np.arange(40))
    snapshot = memory.readout()
    assert snapshot.token_counts() == config.token_layout()
    if "spatial" not in memories:  # no spatial FIFO: every frame enters the long-term memories at once
        assert sum(i.weight for i in snapshot.items_of("temporal")) == 40


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_feature_dtypes_and_devices(dtype, device):
    config = small_config()
    memory = build_memory(config, attention_for(config))
    frames = random_stream(60, config, dtype=dtype).to(device)
    for t in range(0, 60, 6):
        memory.update(frames[t : t + 6], np.arange(t, t + 6))
    snapshot = memory.readout()
    assert snapshot.tokens.dtype == dtype and snapshot.tokens.device.type == device
    assert torch.isfinite(snapshot.tokens.float()).all()
    assert snapshot.num_tokens == config.num_tokens
    reference = build_memory(config, attention_for(config))  # the same frames, in float32 on the CPU
    for t in range(0, 60, 6):
        reference.update(frames[t : t + 6].float().cpu(), np.arange(t, t + 6))
    tolerance = 1e-5 if dtype == torch.float32 else 5e-2
    assert torch.allclose(snapshot.tokens.float().cpu(), reference.readout().tokens, atol=tolerance)
