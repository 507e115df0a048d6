"""LLaVA-format training records: read from JSON or JSONL, every bad one listed with its position and reason.

A file is a JSON list (or `{"data": [...]}`) or JSONL of records such as

    {"id": "v1", "video": "clips/v1.mp4",                     # or "image": "coco/1.jpg"
     "conversations": [{"from": "human", "value": "<video>\\nWhat happens?"}, {"from": "gpt", "value": "..."}]}

A video record may carry `"end_time": SECONDS`: the question is asked at that moment of the stream and its memory
is built from the frames up to it only, as an online question sees it.

None is skipped silently: a record with a problem is listed, and training does not start until none is left.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vstream.errors import Problem, TrainingDataError, bad_records
from vstream.train.media import MediaRoots, media_kind, media_problems

PLACEHOLDERS = ("<image>", "<video>")
"""Where a record puts its media; exactly one per conversation, in the first question (removed from the text)."""
HUMAN_ROLES, ASSISTANT_ROLES = ("human", "user"), ("gpt", "assistant")


@dataclass(frozen=True)
class TrainingRecord:
    """One validated record of a LLaVA-format file."""

    position: str
    media: Path
    kind: str
    """`features`, `video` (a video file or a folder of images) or `image`."""
    turns: tuple[tuple[str, str], ...]
    """(question, answer) pairs, the placeholder removed from the text."""
    end_time: float | None = None
    """Videos and feature files: only the frames up to this stream time (an online question's moment)."""


@dataclass
class TrainingRecords:
    """The valid records of one or more files, and the problems found in them."""

    source: str
    format: str = "llava"
    items: list[TrainingRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def raise_if_problems(self) -> None:
        """A TrainingDataError listing the bad records (the first 20 and how many more)."""
        raise_for(self.source, self.problems)


def read_records(path: Path) -> list[Any]:
    """The records of a JSON (a list, or `{"data": [...]}`) or JSONL file, not yet validated."""
    path = Path(path)
    if not path.is_file():
        raise TrainingDataError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        data = []
        for number, line in enumerate(text.splitlines(), 1):
            try:
                data += [json.loads(line)] if line.strip() else []
            except json.JSONDecodeError as exc:
                raise TrainingDataError(f"{path}: line {number} is not valid JSON ({exc.msg})") from exc
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TrainingDataError(f"{path}: not valid JSON ({exc})") from exc
    records = data.get("data", data) if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise TrainingDataError(f"{path}: expected a list of records (or {{'data': [...]}})")
    return records


def is_llava(records: Sequence[Any]) -> bool:
    """Whether records are LLaVA conversations (turns of `from`/`value`), not benchmark questions (whose
    `conversations` hold `question`/`answer`): decided by the first turn found."""
    for record in records:
        turns = record.get("conversations") if isinstance(record, dict) else None
        turn = next((t for t in turns if isinstance(t, dict)), None) if isinstance(turns, list) else None
        if turn is not None:
            return "from" in turn or "value" in turn
    return False


def validate_records(
    records: Sequence[Any],
    source: str,
    roots: MediaRoots | None = None,
    *,
    feature_shape: tuple[int, int] | None = None,
) -> TrainingRecords:
    """Check every record's structure and, when `roots` are given, that its media exists and its feature file has
    the shape `(T, P, D)` or `(P, D)` with `(P, D) == feature_shape` (default: the shape most files have)."""
    items: list[tuple[int, TrainingRecord]] = []
    problems: list[tuple[int, Problem]] = []
    for index, record in enumerate(records):
        position = f"{source} record {index}"
        try:
            key, name = _media_name(record)
            turns = _turns(record.get("conversations"))
            end_time = _end_time(record, key)
            media = Path(name) if roots is None else roots.find(name)
            if media is None:
                tried = ", ".join(str(path) for path in roots.candidates(name))
                raise _Bad(f"{key} {name!r} not found (tried {tried})")
            items.append((index, TrainingRecord(position, media, media_kind(media), turns, end_time)))
        except _Bad as bad:
            problems.append((index, Problem(position, str(bad))))
    if roots is not None:
        reasons = media_problems([(item.media, item.kind) for _, item in items], feature_shape)
        problems += [(items[k][0], Problem(items[k][1].position, reason)) for k, reason in reasons.items()]
        items = [pair for k, pair in enumerate(items) if k not in reasons]
    problems.sort(key=lambda pair: pair[0])
    return TrainingRecords(source, items=[item for _, item in items], problems=[problem for _, problem in problems])


def load_training_records(
    paths: Sequence[Path] | Path,
    roots: MediaRoots | None,
    *,
    strict: bool = True,
    feature_shape: tuple[int, int] | None = None,
) -> TrainingRecords:
    """The records of LLaVA-format files, validated as `validate_records` does (`roots=None`: the structure only);
    `strict` raises a TrainingDataError listing the bad records, before any training work is done."""
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    result = TrainingRecords(", ".join(str(p) for p in paths))
    for path in paths:
        records = read_records(path)
        if not records:
            raise TrainingDataError(f"{path}: no records in it")
        if not is_llava(records):
            raise TrainingDataError(
                f"{path}: not LLaVA-format training records (conversations of {{'from', 'value'}} turns); "
                "benchmark annotations are read by `vstream eval`"
            )
        part = validate_records(records, str(path), roots, feature_shape=feature_shape)
        result.items += part.items
        result.problems += part.problems
    if strict:
        result.raise_if_problems()
    return result


def check_training_media(
    records: Sequence[TrainingRecord], feature_shape: tuple[int, int] | None = None
) -> list[Problem]:
    """Problems with the records' media: missing files, and feature files that cannot be read or whose shape is
    not `(T, P, D)`/`(P, D)` with `(P, D) == feature_shape` (default: the most common). Reads headers only."""
    reasons = media_problems([(record.media, record.kind) for record in records], feature_shape)
    return [Problem(records[i].position, reason) for i, reason in sorted(reasons.items())]


class _Bad(Exception):
    pass


def raise_for(source: str, problems: Sequence[Problem]) -> None:
    if problems:
        raise bad_records(source, problems, TrainingDataError)


def _media_name(record: Any) -> tuple[str, str]:
    if not isinstance(record, dict):
        raise _Bad("not an object")
    keys = [key for key in ("image", "video") if record.get(key) not in (None, "")]
    if not keys:
        raise _Bad("no image or video: text-only records are not supported")
    if len(keys) == 2:
        raise _Bad("both an image and a video: one medium per record")
    value = record[keys[0]]
    if not isinstance(value, str) or not value.strip():
        raise _Bad(f"'{keys[0]}' must be a path, got {value!r}")
    return keys[0], value.strip()


def _end_time(record: dict, key: str) -> float | None:
    value = record.get("end_time")
    if value is None:
        return None
    if key != "video":
        raise _Bad("end_time is for videos (the moment of the stream a question is asked at)")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise _Bad(f"end_time must be a number of seconds >= 0, got {value!r}")
    return float(value)


def _turns(conversations: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(conversations, list) or not conversations:
        raise _Bad("'conversations' is missing, empty or not a list")
    values = []
    for t, turn in enumerate(conversations):
        role = str(turn.get("from", "")).lower() if isinstance(turn, dict) else ""
        if role not in HUMAN_ROLES + ASSISTANT_ROLES:
            found = turn.get("from") if isinstance(turn, dict) else turn
            raise _Bad(f"turn {t}: role {found!r} is not human/user or gpt/assistant")
        if (role in HUMAN_ROLES) != (t % 2 == 0):
            due = "a question (human)" if t % 2 == 0 else "an answer (gpt)"
            raise _Bad(f"turn {t}: roles out of order ({role} where {due} is due; turns alternate, human first)")
        value = turn.get("value")
        if not isinstance(value, str) or not value.strip():
            raise _Bad(f"turn {t}: empty value")
        values.append(value)
    if len(values) == 1:
        raise _Bad("no assistant turn: nothing to learn")
    if len(values) % 2:
        raise _Bad(f"turn {len(values) - 1}: a question without an answer (the last turn must be the assistant's)")
    counts = [sum(value.count(p) for p in PLACEHOLDERS) for value in values]
    if sum(counts) != 1:
        raise _Bad(f"{sum(counts)} placeholders ({' or '.join(PLACEHOLDERS)}); exactly one is needed")
    if counts[0] != 1:
        raise _Bad(f"the placeholder is in turn {counts.index(1)}; it must be in the first question")
    return tuple((_strip_placeholder(values[i]), values[i + 1].strip()) for i in range(0, len(values), 2))


def _strip_placeholder(text: str) -> str:
    for placeholder in PLACEHOLDERS:
        text = text.replace(f"{placeholder}\n", "").replace(f"\n{placeholder}", "").replace(placeholder, "")
    return text.strip()
