"""STARMemory: Flash-VStream's streaming memory (STAR.md §3), bounded, in fixed buffers.

Per update: frames wait in the spatial FIFO (N_s newest); a frame that leaves it enters the abstract
memory (pending chunk, applied when it reaches N_a frames), the temporal memory (weighted k-means of
the centroids plus the new frames) and the retrieval store. A readout applies the pending chunk to a
copy of the slots, retrieves key frames for the heaviest clusters and puts each memory in readout order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vstream.errors import ConfigError, StateFileError
from vstream.memory.attention import SemanticAttention
from vstream.memory.base import WEIGHTS, BaseMemory
from vstream.memory.buffers import State
from vstream.memory.config import MemoryConfig
from vstream.memory.kmeans import GRAM_MAX_POINTS, weighted_kmeans
from vstream.memory.retrieval import ClusterUpdate, make_store
from vstream.memory.snapshot import MemoryPart, frame_part
from vstream.memory.star import TemporalClusters, abstract_part, abstract_update, cluster_times, pool, temporal_parts

WEIGHTS_PREFIX = WEIGHTS + "attention."
REFRESH_FRAMES = 1024
"""Cached dot products of the centroids (and candidates) are recomputed from the features this often, in frames."""

_COUNTERS = ("fifo_count", "entered", "entered_time", "abstract_ready", "pending_count", "num_clusters")


@dataclass(frozen=True)
class _AbstractStep:
    slots: Tensor
    slot_times: np.ndarray
    pending: Tensor
    pending_times: np.ndarray
    ready: bool


@dataclass(frozen=True)
class _TemporalStep:
    rows: np.ndarray  # centroid rows that change
    new_rows: Tensor  # their new values
    weights: np.ndarray
    mean: np.ndarray
    earliest: np.ndarray
    latest: np.ndarray
    gram: np.ndarray | None  # None: recompute from the centroids
    coef: np.ndarray | None


class STARMemory(BaseMemory):
    """The STAR memory: abstract, temporal, retrieved and spatial (any of them may be switched off).

    Args:
        config: sizes; `config.kind` must be `star`.
        attention: the q/k projections of the model's `attention_model` (needed when the abstract memory is on).
        device: where the state lives; default: the device of the first features.
        store_dir: directory for `retrieval_source="exact"`.

    >>> memory = STARMemory(MemoryConfig(), SemanticAttention.random())
    >>> memory.update(torch.randn(256, 1024), 0.0)
    >>> memory.readout().token_counts()
    {'spatial': 64}
    """

    kind = "star"

    def __init__(
        self,
        config: MemoryConfig,
        attention: SemanticAttention | None = None,
        *,
        device: torch.device | str | None = None,
        store_dir: str | os.PathLike | None = None,
    ) -> None:
        if config.kind != "star":
            raise ConfigError(f"STARMemory needs config.kind='star', got {config.kind!r}")
        super().__init__(config, device=device)
        if config.uses("abstract"):
            if attention is None:
                raise ConfigError(
                    "the abstract memory needs the model's q/k projections: pass attention="
                    "SemanticAttention.from_module(model.attention_model) (or SemanticAttention.random() "
                    "to try things out), or switch it off with memories=(...) without 'abstract'"
                )
            if (attention.feature_dim, attention.hidden_dim) != (config.feature_dim, config.abstract_hidden_dim):
                raise ConfigError(
                    f"semantic attention maps {attention.feature_dim}→{attention.hidden_dim} but the config says "
                    f"feature_dim={config.feature_dim}, abstract_hidden_dim={config.abstract_hidden_dim}"
                )
        self.attention = attention if config.uses("abstract") else None
        self.store = make_store(config, store_dir) if config.uses("retrieved") else None
        self.fifo_count = 0
        self.entered = 0  # frames that left the spatial FIFO
        self.entered_time: float | None = None
        self.abstract_ready = False  # the first N_a frames have become the slots
        self.pending_count = 0
        self.num_clusters = 0

    # ----------------------------------------------------------------- state buffers
    def _allocate(self) -> None:
        cfg, dev, dim = self.config, self.device, self.config.feature_dim
        self.fifo = torch.zeros(cfg.entry_delay, cfg.store_grid**2, dim, device=dev)
        self.fifo_times = np.zeros(cfg.entry_delay)
        if cfg.uses("abstract"):
            shape = (cfg.abstract_slots, cfg.abstract_pool**2, dim)
            self.slots, self.pending = torch.zeros(shape, device=dev), torch.zeros(shape, device=dev)
            self.slot_times, self.pending_times = np.zeros(cfg.abstract_slots), np.zeros(cfg.abstract_slots)
        if cfg.uses("temporal"):
            k = cfg.temporal_clusters
            self.centroids = torch.zeros(k, cfg.temporal_pool**2 * dim, device=dev)
            self.gram = np.zeros((k, k))  # centroids @ centroids.T
            self.weights, self.time_mean, self.time_min, self.time_max = (np.zeros(k) for _ in range(4))
        if self.store is not None:
            self.store.allocate(self.dtype, dev)

    def _state(self) -> State:
        out: State = {"spatial.fifo": self.fifo, "spatial.fifo_times": self.fifo_times}
        if self.config.uses("abstract"):
            out.update(
                {
                    "abstract.slots": self.slots,
                    "abstract.slot_times": self.slot_times,
                    "abstract.pending": self.pending,
                    "abstract.pending_times": self.pending_times,
                }
            )
        if self.config.uses("temporal"):
            out.update(
                {
                    "temporal.centroids": self.centroids,
                    "temporal.gram": self.gram,
                    "temporal.weights": self.weights,
                    "temporal.time_mean": self.time_mean,
                    "temporal.time_min": self.time_min,
                    "temporal.time_max": self.time_max,
                }
            )
        if self.store is not None:
            out.update({f"retrieval.{k}": v for k, v in self.store.state().items()})
        return out

    def _counters(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in _COUNTERS}
        return out | {"store": self.store.counters() if self.store else {}}

    def _restore(self, counters: dict[str, Any]) -> None:
        for name in _COUNTERS:
            setattr(self, name, counters[name])
        if self.store is not None:
            self.store.restore(counters["store"])

    def _weights(self) -> dict[str, Tensor]:
        return {WEIGHTS_PREFIX + k: v for k, v in self.attention.state_dict().items()} if self.attention else {}

    def _check_weights(self, path: str | os.PathLike, saved: dict[str, Tensor]) -> None:
        if self.attention is None:
            return
        saved_attention = SemanticAttention.from_state_dict(saved, prefix=WEIGHTS_PREFIX)
        if saved_attention.fingerprint() != self.attention.fingerprint():
            raise StateFileError(
                f"{path} was written with other abstract-memory weights than the ones given; "
                "its readouts would not continue the saved stream"
            )

    # ----------------------------------------------------------------- update
    def _update(self, grid: Tensor, times: np.ndarray) -> None:
        count = self.fifo_count
        queue = torch.cat([self.fifo[:count], grid]) if count else grid
        queue_times = np.concatenate([self.fifo_times[:count], times])
        leaving = max(len(queue) - self.config.entry_delay, 0)
        if leaving:
            self._enter(queue[:leaving], queue_times[:leaving])
        staying = len(queue) - leaving
        self.fifo[:staying] = queue[leaving:]
        self.fifo_times[:staying] = queue_times[leaving:]
        self.fifo_count = staying

    def _enter(self, frames: Tensor, times: np.ndarray) -> None:
        """Frames leaving the spatial FIFO enter the long-term memories; all is computed before anything changes."""
        cfg = self.config
        abstract = self._abstract_step(pool(frames, cfg.abstract_pool), times) if cfg.uses("abstract") else None
        temporal = None
        if cfg.uses("temporal"):
            keys = pool(frames, cfg.temporal_pool).flatten(1)
            refresh = self.entered // REFRESH_FRAMES != (self.entered + len(times)) // REFRESH_FRAMES
            temporal = self._temporal_step(keys, times, refresh)
        if abstract is not None:
            if abstract.slots is not self.slots:
                self.slots.copy_(abstract.slots)
                self.slot_times[:] = abstract.slot_times
            count = self.pending_count = len(abstract.pending)
            self.pending[:count] = abstract.pending
            self.pending_times[:count] = abstract.pending_times
            self.abstract_ready = abstract.ready
        if temporal is not None:
            k = self.num_clusters = len(temporal.weights)
            self.centroids[torch.from_numpy(temporal.rows).to(self.device)] = temporal.new_rows
            centroids = self.centroids[:k]
            gram = temporal.gram if temporal.gram is not None else (centroids @ centroids.T).double().cpu().numpy()
            self.gram[:k, :k], self.weights[:k], self.time_mean[:k] = gram, temporal.weights, temporal.mean
            self.time_min[:k], self.time_max[:k] = temporal.earliest, temporal.latest
            if self.store is not None:
                details = pool(frames, cfg.spatial_pool).to(self.dtype)
                update = ClusterUpdate(centroids, temporal.weights, temporal.mean, gram, temporal.coef)
                self.store.add(details, keys, times, self.entered, update)
        self.entered += len(times)
        self.entered_time = float(times[-1])

    def _abstract_step(self, tokens: Tensor, times: np.ndarray) -> _AbstractStep:
        """The abstract memory after `tokens` `(m, s_a², D)` arrive: the pending chunk is applied once it is full."""
        n_a = self.config.abstract_slots
        buf = torch.cat([self.pending[: self.pending_count], tokens])
        buf_times = np.concatenate([self.pending_times[: self.pending_count], times])
        slots, slot_times, ready = self.slots, self.slot_times, self.abstract_ready
        if not ready and len(buf) >= n_a:
            slots, slot_times, ready = buf[:n_a], buf_times[:n_a], True
            buf, buf_times = buf[n_a:], buf_times[n_a:]
        if ready:
            full = len(buf) // n_a * n_a
            for start in range(0, full, n_a):  # one pass per complete chunk of N_a frames
                chunk = buf[start : start + n_a]
                slots = abstract_update(slots, chunk, self.attention, self.config.abstract_update_ratio)
            buf, buf_times = buf[full:], buf_times[full:]
        return _AbstractStep(slots, slot_times, buf, buf_times, ready)

    def _temporal_step(self, keys: Tensor, times: np.ndarray, refresh: bool) -> _TemporalStep:
        """Weighted k-means of the centroids plus the frames with `keys` `(m, M)`; unchanged centroids stay put.

        With `refresh`, cached products are recomputed from the features instead of carried forward.
        """
        cfg, k, m = self.config, self.num_clusters, len(keys)
        old = self.centroids[:k]
        weights = np.concatenate([self.weights[:k], np.ones(m)])
        gram = None
        if k + m <= GRAM_MAX_POINTS:  # the cached block plus the new frames' products: no K×K×M product
            gram = np.empty((k + m, k + m))
            gram[:k, :k] = self.gram[:k, :k]
            gram[:k, k:] = (old @ keys.T).double().cpu().numpy()
            gram[k:, :k] = gram[:k, k:].T
            gram[k:, k:] = (keys @ keys.T).double().cpu().numpy()
        result = weighted_kmeans(
            [old, keys],
            weights,
            cfg.temporal_clusters,
            max_iters=cfg.kmeans_max_iters,
            tol=cfg.kmeans_tol,
            seed=cfg.seed + self.entered,
            gram=gram,
            anchors=k,
        )
        rows = np.flatnonzero(result.changed)
        mean, earliest, latest = cluster_times(
            result.assignment,
            len(result.weights),
            weights,
            np.concatenate([self.time_mean[:k], times]),
            np.concatenate([self.time_min[:k], times]),
            np.concatenate([self.time_max[:k], times]),
        )
        carried = not refresh and result.centroid_gram is not None
        return _TemporalStep(
            rows,
            result.centroids([old, keys], rows),
            result.weights,
            mean,
            earliest,
            latest,
            result.centroid_gram if carried else None,
            result.coef if carried else None,
        )

    # ----------------------------------------------------------------- readout
    def _parts(self) -> list[MemoryPart]:
        cfg, parts = self.config, []
        if cfg.uses("abstract") and (self.abstract_ready or self.pending_count):
            parts.append(self._abstract_part())
        if cfg.uses("temporal") and self.num_clusters:
            k = self.num_clusters
            clusters = TemporalClusters(
                self.centroids[:k], self.weights[:k], self.time_mean[:k], self.time_min[:k], self.time_max[:k]
            )
            search = self.store.search if self.store is not None else None
            parts += temporal_parts(clusters, cfg.temporal_pool**2, cfg.readout_order, cfg.retrieved_frames, search)
        if cfg.uses("spatial") and self.fifo_count:
            count = self.fifo_count
            parts.append(frame_part("spatial", pool(self.fifo[:count], cfg.spatial_pool), self.fifo_times[:count]))
        return parts

    def _abstract_part(self) -> MemoryPart:
        cfg, count = self.config, self.pending_count
        slots, first_times = self.pending[:count], self.pending_times[:count]
        if self.abstract_ready:  # else fewer than N_a frames so far: the slots are the frames themselves
            slots, first_times = self.slots, self.slot_times
            if count:  # a readout applies the pending partial chunk to a copy of the slots
                slots = abstract_update(slots, self.pending[:count], self.attention, cfg.abstract_update_ratio)
        return abstract_part(slots, first_times, self.entered, cfg.abstract_slots, self.entered_time)
