"""VStream: a loaded Flash-VStream model (LLM, tokenizer, vision tower) that answers from a memory snapshot.

>>> vs = VStream.from_pretrained("IVGSZ/Flash-VStream-7b", dtype=torch.bfloat16, device="cuda")
>>> memory = vs.new_memory()
>>> memory.update(vs.encode_frames(frames), timestamps)        # frames: (H, W, 3) RGB arrays
>>> for piece in vs.stream_answer(memory.readout(), "What is the person doing?"):
...     print(piece, end="", flush=True)
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vstream.errors import ConfigError, GenerationError
from vstream.features import load_features
from vstream.memory import BaseMemory, MemoryConfig, MemorySnapshot, SemanticAttention, build_memory, offline_readout
from vstream.model.configuration_vstream import VStreamConfig
from vstream.model.generation import Detokenizer, GenerationOptions, generate_tokens
from vstream.model.loading import load_config, load_llm, load_tokenizer, resolve_checkpoint, resolve_dtype
from vstream.model.modeling_vstream import VStreamLlamaForCausalLM
from vstream.model.prefix_cache import PrefixCache
from vstream.model.prompts import Conversation, PromptIds, get_template, tokenize_prompt
from vstream.model.vision import Frame, VisionTower, resolve_vision_tower


@dataclass(frozen=True)
class Answer:
    """An answer with what it cost.

    Attributes:
        prompt_tokens: tokens the LLM read (text tokens plus memory tokens); memory_tokens: of those, the memory.
        new_tokens: tokens generated (the EOS included when reached); stop_reason: `eos` or `length`.
        ttft_s: seconds from the call to the first generated token; total_s: to the last.
        frames_seen, latest_frame_time: the memory snapshot the answer is about.
    """

    question: str
    text: str
    prompt_tokens: int
    memory_tokens: int
    new_tokens: int
    ttft_s: float
    total_s: float
    tokens_per_s: float
    stop_reason: str
    frames_seen: int
    latest_frame_time: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields."""
        return asdict(self)


class AnswerStream:
    """Text pieces of an answer as they are produced; `answer` holds the whole `Answer` once the stream is done.

    Args:
        produce: given this stream, yields the pieces and sets `stream.answer` at the end.
    """

    def __init__(self, produce: Callable[[AnswerStream], Iterator[str]]) -> None:
        self.answer: Answer | None = None
        self._pieces = produce(self)

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def result(self) -> Answer:
        """Consume what is left and return the `Answer`."""
        for _ in self._pieces:
            pass
        assert self.answer is not None
        return self.answer


class VStream:
    """A Flash-VStream model ready to answer: LLM (with projector and memory attention), tokenizer, vision tower.

    Args:
        llm: the language model; tokenizer: its tokenizer; vision: the vision tower (None: features only).
        template: prompt template name (`vicuna_v1` for the released model, `plain` for pretraining).
    """

    def __init__(
        self,
        llm: VStreamLlamaForCausalLM,
        tokenizer: Any,
        vision: VisionTower | None = None,
        *,
        template: str = "vicuna_v1",
        vision_source: str | None = None,
        cache_prefix: bool = True,
    ) -> None:
        self.llm, self.tokenizer, self.vision = llm, tokenizer, vision
        self.template = get_template(template)
        self.lock = threading.RLock()  # one LLM forward pass at a time; answers from several threads interleave
        self.prefix_cache = PrefixCache(llm, self.lock) if cache_prefix else None
        self._vision_lock = threading.Lock()
        self.vision_source = vision_source
        if vision is not None and vision.hidden_size != self.config.mm_hidden_size:
            raise ConfigError(
                f"mm_hidden_size={self.config.mm_hidden_size} but the vision tower's hidden size is "
                f"{vision.hidden_size}: the projector cannot take its features"
            )

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
        device_map: str | dict[str, Any] | None = None,
        vision_tower: str | os.PathLike | None = None,
        load_vision: bool = True,
        quantization: str | None = None,
        template: str = "vicuna_v1",
        torch_dtype: torch.dtype | str | None = None,
    ) -> VStream:
        """Load a checkpoint from a folder or a Hub id (e.g. `IVGSZ/Flash-VStream-7b`).

        Args:
            dtype: weights dtype, a `torch.dtype` or its name (float32 on CPU; float16/bfloat16 on GPU);
                default or `"auto"`: the checkpoint's. `torch_dtype` is the same, under its older Hugging Face name.
            device: where to put the whole model (`cpu`, `cuda`, `cuda:1`, ...).
            device_map: instead of `device`, Hugging Face placement of the LLM's layers (`"auto"` spreads a model
                that does not fit one GPU over several, or onto the CPU); the vision tower goes with the embeddings.
            vision_tower: load the CLIP tower from here instead of the config's `mm_vision_tower`.
            load_vision: False to answer from precomputed features only.
            quantization: `8bit` or `4bit` (bitsandbytes, CUDA).
        """
        dtype = resolve_dtype(dtype, torch_dtype)
        if device is not None and device_map is not None:
            raise ConfigError("give device (the whole model on one device) or device_map, not both")
        folder = resolve_checkpoint(name_or_path)
        config = load_config(folder)
        llm = load_llm(folder, config, dtype=dtype, device=device, device_map=device_map, quantization=quantization)
        vision, source = None, None
        if load_vision:
            source = resolve_vision_tower(config.mm_vision_tower, folder, vision_tower)
            vision = VisionTower.load(
                source,
                select_layer=config.mm_vision_select_layer,
                select_feature=config.mm_vision_select_feature,
                dtype=dtype,
                device=llm.device if device is not None or device_map is not None else None,
            )
        return cls(llm, load_tokenizer(folder), vision, template=template, vision_source=source)

    # ----------------------------------------------------------------- parts
    @property
    def config(self) -> VStreamConfig:
        return self.llm.config

    @property
    def device(self) -> torch.device:
        return self.llm.get_input_embeddings().weight.device

    def memory_config(self, **overrides: Any) -> MemoryConfig:
        """The model's memory sizes (STAR.md terms), with any field overridden."""
        overrides.setdefault("num_patches", self.vision.num_patches if self.vision is not None else 256)
        return self.config.memory_config(**overrides)

    def semantic_attention(self) -> SemanticAttention:
        """The abstract memory's q/k projections, from the checkpoint."""
        return self.llm.semantic_attention()

    def new_memory(self, **overrides: Any) -> BaseMemory:
        """An empty streaming memory with the model's sizes (overridable, e.g. `kind="uniform"` for a baseline)."""
        config = self.memory_config(**overrides)
        attention = self.semantic_attention() if config.uses("abstract") else None
        return build_memory(config, attention)

    def encode_frames(self, frames: Sequence[Frame] | Tensor, batch_size: int = 32) -> Tensor:
        """Patch features `(T, P, D)` of RGB frames, on the vision tower's device."""
        if self.vision is None:
            raise GenerationError("this model was loaded without its vision tower (load_vision=False)")
        with self._vision_lock:  # not the LLM's lock: encoding never holds up a question
            return self.vision.encode(frames, batch_size=batch_size)

    def clip_snapshot(
        self, features: Tensor, timestamps: Sequence[float] | None = None, **overrides: Any
    ) -> MemorySnapshot:
        """The memory of a whole clip of features `(T, P, D)` at once (the offline path)."""
        config = self.memory_config(**{"num_patches": features.shape[1], **overrides})
        attention = self.semantic_attention() if config.uses("abstract") else None
        with torch.no_grad():
            return offline_readout(features, timestamps, config, attention)

    # ----------------------------------------------------------------- answering
    def prompt_inputs(
        self, snapshot: MemorySnapshot, question: str, conversation: Conversation | None = None
    ) -> tuple[Tensor, PromptIds]:
        """The LLM's input embeddings `(1, L, H)`: the prompt's tokens with the projected memory at `<image>`."""
        ids, rest = self._question_part(snapshot, question, conversation)
        return torch.cat([self._prefix_embeds(snapshot, ids.before), rest], dim=1), ids

    def _question_part(
        self, snapshot: MemorySnapshot, question: str, conversation: Conversation | None
    ) -> tuple[PromptIds, Tensor]:
        """The prompt's token ids around the memory, and the embeddings `(1, Lq, H)` of what follows it."""
        if snapshot.is_empty:
            raise GenerationError("the memory is empty: nothing has streamed yet, so there is nothing to answer from")
        conversation = conversation or Conversation(self.template)
        ids = tokenize_prompt(self.tokenizer, conversation.prompt(question))
        with torch.no_grad(), self.lock:
            after = self.llm.get_input_embeddings()(torch.tensor(ids.after, device=self.device))
        return ids, after.unsqueeze(0)

    def _prefix_embeds(self, snapshot: MemorySnapshot, before: list[int]) -> Tensor:
        """Embeddings `(1, Lp, H)` of the prompt up to the end of the memory (the same for every question about
        `snapshot`): the tokens `before` it, then the projected memory."""
        with torch.no_grad(), self.lock:
            memory = self.llm.project_memory(snapshot.tokens)
            start = self.llm.get_input_embeddings()(torch.tensor(before, device=self.device))
        return torch.cat([start, memory.to(start.dtype)]).unsqueeze(0)

    def prefill(self, snapshot: MemorySnapshot) -> None:
        """Compute the LLM state of the prompt up to the end of `snapshot`'s memory now, so that the next question
        about it prefills only its own tokens (a no-op without the prefix cache or with an empty memory)."""
        if self.prefix_cache is None or snapshot.is_empty:
            return
        before = tokenize_prompt(self.tokenizer, Conversation(self.template).prompt("?")).before  # any question
        self.prefix_cache.warm(snapshot, before, lambda: self._prefix_embeds(snapshot, before))

    def stream_answer(
        self,
        snapshot: MemorySnapshot,
        question: str,
        *,
        conversation: Conversation | None = None,
        options: GenerationOptions | None = None,
    ) -> AnswerStream:
        """Answer `question` from `snapshot`, yielding text pieces as they are produced.

        With a `conversation`, its earlier turns are part of the prompt and this turn is added to it once done.
        """
        options = options or GenerationOptions()
        began = time.perf_counter()
        parts = self._question_part(snapshot, question, conversation)  # errors surface here, not mid-stream
        return AnswerStream(
            lambda stream: self._produce(stream, parts, snapshot, question, conversation, options, began)
        )

    def _produce(
        self,
        stream: AnswerStream,
        parts: tuple[PromptIds, Tensor],
        snapshot: MemorySnapshot,
        question: str,
        conversation: Conversation | None,
        options: GenerationOptions,
        began: float,
    ) -> Iterator[str]:
        ids, rest = parts
        if self.prefix_cache is not None:  # the prefix's KV cache, shared by every question about this snapshot
            past, prefix_length = self.prefix_cache.get(
                snapshot, ids.before, lambda: self._prefix_embeds(snapshot, ids.before)
            )
        else:
            prefix = self._prefix_embeds(snapshot, ids.before)
            past, prefix_length, rest = None, prefix.shape[1], torch.cat([prefix, rest], dim=1)
        detok, eos = Detokenizer(self.tokenizer), self._eos_ids()
        first, count, stop = None, 0, "length"
        for token in generate_tokens(self.llm, rest, options, eos, self.lock, past=past):
            first = first or time.perf_counter()
            count += 1
            if token in eos:
                stop = "eos"
                break
            piece = detok.push(token)
            if piece:
                yield piece
        tail = detok.flush()
        if tail:
            yield tail
        done = time.perf_counter()
        text = detok.text.strip()
        if conversation is not None:
            conversation.add(question, text)
        decoding = done - (first or done)
        stream.answer = Answer(
            question=question,
            text=text,
            prompt_tokens=prefix_length + len(ids.after),
            memory_tokens=snapshot.num_tokens,
            new_tokens=count,
            ttft_s=(first or done) - began,
            total_s=done - began,
            tokens_per_s=(count - 1) / decoding if count > 1 and decoding > 0 else 0.0,
            stop_reason=stop,
            frames_seen=snapshot.frames_seen,
            latest_frame_time=snapshot.latest_time,
        )

    def answer(
        self,
        snapshot: MemorySnapshot,
        question: str,
        *,
        conversation: Conversation | None = None,
        options: GenerationOptions | None = None,
    ) -> Answer:
        """The whole answer to `question` from `snapshot`, with its timings."""
        return self.stream_answer(snapshot, question, conversation=conversation, options=options).result()

    def answer_features(
        self,
        features: Tensor | str | os.PathLike,
        question: str,
        *,
        options: GenerationOptions | None = None,
        **memory_overrides: Any,
    ) -> Answer:
        """Answer about a whole clip given as features `(T, P, D)` or a features file (STAR.md §5)."""
        if not isinstance(features, Tensor):
            features = load_features(features)
        return self.answer(self.clip_snapshot(features, **memory_overrides), question, options=options)

    def _eos_ids(self) -> set[int]:
        eos = self.tokenizer.eos_token_id
        return {eos} if isinstance(eos, int) else set(eos or [])

    # ----------------------------------------------------------------- saving
    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write a checkpoint in the released layout; a local vision tower is copied beside it as `vision_tower/`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        original = self.config.mm_vision_tower
        source = Path(self.vision_source) if self.vision_source else None
        if source is not None and source.is_dir():
            if source.resolve() != (folder / "vision_tower").resolve():
                shutil.copytree(source, folder / "vision_tower", dirs_exist_ok=True)
            self.config.mm_vision_tower = "vision_tower"
        try:
            self.llm.save_pretrained(folder)
        finally:
            self.config.mm_vision_tower = original
        self.tokenizer.save_pretrained(folder)
        return folder
