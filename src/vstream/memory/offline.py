"""The offline path: the memory of a whole clip at once, for training and whole-video evaluation.

Built from the same functions as the streaming memory (STAR.md §3): the last N_s frames are the
spatial memory and every earlier frame goes to the abstract, temporal and retrieved memories, so for
every prefix of a stream the streaming readout matches this one (exactly for the abstract memory; the
temporal memory of a stream approximates the clustering of all its frames). Differentiable with
respect to the semantic-attention weights, so training can run through it.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

from vstream.memory.attention import Projections
from vstream.memory.base import Timestamps, check_frames, to_store_grid
from vstream.memory.config import MemoryConfig
from vstream.memory.factory import build_memory
from vstream.memory.kmeans import weighted_kmeans
from vstream.memory.snapshot import MemoryPart, MemorySnapshot, assemble_snapshot, frame_part
from vstream.memory.star import (
    Search,
    TemporalClusters,
    abstract_offline,
    abstract_part,
    cluster_times,
    pick_distinct_nearest,
    pool,
    temporal_parts,
    tied_squared_distances,
)


def offline_readout(
    features: Tensor,
    timestamps: Timestamps | None = None,
    config: MemoryConfig | None = None,
    attention: Projections | None = None,
    *,
    store_dir: str | os.PathLike | None = None,
) -> MemorySnapshot:
    """Memory tokens of a whole clip.

    Args:
        features: `(T, P, D)`, the clip's frame features in time order (STAR.md §5 files hold them at 1 fps).
        timestamps: `(T,)` seconds; default `0, 1, 2, ...` (1 fps).
        config: memory sizes; default the released model's.
        attention: the q/k projections (needed when the abstract memory is on).
        store_dir: for baselines only; the STAR path searches the whole clip for key frames, whatever
            `retrieval_source` says (except `buffer`, which it honours).

    Returns:
        the same kind of snapshot a stream of these frames would give.

    >>> snap = offline_readout(torch.randn(40, 256, 1024), attention=SemanticAttention.random())
    >>> snap.num_tokens
    681
    """
    config = config or MemoryConfig()
    if timestamps is None and isinstance(features, Tensor):
        timestamps = np.arange(len(features), dtype=np.float64)
    features, times = check_frames(config, features, timestamps)
    if config.kind != "star" or len(times) == 0:
        memory = build_memory(config, attention, device=features.device, store_dir=store_dir)
        memory.update(features, times)
        return memory.readout()
    grid = to_store_grid(features, config)
    older = len(times) - config.entry_delay
    parts = _long_term_parts(grid[: max(older, 0)], times[: max(older, 0)], config, attention, features.dtype)
    if config.uses("spatial"):
        recent = max(older, 0)
        parts.append(frame_part("spatial", pool(grid[recent:], config.spatial_pool), times[recent:]))
    return assemble_snapshot(
        parts,
        dtype=features.dtype,
        dim=config.feature_dim,
        device=features.device,
        frames_seen=len(times),
        latest_time=float(times[-1]),
    )


def _long_term_parts(
    grid: Tensor, times: np.ndarray, cfg: MemoryConfig, attention: Projections | None, dtype: torch.dtype
) -> list[MemoryPart]:
    """The abstract, temporal and retrieved parts of the frames `grid` `(T, g², D)` that left the spatial memory."""
    count = len(times)
    if count == 0:
        return []
    parts = []
    if cfg.uses("abstract"):
        tokens = pool(grid, cfg.abstract_pool)
        slots = abstract_offline(tokens, cfg.abstract_slots, attention, cfg.abstract_update_ratio)
        parts.append(abstract_part(slots, times[: len(slots)], count, cfg.abstract_slots, float(times[-1])))
    if cfg.uses("temporal"):
        keys = pool(grid, cfg.temporal_pool).flatten(1)
        with torch.no_grad():
            result = weighted_kmeans(
                keys,
                np.ones(count),
                cfg.temporal_clusters,
                max_iters=cfg.kmeans_max_iters,
                tol=cfg.kmeans_tol,
                seed=cfg.seed,
            )
            centroids = result.centroids(keys)
        times_of_clusters = cluster_times(result.assignment, len(result.weights), np.ones(count), times, times, times)
        clusters = TemporalClusters(centroids, result.weights, *times_of_clusters)
        search = _clip_search(grid, keys, times, cfg, dtype) if cfg.uses("retrieved") else None
        parts += temporal_parts(clusters, cfg.temporal_pool**2, cfg.readout_order, cfg.retrieved_frames, search)
    return parts


def _clip_search(grid: Tensor, keys: Tensor, times: np.ndarray, cfg: MemoryConfig, dtype: torch.dtype) -> Search:
    """Retrieval over the clip's own frames (`buffer`: only the latest N_buff of them), as the stores search."""
    first = max(len(times) - cfg.retrieval_buffer, 0) if cfg.retrieval_source == "buffer" else 0

    def search(centers: Tensor, cluster_ids: np.ndarray) -> tuple[Tensor, np.ndarray]:
        distances = tied_squared_distances(keys[first:], centers).double().cpu().numpy()
        picked = pick_distinct_nearest(distances, np.arange(first, len(times)), times[first:])
        frames = pool(grid[torch.from_numpy(picked).to(grid.device)], cfg.spatial_pool).to(dtype)
        return frames, times[picked]

    return search
