"""Abstract memory (STAR.md §3.3): the streaming readout equals the offline computation for every prefix."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from vstream.memory import MemoryConfig, build_memory, offline_readout, pool
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
