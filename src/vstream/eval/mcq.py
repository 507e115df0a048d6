"""Multiple-choice benchmarks in the `test_qa.json` form their public releases use: options inside the question
text, `answer` the 0-based index of the right option, a type field per benchmark, and (vstream's own addition,
for timed files of one's own) `at`, the second of the stream it is asked at. Each record is checked; a file of
another benchmark, or an open-ended file, is refused with the reason.

    questions = load_mcq("videomme/test_qa.json", "videomme")
    questions[0].options        # ('Because it is from the Ming Dynasty ...', ...); .letter == 'D'
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vstream.errors import AnnotationError, Problem, bad_records
from vstream.eval.records import annotation_records

LETTERS = "ABCDEFGH"


@dataclass(frozen=True)
class MCQuestion:
    """One multiple-choice question.

    Attributes:
        stem: the question without its options and instruction; options: the option texts, in order (A, B, ...).
        answer: index of the right option; types: the benchmark's task or question types of it (for per-type
            results); instruction: text after the options ("Only give the best option."), kept as the file has it.
        extra: the record's other fields (duration, url, time_reference, ...).
        at: for a streaming benchmark, the time in the stream (seconds) the question is asked at: the answer may
            see only the frames up to it; None: asked about the whole video.
    """

    id: str
    video_id: str
    stem: str
    options: tuple[str, ...]
    answer: int
    types: tuple[str, ...] = ()
    instruction: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    at: float | None = None

    @property
    def letter(self) -> str:
        """The right option's letter."""
        return LETTERS[self.answer]

    def options_text(self) -> str:
        """The options as `(A) text` lines."""
        return "\n".join(f"({LETTERS[i]}) {text}" for i, text in enumerate(self.options))


@dataclass(frozen=True)
class MCQSpec:
    """What a benchmark's records look like.

    Attributes:
        type_field: the field holding the task or question type (a string or a list of them), if any.
        marks: fields only this benchmark's records have (how a file is recognised).
        options: how many options each question has (min, max).
    """

    name: str
    title: str
    type_field: str | None
    marks: frozenset[str]
    options: tuple[int, int]
    matches: Callable[[dict[str, Any]], bool] = lambda record: True


MCQ_BENCHMARKS = {
    spec.name: spec
    for spec in (
        MCQSpec(
            "egoschema",
            "EgoSchema",
            None,
            frozenset(),
            (5, 5),
            lambda r: str(r.get("question", "")).startswith("Select the best answer") and "task_type" not in r,
        ),
        MCQSpec("mvbench", "MVBench", "task_type", frozenset({"task_type"}), (2, 5), lambda r: "url" not in r),
        MCQSpec("videomme", "Video-MME", "task_type", frozenset({"url", "domain", "sub_category"}), (4, 4)),
        MCQSpec("mlvu", "MLVU", "type", frozenset({"type"}), (2, 6), lambda r: "question_type" not in r),
        MCQSpec("lvbench", "LVBench", "question_type", frozenset({"question_type", "time_reference"}), (2, 6)),
        MCQSpec("nextmc", "NExT-QA (multiple choice)", "type", frozenset({"a0", "a1"}), (5, 5)),
    )
}
"""Recognised by their fields, most specific first (`detect_mcq_benchmark`)."""
CUSTOM_SPEC = MCQSpec("custom", "no known benchmark", None, frozenset(), (2, len(LETTERS)))
"""Any other file of the same form; its types from `task_type`, `question_type` or `type`, whichever it has."""
_TYPE_FIELDS = ("task_type", "question_type", "type")


def mcq_title(name: str) -> str:
    """The title of a multiple-choice format `detect_mcq_benchmark` named (`custom`: no known benchmark)."""
    return MCQ_BENCHMARKS[name].title if name in MCQ_BENCHMARKS else CUSTOM_SPEC.title


OPTION_LABEL = re.compile(r"^\s*(?:\(([A-H])\)|([A-H])[.)])\s*(.*?)\s*$", re.DOTALL)
"""An option written with its letter: `(B) text`, `B. text` or `B) text` (groups: the letter, either way; the text)."""
_QUESTION_PREFIX = re.compile(r"^\s*question\s*:\s*", re.IGNORECASE)
_OPTIONS_HEADER = re.compile(r"^\s*(options|choices)\s*:\s*$", re.IGNORECASE)


def split_options(text: str) -> tuple[str, tuple[str, ...], str]:
    """(stem, options, instruction) of a question whose options are in its text: `(A) ...` lines, an `Options:`
    block of them, or `A. ...` lines. Options must run A, B, C, ... without a gap; none found: ()."""
    lines = text.strip().split("\n")
    start = next((i for i, line in enumerate(lines) if _letter(line) == "A"), None)
    if start is None:
        return text.strip(), (), ""
    options, end = [], start
    for end in range(start, len(lines)):
        match = OPTION_LABEL.match(lines[end])
        if not match or _letter(lines[end]) != LETTERS[len(options)]:
            break
        options.append(match.group(3))
    else:
        end = len(lines)
    stem_lines = [line for line in lines[:start] if not _OPTIONS_HEADER.match(line)]
    stem = "\n".join(stem_lines).strip()
    # EgoSchema puts its instruction first, then "Question: ..."; MVBench starts with "Question: ..."
    if "\n" in stem and _QUESTION_PREFIX.match(stem.split("\n")[-1]):
        preamble, last = stem.rsplit("\n", 1)
        stem = _QUESTION_PREFIX.sub("", last)
        instruction_before = preamble.strip()
    else:
        stem, instruction_before = _QUESTION_PREFIX.sub("", stem), ""
    after = "\n".join(lines[end:]).strip()
    instruction = "\n".join(part for part in (instruction_before, after) if part)
    return stem.strip(), tuple(options), instruction


def _letter(line: str) -> str | None:
    match = OPTION_LABEL.match(line)
    return (match.group(1) or match.group(2)) if match else None


def detect_mcq_benchmark(records: Sequence[Any]) -> str | None:
    """The multiple-choice benchmark a file's records come from (by their fields), or None when they are not
    multiple-choice records (an answer that is not an option index, no options in the question)."""
    first = next((r for r in records if isinstance(r, dict)), None)
    if first is None:
        return None
    if {"a0", "a1", "answer"} <= first.keys():
        return "nextmc"
    if not isinstance(first.get("answer"), int) or isinstance(first.get("answer"), bool):
        return None
    if not split_options(str(first.get("question", "")))[1]:
        return None
    if "at" in first:  # no published file times its questions this way: a file of one's own
        return CUSTOM_SPEC.name
    for spec in MCQ_BENCHMARKS.values():
        if spec.marks <= first.keys() and spec.matches(first):
            return spec.name
    return CUSTOM_SPEC.name


def load_mcq(path: str | os.PathLike, benchmark: str) -> list[MCQuestion]:
    """The questions of a multiple-choice file of `benchmark` (a name of `MCQ_BENCHMARKS`, or `custom`: any file
    whose records have `question` with options in it and an `answer` index); a bad record is an error naming it."""
    questions, problems, _ = check_mcq(path, benchmark)
    if problems:
        raise bad_records(path, problems, AnnotationError)
    return questions


def check_mcq(path: str | os.PathLike, benchmark: str | None = None) -> tuple[list[MCQuestion], list[Problem], str]:
    """(good questions, problems, the benchmark the file is) of a multiple-choice file; `benchmark` None takes the
    one its records show. A file of another benchmark, or not multiple-choice at all, is an AnnotationError."""
    path = Path(path)
    records = annotation_records(path)
    found = detect_mcq_benchmark(records)
    if found is None:
        raise AnnotationError(
            f"{path}: not a multiple-choice file (each record needs `question` with its options in the text, "
            "e.g. '(A) ...' lines, and `answer`, the 0-based index of the right option)"
        )
    benchmark = benchmark or found
    if benchmark != "custom" and found != benchmark:
        if benchmark not in MCQ_BENCHMARKS:
            known = ", ".join([*MCQ_BENCHMARKS, "custom"])
            raise AnnotationError(f"unknown multiple-choice benchmark {benchmark!r}; known: {known}")
        if found == CUSTOM_SPEC.name:
            raise AnnotationError(
                f"{path}: a multiple-choice file, but not {MCQ_BENCHMARKS[benchmark].title}'s (its records lack "
                f"{MCQ_BENCHMARKS[benchmark].title}'s fields): use --benchmark custom to run it under its own name"
            )
        raise AnnotationError(
            f"{path}: this is a {MCQ_BENCHMARKS[found].title} file, not {MCQ_BENCHMARKS[benchmark].title}: "
            f"use --benchmark {found} (or --benchmark custom to run it under its own name)"
        )
    spec = MCQ_BENCHMARKS.get(found, CUSTOM_SPEC)
    questions, problems = [], []
    for i, record in enumerate(records):
        try:
            questions.append(_question(record, spec, strict_count=benchmark != "custom"))
        except ValueError as exc:
            problems.append(Problem(f"record {i}", str(exc)))
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        problems.append(Problem("file", f"{len(ids) - len(set(ids))} repeated ids"))
    return questions, problems, found


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of the file's bytes (16 hex digits): which version of the annotations a result answered."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _question(record: Any, spec: MCQSpec, strict_count: bool) -> MCQuestion:
    if not isinstance(record, dict):
        raise ValueError("not an object")
    if spec.name == "nextmc":
        return _next_question(record)
    text, answer = record.get("question"), record.get("answer")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("no question text")
    stem, options, instruction = split_options(text)
    if not options:
        raise ValueError("no options found in the question ('(A) ...', 'Options:' then '(A) ...', or 'A. ...')")
    low, high = spec.options
    if strict_count and not low <= len(options) <= high:
        raise ValueError(f"{len(options)} options; {spec.title} questions have {low}-{high}")
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(options):
        raise ValueError(f"answer {answer!r} is not an option index 0..{len(options) - 1}")
    video = record.get("video_id")
    if not isinstance(video, str) or not video:
        raise ValueError("no video_id")
    ident = record.get("id", f"{video}/{stem[:40]}")
    at = record.get("at")
    if at is not None and (isinstance(at, bool) or not isinstance(at, (int, float)) or not at >= 0):
        raise ValueError(f"at {at!r} is not a time in seconds >= 0")
    used = {"question", "answer", "video_id", "id", "at"}
    return MCQuestion(
        id=str(ident),
        video_id=video,
        stem=stem,
        options=options,
        answer=answer,
        types=_record_types(record, spec),
        instruction=instruction,
        extra={k: v for k, v in record.items() if k not in used},
        at=float(at) if at is not None else None,
    )


def _next_question(record: dict[str, Any]) -> MCQuestion:
    """NExT-QA's own multiple-choice rows: `video, question, answer, qid, type, a0..a4` (its CSV's columns)."""
    options = tuple(str(record.get(f"a{i}", "")).strip() for i in range(5))
    if not all(options):
        raise ValueError("options a0..a4 are not all given")
    try:
        answer = int(record["answer"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"answer {record.get('answer')!r} is not an option index 0..4") from None
    if not 0 <= answer < 5:
        raise ValueError(f"answer {answer} is not an option index 0..4")
    video = str(record.get("video", record.get("video_id", ""))).strip()
    question = str(record.get("question", "")).strip()
    if not video or not question:
        raise ValueError("no video or no question")
    ident = f"{video}_{record.get('qid', '')}"
    kind = str(record.get("type", "")).strip()
    return MCQuestion(ident, video, question, options, answer, (kind,) if kind else (), "", {})


def _record_types(record: dict[str, Any], spec: MCQSpec) -> tuple[str, ...]:
    if spec.type_field:
        return _types(record.get(spec.type_field))
    if spec is CUSTOM_SPEC:
        field_name = next((name for name in _TYPE_FIELDS if name in record), None)
        return _types(record[field_name]) if field_name else ()
    return ()


def _types(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) and value:
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"type field {value!r} is not a string or a list of strings")
