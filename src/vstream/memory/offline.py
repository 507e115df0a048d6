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

from vstream.memory.attention import SemanticAttention
from vstream.memory.base import Timestamps, check_frames, to_store_grid
from vstream.memory.config import MemoryConfig
from vstream.memory.factory import build_memory
from vstream.memory.kmeans import weighted_kmeans
from vstream.memory.snapshot import MemoryPart, MemorySnapshot, assemble_snapshot
from vstream.memory.star import abstract_offline, heaviest_clusters, pick_distinct_nearest, pool, squared_distances
from vstream.memory.star_memory import frame_part


def offline_readout(
    features: Tensor,
    timestamps: Timestamps | None = None,
    config: MemoryConfig | None = None,
    attention: SemanticAttention | None = None,
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
    grid: Tensor, times: np.ndarray, cfg: MemoryConfig, attention: SemanticAttention | None, dtype: torch.dtype
) -> list[MemoryPart]:
    count = len(times)
    if count == 0:
        return []
    parts = []
    if cfg.uses("abstract"):
        slots = abstract_offline(
            pool(grid, cfg.abstract_pool), cfg.abstract_slots, attention, cfg.abstract_update_ratio
        )
        starts = times[: len(slots)]
        ends = starts if count <= cfg.abstract_slots else np.full(len(slots), times[-1])
        parts.append(MemoryPart("abstract", slots, starts, ends))
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
        k, assignment = len(result.weights), result.assignment
        mean = np.bincount(assignment, times, k) / result.weights
        earliest, latest = np.full(k, np.inf), np.full(k, -np.inf)
        np.minimum.at(earliest, assignment, times)
        np.maximum.at(latest, assignment, times)
        order = np.argsort(mean, kind="stable")
        tokens = centroids[torch.from_numpy(order).to(keys.device)].reshape(k, cfg.temporal_pool**2, cfg.feature_dim)
        parts.append(MemoryPart("temporal", tokens, earliest[order], latest[order], mean[order], result.weights[order]))
        if cfg.uses("retrieved"):
            top = heaviest_clusters(result.weights, mean, cfg.retrieved_frames)
            first = max(count - cfg.retrieval_buffer, 0) if cfg.retrieval_source == "buffer" else 0
            top_centroids = centroids[torch.from_numpy(top).to(keys.device)]
            distances = squared_distances(keys[first:], top_centroids).double().cpu().numpy()
            picked = pick_distinct_nearest(distances, np.arange(first, count))
            picked = picked[np.argsort(times[picked], kind="stable")]
            frames = pool(grid[torch.from_numpy(picked).to(grid.device)], cfg.spatial_pool).to(dtype)
            parts.append(frame_part("retrieved", frames, times[picked]))
    return parts
