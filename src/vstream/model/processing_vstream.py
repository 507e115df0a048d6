"""The processor: a conversation and a memory snapshot become the LLM's inputs (token ids, labels, embeddings).

The one place where a sample is built, for inference (a question to answer), evaluation and training (a
conversation with its answers, labels masked to them), so that a training example and an inference prompt can
never drift apart. The prompt is split at `<image>` and each side is tokenized on its own, as the released model
was trained; the projected memory tokens are spliced in between.

>>> processor = VStreamProcessor(tokenizer, "vicuna_v1")
>>> ids = processor.prompt_ids("What is happening?")                  # inference: labels are None
>>> sample = processor.build(llm, snapshot, processor.sample_ids([("What is happening?", "Cooking.")]))
>>> sample.inputs_embeds.shape, sample.labels.shape                   # (1, L, H), (1, L)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vstream.errors import ConfigError, GenerationError
from vstream.memory import MemorySnapshot
from vstream.model.engine import Prompt
from vstream.model.prefix_cache import PrefixKey
from vstream.model.prompts import IMAGE_PLACEHOLDER, Conversation, PromptTemplate, check_question, get_template

IGNORE_INDEX = -100
"""Label of a position the loss ignores (the prompt, the memory tokens), as in Hugging Face models."""


@dataclass(frozen=True)
class PromptIds:
    """Token ids before and after the memory (`before` starts with BOS when the tokenizer adds one).

    `labels_before`/`labels_after` (training samples only) hold the id to learn at each position, or IGNORE_INDEX.
    """

    before: list[int]
    after: list[int]
    labels_before: list[int] | None = None
    labels_after: list[int] | None = None
    turns: tuple[int, ...] | None = None
    """Training samples of isolated turns only: the lengths of the turns `after` is made of, each asked as if alone
    (it sees the part before the memory, the memory and its own tokens, never another turn; its positions start
    right after the memory). None: `after` is one conversation, each turn seeing the ones before it."""


@dataclass(frozen=True)
class ModelInputs:
    """What the LLM reads: `inputs_embeds` `(1, L, H)`, `labels` `(1, L)` (training) and where the memory is."""

    inputs_embeds: Tensor
    labels: Tensor | None
    memory_start: int
    memory_end: int


class VStreamProcessor:
    """Tokenizer plus prompt template: conversation → ids and labels; ids plus memory → embeddings.

    Args:
        tokenizer: the checkpoint's tokenizer (a fast one for training samples, which need character offsets).
        template: a template or its name (`vicuna_v1` for the released model, `plain` for stage-1 training).
    """

    def __init__(self, tokenizer: Any, template: str | PromptTemplate = "vicuna_v1") -> None:
        self.tokenizer = tokenizer
        self.template = get_template(template)

    def conversation(self) -> Conversation:
        """A new, empty conversation in this processor's template."""
        return Conversation(self.template)

    # ----------------------------------------------------------------- text -> ids
    def prompt_ids(self, question: str, conversation: Conversation | None = None) -> PromptIds:
        """The ids of the prompt that asks `question` next (after the conversation's earlier turns)."""
        check_question(question)
        turns = [*(conversation.turns if conversation is not None else []), (question, None)]
        return self.tokenize(turns)

    def sample_ids(self, turns: Sequence[tuple[str, str]], *, isolated: bool = False) -> PromptIds:
        """The ids of a training conversation, with labels on the answers (and the marks that end them) only.

        `isolated`: each turn tokenized as a conversation of its own (as a question asked alone about the memory is
        prompted), the turns one after the other in `after` with their lengths in `turns`; the step then keeps them
        from seeing each other. Several answers are learned from one memory readout, none from another's words."""
        if not turns or any(answer is None for _, answer in turns):
            raise GenerationError("a training sample needs at least one turn, and an answer in every turn")
        if self.template.style != "plain":  # plain (stage 1) shows no question
            for question, _ in turns:
                check_question(question)
        if not isolated:
            return self.tokenize(turns, labels=True)
        alone = [self.tokenize([turn], labels=True) for turn in turns]
        if any(ids.before != alone[0].before for ids in alone):
            raise GenerationError(f"template {self.template.name!r} puts a turn's own words before the memory")
        return PromptIds(
            alone[0].before,
            [token for ids in alone for token in ids.after],
            alone[0].labels_before,
            [label for ids in alone for label in ids.labels_after],
            tuple(len(ids.after) for ids in alone),
        )

    def tokenize(self, turns: Sequence[tuple[str, str | None]], *, labels: bool = False) -> PromptIds:
        """Render `turns`, split at the one placeholder and tokenize each side on its own (BOS only at the very
        start); with `labels`, mark the tokens that fall on the rendered answers."""
        rendered = self.template.render(turns)
        parts = rendered.text.split(IMAGE_PLACEHOLDER)
        if len(parts) != 2:
            raise GenerationError(f"the prompt must hold exactly one {IMAGE_PLACEHOLDER!r}; it holds {len(parts) - 1}")
        offset = len(parts[0]) + len(IMAGE_PLACEHOLDER)
        before, labels_before = self._encode(parts[0], 0, rendered.targets, labels, keep_bos=True)
        after, labels_after = self._encode(parts[1], offset, rendered.targets, labels, keep_bos=False)
        return PromptIds(before, after, labels_before, labels_after)

    def _encode(
        self, text: str, offset: int, targets: Sequence[tuple[int, int]], labels: bool, keep_bos: bool
    ) -> tuple[list[int], list[int] | None]:
        encoded = self.tokenizer(text, return_offsets_mapping=labels)
        ids = list(encoded.input_ids)
        spans = list(encoded["offset_mapping"]) if labels else [(0, 0)] * len(ids)
        bos = self.tokenizer.bos_token_id
        if not keep_bos and bos is not None and ids[:1] == [bos]:
            ids, spans = ids[1:], spans[1:]
        if not labels:
            return ids, None
        learned = [
            token if end > start and _overlaps(offset + start, offset + end, targets) else IGNORE_INDEX
            for token, (start, end) in zip(ids, spans, strict=True)
        ]
        return ids, learned

    # ----------------------------------------------------------------- ids + memory -> embeddings
    def embed_prefix(self, llm: nn.Module, ids: PromptIds, memory: MemorySnapshot | Tensor) -> Tensor:
        """Embeddings `(1, Lb + N, H)` of the tokens before the memory, then the projected memory `(N, D)`: the same
        for every question about one snapshot, so an engine may keep its KV cache."""
        tokens = _memory_tokens(memory)
        start = llm.get_input_embeddings()(torch.tensor(ids.before, device=_device(llm)))
        projected = llm.project_memory(tokens)
        return torch.cat([start, projected.to(start.dtype)]).unsqueeze(0)

    def embed_suffix(self, llm: nn.Module, ids: PromptIds) -> Tensor:
        """Embeddings `(1, La, H)` of the tokens after the memory (the question's own part)."""
        return llm.get_input_embeddings()(torch.tensor(ids.after, device=_device(llm))).unsqueeze(0)

    def prompt(
        self, llm: nn.Module, snapshot: MemorySnapshot, question: str, conversation: Conversation | None = None
    ) -> Prompt:
        """The engine's prompt for `question` about `snapshot`: the question's part embedded now (its errors surface
        here), the prefix [prompt start + memory] only when the engine does not hold it already."""
        _memory_tokens(snapshot)  # an empty memory is refused before anything is computed
        ids = self.prompt_ids(question, conversation)
        with torch.no_grad():
            suffix = self.embed_suffix(llm, ids)

        def prefix() -> Tensor:
            with torch.no_grad():
                return self.embed_prefix(llm, ids, snapshot)

        return Prompt(PrefixKey(snapshot, tuple(ids.before)), prefix, suffix)

    def build(self, llm: nn.Module, memory: MemorySnapshot | Tensor, ids: PromptIds) -> ModelInputs:
        """The whole sample: embeddings with the memory spliced at the placeholder, and the labels when `ids` has
        them (IGNORE_INDEX over the memory). Gradients flow to the projector (and the embeddings) when enabled."""
        prefix, suffix = self.embed_prefix(llm, ids, memory), self.embed_suffix(llm, ids)
        memory_start = len(ids.before)
        memory_end = prefix.shape[1]
        labels = None
        if ids.labels_before is not None and ids.labels_after is not None:
            values = ids.labels_before + [IGNORE_INDEX] * (memory_end - memory_start) + ids.labels_after
            labels = torch.tensor([values], device=prefix.device)
        return ModelInputs(torch.cat([prefix, suffix], dim=1), labels, memory_start, memory_end)


def _memory_tokens(memory: MemorySnapshot | Tensor) -> Tensor:
    tokens = memory.tokens if isinstance(memory, MemorySnapshot) else memory
    if tokens.dim() != 2:
        raise ConfigError(f"memory tokens must be (N, D), got shape {tuple(tokens.shape)}")
    if tokens.shape[0] == 0:
        raise GenerationError("the memory is empty: nothing has streamed yet, so there is nothing to answer from")
    return tokens


def _overlaps(start: int, end: int, spans: Sequence[tuple[int, int]]) -> bool:
    return any(start < span_end and end > span_start for span_start, span_end in spans)


def _device(llm: nn.Module) -> torch.device:
    return llm.get_input_embeddings().weight.device
