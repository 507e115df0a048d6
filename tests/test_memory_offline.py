"""The offline path: a whole clip at once, the same functions as streaming, differentiable for training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vstream.errors import MemoryInputError
from vstream.memory import MemoryConfig, SemanticAttention, build_memory, offline_readout

from conftest import attention_for, random_stream, scene_stream, small_config


@pytest.mark.parametrize("order", ["time", "released"])
@pytest.mark.parametrize("frames", [1, 3, 6, 40, 300])
def test_offline_equals_a_stream_given_the_whole_clip_at_once(frames, order):
    config = small_config(temporal_clusters=5, readout_order=order)
    features, times, _ = scene_stream([frames // 2 + 1, frames - frames // 2 - 1 or 1], config, noise=0.3)
    features, times = features[:frames], times[:frames]
    attention = attention_for(config)
    offline = offline_readout(features, times, config, attention)
    memory = build_memory(config, attention)
    memory.update(features, times)
    streamed = memory.readout()
    assert offline.items == streamed.items
    assert torch.allclose(offline.tokens, streamed.tokens, atol=1e-5)


def test_default_timestamps_are_one_per_second_and_sizes_are_the_released_ones():
    snapshot = offline_readout(torch.randn(40, 256, 1024), attention=SemanticAttention.random())
    assert snapshot.num_tokens == 681 and snapshot.latest_time == 39.0
    assert snapshot.items_of("spatial")[0].time_start == 39.0


def test_offline_is_differentiable_in_the_attention_weights():
    config = small_config()
    base = attention_for(config)
    q_weight = base.q_weight.clone().requires_grad_(True)
    k_weight = base.k_weight.clone().requires_grad_(True)
    attention = SemanticAttention(q_weight, base.q_bias, k_weight, base.k_bias)
    snapshot = offline_readout(random_stream(30, config), config=config, attention=attention)
    snapshot.tokens.square().sum().backward()
    assert q_weight.grad is not None and q_weight.grad.abs().sum() > 0
    assert k_weight.grad is not None and k_weight.grad.abs().sum() > 0


def test_offline_rejects_bad_clips():
    config = small_config()
    with pytest.raises(MemoryInputError, match="features have shape"):
        offline_readout(torch.zeros(5, 10, 16), config=config, attention=attention_for(config))
    bad = random_stream(5, config)
    bad[2, 0, 0] = float("inf")
    with pytest.raises(MemoryInputError, match="NaN or infinite"):
        offline_readout(bad, config=config, attention=attention_for(config))
    with pytest.raises(MemoryInputError, match="go backwards"):
        offline_readout(random_stream(3, config), np.array([0.0, 2.0, 1.0]), config, attention_for(config))


def test_offline_with_only_the_spatial_memory():
    config = MemoryConfig(memories=("spatial",), spatial_frames=2)
    snapshot = offline_readout(torch.randn(10, 256, 1024), config=config)
    assert [item.time_start for item in snapshot.items] == [8.0, 9.0]
