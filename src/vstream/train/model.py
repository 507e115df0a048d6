"""The model a training engine wraps: the LLM with the whole step from samples to loss inside its `forward`.

Engines that shard weights (DeepSpeed ZeRO-3, FSDP) hold only a shard of each weight outside the forward of
the module they wrap, and gather a weight when its module is called. So the memory (through the attention
module's `query`/`key` calls), the prompt embeddings (through the embedding and projector calls) and the LLM's
loss are all computed in `TrainingModel.forward`, never from weights read beside it. DDP and ZeRO 0-2 run the
same code.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from vstream.memory import MemoryConfig, offline_readout
from vstream.model.processing_vstream import IGNORE_INDEX, VStreamProcessor
from vstream.train.data import TrainingSample


class TrainingModel(nn.Module):
    """`llm` (the Flash-VStream LLM, or a PEFT model around it) whose forward takes a batch of samples.

    Its state dict is the LLM's under the prefix `llm.`; checkpoints are written by the LLM itself (see
    `VStreamTrainer`), in the released layout.
    """

    def __init__(self, llm: nn.Module, processor: VStreamProcessor, memory: MemoryConfig) -> None:
        super().__init__()
        self.llm = llm
        self.processor, self.memory = processor, memory
        self.config = llm.config  # engines size their buffers from it (DeepSpeed's "auto" values)
        self._no_split_modules = getattr(base_model(llm), "_no_split_modules", None)  # FSDP's wrap policy

    def forward(self, samples: list[TrainingSample]) -> tuple[Tensor, Tensor]:
        """(the LLM's mean loss on the answers of `samples`, the number of tokens it read)."""
        embeds, labels, mask = batch_inputs(self.llm, self.processor, self.memory, samples)
        isolated = isolated_turns(samples, mask, embeds.dtype)
        attention, positions = isolated if isolated is not None else (mask, None)
        outputs = self.llm(inputs_embeds=embeds, attention_mask=attention, position_ids=positions, labels=labels)
        return outputs.loss, mask.sum()

    def activation_checkpointing_enable(self, **kwargs: Any) -> None:
        """Recompute the LLM's activations in the backward pass (Hugging Face's switch, passed on)."""
        switch = getattr(self.llm, "activation_checkpointing_enable", None) or self.llm.gradient_checkpointing_enable
        switch(**kwargs)

    gradient_checkpointing_enable = activation_checkpointing_enable  # the name transformers 4 calls


def base_model(llm: nn.Module) -> nn.Module:
    """The Flash-VStream LLM itself, inside a PEFT model or not."""
    return llm.get_base_model() if hasattr(llm, "get_base_model") else llm


def batch_inputs(
    llm: nn.Module, processor: VStreamProcessor, memory: MemoryConfig, samples: list[TrainingSample]
) -> tuple[Tensor, Tensor, Tensor]:
    """(inputs_embeds `(B, L, H)`, labels `(B, L)`, attention_mask `(B, L)`) of a list of samples, right-padded.

    Each sample's memory is computed in float32 without autocast, from its features and times, as streaming
    and offline inference compute it; gradients reach the abstract memory's q/k weights through the attention
    module's calls. A sample that brings its memory (read out by the data pipeline) is used as it is.
    """
    model = base_model(llm)
    device = model.get_input_embeddings().weight.device
    attention = model.model.attention_model if memory.uses("abstract") else None
    built = []
    for sample in samples:
        if sample.memory is not None:
            snapshot = sample.memory.to(device)
        else:
            with torch.autocast(device.type, enabled=False):
                features = sample.features.to(device, torch.float32)
                snapshot = offline_readout(features, sample.times, memory, attention)
        built.append(processor.build(model, snapshot, sample.ids))
    length = max(b.inputs_embeds.shape[1] for b in built)
    hidden = built[0].inputs_embeds.shape[2]
    embeds = built[0].inputs_embeds.new_zeros(len(built), length, hidden)
    labels = torch.full((len(built), length), IGNORE_INDEX, device=device, dtype=torch.long)
    mask = torch.zeros(len(built), length, device=device, dtype=torch.long)
    for row, b in enumerate(built):
        n = b.inputs_embeds.shape[1]
        embeds[row, :n], labels[row, :n], mask[row, :n] = b.inputs_embeds[0], b.labels[0], 1
    return embeds, labels, mask


def isolated_turns(samples: list[TrainingSample], mask: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor] | None:
    """(additive attention mask `(B, 1, L, L)` in `dtype`, position ids `(B, L)`) that keep the isolated turns of
    the samples that have them (`PromptIds.turns`) from seeing each other, each placed right after the memory as a
    question asked alone is; None when no sample has isolated turns (the LLM's causal mask then serves)."""
    if all(sample.ids.turns is None for sample in samples):
        return None
    batch, length = mask.shape
    device = mask.device
    allowed = torch.ones(length, length, dtype=torch.bool, device=device).tril().repeat(batch, 1, 1)
    allowed &= mask.bool()[:, None, :]  # no padding as a key
    positions = torch.arange(length, device=device).repeat(batch, 1)
    for row, sample in enumerate(samples):
        if sample.ids.turns is None:
            continue
        start = int(mask[row].sum()) - len(sample.ids.after)  # where the first turn begins, after the memory
        first = start
        for turn in sample.ids.turns:
            end = start + turn
            allowed[row, end:, start:end] = False
            positions[row, start:end] = torch.arange(first, first + turn, device=device)
            start = end
    additive = torch.zeros(batch, 1, length, length, dtype=dtype, device=device)
    return additive.masked_fill_(~allowed[:, None], torch.finfo(dtype).min), positions
