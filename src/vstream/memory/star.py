"""Pure tensor functions of the STAR memory (STAR.md §2–3): pooling, the abstract update, clusters, retrieval, readout.

No state, no I/O, no threads: the streaming memory and the offline path are both built from these, so each rule
(pooling, the update, cluster times, the order inside a memory, which frames are retrieved) is written once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vstream.memory.attention import Projections
from vstream.memory.snapshot import MemoryPart, frame_part

Search = Callable[[Tensor, np.ndarray], tuple[Tensor, np.ndarray]]
"""`search(centroids, cluster_ids)`: for centroids `(r, M)` of clusters `cluster_ids` `(r,)` in rank order, the nearest
distinct frames `(r', s_s², D)` (r' ≤ r) and their times `(r',)`, in the same order (a `FrameStore.search`)."""


def pool(features: Tensor, size: int) -> Tensor:
    """Average-pool each frame's square patch grid to `size`×`size` tokens, row-major (STAR.md §2).

    The released model's operation, so the values are the same to the bit: `F.avg_pool2d` on the channels-first
    grid `(n, D, √P, √P)` (kernel and stride √P/size) for size > 1, and the mean over all P patches for size 1.
    Computed in the features' dtype (half precision accumulates in float32 and is rounded once).

    Args:
        features: `(..., P, D)`, the P patches forming a √P×√P grid, row-major.
        size: output side, 1..√P. A side that does not divide √P (only the `recent` baseline asks for one, to
            match a token budget) averages overlapping windows (`F.adaptive_avg_pool2d`); STAR sizes always divide.

    Returns:
        `(..., size*size, D)`. `pool(F, √P)` is F itself. Pooling composes in exact arithmetic (16→8→4 equals
        16→4), not to the last bit: pool in the same steps as the released model for the same values.
    """
    *lead, patches, dim = features.shape
    side = math.isqrt(patches)
    if side * side != patches or not 1 <= size <= side:
        raise ValueError(f"cannot pool a {patches}-patch frame to {size}×{size}")
    if size == side:
        return features
    frames = features.reshape(-1, patches, dim)
    if side % size:
        grid = frames.reshape(-1, side, side, dim).permute(0, 3, 1, 2)
        pooled = F.adaptive_avg_pool2d(grid, size).permute(0, 2, 3, 1)
    elif size == 1:
        pooled = frames.mean(dim=1, keepdim=True)
    else:
        # A view, channels-last in memory: avg_pool2d's fastest CPU kernel; its output permuted back is contiguous.
        grid = frames.reshape(-1, side, side, dim).permute(0, 3, 1, 2)
        pooled = F.avg_pool2d(grid, side // size).permute(0, 2, 3, 1)
    return pooled.reshape(*lead, size * size, dim)


def abstract_update(slots: Tensor, chunk: Tensor, attention: Projections, ratio: float) -> Tensor:
    """One semantic-attention update of the abstract slots with a chunk of frames (STAR.md §3.3).

    As the released model: the slots are flattened to `A` `(N_a·T, D)` and the chunk to `X` `(n·T, D)`; every slot
    token attends to every token of every frame of the chunk at once: `S = softmax(q(A)·k(X)ᵀ/√d)` over the n·T
    keys, `W = λS`, `A ← A⊙(1−rowsum W) + W·X`. With s_a = 1 (T = 1) that is one token per slot and per frame.

    Args:
        slots: `(N_a, T, D)`; chunk: `(n, T, D)`, same dtype; T = s_a².
        attention: the q/k projections; ratio: λ.

    Returns:
        the new slots, `(N_a, T, D)`.
    """
    dim = slots.shape[-1]
    memory, new = slots.reshape(-1, dim), chunk.reshape(-1, dim)
    scores = attention.query(memory) @ attention.key(new).T / math.sqrt(attention.hidden_dim)  # (N_a·T, n·T)
    weights = torch.softmax(scores, dim=-1) * ratio
    decay = weights.sum(dim=1, keepdim=True)
    return (memory * (1 - decay) + weights @ new).reshape(slots.shape)


def abstract_offline(frames: Tensor, num_slots: int, attention: Projections, ratio: float) -> Tensor:
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


def abstract_part(slots: Tensor, first_times: np.ndarray, entered: int, num_slots: int, latest: float) -> MemoryPart:
    """The abstract memory's readout: while at most N_a frames have entered, the slots are those frames (each
    stands for its own time); after that each slot spans from its first frame to the latest frame that entered.

    Args:
        slots: `(min(entered, N_a), s_a², D)`; first_times: `(len(slots),)` the time of each slot's first frame.
        entered: frames that entered the abstract memory; num_slots: N_a; latest: time of the newest of them.
    """
    ends = first_times if entered <= num_slots else np.full(len(slots), latest)
    return MemoryPart("abstract", slots, first_times, ends)


def squared_distances(points: Tensor, centers: Tensor) -> Tensor:
    """Squared Euclidean distances, `(N, M) × (K, M) -> (N, K)`, clamped at 0."""
    cross = points @ centers.T
    points_sq = torch.linalg.vector_norm(points, dim=1).square()
    centers_sq = torch.linalg.vector_norm(centers, dim=1).square()
    return (points_sq[:, None] - 2 * cross + centers_sq[None, :]).clamp_min_(0.0)


def tied_squared_distances(points: Tensor, centers: Tensor) -> Tensor:
    """Squared Euclidean distances, `(N, M) × (K, M) -> (N, K)`, from sums of squared differences: equal points get
    bit-equal distances on every backend, which a matrix product does not promise (on a CPU with AMX, rows of one
    product rounded differently by their place in a tile). For the retrieval searches, where equal frames must tie
    (STAR.md §3.4) and K is small."""
    rows = max(1, 4_194_304 // max(1, centers.shape[0] * centers.shape[1]))  # about 16 MB of float32 at a time
    parts = [(block[:, None, :] - centers[None, :, :]).square().sum(-1) for block in torch.split(points, rows)]
    return torch.cat(parts) if parts else points.new_zeros((0, centers.shape[0]))


@dataclass(frozen=True)
class TemporalClusters:
    """The temporal memory's clusters, in the clustering's own order (STAR.md §3.2).

    Attributes:
        centroids: `(K, s_t²·D)`, each centroid's pooled tokens flattened.
        weights: `(K,)` frames each stands for; time_mean: `(K,)` their weighted mean time;
        time_start, time_end: `(K,)` the earliest and latest of them.
    """

    centroids: Tensor
    weights: np.ndarray
    time_mean: np.ndarray
    time_start: np.ndarray
    time_end: np.ndarray


def cluster_times(
    assignment: np.ndarray,
    clusters: int,
    weights: np.ndarray,
    time_mean: np.ndarray,
    time_start: np.ndarray,
    time_end: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each cluster's weighted mean, earliest and latest time, from those of its points.

    A point is a frame (weight 1; its time three times) or an earlier centroid (its weight and times).

    Args:
        assignment: `(N,)` the cluster of each point, in `[0, clusters)`, every cluster non-empty.
        weights, time_mean, time_start, time_end: `(N,)` each point's.

    Returns:
        `(K,)` weighted mean times, `(K,)` earliest, `(K,)` latest.
    """
    mean = np.bincount(assignment, weights * time_mean, clusters) / np.bincount(assignment, weights, clusters)
    earliest, latest = np.full(clusters, np.inf), np.full(clusters, -np.inf)
    np.minimum.at(earliest, assignment, time_start)
    np.maximum.at(latest, assignment, time_end)
    return mean, earliest, latest


def readout_positions(times: np.ndarray, readout_order: str) -> np.ndarray:
    """Where the items of the temporal or retrieved memory go in a readout (STAR.md §3, `readout_order`).

    Args:
        times: `(n,)` the items' times (a centroid's weighted mean time, a retrieved frame's time), in the order
            they come in: cluster order for centroids, rank order (heaviest cluster first) for retrieved frames.
        readout_order: `time`: by time, ties keeping the order they come in; `released`: the order they come in.

    Returns:
        `(n,)` indices into the items, in readout order.
    """
    if readout_order == "time":
        return np.argsort(times, kind="stable")
    if readout_order == "released":
        return np.arange(len(times))
    raise ValueError(f"readout_order must be 'time' or 'released', got {readout_order!r}")


def temporal_parts(
    clusters: TemporalClusters,
    tokens_each: int,
    readout_order: str,
    retrieved_frames: int = 0,
    search: Search | None = None,
) -> list[MemoryPart]:
    """The temporal memory's readout and, with `search`, the retrieved memory's (STAR.md §3.2, §3.4).

    Retrieval: the `retrieved_frames` heaviest clusters (ties: earlier weighted mean time, then lower cluster
    index), and for each the nearest stored frame not taken by a heavier cluster, as `search` finds them.

    Args:
        clusters: the clusters in the clustering's own order; tokens_each: s_t².
        readout_order: see `readout_positions`.

    Returns:
        `[temporal]`, or `[temporal, retrieved]` with `search`.
    """
    count = len(clusters.weights)
    order = readout_positions(clusters.time_mean, readout_order)
    centroids = clusters.centroids
    tokens = centroids[torch.from_numpy(order).to(centroids.device)].reshape(count, tokens_each, -1)
    parts = [
        MemoryPart(
            "temporal",
            tokens,
            clusters.time_start[order],
            clusters.time_end[order],
            clusters.time_mean[order],
            clusters.weights[order],
        )
    ]
    if search is not None:
        top = heaviest_clusters(clusters.weights, clusters.time_mean, retrieved_frames)
        frames, times = search(centroids[torch.from_numpy(top).to(centroids.device)], top)
        order = readout_positions(times, readout_order)
        parts.append(frame_part("retrieved", frames[torch.from_numpy(order).to(frames.device)], times[order]))
    return parts


def heaviest_clusters(weights: np.ndarray, times: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` heaviest clusters, heaviest first (STAR.md §3.4).

    Ties in weight go to the earlier weighted mean time, then to the lower index: explicit keys, never a sort's
    tie order. So when every weight is equal (a clip of at most N_t frames) the earliest clusters are taken.
    """
    index = np.arange(len(weights))
    return np.lexsort((index, np.asarray(times), -np.asarray(weights)))[:count]


def pick_distinct_nearest(
    distances: np.ndarray, ids: np.ndarray | None = None, earlier: np.ndarray | None = None
) -> np.ndarray:
    """For each cluster in rank order, the nearest frame not already picked by a heavier cluster.

    Args:
        distances: `(M, r)`, frame-to-cluster distances; clusters (columns) in rank order.
        ids: optional `(M,)` ids of those frames; default `arange(M)`.
        earlier: optional `(M,)` the frames' times (or order of arrival): ties in distance go to the earlier
            frame; default: to the earlier row.

    Returns:
        the picked frames' ids, `(min(r, M),)`, in cluster rank order, without duplicates.
    """
    count = min(distances.shape)
    rows = np.arange(len(distances)) if earlier is None else np.lexsort((np.arange(len(distances)), earlier))
    ranked = np.argsort(distances[rows], axis=0, kind="stable")  # rows are in tie order, so stable sorting keeps it
    order = rows[ranked[:count]]  # per cluster, its `count` nearest frames
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
