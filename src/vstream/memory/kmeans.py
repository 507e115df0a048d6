"""Weighted k-means of the temporal memory (STAR.md §3.2): deterministic, no empty clusters, no NaN.

A centroid is handled as a row of a coefficient matrix `coef` `(K, N)` over the points (each centroid
is the weighted mean of its points), so Lloyd's loop is the same whether distances come from the
`(N, N)` Gram matrix (few points: the streaming case of N_t centroids plus a few new frames) or from
the features themselves (many points: a whole clip). The bookkeeping on small matrices runs in numpy
on the CPU whatever the features' device; only feature-sized products run in torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from vstream.memory.star import squared_distances

GRAM_MAX_POINTS = 256
"""Up to this many points: Gram-matrix distances and Ward-merging initialisation; above it, features and k-means++."""


@dataclass(frozen=True)
class KMeansResult:
    """Outcome of `weighted_kmeans` (all numpy, float64 unless said).

    Attributes:
        coef: `(K, N)`: centroid j is `coef[j] @ points` (cluster j's normalised weights).
        weights: `(K,)`, summed weights of each cluster's points (all > 0).
        assignment: `(N,)` int64, the cluster of each point.
        changed: `(K,)` bool: False where cluster j is exactly anchor point j (see `anchors`), so a caller
            that holds the anchors as its current centroids need not rewrite that row.
        centroid_gram: `(K, K)` centroids' Gram matrix when the points' Gram matrix was used, else None.
        iterations: Lloyd iterations run.
    """

    coef: np.ndarray
    weights: np.ndarray
    assignment: np.ndarray
    changed: np.ndarray
    centroid_gram: np.ndarray | None
    iterations: int

    def centroids(self, points: Tensor | Sequence[Tensor], rows: np.ndarray | None = None) -> Tensor:
        """The centroids `coef[rows] @ points` `(len(rows), M)`, block by block when points come in row blocks."""
        blocks = [points] if isinstance(points, Tensor) else list(points)
        coef = self.coef if rows is None else self.coef[rows]
        result, start = None, 0
        for block in blocks:
            part = torch.from_numpy(coef[:, start : start + len(block)]).to(block.device, block.dtype)
            start += len(block)
            result = part @ block if result is None else result.addmm_(part, block)
        return result


def weighted_kmeans(
    points: Tensor | Sequence[Tensor],
    weights: np.ndarray,
    k: int,
    *,
    max_iters: int = 10,
    tol: float = 1e-4,
    seed: int = 0,
    gram: np.ndarray | None = None,
    anchors: int = 0,
) -> KMeansResult:
    """Cluster weighted points into at most `k` clusters with Lloyd's algorithm.

    With N ≤ k points each point is its own cluster. Otherwise the start is Ward merging (with the Gram
    matrix: repeatedly merge the pair that raises the k-means cost least, the best first step when a few
    new frames join the centroids) or weighted k-means++ seeded by `seed` (many points). Lloyd runs at
    most `max_iters` iterations and stops once the summed centroid movement is below `tol`. An empty
    cluster is re-seeded with the point farthest from its centroid. Same inputs and seed, same result.

    Args:
        points: `(N, M)` float tensor, or row blocks of it (used without concatenating them).
        weights: `(N,)`, positive.
        k: number of clusters (≥ 1).
        gram: optional `(N, N)` `points @ points.T`; computed when N ≤ `GRAM_MAX_POINTS` and not given.
        anchors: the first `anchors` points are the previous centroids: a cluster that is exactly one of
            them keeps its index, so unchanged centroids stay in place (`KMeansResult.changed`).

    Returns:
        a `KMeansResult` with min(N, k) clusters.
    """
    blocks = [points] if isinstance(points, Tensor) else list(points)
    n = sum(len(b) for b in blocks)
    weights = np.asarray(weights, dtype=np.float64)
    if gram is None and n <= GRAM_MAX_POINTS:
        flat = torch.cat(blocks)
        gram = (flat @ flat.T).double().cpu().numpy()
    if n <= k:
        identity = np.eye(n)
        return KMeansResult(identity, weights, np.arange(n), np.arange(n) >= anchors, gram, 0)
    if gram is not None:
        space: _Space = _GramSpace(gram)
        coef = _coefficients(ward_merge_labels(space.pairwise(), weights, k), weights, k)
    else:
        space = _FeatureSpace(torch.cat(blocks))
        coef = np.zeros((k, n))
        coef[np.arange(k), kmeans_plus_plus(space.points, weights, k, seed)] = 1.0
    iterations = 0
    while True:
        d2 = space.distances(coef)
        assignment = _fill_empty_clusters(d2.argmin(axis=1), d2, k)
        updated = _coefficients(assignment, weights, k)
        shift = space.shift(coef, updated)
        coef = updated
        iterations += 1
        if shift < tol or iterations >= max_iters:
            break
    order, changed = _stable_order(coef, anchors)
    coef = coef[order]
    assignment = np.argsort(order)[assignment]
    centroid_gram = coef @ gram @ coef.T if gram is not None else None
    return KMeansResult(coef, np.bincount(assignment, weights, k), assignment, changed, centroid_gram, iterations)


class _Space:
    def distances(self, coef: np.ndarray) -> np.ndarray:
        """`(N, K)` squared distances from every point to every centroid `coef @ points`."""
        raise NotImplementedError

    def shift(self, old: np.ndarray, new: np.ndarray) -> float:
        """Summed Euclidean movement of the centroids from `old` to `new` coefficients."""
        raise NotImplementedError


class _GramSpace(_Space):
    def __init__(self, gram: np.ndarray) -> None:
        self.gram = gram
        self.sq = np.diagonal(gram)

    def pairwise(self) -> np.ndarray:
        return np.maximum(self.sq[:, None] + self.sq[None, :] - 2 * self.gram, 0.0)

    def distances(self, coef: np.ndarray) -> np.ndarray:
        cross = self.gram @ coef.T  # (N, K): <x_i, c_j>
        centroid_sq = np.einsum("kn,nk->k", coef, cross)  # |c_j|²
        return np.maximum(self.sq[:, None] - 2 * cross + centroid_sq[None, :], 0.0)

    def shift(self, old: np.ndarray, new: np.ndarray) -> float:
        delta = new - old
        return float(np.sqrt(np.maximum(((delta @ self.gram) * delta).sum(axis=1), 0.0)).sum())


class _FeatureSpace(_Space):
    def __init__(self, points: Tensor) -> None:
        self.points = points

    def _mix(self, coef: np.ndarray) -> Tensor:
        return torch.from_numpy(coef).to(self.points.device, self.points.dtype) @ self.points

    def distances(self, coef: np.ndarray) -> np.ndarray:
        return squared_distances(self.points, self._mix(coef)).double().cpu().numpy()

    def shift(self, old: np.ndarray, new: np.ndarray) -> float:
        return float(self._mix(new - old).norm(dim=1).sum())


def _coefficients(assignment: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """`(K, N)`: row j holds the normalised weights of cluster j's points (so `coef @ points` are the centroids)."""
    cluster_weights = np.bincount(assignment, weights, k)
    coef = np.zeros((k, len(weights)))
    coef[assignment, np.arange(len(weights))] = weights / cluster_weights[assignment]
    return coef


def _stable_order(coef: np.ndarray, anchors: int) -> tuple[np.ndarray, np.ndarray]:
    """Cluster order in which a cluster equal to anchor point i (alone, coefficient 1) sits at index i.

    Returns:
        `order` (new index t holds old cluster `order[t]`) and `changed` (index t is not such an anchor).
    """
    k = len(coef)
    if anchors == 0:
        return np.arange(k), np.ones(k, dtype=bool)
    single = coef[:, :anchors] == 1.0  # (K, anchors): cluster j is anchor point i and nothing else
    is_anchor = single.any(axis=1)
    order = np.empty(k, dtype=np.int64)
    targets = single[is_anchor].argmax(axis=1)
    order[targets] = np.flatnonzero(is_anchor)
    changed = np.ones(k, dtype=bool)
    changed[targets] = False
    order[changed] = np.flatnonzero(~is_anchor)
    return order, changed


def ward_merge_labels(d2: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """Greedy agglomeration: merge the pair whose union raises the k-means cost least until `k` remain.

    Args:
        d2: `(N, N)` squared distances between the points; updated exactly after each merge, so each
            merge costs O(N) and never touches the features.

    Returns:
        `(N,)` labels in `[0, k)`, numbered by the lowest point index of each group.
    """
    n = len(d2)
    d2 = d2.copy()
    w = weights.astype(np.float64)
    labels = np.arange(n)
    alive = np.ones(n, dtype=bool)
    cost = (w[:, None] * w[None, :] / (w[:, None] + w[None, :])) * d2
    np.fill_diagonal(cost, np.inf)
    for _ in range(n - k):  # N - k merges: one per new frame in streaming
        a, b = sorted(divmod(int(cost.argmin()), n))
        wa, wb = w[a], w[b]
        total = wa + wb
        row = np.maximum((wa * d2[a] + wb * d2[b]) / total - wa * wb * d2[a, b] / total**2, 0.0)
        row[a] = 0.0
        d2[a], d2[:, a] = row, row
        w[a] = total
        alive[b] = False
        labels[labels == b] = a
        merged = np.where(alive, total * w / (total + w) * row, np.inf)
        merged[a] = np.inf
        cost[a], cost[:, a] = merged, merged
        cost[b], cost[:, b] = np.inf, np.inf
    remap = np.full(n, -1)
    remap[alive] = np.arange(k)
    return remap[labels]


def kmeans_plus_plus(points: Tensor, weights: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Weighted k-means++ seeding from a generator seeded with `seed`; returns `(k,)` distinct point indices."""
    rng = np.random.default_rng(seed)
    w = np.asarray(weights, dtype=np.float64)
    chosen = [int(rng.choice(len(w), p=w / w.sum()))]
    closest = squared_distances(points, points[chosen]).squeeze(1).double().cpu().numpy()
    for _ in range(k - 1):  # one pass over the points per seed: whole clips and large chunks only
        probs = w * closest
        probs[chosen] = 0.0
        if probs.sum() > 0:
            idx = int(rng.choice(len(w), p=probs / probs.sum()))
        else:  # every remaining point coincides with a seed: take the first unused one
            unused = np.ones(len(w), dtype=bool)
            unused[chosen] = False
            idx = int(np.flatnonzero(unused)[0])
        chosen.append(idx)
        dist = squared_distances(points, points[idx : idx + 1]).squeeze(1).double().cpu().numpy()
        closest = np.minimum(closest, dist)
    return np.array(chosen)


def _fill_empty_clusters(assignment: np.ndarray, d2: np.ndarray, k: int) -> np.ndarray:
    """Give every empty cluster the point farthest from its own centroid (taken from a cluster of ≥ 2 points)."""
    counts = np.bincount(assignment, minlength=k)
    if counts.all():
        return assignment
    assignment = assignment.copy()
    own = d2[np.arange(len(assignment)), assignment].copy()
    for cluster in np.flatnonzero(counts == 0):  # rare: duplicate or constant frames
        idx = int(np.where(counts[assignment] > 1, own, -1.0).argmax())
        counts[assignment[idx]] -= 1
        assignment[idx] = cluster
        counts[cluster] = 1
        own[idx] = 0.0
    return assignment
