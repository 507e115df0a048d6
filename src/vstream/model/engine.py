"""The engine: prompt embeddings in, text out. Owns the LLM, its lock and the prefix KV cache; runs the decode loop.

The narrow interface between questions and the LLM: a `Prompt` is embeddings in two parts (a prefix shared by
every question about one memory snapshot, then the question's own part) and `stream` yields the answer's text
pieces as they are decoded, then returns a `Generation`. Another backend (e.g. a vLLM server started with
`--enable-prompt-embeds`) can stand behind the same interface.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vstream.model.generation import Detokenizer, GenerationOptions, generate_tokens
from vstream.model.prefix_cache import PrefixCache, PrefixKey


@dataclass(frozen=True)
class Prompt:
    """A prompt as embeddings: `prefix()` `(1, Lp, H)`, computed only when its KV cache is not held, then `suffix`
    `(1, Ls, H)`. `key` names the prefix (its ids and the snapshot its memory comes from)."""

    key: PrefixKey
    prefix: Callable[[], Tensor]
    suffix: Tensor


@dataclass(frozen=True)
class Generation:
    """What decoding a prompt produced and cost.

    Attributes:
        prompt_tokens: positions the LLM read; new_tokens: tokens generated (the EOS included when reached);
        ttft_s: seconds from `began` to the first generated token; total_s: to the last; stop_reason: `eos` or `length`.
    """

    text: str
    prompt_tokens: int
    new_tokens: int
    ttft_s: float
    total_s: float
    tokens_per_s: float
    stop_reason: str


class Engine:
    """Decodes prompts given as embeddings with an in-process transformers LLM.

    One forward pass runs at a time (the lock); prompts decoded from several threads interleave step by step.

    Args:
        llm: the language model; tokenizer: to turn tokens into text and to know the EOS.
        cache_prefix: keep the KV cache of the latest prompt prefix (shared by questions about one snapshot).
    """

    def __init__(self, llm: nn.Module, tokenizer: Any, *, cache_prefix: bool = True) -> None:
        self.llm, self.tokenizer = llm, tokenizer
        self.lock = threading.RLock()
        self._prefix_cache = PrefixCache(llm, self.lock) if cache_prefix else None
        eos = tokenizer.eos_token_id
        self.eos_ids = {eos} if isinstance(eos, int) else set(eos or [])

    def stream(
        self, prompt: Prompt, options: GenerationOptions, began: float | None = None
    ) -> Generator[str, None, Generation]:
        """Yield the text pieces of the answer as they are decoded; return the `Generation` (`yield from` gets it).

        `began` (a `time.perf_counter()` value) is when the question was asked; default now.
        """
        began = time.perf_counter() if began is None else began
        if self._prefix_cache is not None:  # the prefix's KV cache, shared by every question about its snapshot
            past, prefix_length = self._prefix_cache.get(prompt.key, prompt.prefix)
            rest = prompt.suffix
        else:
            prefix = prompt.prefix()
            past, prefix_length, rest = None, prefix.shape[1], torch.cat([prefix, prompt.suffix], dim=1)
        detok = Detokenizer(self.tokenizer)
        first, count, stop = None, 0, "length"
        for token in generate_tokens(self.llm, rest, options, self.eos_ids, self.lock, past=past):
            first = first or time.perf_counter()
            count += 1
            if token in self.eos_ids:
                stop = "eos"
                break
            piece = detok.push(token)
            if piece:
                yield piece
        tail = detok.flush()
        if tail:
            yield tail
        done = time.perf_counter()
        decoding = done - (first or done)
        return Generation(
            text=detok.text.strip(),
            prompt_tokens=prefix_length + prompt.suffix.shape[1],
            new_tokens=count,
            ttft_s=(first or done) - began,
            total_s=done - began,
            tokens_per_s=(count - 1) / decoding if count > 1 and decoding > 0 else 0.0,
            stop_reason=stop,
        )

    def generate(self, prompt: Prompt, options: GenerationOptions, began: float | None = None) -> Generation:
        """The whole `Generation` of a prompt."""
        pieces = self.stream(prompt, options, began)
        while True:
            try:
                next(pieces)
            except StopIteration as done:
                return done.value

    def prefill(self, key: PrefixKey, prefix: Callable[[], Tensor]) -> None:
        """Compute the KV cache of a prefix now, so the next prompt that starts with it prefills only the rest
        (a no-op without the prefix cache)."""
        if self._prefix_cache is not None:
            self._prefix_cache.warm(key, prefix)

    def holds_prefix(self, owner: object) -> bool:
        """Whether the prefix cache holds the prefix of `owner` (a snapshot)."""
        return self._prefix_cache is not None and self._prefix_cache.holds(owner)

    def clear_prefix_cache(self) -> None:
        """Forget the cached prefix (its memory is freed)."""
        if self._prefix_cache is not None:
            self._prefix_cache.clear()

    def cache_stats(self) -> dict[str, int]:
        """`prefix_cache_hits` and `prefix_cache_misses` so far; empty without the prefix cache."""
        if self._prefix_cache is None:
            return {}
        return {"prefix_cache_hits": self._prefix_cache.hits, "prefix_cache_misses": self._prefix_cache.misses}
