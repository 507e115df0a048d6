"""Predictions for a benchmark: every question answered, one JSONL record each, resumable and shardable.

Offline benchmarks build the memory from the whole clip; online ones replay the stream and ask each
question at its `end_time`, from the frames up to then only (a simulated clock by default: as fast as the
hardware allows; `realtime` plays the video in real time). Records are appended as they come; a rerun
skips the questions already answered (`status: ok`) and retries the rest.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vstream.errors import ConfigError, VStreamError
from vstream.eval.benchmarks import get_benchmark
from vstream.eval.datasets import QAItem
from vstream.eval.extract import encode_clip
from vstream.eval.records import JsonlWriter, latest_by_key, read_jsonl, record_key
from vstream.features import load_features
from vstream.memory import MemoryConfig
from vstream.model import GenerationOptions, VStream
from vstream.stream.sources import VIDEO_SUFFIXES, FeatureFileSource

log = logging.getLogger(__name__)


@dataclass
class PredictConfig:
    """How to run predictions.

    Attributes:
        videos: folder of videos (`<video_id>.<ext>`) or image folders (`<video_id>/`); features: folder of
            `<video_id>.safetensors` (STAR.md §5); one of the two.
        mode: `online` or `offline`; default the benchmark's.
        realtime: online only: play the video in real time instead of a simulated clock.
        num_chunks, chunk_idx: this run takes every num_chunks-th video, starting at chunk_idx.
        memory: the memory's sizes; default the model's.
    """

    benchmark: str
    output: Path
    videos: Path | None = None
    features: Path | None = None
    mode: str | None = None
    realtime: bool = False
    fps: float = 1.0
    num_chunks: int = 1
    chunk_idx: int = 0
    limit: int | None = None
    options: GenerationOptions = field(default_factory=GenerationOptions)
    memory: MemoryConfig | None = None

    def __post_init__(self) -> None:
        if (self.videos is None) == (self.features is None):
            raise ConfigError("give either --videos or --features (not both, not neither)")
        flag, folder = ("--videos", self.videos) if self.videos is not None else ("--features", self.features)
        if not Path(folder).is_dir():
            raise ConfigError(f"{flag} {folder}: no such folder")
        self.mode = self.mode or get_benchmark(self.benchmark).mode
        if self.mode not in ("online", "offline"):
            raise ConfigError(f"mode must be online or offline, got {self.mode!r}")
        if not 0 <= self.chunk_idx < self.num_chunks:
            raise ConfigError(f"--chunk-idx must be in [0, --num-chunks), got {self.chunk_idx} of {self.num_chunks}")


def chunk_path(output: Path, num_chunks: int, chunk_idx: int) -> Path:
    """The file of one shard (`preds.jsonl` -> `preds.chunk1-of-4.jsonl`); the output itself with one chunk."""
    if num_chunks == 1:
        return output
    return output.with_name(f"{output.stem}.chunk{chunk_idx}-of-{num_chunks}{output.suffix}")


def run_predict(model: VStream, items: list[QAItem], config: PredictConfig, model_id: str) -> dict[str, Any]:
    """Answer every question of this shard that has no `ok` record yet; returns counts."""
    by_video: dict[str, list[QAItem]] = defaultdict(list)
    for item in items:
        by_video[item.video_id].append(item)
    videos = sorted(by_video)[config.chunk_idx :: config.num_chunks]
    output = chunk_path(config.output, config.num_chunks, config.chunk_idx)
    if config.memory is None:
        config = replace(config, memory=model.memory_config())
    settings = {
        "model": model_id,
        "mode": config.mode,
        "fps": config.fps,
        "realtime": config.realtime,
        "options": asdict(config.options),
        "memory": config.memory.to_dict(),
    }
    done = latest_by_key(read_jsonl(output))
    todo = [(video, [q for q in by_video[video] if _key(config, q, settings) not in done]) for video in videos]
    todo = [(video, questions) for video, questions in todo if questions]
    total = sum(len(questions) for _, questions in todo)
    counts = {"questions": sum(len(by_video[v]) for v in videos), "already_done": 0, "answered": 0, "errors": 0}
    counts["already_done"] = counts["questions"] - total
    budget = total if config.limit is None else min(total, config.limit)
    with JsonlWriter(output) as writer, tqdm(total=budget, desc=f"{config.benchmark} {config.mode}", unit="q") as bar:
        for video, questions in todo:
            left = budget - counts["answered"] - counts["errors"]
            if left <= 0:
                break
            for record in _answer_video(model, video, questions[:left], config):
                record.update(
                    key=_key(config, record.pop("_item"), settings),
                    benchmark=config.benchmark,
                    mode=config.mode,
                    model=model_id,
                )
                writer.write(record)
                counts["answered" if record["status"] == "ok" else "errors"] += 1
                bar.update(1)
    counts["output"] = str(output)
    return counts


def _key(config: PredictConfig, item: QAItem, settings: dict[str, Any]) -> str:
    """Question (its id and content: an edited question is asked again), model and settings."""
    return record_key(
        benchmark=config.benchmark,
        id=item.id,
        video=item.video_id,
        question=item.question,
        at=item.end_time,
        **settings,
    )


def _answer_video(
    model: VStream, video_id: str, questions: list[QAItem], config: PredictConfig
) -> Iterator[dict[str, Any]]:
    """Yield one record per question about one video (errors become records with `status: error`)."""
    answered: set[str] = set()
    try:
        source = _locate(video_id, config)
        run = _offline if config.mode == "offline" else _online
        for record in run(model, source, questions, config):
            answered.add(record["id"])
            yield record
    except VStreamError as exc:  # a missing or unreadable video: each question left gets the reason
        log.warning("%s: %s", video_id, exc)
        for item in questions:
            if item.id not in answered:
                yield _record(item, status="error", error=str(exc))


def _offline(model: VStream, source: Path, questions: list[QAItem], config: PredictConfig) -> Iterator[dict[str, Any]]:
    if source.suffix == ".safetensors":
        features = load_features(source)
        times = [i / config.fps for i in range(len(features))]
    else:
        features, times = encode_clip(source, model.encode_frames, config.fps)
    snapshot = model.clip_snapshot(features.to(model.device), times, config.memory)
    for item in questions:
        answer = model.answer(snapshot, item.question, options=config.options)
        yield _record(item, answer=answer)


def _online(model: VStream, source: Path, questions: list[QAItem], config: PredictConfig) -> Iterator[dict[str, Any]]:
    from vstream.stream import StreamSession

    stream_source = FeatureFileSource(source, config.fps) if source.suffix == ".safetensors" else source
    session = StreamSession(
        model,
        stream_source,
        fps=config.fps,
        speed=1.0 if config.realtime else 0.0,
        memory_config=config.memory,
    )
    schedule = [(item.end_time if item.end_time is not None else float("inf"), item.question) for item in questions]
    order = sorted(range(len(questions)), key=lambda i: schedule[i][0])
    try:
        for index, timed in zip(
            order, session.ask_at([schedule[i] for i in order], options=config.options), strict=True
        ):
            yield _record(questions[index], answer=timed.answer, time=timed.time)
    finally:
        session.close()


def _record(
    item: QAItem, *, answer: Any = None, status: str = "ok", error: str | None = None, time: float | None = None
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
    return record


def _locate(video_id: str, config: PredictConfig) -> Path:
    if config.features is not None:
        path = config.features / f"{video_id}.safetensors"
        if path.is_file():
            return path
        raise VStreamError(f"no features for {video_id} in {config.features}")
    for suffix in VIDEO_SUFFIXES:
        path = config.videos / f"{video_id}{suffix}"
        if path.is_file():
            return path
    if (config.videos / video_id).is_dir():
        return config.videos / video_id
    raise VStreamError(f"no video for {video_id} in {config.videos} ({', '.join(VIDEO_SUFFIXES)} or a folder)")


def model_fingerprint(name: str, model: VStream) -> str:
    """The model's name plus a hash of its config, so that a changed checkpoint does not reuse old answers."""
    return f"{name}@{record_key(config=json.loads(model.config.to_json_string()))[:12]}"


def shard_from_environment() -> tuple[int, int] | None:
    """(num_chunks, chunk_idx) from torchrun / accelerate (`WORLD_SIZE`, `RANK`), if set."""
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        return int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    return None
