"""Abstract memory (STAR.md §3.3): the streaming readout equals the offline computation for every prefix."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from vstream.memory import MemoryConfig, SemanticAttention, build_memory, offline_readout, pool
from vstream.memory.star import abstract_offline, abstract_update

from conftest import attention_for, random_stream

CONFIG = MemoryConfig(num_patches=64, feature_dim=32, abstract_hidden_dim=8)  # released counts, small frames


def abstract_tokens(snapshot) -> torch.Tensor:
    items = snapshot.items_of("abstract")
    if not items:
        return torch.empty(0, CONFIG.feature_dim)
    return snapshot.tokens[items[0].token_start : items[-1].token_end]


def test_streaming_equals_offline_for_every_prefix_and_differs_from_naive_updates():
    attention = attention_for(CONFIG)
    frames = random_stream(200, CONFIG, seed=1)
    memory = build_memory(CONFIG, attention)
    tokens = pool(frames, 1)  # (200, 1, D): one token per frame
    for t in range(200):
        memory.update(frames[t], float(t))
        streamed = abstract_tokens(memory.readout())
        entered = t + 1 - CONFIG.spatial_frames  # the newest frame is still in the spatial memory
        expected = abstract_offline(tokens[:entered], CONFIG.abstract_slots, attention, CONFIG.abstract_update_ratio)
        assert streamed.shape == (min(entered, 25), CONFIG.feature_dim)
        assert torch.allclose(streamed, expected.flatten(0, 1), atol=1e-5), f"prefix {t + 1}"
        offline = abstract_tokens(offline_readout(frames[: t + 1], config=CONFIG, attention=attention))
        assert torch.allclose(streamed, offline, atol=1e-5), f"prefix {t + 1}"

    # The trap of STAR.md §3.3: one frame at a time makes the softmax run over a single key.
    naive = tokens[:25]
    for t in range(25, 199):
        naive = abstract_update(naive, tokens[t : t + 1], attention, CONFIG.abstract_update_ratio)
    assert (streamed - naive.flatten(0, 1)).abs().max() > 1e-2


@pytest.mark.parametrize("seed", [0, 1])
def test_chunked_updates_equal_frame_by_frame(seed):
    attention = attention_for(CONFIG)
    frames = random_stream(140, CONFIG, seed=seed)
    chunks = np.random.default_rng(seed).integers(1, 40, 20).cumsum()
    chunks = [0, *[int(c) for c in chunks if c < 140], 140]
    chunked, single = build_memory(CONFIG, attention), build_memory(CONFIG, attention)
    for start, stop in itertools.pairwise(chunks):
        chunked.update(frames[start:stop], np.arange(start, stop))
    for t in range(140):
        single.update(frames[t], t)
    assert torch.allclose(abstract_tokens(chunked.readout()), abstract_tokens(single.readout()), atol=1e-5)


def test_abstract_provenance_spans_from_each_slots_first_frame_to_the_latest():
    memory = build_memory(CONFIG, attention_for(CONFIG))
    memory.update(random_stream(60, CONFIG), np.arange(60) * 2.0)
    items = memory.readout().items_of("abstract")
    assert [item.time_start for item in items] == [2.0 * i for i in range(25)]
    assert {item.time_end for item in items} == {2.0 * 58}  # frame 59 is the spatial memory
    assert all(item.weight is None for item in items)


def released_attention(slots, chunk, attention, ratio):
    """The released update, written out: slots and chunk flattened to tokens, one softmax per slot token over all
    the chunk's tokens."""
    dim = slots.shape[-1]
    memory, new = slots.reshape(-1, dim), chunk.reshape(-1, dim)
    query = memory @ attention.q_weight.T + attention.q_bias
    key = new @ attention.k_weight.T + attention.k_bias
    weight = ratio * torch.softmax(query @ key.T / math.sqrt(attention.hidden_dim), dim=1)  # (N_a·T, n·T)
    return (memory * (1 - weight.sum(dim=1, keepdim=True)) + weight @ new).reshape(slots.shape)


@pytest.mark.parametrize("tokens", [1, 4, 9])
def test_abstract_update_with_several_tokens_per_slot_is_the_released_definition(tokens):
    attention = SemanticAttention.random(feature_dim=6, hidden_dim=4, seed=2)
    gen = torch.Generator().manual_seed(tokens)
    slots, chunk = torch.randn(3, tokens, 6, generator=gen), torch.randn(5, tokens, 6, generator=gen)
    expected = released_attention(slots, chunk, attention, 0.2)
    assert torch.allclose(abstract_update(slots, chunk, attention, 0.2), expected, atol=1e-6)
    if tokens > 1:  # not one attention per token position (each position's keys only): that is another memory
        per_position = torch.stack(
            [released_attention(slots[:, i : i + 1], chunk[:, i : i + 1], attention, 0.2)[:, 0] for i in range(tokens)],
            dim=1,
        )
        assert (per_position - expected).abs().max() > 1e-3


def test_streaming_equals_offline_for_every_prefix_with_several_tokens_per_slot():
    config = CONFIG.replace(abstract_pool=2)
    attention = attention_for(config)
    frames = random_stream(80, config, seed=3)
    tokens = pool(frames, 2)  # (80, 4, D)
    memory = build_memory(config, attention)
    for t in range(80):
        memory.update(frames[t], float(t))
        snapshot = memory.readout()
        items = snapshot.items_of("abstract")
        streamed = snapshot.tokens[items[0].token_start : items[-1].token_end] if items else snapshot.tokens[:0]
        entered = t + 1 - config.spatial_frames
        expected = abstract_offline(tokens[:entered], config.abstract_slots, attention, config.abstract_update_ratio)
        assert streamed.shape == (4 * min(entered, 25), config.feature_dim)
        assert all(item.num_tokens == 4 for item in items)
        assert torch.allclose(streamed, expected.flatten(0, 1), atol=1e-5), f"prefix {t + 1}"
        offline = offline_readout(frames[: t + 1], config=config, attention=attention)
        off_items = offline.items_of("abstract")
        assert off_items == items
        if items:
            offline_tokens = offline.tokens[off_items[0].token_start : off_items[-1].token_end]
            assert torch.allclose(streamed, offline_tokens, atol=1e-5), f"prefix {t + 1}"


def test_a_zero_query_makes_the_abstract_update_a_plain_average():
    """The ablation `abstract_average` (benchmarks/star_ablation.py) zeroes q: every score is then equal, and an
    update is A ← (1-λ)A + λ·mean(chunk), whatever k is."""
    from vstream.model.modeling_vstream import SemanticAttentionModule

    torch.manual_seed(0)
    attention = SemanticAttentionModule(32, 8)
    attention.q_proj.weight.data.zero_()
    attention.q_proj.bias.data.zero_()
    slots, chunk = torch.randn(4, 1, 32), torch.randn(4, 1, 32)
    averaged = abstract_update(slots, chunk, attention, 0.2)
    torch.testing.assert_close(averaged, 0.8 * slots + 0.2 * chunk.mean(dim=0, keepdim=True), rtol=0, atol=1e-6)
