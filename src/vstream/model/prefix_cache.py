"""The LLM state of the prompt up to the end of the memory tokens, kept for the latest snapshot.

The prompt puts the memory before the question (system prompt, `USER: `, memory tokens, then the question), so
the KV cache of that prefix depends only on the snapshot. Computed once per snapshot, it leaves each question
only its own tokens to prefill: follow-up questions, several questions at once, and every question about one
clip in an offline evaluation share it. One entry is kept (the latest snapshot), so its size is bounded.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vstream.memory import MemorySnapshot
from vstream.model.compat import forward_keywords, output_cache


@dataclass
class _Entry:
    snapshot: MemorySnapshot
    ids: tuple[int, ...]
    cache: Any
    length: int


class PrefixCache:
    """The KV cache of [prompt start + memory tokens] for the latest snapshot asked about.

    Args:
        llm: the language model; lock: held during its forward pass (the model's lock).
    """

    def __init__(self, llm: nn.Module, lock: AbstractContextManager) -> None:
        self.llm, self.lock = llm, lock
        self._entry: _Entry | None = None
        self._guard = threading.Lock()
        self.hits = self.misses = 0

    def get(self, snapshot: MemorySnapshot, ids: list[int], embeds: Callable[[], Tensor]) -> tuple[Any, int]:
        """A private copy of the cache of the prefix (tokens `ids`, then the memory of `snapshot`) and its length
        L; unless this snapshot's prefix is held, computed now from `embeds()`, its embeddings `(1, L, H)`."""
        with self.lock:  # one computation of a prefix even when several questions arrive at once
            entry = self._ensure(snapshot, ids, embeds)
            return copy.deepcopy(entry.cache), entry.length

    def warm(self, snapshot: MemorySnapshot, ids: list[int], embeds: Callable[[], Tensor]) -> None:
        """Compute and hold the prefix of `snapshot` now, before anyone asks."""
        with self.lock:
            self._ensure(snapshot, ids, embeds, counted=False)

    def holds(self, snapshot: MemorySnapshot) -> bool:
        """Whether the prefix of `snapshot` is ready."""
        entry = self._entry
        return entry is not None and entry.snapshot is snapshot

    @torch.inference_mode()
    def _ensure(
        self, snapshot: MemorySnapshot, ids: list[int], embeds: Callable[[], Tensor], counted: bool = True
    ) -> _Entry:
        key, entry = tuple(ids), self._entry
        if entry is not None and entry.snapshot is snapshot and entry.ids == key:
            with self._guard:
                self.hits += int(counted)
            return entry
        prefix = embeds()  # only on a miss: projecting the memory is not free
        output = self.llm(inputs_embeds=prefix, use_cache=True, **forward_keywords(self.llm)[1])
        entry = _Entry(snapshot, key, output_cache(output), prefix.shape[1])
        with self._guard:
            self._entry, self.misses = entry, self.misses + int(counted)
        return entry

    def clear(self) -> None:
        """Forget the held prefix (its memory is freed)."""
        with self._guard:
            self._entry = None
