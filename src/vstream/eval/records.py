"""Self-describing JSONL records: keyed, appended durably, resumed by skipping the keys already done."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vstream.errors import AnnotationError, VStreamError

log = logging.getLogger(__name__)


def record_key(**parts: Any) -> str:
    """A stable key for a unit of work: sha256 of its parts as canonical JSON (first 32 hex digits)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def content_key(prediction: dict[str, Any]) -> str:
    """What a verdict judged: the question, the reference answer and the predicted text of a prediction record.

    A verdict counts for a prediction only while this is unchanged, so a regenerated answer is judged again.
    """
    return record_key(
        question=prediction.get("question"), answer=prediction.get("answer"), prediction=prediction.get("prediction")
    )


class JsonlWriter:
    """Appends one JSON object per line, flushed and fsynced, so that a crash loses at most the line being written."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run, closed in close()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_jsonl(path: str | os.PathLike, *, must_exist: bool = False) -> list[dict[str, Any]]:
    """The records of a JSONL file; a line cut short by a crash (only the last can be) is skipped with a warning.

    A missing file has no records, unless `must_exist` (an input the user named); a file with no JSON line in it
    at all is an error, not an empty run.
    """
    path = Path(path)
    if not path.is_file():
        if must_exist:
            raise VStreamError(f"{path}: no such file")
        return []
    records, bad = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            else:
                bad.append(number)
    if bad and not records:
        raise VStreamError(f"{path}: not a JSONL file of records (no line of it is a JSON object)")
    if bad:
        shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        log.warning(
            "%s: skipped %d lines that are not JSON objects (line %s; cut short by a crash?)", path, len(bad), shown
        )
    return records


def latest_by_key(records: Iterable[dict[str, Any]], status: str | None = "ok") -> dict[str, dict[str, Any]]:
    """The last record of each key (with the given status, or any when None)."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        if status is None or record.get("status") == status:
            latest[_key_of(record)] = record
    return latest


def latest_outcomes(paths: Iterable[str | os.PathLike]) -> dict[str, dict[str, Any]]:
    """Each key's outcome over prediction files: its latest `ok` record, else its latest one (a later failure does
    not undo an answer)."""
    latest: dict[str, dict[str, Any]] = {}
    for path in paths:
        records = read_jsonl(path, must_exist=True)
        ok = latest_by_key(records)
        for key, record in latest_by_key(records, status=None).items():
            if key in ok or latest.get(key, {}).get("status") != "ok":
                latest[key] = ok.get(key, record)
    return latest


def _key_of(record: dict[str, Any]) -> str:
    if "key" not in record:
        sample = json.dumps(record, default=str)[:80]
        raise VStreamError(f"a record without a 'key' ({sample}...): not a file of vstream predictions or verdicts")
    return record["key"]


def merge_jsonl(inputs: Iterable[str | os.PathLike], output: str | os.PathLike) -> int:
    """Merge shard files into one, keeping one record per key (the last `ok`, else the last); returns the count."""
    merged: dict[str, dict[str, Any]] = {}
    for path in inputs:
        for record in read_jsonl(path, must_exist=True):
            key = _key_of(record)
            current = merged.get(key)
            if current is None or record.get("status") == "ok" or current.get("status") != "ok":
                merged[key] = record
    output = Path(output)
    tmp = output.with_name(output.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for record in merged.values():
            f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, output)
    return len(merged)


def read_annotation_file(path: Path) -> Any:
    """The content of an annotation file: JSON, JSON lines (`.jsonl`) or CSV rows (`.csv`, as dicts)."""
    if not path.is_file():
        raise AnnotationError(f"{path}: no such annotation file")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".csv":
        return list(csv.DictReader(text.splitlines()))
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}: not valid JSON ({exc})") from exc


def annotation_records(path: Path) -> list[Any]:
    """The records of an annotation file: its list, or the list under `data`."""
    data = read_annotation_file(path)
    records = data.get("data", data) if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise AnnotationError(f"{path}: expected a list of records (or {{'data': [...]}})")
    return records
