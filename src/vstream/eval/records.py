"""Self-describing JSONL records: keyed, appended durably, resumed by skipping the keys already done."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def record_key(**parts: Any) -> str:
    """A stable key for a unit of work: sha256 of its parts as canonical JSON (first 32 hex digits)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


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


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a JSONL file; a line cut short by a crash (only the last can be) is skipped with a warning."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("%s:%d: skipped a line that is not JSON (cut short by an interruption?)", path, number)
    return records


def latest_by_key(records: Iterable[dict[str, Any]], status: str | None = "ok") -> dict[str, dict[str, Any]]:
    """The last record of each key (with the given status, or any when None)."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        if status is None or record.get("status") == status:
            latest[record["key"]] = record
    return latest


def merge_jsonl(inputs: Iterable[str | os.PathLike], output: str | os.PathLike) -> int:
    """Merge shard files into one, keeping one record per key (the last `ok`, else the last); returns the count."""
    merged: dict[str, dict[str, Any]] = {}
    for path in inputs:
        for record in read_jsonl(path):
            current = merged.get(record["key"])
            if current is None or record.get("status") == "ok" or current.get("status") != "ok":
                merged[record["key"]] = record
    output = Path(output)
    tmp = output.with_name(output.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for record in merged.values():
            f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, output)
    return len(merged)
