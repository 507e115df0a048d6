"""Pure tensor functions of the STAR memory (STAR.md §2–3): pooling, the abstract update, retrieval.

No state, no I/O, no threads: the streaming memory and the offline path are both built from these.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from vstream.memory.attention import SemanticAttention


def pool(features: Tensor, size: int) -> Tensor:
    """Average-pool each frame's square patch grid to `size`×`size` tokens, row-major (STAR.md §2).

    Args:
        features: `(..., P, D)`, the P patches forming a √P×√P grid, row-major.
        size: output side; must divide √P.

    Returns:
        `(..., size*size, D)`. `pool(F, √P)` is F itself; pooling composes (16→8→4 equals 16→4).
    """
    *lead, patches, dim = features.shape
    side = math.isqrt(patches)
    if side * side != patches or side % size:
        raise ValueError(f"cannot pool a {patches}-patch frame to {size}×{size}")
    k = side // size
    if k == 1:
        return features
    # Two means over adjacent axes: much faster on CPU than one mean over two strided axes.
    columns = features.reshape(*lead, side, size, k, dim).mean(dim=-2)
    return columns.reshape(*lead, size, k, size, dim).mean(dim=-3).reshape(*lead, size * size, dim)


def abstract_update(slots: Tensor, chunk: Tensor, attention: SemanticAttention, ratio: float) -> Tensor:
    """One semantic-attention update of the abstract slots with a chunk of frames (STAR.md §3.3).

    `S = softmax(q(A)·k(X)ᵀ/√d)` over the chunk's frames, `W = λS`, `A ← A⊙(1−rowsum W) + W·X`,
    done independently at each of the slot's token positions (one position when s_a = 1).

    Args:
        slots: `(N_a, T, D)`; chunk: `(n, T, D)`, same dtype.
        attention: the q/k projections; ratio: λ.

    Returns:
        the new slots, `(N_a, T, D)`.
    """
    q = attention.query(slots)  # (N_a, T, d)
    k = attention.key(chunk)  # (n, T, d)
    scores = torch.einsum("atd,ntd->tan", q, k) / math.sqrt(attention.hidden_dim)
    weights = ratio * torch.softmax(scores, dim=-1)  # (T, N_a, n)
    keep = (1.0 - weights.sum(dim=-1)).transpose(0, 1).unsqueeze(-1)  # (N_a, T, 1)
    return slots * keep + torch.einsum("tan,ntd->atd", weights, chunk)


def abstract_offline(frames: Tensor, num_slots: int, attention: SemanticAttention, ratio: float) -> Tensor:
    """Abstract slots of a whole clip: the first N_a frames, then the rest in consecutive chunks of N_a.

    Args:
        frames: `(T, T_a, D)`, one pooled frame per row, in time order.

    Returns:
        `(min(T, N_a), T_a, D)`; with T ≤ N_a the slots are the frames themselves.
    """
    slots = frames[:num_slots]
    for start in range(num_slots, len(frames), num_slots):
        slots = abstract_update(slots, frames[start : start + num_slots], attention, ratio)
    return slots


def squared_distances(points: Tensor, centers: Tensor) -> Tensor:
    """Squared Euclidean distances, `(N, M) × (K, M) -> (N, K)`, clamped at 0."""
    cross = points @ centers.T
    points_sq = torch.linalg.vector_norm(points, dim=1).square()
    centers_sq = torch.linalg.vector_norm(centers, dim=1).square()
    return (points_sq[:, None] - 2 * cross + centers_sq[None, :]).clamp_min_(0.0)


def heaviest_clusters(weights: np.ndarray, times: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` heaviest clusters, heaviest first; ties go to the earlier timestamp (STAR.md §3.4)."""
    return np.lexsort((times, -np.asarray(weights)))[:count]


def pick_distinct_nearest(distances: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
    """For each cluster in rank order, the nearest frame not already picked by a heavier cluster.

    Args:
        distances: `(M, r)`, frame-to-cluster distances; clusters (columns) in rank order.
        ids: optional `(M,)` ids of those frames; default `arange(M)`.

    Returns:
        the picked frames' ids, `(min(r, M),)`, in cluster rank order, without duplicates.
    """
    count = min(distances.shape)
    order = np.argsort(distances, axis=0, kind="stable")[:count]  # per cluster, its `count` nearest frames
    picked: list[int] = []
    for column in order.T[:count]:  # r ≤ a handful of clusters: a short loop at readout, not per frame
        picked.append(next(int(i) for i in column if i not in picked))
    chosen = np.array(picked, dtype=np.int64)
    return chosen if ids is None else np.asarray(ids)[chosen]


def keep_nearest_per_cluster(distances: np.ndarray, cluster_order: np.ndarray, capacity: int) -> np.ndarray:
    """Which candidate frames to keep: each cluster's nearest, then each one's second nearest, ... up to `capacity`.

    Clusters take turns in `cluster_order` (heaviest first), so every cluster keeps its nearest frame
    whenever `capacity` ≥ the number of clusters.

    Args:
        distances: `(M, K)`, candidate-to-centroid distances.
        cluster_order: `(K,)`, the order in which clusters pick within each round.
        capacity: frames to keep at most.

    Returns:
        sorted indices of the kept candidates, `(min(M, capacity),)`.
    """
    ranked = np.argsort(distances[:, cluster_order], axis=0, kind="stable")  # row r: every cluster's r-th nearest
    sequence = ranked.reshape(-1)  # round-major: every cluster's nearest, then every second nearest, ...
    candidates, first_seen = np.unique(sequence, return_index=True)
    return np.sort(candidates[np.argsort(first_seen, kind="stable")][:capacity])


def log_spaced_recent(index: np.ndarray, newest: int, budget: int, per_level: int = 4) -> np.ndarray:
    """Which frames a recency sample keeps: all of the newest `per_level`, then every 2nd, every 4th, ...

    Frame `i` at age `a = newest - i` is kept when `i` is a multiple of `2**floor(log2(a / per_level + 1))`;
    the stride only grows with age, so a frame once dropped is never wanted again. Of those, the
    newest `budget` are kept.

    Args:
        index: `(M,)` frame indices (order of arrival in the stream); newest: the newest frame's index.

    Returns:
        `(M,)` bool mask.
    """
    age = newest - index
    level = np.floor(np.log2(age / per_level + 1)).astype(np.int64)
    keep = index % (1 << level) == 0
    kept = np.flatnonzero(keep)
    if len(kept) > budget:
        keep[kept[np.argsort(-index[kept], kind="stable")[budget:]]] = False
    return keep
