"""Predictions for a benchmark: every question answered, one JSONL record each, resumable and shardable.

Offline benchmarks build the memory from the whole clip; online ones replay the stream and ask each
question at its `end_time`, from the frames up to then only. By default the clock is simulated: the stream
plays as fast as the hardware allows and waits at each question, and frames reach the memory in batches of a
fixed size, so the memory, and so every answer, is a function of the video alone: the same on every run.
`realtime` plays the video in real time instead, as a live stream would come; then how frames are batched
depends on the machine's speed and load, and answers may differ from run to run.

Each record names what made it (model weights, settings, annotations) in the clear and in its key: a rerun
skips the questions already answered with the same settings (`status: ok`) and retries the rest; a retrained
checkpoint or other settings answer everything again.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

import vstream
from vstream.errors import ConfigError, VStreamError
from vstream.eval.benchmarks import get_benchmark
from vstream.eval.datasets import Annotations, QAItem
from vstream.eval.mcq import MCQuestion
from vstream.eval.mcq_predict import METHODS, answer_mcq_video, mcq_key, mcq_record
from vstream.eval.records import JsonlWriter, latest_by_key, read_jsonl, record_key
from vstream.eval.video_input import DEFAULT_FPS, clip_features, past_the_end, stream_source
from vstream.features import FEATURE_SUFFIXES
from vstream.memory import MemoryConfig
from vstream.model import GenerationOptions, VStream
from vstream.model.smol import SMOL
from vstream.stream.sources import VIDEO_SUFFIXES

log = logging.getLogger(__name__)


@dataclass
class PredictConfig:
    """How to run predictions.

    Attributes:
        videos: folder of videos (`<video_id>.<ext>`) or image folders (`<video_id>/`); features: folder of
            `<video_id>.safetensors` or `<video_id>.npy` (STAR.md §5); one of the two.
        mode: `online` or `offline`; default the benchmark's.
        realtime: online only: play the video in real time instead of a simulated clock (answers then depend on
            the machine's speed).
        fps: frames taken a second; None: 1 from videos, and a feature file's own times (a number that contradicts
            a file's stored frame rate is an error for that video).
        num_chunks, chunk_idx: this run takes every num_chunks-th video, starting at chunk_idx.
        memory: the memory's sizes; default the model's.
        choice_methods: multiple-choice questions only: `generate` and/or `loglik` (`mcq_predict.METHODS`); default
            both.
    """

    benchmark: str
    output: Path
    videos: Path | None = None
    features: Path | None = None
    mode: str | None = None
    realtime: bool = False
    fps: float | None = None
    num_chunks: int = 1
    chunk_idx: int = 0
    limit: int | None = None
    options: GenerationOptions = field(default_factory=GenerationOptions)
    memory: MemoryConfig | None = None
    choice_methods: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if (self.videos is None) == (self.features is None):
            raise ConfigError("give either --videos or --features (not both, not neither)")
        flag, folder = ("--videos", self.videos) if self.videos is not None else ("--features", self.features)
        if not Path(folder).is_dir():
            raise ConfigError(f"{flag} {folder}: no such folder")
        self.mode = self.mode or get_benchmark(self.benchmark).mode
        if self.mode not in ("online", "offline"):
            raise ConfigError(f"mode must be online or offline, got {self.mode!r}")
        if self.fps is not None and not self.fps > 0:
            raise ConfigError(f"--fps must be > 0, got {self.fps}")
        if not 0 <= self.chunk_idx < self.num_chunks:
            raise ConfigError(f"--chunk-idx must be in [0, --num-chunks), got {self.chunk_idx} of {self.num_chunks}")
        if self.choice_methods is not None:
            unknown = sorted(set(self.choice_methods) - set(METHODS))
            if unknown or not self.choice_methods:
                raise ConfigError(f"--choice-methods: {unknown or 'none given'}; known: {', '.join(METHODS)}")
            self.choice_methods = tuple(m for m in METHODS if m in self.choice_methods)


def chunk_path(output: Path, num_chunks: int, chunk_idx: int) -> Path:
    """The file of one shard (`preds.jsonl` -> `preds.chunk1-of-4.jsonl`); the output itself with one chunk."""
    if num_chunks == 1:
        return output
    return output.with_name(f"{output.stem}.chunk{chunk_idx}-of-{num_chunks}{output.suffix}")


def run_predict(
    model: VStream, questions: Annotations | Sequence[QAItem], config: PredictConfig, model_name: str
) -> dict[str, Any]:
    """Answer every question of this shard that has no `ok` record with these settings yet; returns counts.

    `questions`: loaded annotations (their file is named in every record), or a list of questions; open-ended
    (`QAItem`) or multiple-choice (`MCQuestion`, answered by `mcq_predict`).
    """
    items = list(questions.items if isinstance(questions, Annotations) else questions)
    multiple_choice = any(isinstance(item, MCQuestion) for item in items)
    if multiple_choice and config.realtime and config.mode == "online":
        raise ConfigError(
            "multiple-choice questions are asked on the simulated clock (the memory frozen at each question's time); "
            "leave out --realtime"
        )
    if multiple_choice and config.choice_methods is None:
        config = replace(config, choice_methods=METHODS)
    if not multiple_choice:
        config = replace(config, choice_methods=None)
    by_video: dict[str, list[QAItem]] = defaultdict(list)
    for item in items:
        by_video[item.video_id].append(item)
    videos = sorted(by_video)[config.chunk_idx :: config.num_chunks]
    output = chunk_path(config.output, config.num_chunks, config.chunk_idx)
    if config.memory is None:
        config = replace(config, memory=model.memory_config())
    settings = run_settings(model, config, model_name)
    stamp = {
        "benchmark": config.benchmark,
        "mode": config.mode,
        "model": settings["model"],
        "settings_key": settings_key(settings),
        "settings": settings,
        "annotations": _annotations_info(questions, len(items)),
    }
    done = latest_by_key(read_jsonl(output))

    def key(item: Any) -> str:
        if multiple_choice:
            return mcq_key(config.benchmark, item, stamp["settings_key"])
        return _key(config, item, settings)

    todo = [(video, [q for q in by_video[video] if key(q) not in done]) for video in videos]
    todo = [(video, questions) for video, questions in todo if questions]
    total = sum(len(questions) for _, questions in todo)
    counts: dict[str, Any] = {"questions": sum(len(by_video[v]) for v in videos), "answered": 0, "errors": 0}
    counts["already_done"] = counts["questions"] - total
    budget = total if config.limit is None else min(total, config.limit)
    with JsonlWriter(output) as writer, tqdm(total=budget, desc=f"{config.benchmark} {config.mode}", unit="q") as bar:
        for video, questions in todo:
            left = budget - counts["answered"] - counts["errors"]
            if left <= 0:
                break
            for record in _answer_video(model, video, questions[:left], config):
                record = {"key": key(record.pop("_item")), **stamp, **record}
                writer.write(record)
                counts["answered" if record["status"] == "ok" else "errors"] += 1
                bar.update(1)
                bar.set_postfix(failed=counts["errors"], refresh=False)
    counts["model"] = settings["model"]
    counts["output"] = str(output)
    return counts


def run_settings(model: VStream, config: PredictConfig, model_name: str) -> dict[str, Any]:
    """Everything besides the question that makes an answer, in the clear (stored in every record)."""
    weights = model.fingerprint()
    return {
        "model": f"{model_name}@{weights[:12]}",
        "model_name": model_name,
        "weights": weights,
        "mode": config.mode,
        "input": "videos" if config.videos is not None else "features",
        "fps": config.fps if config.fps is not None or config.videos is None else DEFAULT_FPS,
        "realtime": config.realtime,
        "memory": config.memory.to_dict() if config.memory else None,
        "options": asdict(config.options),
        "vstream_version": vstream.__version__,
    } | ({"choice_methods": list(config.choice_methods)} if config.choice_methods else {})


def settings_key(settings: dict[str, Any]) -> str:
    """A short hash of the settings (not the vstream version): equal for runs a report may put in one row."""
    return record_key(**{k: v for k, v in settings.items() if k != "vstream_version"})[:16]


def _annotations_info(questions: Annotations | Sequence[QAItem], count: int) -> dict[str, Any]:
    if isinstance(questions, Annotations):
        return {"source": Path(questions.source).name, "sha256": questions.digest, "questions": count}
    return {"source": None, "sha256": None, "questions": count}


def _key(config: PredictConfig, item: QAItem, settings: dict[str, Any]) -> str:
    """Question (its id and content: an edited question is asked again), model weights and settings."""
    return record_key(
        benchmark=config.benchmark,
        id=item.id,
        video=item.video_id,
        question=item.question,
        at=item.end_time,
        clip=(item.clip_start, item.clip_end),
        settings=settings_key(settings),
    )


def _answer_video(
    model: VStream, video_id: str, questions: list[QAItem], config: PredictConfig
) -> Iterator[dict[str, Any]]:
    """Yield one record per question about one video (errors become records with `status: error`)."""
    answered: set[str] = set()
    try:
        source = _locate(video_id, config)
        if isinstance(questions[0], MCQuestion):
            run = answer_mcq_video
        else:
            run = _offline if config.mode == "offline" else _online
        for record in run(model, source, questions, config):
            answered.add(record["id"])
            yield record
    except VStreamError as exc:  # a missing or unreadable video: each question left gets the reason
        log.warning("%s: %s", video_id, exc)
        for item in questions:
            if item.id not in answered:
                if isinstance(item, MCQuestion):
                    yield {**mcq_record(item), "status": "error", "error": str(exc)}
                else:
                    yield _record(item, status="error", error=str(exc))


def _offline(model: VStream, source: Path, questions: list[QAItem], config: PredictConfig) -> Iterator[dict[str, Any]]:
    features, times = clip_features(model, source, config.fps, questions[0].clip_start, questions[0].clip_end)
    snapshot = model.clip_snapshot(features.to(model.device), times, config.memory)
    step = _frame_step(times)
    for item in questions:
        answer = model.answer(snapshot, item.question, options=config.options)
        yield _record(item, answer=answer, warning=past_the_end(item.end_time, times[-1], step))


def _online(model: VStream, source: Path, questions: list[QAItem], config: PredictConfig) -> Iterator[dict[str, Any]]:
    from vstream.stream import StreamSession

    stream = stream_source(source, config.fps, questions[0].clip_start, questions[0].clip_end)
    session = StreamSession(model, stream, speed=1.0 if config.realtime else 0.0, memory_config=config.memory)
    step = 1.0 / (stream.fps or DEFAULT_FPS)
    schedule = [(item.end_time if item.end_time is not None else float("inf"), item.question) for item in questions]
    order = sorted(range(len(questions)), key=lambda i: schedule[i][0])
    try:
        for index, timed in zip(
            order, session.ask_at([schedule[i] for i in order], options=config.options), strict=True
        ):
            item = questions[index]
            ended = session.frame_handler.end_reason is not None
            warning = past_the_end(item.end_time, timed.answer.latest_frame_time, step) if ended else None
            yield _record(item, answer=timed.answer, time=timed.time, warning=warning)
    finally:
        session.close()


def _frame_step(times: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(times)), default=1.0 / DEFAULT_FPS)


def _record(
    item: QAItem,
    *,
    answer: Any = None,
    status: str = "ok",
    error: str | None = None,
    time: float | None = None,
    warning: str | None = None,
) -> dict[str, Any]:
    record = {
        "_item": item,
        "status": status,
        "id": item.id,
        "video_id": item.video_id,
        "question": item.question,
        "answer": item.answer,
        "question_type": item.question_type,
        "start_time": item.start_time,
        "end_time": item.end_time,
    }
    if answer is not None:
        record.update(
            prediction=answer.text,
            latest_frame_time=answer.latest_frame_time,
            frames_seen=answer.frames_seen,
            ttft_s=round(answer.ttft_s, 4),
            total_s=round(answer.total_s, 4),
        )
    if time is not None:
        record["asked_at"] = time
    if error is not None:
        record["error"] = error
    if warning is not None:
        log.warning("%s: %s", item.id, warning)
        record["warning"] = warning
    return record


def _locate(video_id: str, config: PredictConfig) -> Path:
    if config.features is not None:
        for suffix in FEATURE_SUFFIXES:
            path = config.features / f"{video_id}{suffix}"
            if path.is_file():
                return path
        raise VStreamError(f"no features for {video_id} in {config.features} ({' or '.join(FEATURE_SUFFIXES)})")
    for suffix in VIDEO_SUFFIXES:
        path = config.videos / f"{video_id}{suffix}"
        if path.is_file():
            return path
    if (config.videos / video_id).is_dir():
        return config.videos / video_id
    raise VStreamError(f"no video for {video_id} in {config.videos} ({', '.join(VIDEO_SUFFIXES)} or a folder)")


SHARD = re.compile(r"^(?P<stem>.+)\.chunk(?P<index>\d+)-of-(?P<count>\d+)(?P<suffix>\.[^.]*)$")


def check_shards(paths: Sequence[str | os.PathLike]) -> None:
    """Refuse to merge an incomplete set of shards: every `NAME.chunkI-of-N` for I in 0..N-1, each once."""
    shards = [(path, SHARD.match(Path(path).name)) for path in paths]
    named = [(path, match) for path, match in shards if match]
    if not named:
        return
    if len(named) != len(shards):
        plain = [str(path) for path, match in shards if not match]
        raise ConfigError(f"cannot merge shards with other files: {', '.join(plain)}")
    runs = {(m["stem"], int(m["count"]), m["suffix"]) for _, m in named}
    if len(runs) > 1:
        names = sorted(f"{stem}.chunk*-of-{count}{suffix}" for stem, count, suffix in runs)
        raise ConfigError(f"shards of different runs: {', '.join(names)}")
    (stem, count, suffix), indices = runs.pop(), sorted(int(m["index"]) for _, m in named)
    missing = sorted(set(range(count)) - set(indices))
    if missing:
        absent = ", ".join(f"{stem}.chunk{i}-of-{count}{suffix}" for i in missing)
        raise ConfigError(f"{len(missing)} of {count} shards are missing: {absent}")
    if len(indices) != len(set(indices)) or any(i >= count for i in indices):
        raise ConfigError(f"shards named twice or out of range: {sorted(indices)} of {count}")


def hub_model_without_gpu(model: str, device: str | None) -> str | None:
    """Why not to download a model from the Hub to run it on a machine without a GPU (None: go ahead); the
    command refuses with it, before any download, unless `--device cpu` insists."""
    local = model in ("tiny-random", SMOL) or Path(model).expanduser().is_dir()
    if local or torch.cuda.is_available() or device:
        return None
    return (
        f"no GPU here: {model} would be downloaded from the Hugging Face Hub and run on the CPU, which takes "
        "minutes per question for the 7B model; give --device cpu to go on anyway, or --model tiny-random to "
        "try the pipeline"
    )


def failures_of_all_shards(errors: int) -> int:
    """The failed questions of every shard of a torchrun / accelerate launch (this shard's when run alone).

    Every shard waits here for the others, so that a shard with failures (which exits 1) does not make the
    launcher stop shards still at work; each then reports the total.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "MASTER_ADDR" not in os.environ:
        return errors
    import datetime

    import torch.distributed as dist

    if not dist.is_available():
        return errors
    dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))  # shards may finish hours apart
    try:
        total = torch.tensor([errors], dtype=torch.int64)
        dist.all_reduce(total)
        return int(total.item())
    finally:
        dist.destroy_process_group()


def shard_from_environment() -> tuple[int, int] | None:
    """(num_chunks, chunk_idx) from torchrun / accelerate (`WORLD_SIZE`, `RANK`), if set."""
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        return int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    return None
