"""The pure functions of STAR.md §2–3: pooling, the semantic-attention update, retrieval helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vstream.memory import SemanticAttention
from vstream.memory.star import (
    abstract_offline,
    abstract_update,
    heaviest_clusters,
    keep_nearest_per_cluster,
    pick_distinct_nearest,
    pool,
)


def test_pool_averages_square_blocks_row_major():
    grid = torch.arange(16, dtype=torch.float32).reshape(16, 1)  # a 4×4 grid, value = row*4 + col
    pooled = pool(grid, 2).flatten().tolist()
    assert pooled == [(0 + 1 + 4 + 5) / 4, (2 + 3 + 6 + 7) / 4, (8 + 9 + 12 + 13) / 4, (10 + 11 + 14 + 15) / 4]
    assert pool(grid, 1).item() == pytest.approx(7.5)
    assert pool(grid, 4) is grid


def test_pool_composes_and_batches():
    frames = torch.randn(3, 256, 32)
    assert torch.allclose(pool(pool(frames, 8), 4), pool(frames, 4), atol=1e-6)
    assert torch.allclose(pool(pool(frames, 4), 1), pool(frames, 1), atol=1e-6)
    assert torch.allclose(pool(frames, 8)[1], pool(frames[1], 8))
    with pytest.raises(ValueError):
        pool(frames, 17)  # finer than the 16×16 grid
    # a side that does not divide the grid (the `recent` baseline's budget) averages overlapping windows
    grid = frames.reshape(3, 16, 16, 32).permute(0, 3, 1, 2)
    expected = torch.nn.functional.adaptive_avg_pool2d(grid, 3).permute(0, 2, 3, 1).reshape(3, 9, 32)
    assert torch.allclose(pool(frames, 3), expected)


def test_abstract_update_is_the_formula_of_star_md():
    torch.manual_seed(0)
    attention = SemanticAttention.random(feature_dim=6, hidden_dim=4, seed=1)
    slots, chunk, ratio = torch.randn(3, 1, 6), torch.randn(5, 1, 6), 0.2
    expected = torch.empty_like(slots)
    for i in range(3):  # one slot at a time, straight from the formula
        q = attention.q_weight @ slots[i, 0] + attention.q_bias
        k = chunk[:, 0] @ attention.k_weight.T + attention.k_bias
        s = torch.softmax(k @ q / math.sqrt(4), dim=0)
        w = ratio * s
        expected[i, 0] = slots[i, 0] * (1 - w.sum()) + w @ chunk[:, 0]
    assert torch.allclose(abstract_update(slots, chunk, attention, ratio), expected, atol=1e-6)


def test_abstract_offline_slots_are_the_frames_until_there_are_more_than_n_a():
    attention = SemanticAttention.random(feature_dim=6, hidden_dim=4)
    frames = torch.randn(7, 1, 6)
    assert torch.equal(abstract_offline(frames[:5], 5, attention, 0.2), frames[:5])
    expected = abstract_update(frames[:5], frames[5:], attention, 0.2)
    assert torch.equal(abstract_offline(frames, 5, attention, 0.2), expected)


def test_heaviest_clusters_ties_go_to_the_earlier_time():
    weights = np.array([3.0, 5.0, 5.0, 1.0])
    times = np.array([0.0, 9.0, 4.0, 2.0])
    assert heaviest_clusters(weights, times, 3).tolist() == [2, 1, 0]


def test_pick_distinct_nearest_gives_each_cluster_its_nearest_unused_frame():
    distances = np.array([[0.0, 0.1], [5.0, 0.2], [1.0, 9.0]])  # frame 0 is nearest to both clusters
    assert pick_distinct_nearest(distances).tolist() == [0, 1]
    assert pick_distinct_nearest(distances, np.array([10, 11, 12])).tolist() == [10, 11]
    assert pick_distinct_nearest(distances[:1]).tolist() == [0]  # fewer frames than clusters


def test_keep_nearest_per_cluster_keeps_every_clusters_nearest_first():
    distances = np.array([[0.0, 9.0], [1.0, 8.0], [2.0, 7.0], [9.0, 0.5], [9.0, 0.6]])
    assert keep_nearest_per_cluster(distances, np.array([0, 1]), 2).tolist() == [0, 3]
    assert keep_nearest_per_cluster(distances, np.array([0, 1]), 3).tolist() == [0, 1, 3]
    assert keep_nearest_per_cluster(distances, np.array([1, 0]), 3).tolist() == [0, 3, 4]
