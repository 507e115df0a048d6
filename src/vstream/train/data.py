"""Training samples: a record's media as features (read, or encoded on the fly) and its prompt ids with labels.

The prompt and labels come from the model's processor (the code inference uses); the memory is built from the
sample's features in the training step (`vstream.train.model.batch_inputs`), or here, by a `MemoryReadout`, when
the memory attention does not learn.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from vstream.errors import GenerationError, Problem, TrainingDataError, VStreamError
from vstream.memory import MemoryConfig, offline_readout
from vstream.model.processing_vstream import IGNORE_INDEX, PromptIds, VStreamProcessor
from vstream.train.media import Encoder, load_media
from vstream.train.records import TrainingRecord, TrainingRecords, raise_for

log = logging.getLogger(__name__)


@dataclass
class TrainingSample:
    """What the dataset yields: the media as features and the ids with labels; the memory is built in the step."""

    features: Tensor
    """`(T, P, D)` float32 on the CPU (an image: T = 1)."""
    times: list[float]
    """Stream time of each row (feature files: their stored times; videos: the frames' times at `fps`)."""
    ids: PromptIds
    position: str
    memory: Tensor | None = None
    """`(N, D)` memory tokens read out by the data pipeline (frozen memory attention), or None: built in the step."""


class MemoryReadout:
    """The memory of a sample computed outside the training step, for runs whose memory attention is frozen:
    the memory is then a fixed function of the features, with no gradient to carry.

    Holds its own copy of the attention's q/k (float32, on the CPU), so the training engine may shard or move
    the model's weights; with `cache`, a sample's tokens are kept after the first read (keyed by its index).
    """

    def __init__(self, memory: MemoryConfig, attention: nn.Module, *, cache: bool = False) -> None:
        self.memory = memory
        self.attention = (
            copy.deepcopy(attention).float().cpu().requires_grad_(False) if memory.uses("abstract") else None
        )
        self.cache: dict[int, Tensor] | None = {} if cache else None

    def cached(self, index: int) -> Tensor | None:
        """The kept memory tokens of the sample `index`, or None (not read yet, or no cache)."""
        return None if self.cache is None else self.cache.get(index)

    def __call__(self, index: int, features: Tensor, times: list[float]) -> Tensor:
        """`(N, D)` float32 memory tokens of the sample `index`, read out (and kept, with a cache)."""
        with torch.no_grad():
            tokens = offline_readout(features, times, self.memory, self.attention).tokens
        if self.cache is not None:
            self.cache[index] = tokens
        return tokens


_niced = False
"""Whether this process lowered its priority (never in the training process, so a forked worker starts False)."""


def yield_to_training(nice: int) -> None:
    """In a DataLoader worker, add `nice` to the process's niceness once (Unix), so that where the training step
    runs on the same CPU its threads keep the cores and this worker prepares samples in their idle moments; in the
    training process itself, or with `nice` 0, nothing changes."""
    global _niced
    if nice and not _niced and hasattr(os, "nice") and torch.utils.data.get_worker_info() is not None:
        os.nice(nice)
        _niced = True


class TrainingDataset(Dataset):
    """Validated records as training samples: features (read or encoded on the fly) and prompt ids with labels.

    Length rule: a sample's length is bounded by `len(ids.before) + memory_config.num_tokens + len(ids.after)`
    (a full memory's readout). When that bound exceeds `model_max_length`, the tokens after the memory (and their
    labels) are cut from the end to fit; when no learned label is left then, or the part before the memory and the
    memory alone do not fit, the sample is dropped (with `too_long="drop"`, every sample over the bound is dropped).
    Both are decided once, here, from the tokenized conversations (no media is read): `truncated` and `dropped` list
    them (position and reason) and `len()` excludes the dropped. A conversation the processor refuses (e.g. an
    empty question in `vicuna_v1`) raises a TrainingDataError listing every such record. `worker_nice`: what a
    DataLoader worker reading it adds to its niceness (`yield_to_training`). `isolated_turns`: each turn of a
    conversation learned as if asked alone (`VStreamProcessor.sample_ids`); cutting to fit then keeps whole turns.
    """

    def __init__(
        self,
        records: Sequence[TrainingRecord] | TrainingRecords,
        processor: VStreamProcessor,
        memory_config: MemoryConfig,
        *,
        encoder: Encoder | None,
        fps: float = 1.0,
        model_max_length: int = 2048,
        mm_hidden_size: int,
        num_patches: int,
        batch_size: int = 16,
        too_long: str = "truncate",
        readout: MemoryReadout | None = None,
        worker_nice: int = 0,
        isolated_turns: bool = False,
    ) -> None:
        items = records.items if isinstance(records, TrainingRecords) else list(records)
        if model_max_length < 1 or batch_size < 1 or not fps > 0 or too_long not in ("truncate", "drop"):
            raise TrainingDataError(
                f"model_max_length and batch_size must be >= 1, fps > 0 and too_long 'truncate' or 'drop'; got "
                f"{model_max_length}, {batch_size}, {fps} and {too_long!r}"
            )
        self.too_long, self.readout, self.worker_nice = too_long, readout, worker_nice
        self.processor, self.memory_config, self.encoder, self.fps = processor, memory_config, encoder, fps
        self.model_max_length, self.batch_size = model_max_length, batch_size
        self.feature_shape = (num_patches, mm_hidden_size)
        self.truncated: list[str] = []
        self.dropped: list[str] = []
        self.lengths: list[int] = []
        """Each kept sample's bounded length (after truncation), for length-grouped batching."""
        self.samples: list[tuple[TrainingRecord, PromptIds]] = []
        refused = []
        for record in items:
            try:
                ids = self._fit(record.position, processor.sample_ids(record.turns, isolated=isolated_turns))
            except GenerationError as exc:
                refused.append(Problem(record.position, str(exc)))
                continue
            if ids is not None:
                self.samples.append((record, ids))
                self.lengths.append(len(ids.before) + memory_config.num_tokens + len(ids.after))
        raise_for("training data", refused)
        if self.truncated or self.dropped:
            log.warning(
                "model_max_length %d: %d samples truncated, %d dropped (of %d)",
                model_max_length,
                len(self.truncated),
                len(self.dropped),
                len(items),
            )

    def _fit(self, position: str, ids: PromptIds) -> PromptIds | None:
        """The ids cut to the length rule, or None (recorded in `dropped`) when nothing is left to learn."""
        memory, limit = self.memory_config.num_tokens, self.model_max_length
        bound = len(ids.before) + memory + len(ids.after)
        if bound <= limit:
            return ids
        room = max(limit - len(ids.before) - memory, 0)
        turns = ids.turns
        if turns is not None:  # whole turns only: a turn cut short would be learned from words it does not end on
            kept = [length for length, end in zip(turns, accumulate(turns), strict=True) if end <= room]
            turns, room = tuple(kept), sum(kept)
        labels_after = (ids.labels_after or [])[:room]
        if self.too_long == "drop" or all(
            label == IGNORE_INDEX for label in [*(ids.labels_before or []), *labels_after]
        ):
            why = "too_long='drop'" if self.too_long == "drop" else "no answer token is left within it"
            self.dropped.append(f"{position}: {bound} tokens ({memory} of memory) > model_max_length {limit}; {why}")
            return None
        self.truncated.append(
            f"{position}: {bound} tokens ({memory} of memory) > model_max_length {limit}; "
            f"its last {len(ids.after) - room} tokens cut"
        )
        return PromptIds(ids.before, ids.after[:room], ids.labels_before, labels_after, turns)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> TrainingSample:
        yield_to_training(self.worker_nice)
        record, ids = self.samples[index]
        cached = self.readout.cached(index) if self.readout is not None else None
        if cached is not None:  # the memory is all the step needs: the media are not read again
            return TrainingSample(torch.empty(0), [], ids, record.position, cached)
        try:
            features, times = load_media(
                record.media, record.kind, encoder=self.encoder, fps=self.fps, batch_size=self.batch_size
            )
        except VStreamError as exc:  # the errors of feature files, sources and encoding name the file
            raise TrainingDataError(f"{record.position}: {exc}") from exc
        if record.end_time is not None:  # the stream up to the question's moment
            kept = sum(t <= record.end_time + 1e-6 for t in times)
            if kept == 0:
                raise TrainingDataError(f"{record.position}: end_time {record.end_time} is before the first frame")
            features, times = features[:kept], times[:kept]
        if tuple(features.shape[1:]) != self.feature_shape:
            raise TrainingDataError(
                f"{record.position}: {record.media}: features of shape {tuple(features.shape)}; the model takes "
                f"(T, {self.feature_shape[0]}, {self.feature_shape[1]})"
            )
        features = features.to(torch.float32)
        memory = self.readout(index, features, times) if self.readout is not None else None
        return TrainingSample(features, times, ids, record.position, memory)


def collate_samples(samples: list[TrainingSample]) -> dict[str, list[TrainingSample]]:
    """A batch is the list of its samples: each has its own memory and length, built and padded in the step."""
    return {"samples": samples}
