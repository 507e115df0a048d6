"""VStream: a loaded Flash-VStream model that answers from a memory snapshot.

A facade over the parts: the vision tower (frames → features), the memory factory (features → snapshot), the
processor (conversation + snapshot → embeddings) and the engine (embeddings → text).

>>> vs = VStream.from_pretrained("IVGSZ/Flash-VStream-7b", dtype=torch.bfloat16, device="cuda")
>>> memory = vs.new_memory()
>>> memory.update(vs.encode_frames(frames), timestamps)        # frames: (H, W, 3) RGB arrays
>>> for piece in vs.stream_answer(memory.readout(), "What is the person doing?"):
...     print(piece, end="", flush=True)
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vstream.errors import ConfigError, GenerationError
from vstream.features import read_feature_clip
from vstream.memory import BaseMemory, MemoryConfig, MemorySnapshot, SemanticAttention, build_memory, offline_readout
from vstream.model.answer import Answer, AnswerStream
from vstream.model.configuration_vstream import VStreamConfig
from vstream.model.engine import Engine, Prompt
from vstream.model.fingerprint import checkpoint_fingerprint, module_fingerprint
from vstream.model.generation import GenerationOptions
from vstream.model.loading import adapter_base, load_pretrained, save_checkpoint, weight_files
from vstream.model.modeling_vstream import VStreamLlamaForCausalLM
from vstream.model.processing_vstream import VStreamProcessor
from vstream.model.prompts import Conversation
from vstream.model.scoring import AnswerScore, score_answers
from vstream.model.vision import Frame, VisionTower


class VStream:
    """A Flash-VStream model ready to answer: vision tower, processor, engine, and the memories it builds.

    Args:
        llm: the language model (with projector and memory attention); tokenizer: its tokenizer.
        vision: the vision tower (None: answer from precomputed features only); vision_source: where it came from.
        checkpoint: the folder it was loaded from (None when built in code).
        template: prompt template name (`vicuna_v1` for the released model, `plain` for stage-1 training).
        cache_prefix: let the engine keep the KV cache of [prompt start + memory] for the latest snapshot.
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
        checkpoint: Path | None = None,
    ) -> None:
        if vision is not None and vision.hidden_size != llm.config.mm_hidden_size:
            raise ConfigError(
                f"mm_hidden_size={llm.config.mm_hidden_size} but the vision tower's hidden size is "
                f"{vision.hidden_size}: the projector cannot take its features"
            )
        self.llm, self.vision, self.vision_source, self.checkpoint = llm, vision, vision_source, checkpoint
        self.processor = VStreamProcessor(tokenizer, template)
        self.engine = Engine(llm, tokenizer, cache_prefix=cache_prefix)
        self._vision_lock = threading.Lock()  # not the engine's lock: encoding never holds up a question

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike, *, template: str = "vicuna_v1", cache_prefix: bool = True, **options: Any
    ) -> VStream:
        """Load a checkpoint from a folder, a Hub id (e.g. `IVGSZ/Flash-VStream-7b`) or `tiny-random`.

        `options`: `dtype`, `device` or `device_map`, `vision_tower`, `load_vision`, `quantization`, as
        `vstream.model.loading.load_pretrained` takes them (the device defaults to a GPU when there is one).
        """
        loaded = load_pretrained(name_or_path, **options)
        return cls(
            loaded.llm,
            loaded.tokenizer,
            loaded.vision,
            template=template,
            vision_source=loaded.vision_source,
            cache_prefix=cache_prefix,
            checkpoint=loaded.folder,
        )

    def fingerprint(self) -> str:
        """A sha256 of what the answers depend on: the checkpoint's files (weights, config, tokenizer, vision
        tower; their digests cached by path, time and size), or the weights in memory for a model built in code or
        merged from a LoRA adapter."""
        if self.checkpoint is not None and adapter_base(self.checkpoint) is None:
            return checkpoint_fingerprint(self.checkpoint, weight_files(self.checkpoint), self.vision_source)
        return module_fingerprint(self.llm)

    @property
    def config(self) -> VStreamConfig:
        return self.llm.config

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        return self.llm.get_input_embeddings().weight.device

    # ----------------------------------------------------------------- memory
    def memory_config(self) -> MemoryConfig:
        """The memory sizes this model was trained with (STAR.md terms); `.replace(...)` to change some."""
        return self.config.memory_config(num_patches=self.vision.num_patches if self.vision is not None else 256)

    def semantic_attention(self) -> SemanticAttention:
        """The abstract memory's q/k projections, from the checkpoint."""
        return self.llm.semantic_attention()

    def new_memory(self, config: MemoryConfig | None = None) -> BaseMemory:
        """An empty streaming memory (default: the model's sizes; e.g. `config.replace(kind="uniform")`)."""
        config = config or self.memory_config()
        return build_memory(config, self.semantic_attention() if config.uses("abstract") else None)

    def encode_frames(self, frames: Sequence[Frame] | Tensor, batch_size: int = 32) -> Tensor:
        """Patch features `(T, P, D)` of RGB frames, on the vision tower's device."""
        if self.vision is None:
            raise GenerationError("this model was loaded without its vision tower (load_vision=False)")
        with self._vision_lock:
            return self.vision.encode(frames, batch_size=batch_size)

    def clip_snapshot(
        self, features: Tensor, timestamps: Sequence[float] | None = None, config: MemoryConfig | None = None
    ) -> MemorySnapshot:
        """The memory of a whole clip of features `(T, P, D)` at once (the offline path); default config: the
        model's, for frames of the features' patch count."""
        if config is None:
            config = self.memory_config().replace(num_patches=features.shape[1])
        attention = self.semantic_attention() if config.uses("abstract") else None
        with torch.no_grad():
            return offline_readout(features, timestamps, config, attention)

    # ----------------------------------------------------------------- answering
    def prompt(self, snapshot: MemorySnapshot, question: str, conversation: Conversation | None = None) -> Prompt:
        """The engine's prompt for `question` about `snapshot` (errors in the question surface here)."""
        return self.processor.prompt(self.llm, snapshot, question, conversation)

    def prefill(self, snapshot: MemorySnapshot) -> None:
        """Have the engine compute [prompt start + `snapshot`'s memory] now, so the next question about it prefills
        only its own tokens (a no-op without the prefix cache or with an empty memory)."""
        if not snapshot.is_empty:
            prompt = self.prompt(snapshot, "?")  # the prefix is the same for any question
            self.engine.prefill(prompt.key, prompt.prefix)

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
        began = time.perf_counter()
        prompt = self.prompt(snapshot, question, conversation)

        def produce(stream: AnswerStream) -> Iterator[str]:
            generation = yield from self.engine.stream(prompt, options or GenerationOptions(), began)
            if conversation is not None:
                conversation.add(question, generation.text)
            stream.answer = Answer.of(question, snapshot, generation)

        return AnswerStream(produce)

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

    def score_answers(self, snapshot: MemorySnapshot, question: str, answers: Sequence[str]) -> list[AnswerScore]:
        """How likely the model finds each candidate reply to `question` about `snapshot` (summed log-probability of
        the whole reply): multiple-choice answering by likelihood, with no text to parse."""
        return score_answers(self.llm, self.processor, snapshot, question, answers, lock=self.engine.lock)

    def answer_features(
        self,
        features: Tensor | str | os.PathLike,
        question: str,
        *,
        options: GenerationOptions | None = None,
        config: MemoryConfig | None = None,
    ) -> Answer:
        """Answer about a whole clip given as features `(T, P, D)` (at 1 fps) or a features file (STAR.md §5, at the
        times it stores)."""
        times = None
        if not isinstance(features, Tensor):
            clip = read_feature_clip(features)
            features, times = clip.features, clip.frame_times(name=str(features))
        return self.answer(self.clip_snapshot(features, times, config=config), question, options=options)

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write a checkpoint in the released layout; a local vision tower is copied beside it as `vision_tower/`."""
        return save_checkpoint(folder, self.llm, self.tokenizer, self.vision_source)
