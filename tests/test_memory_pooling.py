"""Spatial pooling (STAR.md §2): the same values, to the bit, as the released model's pooling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vstream.memory import MemoryConfig, SemanticAttention, build_memory, offline_readout, pool
from vstream.memory.base import to_store_grid


def released_pool(features: torch.Tensor, size: int) -> torch.Tensor:
    """The released `compress_spatial_features`, written out: `(n, P, D)` -> `(n, size², D)`."""
    side = round(math.sqrt(features.shape[1]))
    if size == side:
        return features
    if size == 1:
        return features.mean(dim=1, keepdim=True)
    grid = features.view(-1, side, side, features.shape[-1]).permute(0, 3, 1, 2)  # (n, D, side, side)
    pooled = F.avg_pool2d(grid, (side // size, side // size)).permute(0, 2, 3, 1)
    return pooled.reshape(-1, size * size, pooled.shape[-1])


def released_memory_inputs(frames: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the released model pools a clip's frames to: 16→8 for every frame, then 8→4 and 8→1 from that."""
    detail = released_pool(frames, 8)
    return {"spatial": detail, "temporal": released_pool(detail, 4), "abstract": released_pool(detail, 1)}


CASES = [(256, 8), (256, 4), (256, 2), (256, 1), (64, 4), (64, 2), (64, 1), (576, 8), (576, 12), (576, 3)]


@pytest.mark.parametrize(("patches", "size"), CASES)
def test_pool_is_bit_identical_to_the_released_operation_in_float32(patches, size):
    gen = torch.Generator().manual_seed(patches + size)
    for trial in range(40):  # many random inputs, of very different magnitudes and widths
        frames = torch.randn(1 + trial % 5, patches, (16, 32, 1024)[trial % 3], generator=gen)
        frames = frames * 10.0 ** (trial % 7 - 3) + trial % 4
        assert torch.equal(pool(frames, size), released_pool(frames, size)), f"trial {trial}"
    assert torch.equal(pool(frames[0], size), released_pool(frames[:1], size)[0])  # one frame (P, D)
    batched = frames.reshape(1, len(frames), patches, -1)  # any leading dims
    assert torch.equal(pool(batched, size)[0], released_pool(frames, size))


def test_pool_of_a_non_contiguous_tensor_is_the_same():
    frames = torch.randn(6, 256, 64)
    strided = frames.transpose(0, 1).contiguous().transpose(0, 1)  # same values, other memory layout
    for size in (8, 4, 1):
        assert torch.equal(pool(strided, size), released_pool(frames, size))
        assert torch.equal(pool(frames[::2], size), released_pool(frames[::2].contiguous(), size))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_pools_in_its_own_dtype_rounded_once(dtype):
    gen = torch.Generator().manual_seed(0)
    frames = (4 * torch.randn(5, 256, 1024, generator=gen)).to(dtype)
    for size in (8, 4, 1):
        pooled = pool(frames, size)
        assert pooled.dtype == dtype
        assert torch.equal(pooled, released_pool(frames, size))
        exact = pool(frames.float(), size)  # the same frames' values, pooled in float32
        assert torch.equal(pooled, exact.to(dtype))  # accumulated in float32, rounded once
        assert torch.allclose(pooled.float(), exact, rtol=torch.finfo(dtype).eps, atol=0)


def test_pool_of_no_frames():
    assert pool(torch.zeros(0, 256, 16), 8).shape == (0, 64, 16)
    assert pool(torch.zeros(0, 256, 16), 1).shape == (0, 1, 16)


def test_store_grid_reproduces_the_released_two_step_pooling():
    config = MemoryConfig()
    frames = torch.randn(4, 256, 1024, generator=torch.Generator().manual_seed(1))
    released = released_memory_inputs(frames)
    grid = to_store_grid(frames, config)
    assert config.store_grid == 8
    assert torch.equal(grid, released["spatial"])
    assert torch.equal(pool(grid, config.temporal_pool), released["temporal"])
    assert torch.equal(pool(grid, config.abstract_pool), released["abstract"])
    assert torch.equal(pool(grid, config.spatial_pool), released["spatial"])
    assert not torch.equal(pool(frames, 4), released["temporal"])  # one step 16→4 is not the released value


@pytest.mark.parametrize("path", ["streaming", "offline"])
def test_memory_tokens_are_the_released_pooled_features_to_the_bit(path):
    """While the memories hold the frames themselves (few frames), every token is a released pooled value."""
    config = MemoryConfig()
    attention = SemanticAttention.random()
    frames = torch.randn(4, 256, 1024, generator=torch.Generator().manual_seed(2))
    times = np.arange(4.0)
    if path == "streaming":
        memory = build_memory(config, attention)
        for t in range(4):
            memory.update(frames[t], times[t])
        snapshot = memory.readout()
    else:
        snapshot = offline_readout(frames, times, config, attention)
    released = released_memory_inputs(frames)
    for name in ("abstract", "temporal", "retrieved", "spatial"):
        expected = released["spatial" if name == "retrieved" else name]
        for item in snapshot.items_of(name):
            tokens = snapshot.tokens[item.token_start : item.token_end]
            assert torch.equal(tokens, expected[int(item.time_start)]), (name, item)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_spatial_tokens_are_the_released_pooling_in_that_dtype(dtype):
    config = MemoryConfig()
    frames = torch.randn(3, 256, 1024, generator=torch.Generator().manual_seed(3)).to(dtype)
    memory = build_memory(config, SemanticAttention.random())
    memory.update(frames, [0.0, 1.0, 2.0])
    snapshot = memory.readout()
    spatial = snapshot.items_of("spatial")[0]
    expected = released_pool(frames, 8)[2]  # what the released model computes from half-precision features
    assert torch.equal(snapshot.tokens[spatial.token_start : spatial.token_end], expected)
