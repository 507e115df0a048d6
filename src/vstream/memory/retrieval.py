"""Where the retrieved memory looks for key frames (STAR.md §3.4, `retrieval_source`).

- `CandidateStore` (default): a few frames nearest to each temporal centroid, hard-capped; whole stream.
- `BufferStore`: the latest N_buff frames (the paper's description); blind to older frames.
- `ExactStore`: every past frame, appended to files on disk and memory-mapped for search; never in RAM.

Each stores a frame twice: its `s_s`×`s_s` tokens (what the LLM gets) and its flattened `s_t`×`s_t`
pooling (the key compared with temporal centroids). Frames and keys live on the memory's device;
times and other per-frame scalars in numpy.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vstream.errors import ConfigError, StateFileError
from vstream.memory.buffers import State
from vstream.memory.config import MemoryConfig
from vstream.memory.star import (
    heaviest_clusters,
    keep_nearest_per_cluster,
    log_spaced_recent,
    pick_distinct_nearest,
    tied_squared_distances,
)


@dataclass(frozen=True)
class ClusterUpdate:
    """The temporal clusters after an update, as the retrieval store needs them.

    Attributes:
        centroids: `(K, M)` float32, on the memory's device.
        weights, times: `(K,)` each cluster's weight and weighted mean time.
        gram: `(K, K)` `centroids @ centroids.T`.
        coef: `(K, k + m)` when the new centroids are `coef @ [old centroids; new keys]`, so that cached
            products can be mixed instead of recomputed; None to recompute them.
    """

    centroids: Tensor
    weights: np.ndarray
    times: np.ndarray
    gram: np.ndarray
    coef: np.ndarray | None


class FrameStore(ABC):
    """Frames that retrieval may return, searched by nearest key to a centroid."""

    def __init__(self, config: MemoryConfig) -> None:
        self.config = config
        self.frame_shape = (config.spatial_pool**2, config.feature_dim)
        self.key_dim = config.temporal_pool**2 * config.feature_dim

    @abstractmethod
    def allocate(self, dtype: torch.dtype, device: torch.device) -> None:
        """Create the (fixed-size) buffers."""

    @abstractmethod
    def add(self, frames: Tensor, keys: Tensor, times: np.ndarray, first: int, clusters: ClusterUpdate) -> None:
        """Offer new frames `(m, s_s², D)` with keys `(m, M)` and times `(m,)`, the first being the `first`-th frame
        to enter the long-term memories, given the updated clusters."""

    @abstractmethod
    def search(self, centers: Tensor, cluster_ids: np.ndarray) -> tuple[Tensor, np.ndarray]:
        """Nearest distinct stored frame for each centroid `centers` `(r, M)` (cluster `cluster_ids`, in rank
        order; ties in distance go to the earlier frame): the frames `(r', s_s², D)` and their times, in that order."""

    @abstractmethod
    def state(self) -> State:
        """Buffers to save, by name."""

    def counters(self) -> dict[str, Any]:
        """Scalars to save next to the buffers."""
        return {}

    def restore(self, counters: dict[str, Any]) -> None:
        """Take back what `counters()` gave (after `allocate`, with the buffers of `state()` already refilled)."""
        return None


class _SlabStore(FrameStore):
    """Fixed-capacity slots: frames and keys on the device; times and a validity mask in numpy."""

    capacity: int

    def allocate(self, dtype: torch.dtype, device: torch.device) -> None:
        cap = self.capacity
        self.frames = torch.zeros((cap, *self.frame_shape), dtype=dtype, device=device)
        self.keys = torch.zeros((cap, self.key_dim), dtype=dtype, device=device)
        self.times = np.zeros(cap)
        self.valid = np.zeros(cap, dtype=bool)

    def _write(self, slots: np.ndarray, frames: Tensor, keys: Tensor, times: np.ndarray) -> None:
        index = torch.from_numpy(slots).to(self.frames.device)
        self.frames[index] = frames.to(self.frames.dtype)
        self.keys[index] = keys.to(self.keys.dtype)
        self.times[slots] = times
        self.valid[slots] = True

    def search(self, centers: Tensor, cluster_ids: np.ndarray) -> tuple[Tensor, np.ndarray]:
        slots = np.flatnonzero(self.valid)
        # From the stored keys, as the offline path computes them: equal frames get equal distances (exact ties).
        distances = tied_squared_distances(self.keys.float(), centers).double().cpu().numpy()[slots]
        picked = pick_distinct_nearest(distances, slots, self.times[slots])
        return self.frames[torch.from_numpy(picked).to(self.frames.device)], self.times[picked]

    def state(self) -> State:
        return {"frames": self.frames, "keys": self.keys, "times": self.times, "valid": self.valid}


class CandidateStore(_SlabStore):
    """A bounded set of frames that covers the whole stream: near every centroid, and dense among recent frames.

    Keeps the frames nearest to each temporal centroid (clusters take turns, heaviest first), up to
    `nearest_candidates`, plus a log-spaced sample of the recent frames, up to `recent_candidates`. The
    sample matters for clusters that are still growing: their centroids move towards frames that were
    not near them when they arrived, and the sample keeps such frames at hand until the cluster settles.

    Caches each candidate's squared norm and its dot products with the centroids. A new centroid is a
    convex mix of old centroids and new frames (`ClusterUpdate.coef`), so the products follow by mixing
    the cached ones with those of the new frames: a frame costs `capacity` dot products, not
    `capacity × K`. Mixing is convex, so rounding errors do not grow. A search (once per readout, r centroids)
    computes its distances from the stored keys instead, so that equal frames tie exactly (STAR.md §3.4).
    """

    def __init__(self, config: MemoryConfig) -> None:
        super().__init__(config)
        self.capacity = config.candidate_capacity

    def allocate(self, dtype: torch.dtype, device: torch.device) -> None:
        super().allocate(dtype, device)
        self.index = np.zeros(self.capacity, dtype=np.int64)  # order of arrival in the stream
        self.key_sq = np.zeros(self.capacity)
        self.cross = np.zeros((self.capacity, self.config.temporal_clusters))

    def state(self) -> State:
        return super().state() | {"index": self.index, "key_sq": self.key_sq, "cross": self.cross}

    def add(self, frames: Tensor, keys: Tensor, times: np.ndarray, first: int, clusters: ClusterUpdate) -> None:
        stored = self.keys.float()
        k = len(clusters.weights)
        if clusters.coef is not None:
            old = clusters.coef.shape[1] - len(keys)
            fresh = (stored @ keys.T).double().cpu().numpy()  # (capacity, m)
            cross = np.concatenate([self.cross[:, :old], fresh], axis=1) @ clusters.coef.T
        else:
            cross = (stored @ clusters.centroids.T).double().cpu().numpy()
        new_keys = keys.to(self.keys.dtype).float()
        new_sq = torch.linalg.vector_norm(new_keys, dim=1).double().square().cpu().numpy()
        new_cross = (new_keys @ clusters.centroids.T).double().cpu().numpy()
        centroid_sq = np.diagonal(clusters.gram)
        d2 = np.concatenate([self.key_sq[:, None] - 2 * cross, new_sq[:, None] - 2 * new_cross]) + centroid_sq
        d2[: self.capacity][~self.valid] = np.inf
        order = heaviest_clusters(clusters.weights, clusters.times, k)
        nearest = keep_nearest_per_cluster(d2, order, self.config.nearest_candidates)
        index = np.concatenate([self.index, first + np.arange(len(keys))])
        recent = log_spaced_recent(index, first + len(keys) - 1, self.config.recent_candidates)
        recent[: self.capacity] &= self.valid
        keep = np.zeros(len(index), dtype=bool)
        keep[nearest] = True
        keep = np.flatnonzero((keep | recent) & np.isfinite(d2[:, 0]))  # never keep an empty slot
        new = keep[keep >= self.capacity] - self.capacity
        self.cross[:, :k] = cross
        self.valid[:] = False
        self.valid[keep[keep < self.capacity]] = True
        free = np.flatnonzero(~self.valid)[: len(new)]
        self._write(
            free,
            frames[torch.from_numpy(new).to(frames.device)],
            keys[torch.from_numpy(new).to(keys.device)],
            times[new],
        )
        self.index[free] = index[self.capacity + new]
        self.key_sq[free] = new_sq[new]
        self.cross[free, :k] = new_cross[new]


class BufferStore(_SlabStore):
    """A ring buffer of the latest `retrieval_buffer` frames."""

    def __init__(self, config: MemoryConfig) -> None:
        super().__init__(config)
        self.capacity = config.retrieval_buffer
        self.added = 0

    def add(self, frames: Tensor, keys: Tensor, times: np.ndarray, first: int, clusters: ClusterUpdate) -> None:
        count = len(frames)
        take = min(count, self.capacity)
        slots = (self.added + count - take + np.arange(take)) % self.capacity
        self._write(slots, frames[-take:], keys[-take:], times[-take:])
        self.added += count

    def counters(self) -> dict[str, Any]:
        return {"added": self.added}

    def restore(self, counters: dict[str, Any]) -> None:
        self.added = int(counters["added"])


class ExactStore(FrameStore):
    """Every frame that entered the long-term memories, appended to files in `directory` and memory-mapped.

    RAM stays flat; disk grows by (s_s² + s_t²)·D values per frame. A restored state rewinds the files to
    its own frame count, so a directory belongs to one stream.
    """

    SCAN_ROWS = 2048

    def __init__(self, config: MemoryConfig, directory: str | os.PathLike | None) -> None:
        super().__init__(config)
        if directory is None:
            raise ConfigError("retrieval_source='exact' keeps every frame on disk: pass store_dir=<a directory>")
        self.directory = Path(directory)
        self.count = 0

    def allocate(self, dtype: torch.dtype, device: torch.device) -> None:
        self.dtype, self.device = dtype, device
        self.directory.mkdir(parents=True, exist_ok=True)
        item = torch.empty((), dtype=dtype).element_size()
        self._row_bytes = {
            "frames": self.frame_shape[0] * self.frame_shape[1] * item,
            "keys": self.key_dim * item,
            "times": 8,
        }
        for name in self._row_bytes:
            self._path(name).touch()  # rows past `count` are stale and get overwritten

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.bin"

    def _read(self, name: str, start: int, stop: int) -> Tensor:
        row = self._row_bytes[name]
        raw = np.memmap(self._path(name), dtype=np.uint8, mode="r", offset=start * row, shape=((stop - start) * row,))
        dtype = torch.float64 if name == "times" else self.dtype
        return torch.from_numpy(np.array(raw)).view(dtype).reshape(stop - start, -1)

    def add(self, frames: Tensor, keys: Tensor, times: np.ndarray, first: int, clusters: ClusterUpdate) -> None:
        data = {
            "frames": frames.to(self.dtype),
            "keys": keys.to(self.dtype),
            "times": torch.from_numpy(np.ascontiguousarray(times, dtype=np.float64)),
        }
        for name, tensor in data.items():
            with open(self._path(name), "r+b") as f:
                f.seek(self.count * self._row_bytes[name])
                f.write(tensor.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes())
        self.count += len(frames)

    def search(self, centers: Tensor, cluster_ids: np.ndarray) -> tuple[Tensor, np.ndarray]:
        r = centers.shape[0]
        best_d, best_i = np.empty((0, r)), np.empty(0, dtype=np.int64)
        for start in range(0, self.count, self.SCAN_ROWS):  # bounded RAM: one block of keys at a time
            stop = min(start + self.SCAN_ROWS, self.count)
            d2 = tied_squared_distances(self._read("keys", start, stop).to(centers), centers).double().cpu().numpy()
            best_d, best_i = np.concatenate([best_d, d2]), np.concatenate([best_i, np.arange(start, stop)])
            # each cluster's r nearest so far suffice for picking r distinct frames
            top = np.unique(np.argsort(best_d, axis=0, kind="stable")[:r].reshape(-1))
            best_d, best_i = best_d[top], best_i[top]
        picked = pick_distinct_nearest(best_d, best_i, best_i)  # ids are the order of arrival
        frames = [self._read("frames", i, i + 1).reshape(1, *self.frame_shape) for i in picked]
        times = np.array([float(self._read("times", i, i + 1)) for i in picked])
        stacked = torch.cat(frames) if frames else torch.empty((0, *self.frame_shape), dtype=self.dtype)
        return stacked.to(self.device), times

    def state(self) -> State:
        return {}

    def counters(self) -> dict[str, Any]:
        return {"count": self.count, "directory": str(self.directory)}

    def restore(self, counters: dict[str, Any]) -> None:
        count = int(counters["count"])
        for name, row in self._row_bytes.items():
            if self._path(name).stat().st_size < count * row:
                raise StateFileError(f"exact frame store {self.directory} holds fewer than the saved {count} frames")
        for name, row in self._row_bytes.items():
            os.truncate(self._path(name), count * row)
        self.count = count


def make_store(config: MemoryConfig, store_dir: str | os.PathLike | None = None) -> FrameStore:
    """The frame store that `config.retrieval_source` names."""
    if config.retrieval_source == "candidates":
        return CandidateStore(config)
    if config.retrieval_source == "buffer":
        return BufferStore(config)
    return ExactStore(config, store_dir)
