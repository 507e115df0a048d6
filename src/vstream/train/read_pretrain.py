"""Teach the smol model to read one detail back from its memory, before the language training.

The corner digit of an early scene (`detail`) lies in one token of the retrieved memory's 64. Asked as one of six
questions of a conversation, its signal is too weak: after the language training it stays at chance. Asked alone,
the model finds it (the loss leaves chance after 250 to 450 steps of 4), but it then forgets what the transcripts
taught (`order` and `ever` fall to chance and the language training does not bring them back). So each step here
learns a batch of single questions of that type, each on its memory up to its moment, and a batch of transcript
conversations (`vstream.train.text_pretrain`), at a constant learning rate while the detail is being found and a
cosine decay after it.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from vstream.errors import TrainingDataError
from vstream.memory import MemoryConfig
from vstream.model import VStream
from vstream.model.processing_vstream import IGNORE_INDEX
from vstream.train.data import MemoryReadout, TrainingDataset, TrainingSample
from vstream.train.media import MediaRoots
from vstream.train.model import batch_inputs
from vstream.train.records import raise_for, read_records, validate_records
from vstream.train.text_pretrain import (
    TEXT_WORLD_OFFSET,
    heldout_transcripts,
    pad_batch,
    transcript_accuracy,
    transcript_stream,
)

log = logging.getLogger(__name__)

REHEARSAL_WORLD_OFFSET = 200
"""The rehearsed transcripts' streams are world `seed + 200`: new streams, not those of the transcript step."""


@dataclass(frozen=True)
class ReadPretrainResult:
    """Steps run; the mean loss on the single questions every 50 steps (when it leaves chance, the detail is
    found); the share of held-out single questions answered exactly (teacher-forced, greedy per token); and the
    transcript accuracy per question type at the end (what the rehearsal kept)."""

    steps: int
    samples: int
    loss_every_50: list[float]
    held_out: int
    held_out_accuracy: float
    transcript_accuracy: dict[str, float]


def single_question_records(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Every synthetic-world training record that asks `kind`, cut to that one question and its answer (the media
    placeholder before it, the record's moment kept)."""
    single = []
    for record in records:
        if kind not in record.get("types", ()):
            continue
        turn = 2 * record["types"].index(kind)
        question, answer = record["conversations"][turn : turn + 2]
        question = {**question, "value": "<video>\n" + question["value"].replace("<video>\n", "")}
        single.append({**record, "id": f"{record['id']}:{kind}", "types": [kind], "conversations": [question, answer]})
    return single


def pretrain_reading(
    folder: str | Path,
    out: str | Path,
    records: str | Path,
    features: str | Path,
    *,
    kind: str = "detail",
    steps: int = 1000,
    hold: float = 0.5,
    batch_size: int = 4,
    text_batch_size: int = 8,
    learning_rate: float = 1e-3,
    warmup_steps: int = 30,
    seed: int = 0,
    heldout: int = 200,
    memory: MemoryConfig | None = None,
    workers: int = 1,
    first_step: int = 0,
) -> ReadPretrainResult:
    """Train the checkpoint `folder` on the single `kind` questions of the training `records` (their features under
    `features`), with transcripts rehearsed, for `steps` steps (AdamW, warm-up, constant for the share `hold` of
    the steps, then cosine decay), and write the checkpoint to `out` (the rest copied as it is). The last `heldout`
    questions (of the last streams; at most a quarter of them, or one of a few) are not trained on but measured.
    The memory attention stays as it is. `memory`: the memory to read from (default the checkpoint's; an ablation
    passes its own). `workers`: processes that read the samples' memories beside the steps, at the lowest priority
    (0: in the steps' process; on 2 cores one worker takes a step from 0.30 s to about 0.2). `first_step`: where
    in the shuffled questions to start (a run that goes on after `first_step` steps sees the questions next in
    turn, not the first ones again)."""
    if steps < 1 or batch_size < 1 or text_batch_size < 0 or first_step < 0 or not 0 <= hold < 1:
        raise ValueError(
            f"steps and batch_size must be >= 1, text_batch_size and first_step >= 0 and hold in [0, 1); got "
            f"{steps}, {batch_size}, {text_batch_size}, {first_step} and {hold}"
        )
    folder, out = Path(folder), Path(out)
    vs = VStream.from_pretrained(folder, dtype=torch.float32)
    llm, processor = vs.llm, vs.processor
    memory = memory or vs.memory_config()
    dataset = _single_questions(vs, memory, Path(records), Path(features), kind)
    heldout = min(heldout, max(len(dataset) // 4, min(1, len(dataset) - 1)))
    train_count = len(dataset) - heldout
    hold_steps = round(hold * steps)
    pad = processor.tokenizer.pad_token_id or 0
    transcripts = heldout_transcripts(processor, seed + TEXT_WORLD_OFFSET, 60)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        order = torch.randperm(train_count).tolist()
        params = [p for name, p in llm.named_parameters() if "attention_model" not in name]
        llm.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
        rehearsal = transcript_stream(processor, seed + REHEARSAL_WORLD_OFFSET)
        picks = question_picks(order, batch_size, first_step, steps)
        batches = iter(DataLoader(dataset, batch_size, sampler=picks, collate_fn=list, num_workers=workers))
        llm.train()
        losses = []
        for step in tqdm(range(steps), desc=f"reading `{kind}`", unit="step"):
            scale = min(1.0, (step + 1) / warmup_steps)
            if step >= hold_steps:
                scale *= 0.5 * (1 + math.cos(math.pi * (step - hold_steps) / (steps - hold_steps)))
            for group in optimizer.param_groups:
                group["lr"] = learning_rate * scale
            batch = next(batches)
            embeds, labels, mask = batch_inputs(llm, processor, memory, batch)
            loss = llm(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss
            losses.append(loss.item())
            if text_batch_size:
                ids, text_mask, text_labels = pad_batch([next(rehearsal) for _ in range(text_batch_size)], pad)
                loss = loss + llm(input_ids=ids, attention_mask=text_mask, labels=text_labels).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
        held = [dataset[i] for i in range(train_count, len(dataset))]
        accuracy = _answered(llm, processor, memory, held)
        kept = transcript_accuracy(llm, transcripts, pad)
    if out.resolve() != folder.resolve():
        shutil.copytree(folder, out, dirs_exist_ok=True)
    llm.save_pretrained(out)
    curve = [round(sum(losses[i : i + 50]) / len(losses[i : i + 50]), 4) for i in range(0, steps, 50)]
    result = ReadPretrainResult(steps, steps * batch_size, curve, heldout, round(accuracy, 4), kept)
    log.info("reading %s: %d steps, loss every 50 %s, held out %.3f", kind, steps, curve, accuracy)
    return result


def question_picks(order: list[int], batch_size: int, first_step: int, steps: int) -> list[int]:
    """The questions steps `first_step .. first_step + steps - 1` learn, `batch_size` a step, going through
    `order` in turn and round again: a run that goes on where another stopped sees the next ones."""
    return [
        order[(step * batch_size + k) % len(order)]
        for step in range(first_step, first_step + steps)
        for k in range(batch_size)
    ]


def _single_questions(vs: VStream, memory: MemoryConfig, records: Path, features: Path, kind: str) -> TrainingDataset:
    """The single `kind` questions of `records` as samples whose memory (`memory`) the data pipeline reads out."""
    single = single_question_records(read_records(records), kind)
    if not single:
        raise TrainingDataError(f"{records}: no record asks `{kind}` (a synthetic world's training file has `types`)")
    shape = (memory.num_patches, vs.config.mm_hidden_size)
    checked = validate_records(single, str(records), MediaRoots(features=features), feature_shape=shape)
    raise_for("training data", checked.problems)
    return TrainingDataset(
        checked.items,
        vs.processor,
        memory,
        encoder=None,
        mm_hidden_size=vs.config.mm_hidden_size,
        num_patches=memory.num_patches,
        model_max_length=vs.config.max_position_embeddings,
        readout=MemoryReadout(memory, vs.llm.model.attention_model),
        worker_nice=19,
    )


def _answered(llm: torch.nn.Module, processor, memory, samples: list[TrainingSample]) -> float:
    """The share of samples whose every answer token is the model's top pick (teacher-forced)."""
    llm.eval()
    right = 0
    with torch.no_grad():
        for start in range(0, len(samples), 16):
            embeds, labels, mask = batch_inputs(llm, processor, memory, samples[start : start + 16])
            picks = llm(inputs_embeds=embeds, attention_mask=mask).logits[:, :-1].argmax(-1)
            targets = labels[:, 1:]
            answer = targets != IGNORE_INDEX
            right += int(((picks == targets) | ~answer).all(dim=1).sum())
    llm.train()
    return right / max(len(samples), 1)
