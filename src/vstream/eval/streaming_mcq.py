"""Streaming video benchmarks as timed multiple-choice questions: each `MCQuestion` carries `at`, the second of
the stream it is asked at, so that the answer may see only the frames up to it.

OVO-Bench (github.com/JoeLeelyf/OVO-Bench, `data/ovo_bench_new.json`, added in commit f3911d7 "version-2" of
2025-03-23 and unchanged up to c34093f of 2025-07-24): one JSON list of records, each with `id` (int), `task` and
`video` (a path relative to the source-video tree, e.g. "COIN/Hf2AisK1wHY.mp4").

- Backward tracing (EPM, ASI, HLD) and real-time perception (OCR, ACR, ATR, STU, FPD, OJR): `question` (str),
  `options` (list of str, 2-5), `gt` (int, 0-based index of the right option), `answer` (the right option's
  text, kept in `extra`) and `realtime` (int or float seconds: the moment asked, `at`). One question each.
- Forward active responding (REC, SSR, CRR): `test_info`, a list of probes `{"realtime": seconds, ...}`; each probe
  becomes one yes/no question asked at its `realtime` (see `forward_question`). REC records add `activity` (str),
  `start_times` / `end_times` (lists of seconds) and probes `count` (int: repetitions done by then); SSR records add
  `tutorial`, `all_steps`, `start_time` / `end_time` and probes `step` (str) and `type` (1: the step is being done
  at that moment, 0: not); CRR records add `question`, `answer`, `ask_time`, `clue_time` and probes `type` (1: the
  video so far holds the clue needed to answer, 0: not yet).

StreamingBench, Real-Time Visual Understanding, in either of its published forms:

- JSON (github.com/THUNLP-MT/StreamingBench, `src/data/questions_real.json`, last changed in commit c025cb7 of
  2025-02-15; also `questions_real_stream.json`): a list of entries `{"video_path": "./videos/sample_1_real.mp4",
  "questions": [...], "time", "video_categories", "captions"}` (several entries may share a video); each question
  has `task_type`, `question`, `time_stamp` ("HH:MM:SS": the moment asked, `at`; the file also writes "H:MM:SS",
  "MM:SS" and "00:00:8"), `options` (list of "A. text" strings) and `answer` (a letter), and may have
  `required_ability`, `cause`, `effect`, `audio_path`, `time`.
- CSV (huggingface.co/datasets/mjuicem/StreamingBench, `StreamingBench/Real_Time_Visual_Understanding.csv`, columns
  as its dataset card lists them): one row per question with `question_id` ("Real-Time Visual
  Understanding_sample_1_1"), `task_type`, `question`, `time_stamp`, `answer` (a letter), `options` (a Python list
  written as a string) and `frames_required`, `temporal_clue_type`.

Options written with their own letter ("A. text", "(A) text") lose it, but only when every option of the question
has one and the letters run A, B, C, ... in order (OVO-Bench has names such as "A. Wade", "D. Carter" as options).

`video_id`, the name of the video under a `--videos` folder (`<videos>/<video_id>.mp4`), is the record's video path
without its extension: OVO-Bench keeps its folders ("Ego4D/clips/ec4a3ba3-..."), as its source-video tree has them;
StreamingBench keeps the file name only ("sample_1_real"), as its preprocessing moves every video into one flat
`videos/` folder and may rewrite the paths as absolute ones; a CSV row, which names no video, takes the same name
from its `question_id` ("..._sample_1_1" -> "sample_1_real"). A leading "./" is dropped; an absolute OVO-Bench path
keeps only its file name.

Every record is checked and all bad ones are listed in one AnnotationError naming the file and each record's index.
"""

from __future__ import annotations

import ast
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from vstream.errors import AnnotationError, Problem, bad_records
from vstream.eval.mcq import LETTERS, OPTION_LABEL, MCQuestion
from vstream.eval.records import annotation_records

STREAMING_BENCHMARKS = {"ovobench": "OVO-Bench", "streamingbench": "StreamingBench"}
"""The streaming benchmarks this module reads, by name, with their titles."""

OVO_CATEGORIES = {
    **dict.fromkeys(("EPM", "ASI", "HLD"), "backward"),
    **dict.fromkeys(("OCR", "ACR", "ATR", "STU", "FPD", "OJR"), "realtime"),
    **dict.fromkeys(("REC", "SSR", "CRR"), "forward"),
}
"""OVO-Bench's tasks and the category each belongs to."""

YES_NO = ("Yes", "No")

_ANSWER = re.compile(r"^\(?([A-H])\)?\.?$")
_CSV_SAMPLE = re.compile(r"_sample_(\d+)_\d+$")


def load_ovo_bench(path: str | os.PathLike) -> list[MCQuestion]:
    """The questions of an OVO-Bench annotation file (`ovo_bench_new.json`): one per backward or real-time record,
    one yes/no question per probe of a forward record; a bad record is an AnnotationError naming it."""
    return _load(path, "ovobench")


def load_streamingbench(path: str | os.PathLike) -> list[MCQuestion]:
    """The questions of a StreamingBench Real-Time Visual Understanding file (`questions_real.json` or
    `Real_Time_Visual_Understanding.csv`); a bad record is an AnnotationError naming it."""
    return _load(path, "streamingbench")


def detect_streaming_benchmark(records: Sequence[Any]) -> str | None:
    """The benchmark a file's records come from, "ovobench" or "streamingbench", by their fields (those of its first
    object); None when they have neither's."""
    first = next((r for r in records if isinstance(r, dict)), None)
    if first is None:
        return None
    marks = ("realtime" in first, "test_info" in first, first.get("task") in OVO_CATEGORIES)
    if "task" in first and "video" in first and any(marks):
        return "ovobench"
    if isinstance(first.get("questions"), list) and "video_path" in first:
        return "streamingbench"
    if {"question_id", "time_stamp", "options", "answer"} <= first.keys():
        return "streamingbench"
    return None


def check_streaming_mcq(
    path: str | os.PathLike, benchmark: str | None = None
) -> tuple[list[MCQuestion], list[Problem], str]:
    """(good questions, problems, the benchmark the file is) of a streaming benchmark's file; `benchmark` None takes
    the one its records show. A file of another benchmark, or of none of them, is an AnnotationError."""
    path = Path(path)
    records = annotation_records(path)
    found = detect_streaming_benchmark(records)
    if benchmark is not None and benchmark not in STREAMING_BENCHMARKS:
        raise AnnotationError(f"unknown streaming benchmark {benchmark!r}; known: {', '.join(STREAMING_BENCHMARKS)}")
    if found is None:
        wanted = STREAMING_BENCHMARKS[benchmark] if benchmark else "OVO-Bench or StreamingBench"
        raise AnnotationError(f"{path}: not an annotation file of {wanted} (its records lack their fields)")
    if benchmark is not None and found != benchmark:
        raise AnnotationError(
            f"{path}: this is a {STREAMING_BENCHMARKS[found]} file, not {STREAMING_BENCHMARKS[benchmark]}"
        )
    reader = _ovo_record if found == "ovobench" else _streamingbench_record
    questions: list[MCQuestion] = []
    problems: list[Problem] = []
    seen: Counter[str] = Counter()
    for i, record in enumerate(records):
        try:
            made = reader(record, seen)
        except _Bad as exc:
            problems.append(Problem(f"record {i}{exc.where}", exc.reason))
            continue
        questions.extend(made)
    ids = Counter(q.id for q in questions)
    repeated = sorted(ident for ident, n in ids.items() if n > 1)
    if repeated:
        more = " ..." if len(repeated) > 5 else ""
        problems.append(Problem("file", f"repeated ids: {', '.join(repeated[:5])}{more}"))
    return questions, problems, found


def forward_question(record: dict[str, Any], index: int) -> tuple[str, int]:
    """(question text, answer index into ("Yes", "No")) of probe `index` of an OVO-Bench forward record.

    - REC (`activity`, probe `count`): asks whether the action has been done more than N times by then, N being
      the previous probe's `count` (0 for the first): Yes when the probe's `count` is above it, i.e. when a
      repetition was completed since the previous probe. (OVO-Bench asks for the count itself; asking with the
      probe's own count would make every answer Yes.)
    - SSR (probe `step`, `type`): asks whether the person is doing that step right now: Yes when `type` is 1.
    - CRR (`question`, probe `type`): asks whether the video so far, its latest frames above all, holds enough to
      answer the record's question: Yes when `type` is 1.
    """
    task, probe = record["task"], record["test_info"][index]
    if task == "REC":
        count = _count(probe.get("count"))
        before = _count(record["test_info"][index - 1].get("count")) if index else 0
        activity = _text(record.get("activity"), "activity")
        times = "at least once" if before == 0 else f"more than {before} times"
        stem = (
            f'Counting every complete repetition by anyone in the video, has the action "{activity}" been '
            f"performed {times} so far?"
        )
        return stem, 0 if count > before else 1
    if task == "SSR":
        step = _text(probe.get("step"), "step")
        stem = f'This is a tutorial video. Is the person carrying out this step of it right now: "{step}"?'
        return stem, _yes_no(probe.get("type"))
    if task == "CRR":
        question = _text(record.get("question"), "question")
        stem = (
            f'Here is a question about what happens at the end of the video so far: "{question}" '
            "Do the frames seen up to now, the latest ones above all, give enough to answer it?"
        )
        return stem, _yes_no(probe.get("type"))
    raise _Bad(f"task {task!r} is not a forward task (REC, SSR, CRR)")


class _Bad(ValueError):
    def __init__(self, reason: str, where: str = "") -> None:
        super().__init__(reason)
        self.reason, self.where = reason, where


def _load(path: str | os.PathLike, benchmark: str) -> list[MCQuestion]:
    questions, problems, _ = check_streaming_mcq(path, benchmark)
    if problems:
        raise bad_records(path, problems, AnnotationError)
    return questions


# OVO-Bench


def _ovo_record(record: Any, seen: Counter[str]) -> list[MCQuestion]:
    if not isinstance(record, dict):
        raise _Bad("not an object")
    ident = record.get("id")
    if not isinstance(ident, (int, str)) or isinstance(ident, bool) or ident == "":
        raise _Bad(f"id {ident!r} is not an int or a string")
    task = record.get("task")
    if task not in OVO_CATEGORIES:
        raise _Bad(f"task {task!r} is not one of {', '.join(OVO_CATEGORIES)}")
    video = _video_id(record.get("video"), keep_folders=True)
    category = OVO_CATEGORIES[task]
    if category != "forward":
        options = _options(record.get("options"))
        answer = record.get("gt")
        if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(options):
            raise _Bad(f"gt {answer!r} is not an option index 0..{len(options) - 1}")
        used = {"id", "task", "question", "options", "gt", "realtime"}
        return [
            MCQuestion(
                id=str(ident),
                video_id=video,
                stem=_text(record.get("question"), "question"),
                options=options,
                answer=answer,
                types=(task, category),
                extra={k: v for k, v in record.items() if k not in used},
                at=_seconds(record.get("realtime"), "realtime"),
            )
        ]
    probes = record.get("test_info")
    if not isinstance(probes, list) or not probes:
        raise _Bad("test_info is not a non-empty list of probes")
    times = []
    for j, probe in enumerate(probes):
        if not isinstance(probe, dict):
            raise _Bad("not an object", f" probe {j}")
        try:
            times.append(_seconds(probe.get("realtime"), "realtime"))
        except _Bad as exc:
            raise _Bad(exc.reason, f" probe {j}") from None
    repeats = {t for t, n in Counter(times).items() if n > 1}
    shared = {k: v for k, v in record.items() if k not in {"id", "task", "test_info"}}
    questions = []
    for j, (probe, at) in enumerate(zip(probes, times, strict=True)):
        try:
            stem, answer = forward_question(record, j)
        except _Bad as exc:
            raise _Bad(exc.reason, f" probe {j}") from None
        suffix = f"#{j}" if at in repeats else ""  # two probes at one moment (SSR's steps): told apart by index
        questions.append(
            MCQuestion(
                id=f"{ident}@{_time_text(at)}{suffix}",
                video_id=video,
                stem=stem,
                options=YES_NO,
                answer=answer,
                types=(task, category),
                extra={**shared, "probe": probe, "probe_index": j},
                at=at,
            )
        )
    return questions


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Bad(f"count {value!r} is not a whole number >= 0")
    return value


def _yes_no(value: Any) -> int:
    if value not in (0, 1) or isinstance(value, bool):
        raise _Bad(f"type {value!r} is not 0 or 1")
    return 0 if value == 1 else 1


# StreamingBench


def _streamingbench_record(record: Any, seen: Counter[str]) -> list[MCQuestion]:
    if not isinstance(record, dict):
        raise _Bad("not an object")
    if "questions" not in record:  # a CSV row: one question, its video named by its id
        qid = record.get("question_id")
        match = _CSV_SAMPLE.search(qid) if isinstance(qid, str) else None
        if match is None:
            raise _Bad(f"question_id {qid!r} does not end in _sample_<n>_<k>")
        used = {"task_type", "question", "time_stamp", "options", "answer"}
        extra = {k: v for k, v in record.items() if k not in used}
        return [_streamingbench_question(record, f"sample_{match.group(1)}_real", qid, extra)]
    video = _video_id(record.get("video_path"), keep_folders=False)
    entries = record["questions"]
    if not isinstance(entries, list) or not entries:
        raise _Bad("questions is not a non-empty list")
    shared = {k: v for k, v in record.items() if k != "questions"}
    questions = []
    for j, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _Bad("not an object", f" question {j}")
        seen[video] += 1
        used = {"task_type", "question", "time_stamp", "options", "answer"}
        extra = {**shared, **{k: v for k, v in entry.items() if k not in used}}
        try:
            questions.append(_streamingbench_question(entry, video, f"{video}_{seen[video]}", extra))
        except _Bad as exc:
            raise _Bad(exc.reason, f" question {j}") from None
    return questions


def _streamingbench_question(entry: dict[str, Any], video: str, ident: str, extra: dict[str, Any]) -> MCQuestion:
    raw = entry.get("options")
    if isinstance(raw, str):  # the CSV writes the list as Python source
        try:
            raw = ast.literal_eval(raw.strip()) if raw.strip() else None
        except (SyntaxError, ValueError):
            raise _Bad(f"options {raw[:60]!r} is not a list") from None
    options = _options(raw)
    letter = entry.get("answer")
    match = _ANSWER.match(letter.strip()) if isinstance(letter, str) else None
    if match is None or LETTERS.index(match.group(1)) >= len(options):
        raise _Bad(f"answer {letter!r} is not an option letter A..{LETTERS[len(options) - 1]}")
    task_type = _text(entry.get("task_type"), "task_type")
    return MCQuestion(
        id=ident,
        video_id=video,
        stem=_text(entry.get("question"), "question"),
        options=options,
        answer=LETTERS.index(match.group(1)),
        types=(task_type,),
        extra=extra,
        at=_clock(entry.get("time_stamp")),
    )


def _clock(value: Any) -> float:
    """Seconds of a "HH:MM:SS" time ("H:MM:SS", "MM:SS", a fraction of a second also read)."""
    if value is None or value == "":
        raise _Bad("no time_stamp (the time the question is asked at)")
    if not isinstance(value, str):
        raise _Bad(f"time_stamp {value!r} is not a string")
    parts = value.strip().split(":")
    last = r"\d+(\.\d+)?" if len(parts) == 1 else r"\d{1,2}(\.\d+)?"
    patterns = [*[r"\d+", r"\d{1,2}"][: len(parts) - 1], last]
    if len(parts) > 3 or not all(re.fullmatch(pattern, part) for pattern, part in zip(patterns, parts, strict=True)):
        raise _Bad(f"time_stamp {value!r} is not HH:MM:SS")
    if any(float(part) >= 60 for part in parts[1:]):
        raise _Bad(f"time_stamp {value!r} is not HH:MM:SS (minutes and seconds run 0-59)")
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + float(part)
    return seconds


# Shared


def _options(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _Bad("no options")
    if len(value) < 2 or len(value) > len(LETTERS):
        raise _Bad(f"{len(value)} options; 2..{len(LETTERS)} are needed")
    if not all(isinstance(option, str) for option in value):
        raise _Bad("options are not all strings")
    matches = [OPTION_LABEL.match(option) for option in value]
    letters = "".join((m.group(1) or m.group(2)) if m else "-" for m in matches)
    if letters == LETTERS[: len(value)]:
        options = tuple(m.group(3) for m in matches if m)
    else:
        options = tuple(option.strip() for option in value)
    empty = [i for i, option in enumerate(options) if not option]
    if empty:
        raise _Bad(f"option {LETTERS[empty[0]]} is empty")
    return options


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad(f"no {name} text")
    return value.strip()


def _seconds(value: Any, name: str) -> float:
    if value is None:
        raise _Bad(f"no {name} (the time the question is asked at)")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise _Bad(f"{name} {value!r} is not a number of seconds >= 0")
    return float(value)


def _video_id(value: Any, keep_folders: bool) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad("no video path")
    path = PurePosixPath(value.strip().replace("\\", "/"))
    if path.is_absolute() or not keep_folders:
        return path.stem
    parts = [part for part in path.parts if part != "."]
    return str(PurePosixPath(*parts).with_suffix("")) if parts else path.stem


def _time_text(seconds: float) -> str:
    """`seconds` as short as it reads exactly: 32.0 -> "32", 88.43 -> "88.43"."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return text or "0"
