"""Weighted k-means (STAR.md §3.2): recovers clusters, deterministic, never empty, never NaN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vstream.memory.kmeans import GRAM_MAX_POINTS, weighted_kmeans


def blobs(sizes: list[int], dim: int = 48, spread: float = 0.05, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    centers = 4.0 * torch.randn(len(sizes), dim, generator=gen)
    points = torch.cat([c + spread * torch.randn(n, dim, generator=gen) for c, n in zip(centers, sizes, strict=True)])
    order = torch.randperm(len(points), generator=gen)
    labels = np.concatenate([np.full(n, i) for i, n in enumerate(sizes)])
    return points[order], labels[order.numpy()]


@pytest.mark.parametrize("sizes", [[10, 30, 5, 20], [100, 60, 80, 40, 30]], ids=["gram", "features"])
def test_recovers_separated_blobs_with_their_sizes(sizes):
    points, labels = blobs(sizes)
    assert (len(points) <= GRAM_MAX_POINTS) == (sum(sizes) <= GRAM_MAX_POINTS)
    result = weighted_kmeans(points, np.ones(len(points)), len(sizes))
    for cluster in range(len(sizes)):  # every cluster is exactly one blob
        assert len(set(labels[result.assignment == cluster])) == 1
    assert sorted(result.weights.tolist()) == sorted(float(n) for n in sizes)
    centroids = result.centroids(points)
    for cluster in range(len(sizes)):
        mean = points[torch.from_numpy(result.assignment == cluster)].mean(dim=0)
        assert torch.allclose(centroids[cluster], mean, atol=1e-5)


def test_weights_are_summed_and_centroids_weighted():
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [11.0, 0.0]])
    weights = np.array([3.0, 1.0, 1.0, 1.0])
    result = weighted_kmeans(points, weights, 2)
    assert sorted(result.weights.tolist()) == [2.0, 4.0]
    left = int(np.flatnonzero(result.weights == 4.0)[0])
    assert result.centroids(points)[left].tolist() == pytest.approx([0.25, 0.0])


@pytest.mark.parametrize("n", [60, 400])
def test_same_seed_same_result(n):
    points = torch.randn(n, 32, generator=torch.Generator().manual_seed(3))
    weights = np.random.default_rng(0).integers(1, 5, n).astype(float)
    first = weighted_kmeans(points, weights, 7, seed=11)
    second = weighted_kmeans(points, weights, 7, seed=11)
    assert np.array_equal(first.assignment, second.assignment)
    assert torch.equal(first.centroids(points), second.centroids(points))
    assert first.weights.sum() == pytest.approx(weights.sum())


@pytest.mark.parametrize("n", [40, 300])
def test_constant_and_duplicate_points_give_no_nan_and_no_empty_cluster(n):
    constant = torch.ones(n, 16)
    result = weighted_kmeans(constant, np.ones(n), 5)
    assert (result.weights > 0).all() and result.weights.sum() == n
    assert torch.isfinite(result.centroids(constant)).all()
    duplicates = torch.cat([torch.zeros(n // 2, 16), torch.ones(n - n // 2, 16)])
    result = weighted_kmeans(duplicates, np.ones(n), 5)
    assert (result.weights > 0).all() and result.weights.sum() == n
    assert torch.isfinite(result.centroids(duplicates)).all()


def test_few_points_are_their_own_clusters():
    points = torch.randn(3, 8)
    result = weighted_kmeans(points, np.array([2.0, 1.0, 4.0]), 5)
    assert torch.equal(result.centroids(points), points)
    assert result.weights.tolist() == [2.0, 1.0, 4.0]


def test_lloyd_stops_within_max_iters():
    points = torch.randn(500, 8, generator=torch.Generator().manual_seed(0))
    assert weighted_kmeans(points, np.ones(500), 10, max_iters=3).iterations <= 3


def test_gram_matrix_and_row_blocks_give_the_same_clustering():
    points, _ = blobs([12, 9, 7])
    old, new = points[:20], points[20:]
    whole = weighted_kmeans(points, np.ones(28), 3)
    blocks = weighted_kmeans([old, new], np.ones(28), 3, gram=(points @ points.T).double().numpy())
    assert np.array_equal(whole.assignment, blocks.assignment)
    assert torch.allclose(whole.centroids(points), blocks.centroids([old, new]), atol=1e-5)


def test_unchanged_anchor_centroids_keep_their_index():
    gen = torch.Generator().manual_seed(0)
    anchors = 5.0 * torch.randn(4, 8, generator=gen)
    near_third = anchors[2:3] + 0.01 * torch.randn(1, 8, generator=gen)
    points = torch.cat([anchors, near_third])
    result = weighted_kmeans(points, np.array([5.0, 5.0, 5.0, 5.0, 1.0]), 4, anchors=4)
    assert result.changed.tolist() == [False, False, True, False]
    centroids = result.centroids(points)
    for i in (0, 1, 3):
        assert torch.equal(centroids[i], anchors[i])
    assert result.weights.tolist() == [5.0, 5.0, 6.0, 5.0]
