"""The LLM state of a prompt's shared prefix (prompt start + memory tokens), kept for the latest one asked about.

The prompt puts the memory before the question (system prompt, `USER: `, memory tokens, then the question), so
the KV cache of that prefix depends only on the snapshot. Computed once per snapshot, it leaves each question
only its own tokens to prefill: follow-up questions, several questions at once, and every question about one
clip in an offline evaluation share it. One entry is kept (the latest prefix), so its size is bounded.
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

from vstream.model.compat import forward_keywords, output_cache


@dataclass(frozen=True)
class PrefixKey:
    """What a prefix is: its token ids, then the embeddings of `owner` (compared by identity, e.g. a snapshot)."""

    owner: object
    ids: tuple[int, ...]

    def matches(self, other: PrefixKey) -> bool:
        """The same prefix: the same owner object and the same ids."""
        return self.owner is other.owner and self.ids == other.ids


@dataclass
class _Entry:
    key: PrefixKey
    cache: Any
    length: int


class PrefixCache:
    """The KV cache of the latest prefix asked about.

    Args:
        llm: the language model; lock: held during its forward pass (the engine's lock).
    """

    def __init__(self, llm: nn.Module, lock: AbstractContextManager) -> None:
        self.llm, self.lock = llm, lock
        self._entry: _Entry | None = None
        self._guard = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: PrefixKey, embeds: Callable[[], Tensor]) -> tuple[Any, int]:
        """A private copy of the cache of prefix `key` and its length L; computed now from `embeds()`, its
        embeddings `(1, L, H)`, unless it is the one held."""
        with self.lock:  # one computation of a prefix even when several questions arrive at once
            entry = self._ensure(key, embeds)
            return copy.deepcopy(entry.cache), entry.length

    def warm(self, key: PrefixKey, embeds: Callable[[], Tensor]) -> None:
        """Compute and hold prefix `key` now, before anyone asks."""
        with self.lock:
            self._ensure(key, embeds, counted=False)

    def holds(self, owner: object) -> bool:
        """Whether the prefix held is that of `owner`."""
        entry = self._entry
        return entry is not None and entry.key.owner is owner

    @torch.inference_mode()
    def _ensure(self, key: PrefixKey, embeds: Callable[[], Tensor], counted: bool = True) -> _Entry:
        entry = self._entry
        if entry is not None and entry.key.matches(key):
            with self._guard:
                self.hits += int(counted)
            return entry
        prefix = embeds()  # only on a miss: projecting the memory is not free
        output = self.llm(inputs_embeds=prefix, use_cache=True, **forward_keywords(self.llm)[1])
        entry = _Entry(key, output_cache(output), prefix.shape[1])
        with self._guard:
            self._entry, self.misses = entry, self.misses + int(counted)
        return entry

    def clear(self) -> None:
        """Forget the held prefix (its memory is freed)."""
        with self._guard:
            self._entry = None
