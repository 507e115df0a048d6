"""The decode loop of the in-process engine: token ids from prompt embeddings, one at a time, and their text.

`generate_tokens` takes input embeddings and yields token ids one at a time (greedy or sampled, KV cache,
stops at EOS), so that a caller sees the first token as soon as it exists; `Detokenizer` turns them into text.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vstream.errors import GenerationError
from vstream.model.compat import forward_keywords, output_cache


@dataclass(frozen=True)
class GenerationOptions:
    """How to decode.

    Attributes:
        max_new_tokens: stop after this many tokens.
        temperature: 0 decodes greedily; above 0 samples.
        top_p: nucleus sampling threshold (with temperature > 0).
        min_new_tokens: EOS is not allowed before this many tokens.
        seed: seed of the sampler (None: torch's global generator).
    """

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    min_new_tokens: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise GenerationError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise GenerationError(f"min_new_tokens must be in [0, max_new_tokens], got {self.min_new_tokens!r}")
        if not self.temperature >= 0:
            raise GenerationError(f"temperature must be >= 0, got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise GenerationError(f"top_p must be in (0, 1], got {self.top_p!r}")


@torch.inference_mode()
def generate_tokens(
    llm: nn.Module,
    inputs_embeds: Tensor,
    options: GenerationOptions,
    eos_token_ids: set[int],
    lock: AbstractContextManager | None = None,
    past: Any = None,
) -> Iterator[int]:
    """Yield the token ids generated for one prompt given as embeddings `(1, L, H)`; an EOS comes last.

    With a `lock`, each forward pass holds it, so that several prompts can be decoded at once from
    several threads, step by step in turn. `past` is the KV cache of a prefix the embeddings continue
    (it is extended in place).
    """
    lock = lock or nullcontext()
    generator = None
    if options.temperature > 0 and options.seed is not None:
        generator = torch.Generator(device=inputs_embeds.device).manual_seed(options.seed)
    cache_name, keep = forward_keywords(llm)
    prefix = {cache_name: past} if past is not None else {}
    with lock:
        output = llm(inputs_embeds=inputs_embeds, use_cache=True, **prefix, **keep)
    for step in range(options.max_new_tokens):
        logits = output.logits[0, -1].float()
        if step < options.min_new_tokens:
            logits[list(eos_token_ids)] = float("-inf")
        token = _pick(logits, options, generator)
        yield token
        if token in eos_token_ids:
            return
        ids = torch.tensor([[token]], device=inputs_embeds.device)
        with lock:
            output = llm(input_ids=ids, use_cache=True, **{cache_name: output_cache(output)}, **keep)


def _pick(logits: Tensor, options: GenerationOptions, generator: torch.Generator | None) -> int:
    if options.temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / options.temperature, dim=-1)
    if options.top_p < 1:
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(0) - sorted_probs > options.top_p  # keep the smallest set reaching top_p
        sorted_probs[outside] = 0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))


class Detokenizer:
    """Turns a growing list of token ids into new text pieces, holding back incomplete characters."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.text = ""

    def push(self, token: int) -> str:
        """Add a token; return the text it completes (possibly empty)."""
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd") or not text.startswith(self.text):
            return ""
        piece, self.text = text[len(self.text) :], text
        return piece

    def flush(self) -> str:
        """Whatever text is still held back."""
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        piece = text[len(self.text) :] if text.startswith(self.text) else ""
        self.text = text
        return piece
