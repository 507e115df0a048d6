"""Teach the smol language model the world's questions in words, before it ever sees a memory.

The released recipe starts from a language model that already reads and copies text; the smol one starts from
nothing. Here it learns, from transcripts of streams (`vstream.synth.transcript`) put where the memory goes, to
answer every question type of the world: which object came first, whether one appeared, how many scenes... The
language training that follows then has to learn where these facts lie in the memory, not how to reason about
them. Streams are planned only (no frames), from a world seed of their own.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vstream.model.loading import load_tokenizer
from vstream.model.modeling_vstream import VStreamLlamaForCausalLM
from vstream.model.processing_vstream import IGNORE_INDEX, VStreamProcessor
from vstream.synth.questions import moment_questions
from vstream.synth.transcript import transcript
from vstream.synth.world import plan_stream

log = logging.getLogger(__name__)

TEXT_WORLD_OFFSET = 100
"""The transcripts' streams are world `seed + 100`: never the video world `seed` nor its held-out `seed + 1`."""
HELDOUT_OFFSET = 1_000
"""The held-out transcripts' streams are world `seed + 100 + 1000`, never trained on."""
STREAM_SECONDS = (120, 240, 300, 600)
"""Lengths of the transcribed streams (drawn in turn)."""
MOMENTS = 4
"""Conversations per transcribed stream."""

Sample = tuple[list[int], list[int], list[str]]


@dataclass(frozen=True)
class TextPretrainResult:
    """Steps run (of `batch_size` conversations), the mean loss of the first and last tenth of them, and per question
    type the share of held-out transcript questions whose answer the model writes exactly (teacher-forced, greedy
    per token)."""

    steps: int
    batch_size: int
    first_loss: float
    last_loss: float
    accuracy: dict[str, float]


def transcript_samples(processor: VStreamProcessor, seed: int, index: int, seconds: int) -> Iterator[Sample]:
    """The training conversations of stream `index` of world `seed` with its transcript where the memory goes: ids,
    labels (answers only) and the question types."""
    plan = plan_stream(seed, index, seconds)
    for questions in moment_questions(plan, seed, MOMENTS):
        if not questions:
            continue
        ids = processor.sample_ids([(q.question, q.answer) for q in questions])
        words = processor.tokenizer(transcript(plan, questions[0].at), add_special_tokens=False)["input_ids"]
        labels = [*ids.labels_before, *[IGNORE_INDEX] * len(words), *ids.labels_after]
        yield [*ids.before, *words, *ids.after], labels, [q.type for q in questions]


def pretrain_on_transcripts(
    folder: str | Path,
    out: str | Path,
    *,
    steps: int = 2000,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    warmup_steps: int = 50,
    seed: int = 0,
    heldout_streams: int = 60,
    first_stream: int = 0,
) -> TextPretrainResult:
    """Train the language model of the checkpoint `folder` on transcript conversations for `steps` steps (AdamW,
    linear warm-up, cosine decay) and write the checkpoint with it to `out` (the rest copied as it is; `out` may be
    `folder`). `first_stream` skips the world's streams before it, so that a stage that goes on sees new ones."""
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    folder, out = Path(folder), Path(out)
    tokenizer = load_tokenizer(folder)
    processor = VStreamProcessor(tokenizer, "vicuna_v1")
    pad = tokenizer.pad_token_id or 0
    world = seed + TEXT_WORLD_OFFSET
    held = heldout_transcripts(processor, world, heldout_streams)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VStreamLlamaForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
        stream = transcript_stream(processor, world, first_stream)
        losses = []
        for step in tqdm(range(steps), desc="text pretraining", unit="step"):
            scale = min(1.0, (step + 1) / warmup_steps) * 0.5 * (1 + math.cos(math.pi * step / steps))
            for group in optimizer.param_groups:
                group["lr"] = learning_rate * scale
            ids, mask, labels = pad_batch([next(stream) for _ in range(batch_size)], pad)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
        accuracy = transcript_accuracy(model, held, pad)
    if out.resolve() != folder.resolve():
        shutil.copytree(folder, out, dirs_exist_ok=True)
    model.save_pretrained(out)
    tenth = max(1, steps // 10)
    result = TextPretrainResult(
        steps, batch_size, float(np.mean(losses[:tenth])), float(np.mean(losses[-tenth:])), accuracy
    )
    log.info(
        "text pretraining: %d steps, loss %.3f -> %.3f, held out %s",
        steps,
        result.first_loss,
        result.last_loss,
        accuracy,
    )
    return result


def heldout_transcripts(processor: VStreamProcessor, world: int, streams: int = 60) -> list[Sample]:
    """The conversations of `streams` five-minute streams of world `world + HELDOUT_OFFSET`, never trained on."""
    return [s for i in range(streams) for s in transcript_samples(processor, world + HELDOUT_OFFSET, i, 300)]


def transcript_stream(processor: VStreamProcessor, world: int, first: int = 0) -> Iterator[Sample]:
    """Transcript conversations of world `world`'s streams from stream `first` on, one after the other, without
    end."""
    index = first
    while True:
        yield from transcript_samples(processor, world, index, STREAM_SECONDS[index % len(STREAM_SECONDS)])
        index += 1


def pad_batch(samples: list[Sample], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask and labels of transcript conversations."""
    width = max(len(ids) for ids, _, _ in samples)
    ids = torch.full((len(samples), width), pad)
    labels = torch.full((len(samples), width), IGNORE_INDEX)
    mask = torch.zeros((len(samples), width), dtype=torch.long)
    for row, (sample_ids, sample_labels, _) in enumerate(samples):
        ids[row, : len(sample_ids)] = torch.tensor(sample_ids)
        labels[row, : len(sample_labels)] = torch.tensor(sample_labels)
        mask[row, : len(sample_ids)] = 1
    return ids, mask, labels


def transcript_accuracy(model: torch.nn.Module, samples: list[Sample], pad: int) -> dict[str, float]:
    """Per question type, the share of answers (each with its end mark) whose every token is the model's top pick."""
    right: dict[str, list[bool]] = defaultdict(list)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(samples), 64):
            chunk = samples[start : start + 64]
            ids, mask, labels = pad_batch(chunk, pad)
            picks = model(input_ids=ids, attention_mask=mask).logits[:, :-1].argmax(-1)
            targets = labels[:, 1:]
            for row, (_, _, types) in enumerate(chunk):
                positions = (targets[row] != IGNORE_INDEX).nonzero().flatten().tolist()
                for kind, span in zip(types, _runs(positions), strict=True):
                    right[kind].append(bool((picks[row, span] == targets[row, span]).all()))
    model.train()
    return {kind: round(sum(v) / len(v), 4) for kind, v in sorted(right.items())}


def _runs(positions: list[int]) -> list[list[int]]:
    """Consecutive runs of positions (one per answer)."""
    runs: list[list[int]] = []
    for position in positions:
        if runs and position == runs[-1][-1] + 1:
            runs[-1].append(position)
        else:
            runs.append([position])
    return runs
