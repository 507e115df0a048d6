"""Question annotations in every format they are distributed in, validated record by record.

- per-video `conversations` (VStream-QA as in `rvs_*_conversations.json`): `[{video_id, duration,
  conversations: [{question, answer, start_time, end_time}]}]`;
- flat question lists (the Hugging Face dataset `IVGSZ/VStream-QA`): `[{id, video_id, question, answer,
  start_time?, end_time?, ...}]`, as JSON or JSONL;
- `test_qa.json` of the classic sets (ActivityNet-QA, NExT-QA, MSVD-QA, MSRVTT-QA): `[{id, video_id,
  question, answer, answer_type?, duration?}]`;
- clip metadata for cutting source videos: `[{video_id, original_video, start_time, end_time}]` (Ego4D, seconds)
  or `[{video_id, original_video, start_shot, end_shot}]` (MovieNet, keyframe shots).

Bad records are reported by position and reason, never silently dropped.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vstream.errors import AnnotationError, Problem, bad_records
from vstream.eval.mcq import detect_mcq_benchmark, mcq_title
from vstream.eval.records import annotation_records, read_annotation_file


@dataclass(frozen=True)
class QAItem:
    """One question about one video.

    Attributes:
        start_time, end_time: the span (seconds into the video) the question is about; online benchmarks
            ask it at `end_time`. None when the question is about the whole clip.
        question_type: given by the annotations, else `yes/no` or `open-ended` from the answer.
        clip_start, clip_end: the part of the video file the stream is made of (RVS-Movie's `clip_start_time`,
            `clip_end_time`, seconds into the file); None for the whole file. Question times are file times too.
    """

    id: str
    video_id: str
    question: str
    answer: str
    start_time: float | None = None
    end_time: float | None = None
    question_type: str = "open-ended"
    duration: float | None = None
    clip_start: float | None = None
    clip_end: float | None = None


@dataclass(frozen=True)
class ClipSpec:
    """A clip to cut from a source video: by seconds (`start_time`/`end_time`) or by shots (`start_shot`/`end_shot`)."""

    video_id: str
    original_video: str
    start_time: float | None = None
    end_time: float | None = None
    start_shot: int | None = None
    end_shot: int | None = None


@dataclass
class Annotations:
    """Validated records of one file, and the problems found in it."""

    source: str
    format: str
    items: list[Any] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    digest: str | None = None
    """sha256 of the file's bytes (16 hex digits): which version of the annotations a result answered."""

    def raise_if_problems(self) -> None:
        """An AnnotationError listing every bad record."""
        if self.problems:
            raise bad_records(self.source, self.problems, AnnotationError)


def load_annotations(path: str | os.PathLike, *, strict: bool = True) -> Annotations:
    """Questions from any supported file (format detected from its records); `strict` raises on bad records."""
    path = Path(path)
    records = annotation_records(path)
    first = next((r for r in records if isinstance(r, dict)), {})
    choice = detect_mcq_benchmark(records)
    if choice is not None:  # its answers are option indices: read as open-ended, every answer would be "2"
        raise AnnotationError(
            f"{path}: a multiple-choice file ({mcq_title(choice)}; options in the question, the answer an "
            f"option index), not open-ended questions: run it with `vstream eval predict --benchmark {choice}`"
        )
    parse = _conversations if "conversations" in first else _flat
    result = parse(records, str(path))
    result.digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    if strict:
        result.raise_if_problems()
    return result


def load_clip_metadata(path: str | os.PathLike, *, strict: bool = True) -> Annotations:
    """Clip specifications for `vstream data cut`."""
    path = Path(path)
    data = read_annotation_file(path)
    records = data.get("data", data) if isinstance(data, dict) else data
    result = Annotations(str(path), "clips")
    for i, record in enumerate(records if isinstance(records, list) else []):
        where = f"record {i}"
        try:
            video_id, original = _text(record, "video_id"), _text(record, "original_video")
            if "start_shot" in record or "end_shot" in record:
                start, end = _int(record, "start_shot"), _int(record, "end_shot")
                _check_span(start, end)
                result.items.append(ClipSpec(video_id, original, start_shot=start, end_shot=end))
            else:
                start, end = _number(record, "start_time"), _number(record, "end_time")
                _check_span(start, end)
                result.items.append(ClipSpec(video_id, original, start_time=start, end_time=end))
        except _Bad as bad:
            result.problems.append(Problem(where, str(bad)))
    if not isinstance(records, list):
        result.problems.append(Problem("file", "expected a list of clip records"))
    if strict:
        result.raise_if_problems()
    return result


def _conversations(videos: list, source: str) -> Annotations:
    result = Annotations(source, "conversations")
    for v, video in enumerate(videos):
        where = f"videos[{v}]"
        try:
            if not isinstance(video, dict):
                raise _Bad("not an object")
            video_id = _text(video, "video_id")
            duration = _number(video, "duration", required=False)
            clip = _clip(video)
            conversations = video.get("conversations")
            if not isinstance(conversations, list):
                raise _Bad("'conversations' is missing or not a list")
        except _Bad as bad:
            result.problems.append(Problem(where, str(bad)))
            continue
        for c, turn in enumerate(conversations):
            try:
                result.items.append(_item(turn, f"{video_id}#{c}", video_id, duration, clip))
            except _Bad as bad:
                result.problems.append(Problem(f"{where}.conversations[{c}]", str(bad)))
    _check_duplicates(result)
    return result


def _flat(records: list, source: str) -> Annotations:
    result = Annotations(source, "questions")
    for i, record in enumerate(records):
        try:
            if not isinstance(record, dict):
                raise _Bad("not an object")
            video_id = _text(record, "video_id", aliases=("video_name", "video"))
            question_id = str(record["id"]) if "id" in record else f"{video_id}#{i}"
            duration = _number(record, "duration", required=False)
            result.items.append(_item(record, question_id, video_id, duration, _clip(record)))
        except _Bad as bad:
            result.problems.append(Problem(f"record {i}", str(bad)))
    _check_duplicates(result)
    return result


def _clip(record: dict) -> tuple[float | None, float | None]:
    """`clip_start_time`/`clip_end_time` (RVS-Movie): the part of the video file that makes the stream."""
    start = _number(record, "clip_start_time", required=False)
    end = _number(record, "clip_end_time", required=False)
    if start is not None and end is not None:
        _check_span(start, end)
    return start, end


def _item(
    record: Any, question_id: str, video_id: str, duration: float | None, clip: tuple[float | None, float | None]
) -> QAItem:
    if not isinstance(record, dict):
        raise _Bad("not an object")
    question, answer = _text(record, "question"), _text(record, "answer")
    start = _number(record, "start_time", required=False)
    end = _number(record, "end_time", required=False)
    if start is not None and end is not None:
        _check_span(start, end)
    if end is not None and duration is not None and end > duration + 1:
        raise _Bad(f"end_time {end} is past the video's duration {duration}")
    kind = record.get("question_type") or record.get("type") or record.get("answer_type")
    kind = str(kind) if kind else infer_type(answer)
    return QAItem(question_id, video_id, question, answer, start, end, kind, duration, *clip)


def infer_type(answer: str) -> str:
    """`yes/no` when the answer starts with yes or no, else `open-ended`."""
    word = answer.strip().lower().split(maxsplit=1)[0].strip(".,!") if answer.strip() else ""
    return "yes/no" if word in ("yes", "no") else "open-ended"


def _check_duplicates(result: Annotations) -> None:
    seen: dict[str, int] = {}
    for position, item in enumerate(result.items):
        if item.id in seen:
            result.problems.append(Problem(f"question {item.id!r}", f"duplicate id (also question {seen[item.id]})"))
        seen.setdefault(item.id, position)


class _Bad(Exception):
    pass


def _text(record: dict, name: str, aliases: tuple[str, ...] = ()) -> str:
    for key in (name, *aliases):
        value = record.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    raise _Bad(f"'{name}' is missing or empty")


def _number(record: dict, name: str, required: bool = True) -> float | None:
    value = record.get(name)
    if value is None:
        if required:
            raise _Bad(f"'{name}' is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise _Bad(f"'{name}' must be a number of seconds >= 0, got {value!r}")
    return float(value)


def _int(record: dict, name: str) -> int:
    value = record.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Bad(f"'{name}' must be an integer >= 0, got {value!r}")
    return value


def _check_span(start: float, end: float) -> None:
    if end < start:
        raise _Bad(f"ends ({end}) before it starts ({start})")
