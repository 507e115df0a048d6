"""MemorySnapshot: the tokens a memory hands to the model, with the provenance of every token."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class MemoryItem:
    """One slot, centroid or frame of a snapshot: a run of consecutive tokens and what it stands for.

    Attributes:
        memory: `abstract`, `temporal`, `retrieved`, `spatial`, or a baseline's kind.
        token_start: index of its first token in `MemorySnapshot.tokens`; num_tokens: how many.
        time_start, time_end: stream time (s) of the earliest and latest frame it stands for.
        time_mean: weighted mean time of those frames (temporal centroids and merged frames); else None.
        weight: how many frames it stands for (temporal centroids, merged frames, single frames = 1);
            None for abstract slots, which blend every frame that entered the abstract memory.
    """

    memory: str
    token_start: int
    num_tokens: int
    time_start: float
    time_end: float
    time_mean: float | None = None
    weight: float | None = None

    @property
    def token_end(self) -> int:
        """One past its last token."""
        return self.token_start + self.num_tokens


@dataclass(frozen=True)
class MemorySnapshot:
    """A consistent readout of a memory: `tokens` `(N, D)` in readout order, and one `MemoryItem` per group.

    Attributes:
        tokens: `(N, D)` in the features' dtype; N ≤ the config's `num_tokens`.
        items: token groups in token order (STAR.md §3: abstract, temporal, retrieved, spatial; inside the
            temporal and retrieved memories by time or as the released model was trained, `readout_order`).
        frames_seen: frames given to the memory so far.
        latest_time: stream time (s) of the newest frame seen, or None before the first.
    """

    tokens: Tensor
    items: tuple[MemoryItem, ...]
    frames_seen: int
    latest_time: float | None

    @property
    def num_tokens(self) -> int:
        """N, the number of tokens."""
        return self.tokens.shape[0]

    @property
    def is_empty(self) -> bool:
        """True before any frame has been seen (no tokens)."""
        return self.num_tokens == 0

    def token_counts(self) -> dict[str, int]:
        """Tokens per memory, in readout order."""
        counts: dict[str, int] = {}
        for item in self.items:
            counts[item.memory] = counts.get(item.memory, 0) + item.num_tokens
        return counts

    def items_of(self, memory: str) -> list[MemoryItem]:
        """The items of one memory, in token order."""
        return [item for item in self.items if item.memory == memory]

    def item_of_token(self, index: int) -> MemoryItem:
        """The item that token `index` belongs to."""
        for item in self.items:
            if item.token_start <= index < item.token_end:
                return item
        raise IndexError(f"token {index} is outside the snapshot's {self.num_tokens} tokens")

    def token_memories(self) -> list[str]:
        """The memory of every token, `N` names."""
        return [item.memory for item in self.items for _ in range(item.num_tokens)]

    def summary(self) -> dict:
        """JSON-able description without the tokens (for logs, the server and the web page)."""
        return {
            "frames_seen": self.frames_seen,
            "latest_time": self.latest_time,
            "num_tokens": self.num_tokens,
            "token_counts": self.token_counts(),
            "items": [asdict(item) for item in self.items],
        }


@dataclass(frozen=True)
class MemoryPart:
    """One memory's contribution to a snapshot, before assembly (internal to the memory package).

    `tokens` is `(items, tokens_each, D)`; the time/weight sequences have one entry per item.
    """

    memory: str
    tokens: Tensor
    time_start: Sequence[float] | np.ndarray
    time_end: Sequence[float] | np.ndarray
    time_mean: Sequence[float] | np.ndarray | None = None
    weight: Sequence[float] | np.ndarray | None = None


def frame_part(memory: str, tokens: Tensor, times: np.ndarray) -> MemoryPart:
    """A memory part made of single frames `(n, tokens, D)` at `times` (each stands for itself: weight 1)."""
    return MemoryPart(memory, tokens, times, times, times, np.ones(len(times)))


def assemble_snapshot(
    parts: Sequence[MemoryPart],
    *,
    dtype: torch.dtype,
    dim: int,
    device: torch.device | str | None,
    frames_seen: int,
    latest_time: float | None,
) -> MemorySnapshot:
    """Concatenate memory parts, frame-major then token-major, and number their tokens."""
    items: list[MemoryItem] = []
    flat: list[Tensor] = []
    start = 0
    for part in parts:
        count, per_item = part.tokens.shape[:2]
        starts, ends = _floats(part.time_start), _floats(part.time_end)
        means = _floats(part.time_mean) if part.time_mean is not None else [None] * count
        weights = _floats(part.weight) if part.weight is not None else [None] * count
        for i in range(count):
            items.append(MemoryItem(part.memory, start, per_item, starts[i], ends[i], means[i], weights[i]))
            start += per_item
        flat.append(part.tokens.reshape(count * per_item, -1).to(dtype))
    tokens = torch.cat(flat) if flat else torch.empty(0, dim, dtype=dtype, device=device)
    return MemorySnapshot(tokens, tuple(items), frames_seen, latest_time)


def _floats(values: Sequence[float] | np.ndarray) -> list[float]:
    return np.asarray(values, dtype=np.float64).tolist()
