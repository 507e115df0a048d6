"""Baseline memories behind the STAR interface, for ablations: each keeps `num_frames` frames at `frame_pool`.

- `uniform`: N frames spread evenly over the whole stream (the usual offline approach).
- `sliding`: the last N frames.
- `recent`: the last N frames, at a grid chosen to match STAR's token budget (`config.recent_config`): the
  "no memory at all" baseline every memory method should be reported beside.
- `drop` / `merge`: while more than N frames are kept, find the most similar adjacent pair (cosine) and
  drop its later frame, or average the two (weighted by the frames each stands for).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from vstream.memory.base import BaseMemory
from vstream.memory.buffers import State, shift_rows_left
from vstream.memory.config import MemoryConfig
from vstream.memory.snapshot import MemoryPart
from vstream.memory.star import pick_distinct_nearest


class _FrameMemory(BaseMemory):
    """Shared buffers: `capacity` frames at `frame_pool`, with times and frame counts."""

    kind = ""
    capacity: int

    def _allocate(self) -> None:
        cfg = self.config
        self.frames = torch.zeros(
            self.capacity, cfg.frame_pool**2, cfg.feature_dim, dtype=self._store_dtype(), device=self.device
        )
        self.times = np.zeros((self.capacity, 3))  # start, end, mean
        self.weights = np.zeros(self.capacity)
        self.count = 0

    def _store_dtype(self) -> torch.dtype:
        return self.dtype

    def _state(self) -> State:
        return {"frames": self.frames, "times": self.times, "weights": self.weights}

    def _counters(self) -> dict[str, Any]:
        return {"count": self.count}

    def _restore(self, counters: dict[str, Any]) -> None:
        for name, value in counters.items():
            setattr(self, name, value)

    def _part(self, rows: np.ndarray) -> MemoryPart:
        times = self.times[rows]
        frames = self.frames[torch.from_numpy(rows).to(self.frames.device)]
        return MemoryPart(self.kind, frames, times[:, 0], times[:, 1], times[:, 2], self.weights[rows])

    def _write(self, rows: np.ndarray, frames: Tensor, times: np.ndarray) -> None:
        self.frames[torch.from_numpy(np.asarray(rows)).to(self.frames.device)] = frames.to(self.frames.dtype)
        self.times[rows] = np.asarray(times)[:, None]
        self.weights[rows] = 1.0


class SlidingWindowMemory(_FrameMemory):
    """The last `num_frames` frames, in a ring buffer (kinds `sliding` and `recent`)."""

    kind = "sliding"

    def __init__(self, config: MemoryConfig, *, device: torch.device | str | None = None) -> None:
        super().__init__(config, device=device)
        self.kind = config.kind
        self.capacity = config.num_frames

    def _update(self, grid: Tensor, times: np.ndarray) -> None:
        take = min(len(grid), self.capacity)
        first = self.frames_seen + len(grid) - take
        self._write((first + np.arange(take)) % self.capacity, grid[-take:], times[-take:])
        self.count = min(self.count + len(grid), self.capacity)

    def _parts(self) -> list[MemoryPart]:
        oldest = self.frames_seen - self.count
        return [self._part((oldest + np.arange(self.count)) % self.capacity)]


class UniformMemory(_FrameMemory):
    """N frames evenly spread over the stream so far, from a bounded sample.

    Keeps every `stride`-th frame (at most 2N, doubling the stride when full) plus the newest one; a
    readout takes, for each of the N evenly spaced frame indices of the stream, the nearest kept frame.
    Exact while the stream has at most 2N frames; afterwards each pick is within stride/2 frames of
    its ideal position.
    """

    kind = "uniform"

    def __init__(self, config: MemoryConfig, *, device: torch.device | str | None = None) -> None:
        super().__init__(config, device=device)
        self.capacity = 2 * config.num_frames + 1  # the last row holds the newest frame
        self.stride = 1

    def _allocate(self) -> None:
        super()._allocate()
        self.index = np.zeros(self.capacity, dtype=np.int64)

    def _state(self) -> State:
        return super()._state() | {"index": self.index}

    def _counters(self) -> dict[str, Any]:
        return {"count": self.count, "stride": self.stride}

    def _update(self, grid: Tensor, times: np.ndarray) -> None:
        limit = self.capacity - 1
        new_index = self.frames_seen + np.arange(len(grid))
        stride = self.stride
        while True:  # at most log2(stream length) doublings
            old = np.flatnonzero(self.index[: self.count] % stride == 0)
            new = np.flatnonzero(new_index % stride == 0)
            if len(old) + len(new) <= limit:
                break
            stride *= 2
        kept = len(old)
        self.frames[:kept] = self.frames[torch.from_numpy(old).to(self.frames.device)]
        for buffer in (self.times, self.weights, self.index):  # compact the survivors to the front
            buffer[:kept] = buffer[old]
        rows = np.arange(kept, kept + len(new))
        self._write(rows, grid[torch.from_numpy(new).to(grid.device)], times[new])
        self.index[rows] = new_index[new]
        self._write(np.array([limit]), grid[-1:], times[-1:])
        self.index[limit] = new_index[-1]
        self.count, self.stride = kept + len(new), stride

    def _parts(self) -> list[MemoryPart]:
        rows = np.arange(self.count)
        if self.count == 0 or self.index[self.count - 1] != self.index[-1]:
            rows = np.append(rows, self.capacity - 1)
        total = self.frames_seen
        targets = np.round(np.linspace(0, total - 1, min(self.config.num_frames, total)))
        picked = pick_distinct_nearest(np.abs(self.index[rows][:, None] - targets[None, :]), rows)
        return [self._part(picked[np.argsort(self.index[picked], kind="stable")])]


class SimilarityMemory(_FrameMemory):
    """`drop` or `merge`: shrink the most similar adjacent pair until `num_frames` remain."""

    def __init__(self, config: MemoryConfig, *, device: torch.device | str | None = None) -> None:
        super().__init__(config, device=device)
        self.kind = config.kind
        self.capacity = config.num_frames + 1

    def _store_dtype(self) -> torch.dtype:
        return torch.float32  # merged frames are running averages

    def _allocate(self) -> None:
        super()._allocate()
        self.similarity = np.zeros(self.capacity)  # row i vs row i+1

    def _state(self) -> State:
        return super()._state() | {"similarity": self.similarity}

    def _similarity(self, i: int) -> None:
        a, b = self.frames[i].flatten(), self.frames[i + 1].flatten()
        self.similarity[i] = float(torch.nn.functional.cosine_similarity(a, b, dim=0, eps=1e-8))

    def _update(self, grid: Tensor, times: np.ndarray) -> None:
        for frame, time in zip(grid, times, strict=True):  # greedy and sequential by nature
            self._write(np.array([self.count]), frame[None], np.array([time]))
            self.count += 1
            if self.count > 1:
                self._similarity(self.count - 2)
            if self.count > self.config.num_frames:
                self._shrink(int(self.similarity[: self.count - 1].argmax()))

    def _shrink(self, i: int) -> None:
        """Fold row i+1 into row i (merge) or drop it, then close the gap."""
        if self.kind == "merge":
            w = self.weights[i : i + 2]
            total = w.sum()
            self.frames[i] = (self.frames[i] * float(w[0]) + self.frames[i + 1] * float(w[1])) / float(total)
            self.times[i, 1] = self.times[i + 1, 1]
            self.times[i, 2] = (self.times[i : i + 2, 2] * w).sum() / total
            self.weights[i] = total
        last = self.count - 1
        for buffer in self._state().values():
            shift_rows_left(buffer, i + 1, last)
        self.count = last
        for j in (i - 1, i):
            if 0 <= j < self.count - 1:
                self._similarity(j)

    def _parts(self) -> list[MemoryPart]:
        return [self._part(np.arange(self.count))]
