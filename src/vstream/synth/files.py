"""The synthetic world on disk: one H.264 video per stream, the questions in VStream-QA's `conversations` format,
and the scene log each answer was drawn from."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from tqdm import tqdm

from vstream.errors import ConfigError
from vstream.synth.choices import choice_records
from vstream.synth.questions import CHANCE, QUESTION_TYPES, Question, make_questions, moment_questions
from vstream.synth.render import SIZE, render
from vstream.synth.world import WORLD_VERSION, StreamPlan, check_world_version, plan_stream

TRAINING_MOMENTS_PER_MINUTE = 12
"""Training conversations per minute of stream (each asks every question type allowed at its moment). A stream's
conversations are drawn in turn, so with more a minute the first ones stay the same; the videos and the evaluation
questions do not depend on it."""

ANNOTATIONS = "synth_conversations.json"
CHOICES = "synth_choices.json"
TRAINING = "synth_train.json"
SCENES = "scenes.jsonl"
WORLD = "world.json"


@dataclass(frozen=True)
class World:
    """What `write_world` wrote: the folder, its annotation file and its videos folder."""

    root: Path
    annotations: Path
    videos: Path
    questions: int
    training_samples: int
    """Training records (conversations at one moment each) in `synth_train.json`."""


def write_world(
    out: str | os.PathLike,
    seed: int,
    streams: int,
    seconds: int,
    *,
    size: int = SIZE,
    start: int = 0,
    version: str = WORLD_VERSION,
) -> World:
    """Write streams `start .. start + streams - 1` of world `seed`, `seconds` long each, under `out`:
    `videos/<id>.mp4` (H.264, 1 fps), `synth_conversations.json` (the questions, VStream-QA format),
    `synth_choices.json` (the same questions as timed multiple choice, `synth.choices`),
    `synth_train.json` (LLaVA-format training records: conversations at moments of each stream, each asking
    every question type allowed then, with its `end_time`), `scenes.jsonl` (the scene log), `world.json`.
    `version`: the world's version (`synth.world.WORLD_VERSIONS`; an older one to reproduce what was made with it).

    A video already written is kept (the files are a function of the seed), so an interrupted run resumes; a
    folder that holds another world (another version, seed, length or size) is refused rather than mixed in.
    """
    root = Path(out)
    world = {
        "version": version,
        "seed": seed,
        "streams": [start, start + streams],
        "seconds": seconds,
        "size": size,
        "fps": 1,
        "question_types": list(QUESTION_TYPES),
        "chance": CHANCE,
    }
    check_world_version(version)
    _refuse_another_world(root, world)
    videos = root / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    _write_text(root / WORLD, json.dumps(world, indent=1) + "\n")
    records, plans, training = [], [], []
    for index in tqdm(range(start, start + streams), desc="synthetic streams", unit="stream"):
        plan = plan_stream(seed, index, seconds, version)
        path = videos / f"{plan.stream_id}.mp4"
        if not path.is_file():
            write_video(plan, path, size=size)
        questions = make_questions(plan, seed)
        records.append(
            {
                "video_id": plan.stream_id,
                "video_path": f"videos/{path.name}",
                "duration": float(plan.seconds),
                "world": version,  # in the annotations' digest: the same questions of another world's videos
                "conversations": [q.to_conversation() for q in questions],
            }
        )
        plans.append(plan)
        moments = max(1, round(TRAINING_MOMENTS_PER_MINUTE * seconds / 60))
        training += training_records(plan.stream_id, moment_questions(plan, seed, moments))
    _write_text(root / ANNOTATIONS, json.dumps(records, indent=1) + "\n")
    _write_text(root / CHOICES, json.dumps(choice_records(records, seed), indent=1) + "\n")
    _write_text(root / TRAINING, json.dumps(training, indent=1) + "\n")
    _write_text(root / SCENES, "".join(json.dumps(p.to_dict()) + "\n" for p in plans))
    return World(root, root / ANNOTATIONS, videos, sum(len(r["conversations"]) for r in records), len(training))


def _refuse_another_world(root: Path, world: dict) -> None:
    """Raise when `root` already holds a world whose videos differ from `world`'s (its videos would be kept)."""
    path = root / WORLD
    if not path.is_file():
        return
    try:
        there = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: unreadable world description ({error}); write the world to a new folder") from error
    keys = ("version", "seed", "seconds", "size")
    if any(there.get(key) != world[key] for key in keys):
        held = ", ".join(f"{key} {there.get(key)}" for key in keys)
        wanted = ", ".join(f"{key} {world[key]}" for key in keys)
        same_but_version = all(there.get(key) == world[key] for key in keys[1:])
        hint = f" (or write version {there.get('version')} to go on with it)" if same_but_version else ""
        raise ConfigError(f"{root} already holds another world ({held}), not {wanted}: write to a new folder{hint}")


def training_records(stream_id: str, conversations: list[list[Question]]) -> list[dict]:
    """LLaVA-format records of one stream: each conversation a record, its questions in turn, the stream up to
    their moment (`end_time`); `types` lists the turns' question types."""
    records = []
    for k, questions in enumerate(q for q in conversations if q):
        turns = []
        for n, question in enumerate(questions):
            turns.append({"from": "human", "value": f"<video>\n{question.question}" if n == 0 else question.question})
            turns.append({"from": "gpt", "value": question.answer})
        records.append(
            {
                "id": f"{stream_id}@{k}",
                "video": f"{stream_id}.mp4",
                "end_time": questions[0].at,
                "types": [q.type for q in questions],
                "conversations": turns,
            }
        )
    return records


def write_video(plan: StreamPlan, path: Path, *, size: int = SIZE, fps: int = 1) -> Path:
    """Encode the stream's frames, `fps` a second, to an H.264 file at `path` (written whole, then moved in)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.mp4")
    with av.open(str(tmp), "w") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "14", "preset": "veryfast"}  # the small digit must survive compression
        for i in range(plan.seconds * fps):
            frame = av.VideoFrame.from_ndarray(render(plan, i / fps, size), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
    return path


def read_plans(root: str | os.PathLike) -> Iterator[StreamPlan]:
    """The scene logs of a written world, in stream order."""
    with open(Path(root) / SCENES, encoding="utf-8") as lines:
        for line in lines:
            yield StreamPlan.from_dict(json.loads(line))


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
