"""Results of multiple-choice and streaming benchmarks: accuracy per run and method, per task, beside the
published numbers (`benchmarks.PUBLISHED`).

Records are scored when predicted (the right letter is in each), so no judge and no other file is read. A row is
one run: benchmark, model, settings and mode, and the annotation file's version; runs are never summed. For
`generate`, a text the strict reader could not map to one option is counted as unreadable and wrong, and the
count is shown; `loglik` needs no reading. Accuracies are over the questions predicted; the coverage of the
annotation file is shown, and a row short of it is marked.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

from vstream.errors import ConfigError
from vstream.eval.benchmarks import get_benchmark, published_for
from vstream.eval.records import latest_outcomes

METHOD_FIELDS = {"generate": "correct", "loglik": "loglik_correct", "loglik (per token)": "loglik_norm_correct"}
"""Each method's result field in a record."""


def build_choice_report(predictions: list[str | os.PathLike]) -> dict[str, Any]:
    """The report of multiple-choice prediction files, as a JSON-able dict with one entry per run."""
    runs: dict[tuple, list[dict]] = defaultdict(list)
    for record in latest_outcomes(predictions).values():
        if record.get("format") != "multiple_choice":
            continue
        annotations = record.get("annotations") or {}
        run = (
            record.get("benchmark") or "?",
            record.get("model") or "?",
            record.get("settings_key") or "unknown",
            record.get("mode") or "?",
            annotations.get("sha256"),
        )
        runs[run].append(record)
    rows = [_row(run, records) for run, records in sorted(runs.items(), key=lambda item: str(item[0]))]
    return {"rows": rows}


def _row(run: tuple, records: list[dict]) -> dict[str, Any]:
    benchmark, model, settings_key, mode, _digest = run
    ok = [r for r in records if r.get("status") == "ok"]
    annotations = records[0].get("annotations") or {}
    settings = records[0].get("settings") or {}
    memory = settings.get("memory") or {}
    try:
        title = get_benchmark(benchmark).title
    except ConfigError:  # a benchmark of a newer vstream: shown by its name
        title = benchmark
    types = sorted({t for r in ok for t in r.get("types") or ["?"]})
    return {
        "benchmark": benchmark,
        "title": title,
        "model": model,
        "mode": mode,
        "settings_key": settings_key,
        "memory": _memory_label(memory),
        "annotations": annotations,
        "questions": annotations.get("questions"),
        "predicted": len(ok),
        "prediction_errors": len(records) - len(ok),
        "complete": bool(annotations.get("questions")) and len(ok) >= annotations["questions"],
        **_scores(ok),
        "by_type": {t: _scores([r for r in ok if t in (r.get("types") or ["?"])]) for t in types},
        "published": [{"model": p.model, "accuracy": p.accuracy, "source": p.source} for p in published_for(benchmark)],
    }


def _scores(records: list[dict]) -> dict[str, Any]:
    """Per method: questions answered that way and the accuracy (%); generate also counts unreadable answers."""
    out: dict[str, Any] = {"n": len(records)}
    for method, name in METHOD_FIELDS.items():
        answered = [r for r in records if name in r]
        out[method] = round(100.0 * sum(bool(r[name]) for r in answered) / len(answered), 2) if answered else None
    generated = [r for r in records if "correct" in r]
    out["unreadable"] = sum(r.get("choice") is None for r in generated) if generated else None
    out["chance"] = round(100.0 * sum(1 / len(r["options"]) for r in records) / len(records), 2) if records else None
    return out


def _memory_label(memory: dict[str, Any]) -> str:
    """A short name of a run's memory: `star 681 tok`, `recent 4×13² 676 tok`, ..."""
    if not memory:
        return "?"
    from vstream.memory import MemoryConfig

    try:
        config = MemoryConfig.from_dict(memory)
    except (ConfigError, TypeError):  # a config of a newer vstream: shown by its kind
        return str(memory.get("kind", "?"))
    if config.kind == "star":
        return f"star {config.num_tokens} tok"
    return f"{config.kind} {config.num_frames}×{config.frame_pool}² {config.num_tokens} tok"


def choice_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: one line per run, then one per task, then the published numbers."""
    rows = report["rows"]
    if not rows:
        return ""
    lines = [
        "| # | benchmark | model | mode | memory | questions | predicted | failed | generate | unreadable | "
        "loglik | loglik (per token) | chance |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, row in enumerate(rows, 1):
        mark = "" if row["complete"] else " ⚠"
        lines.append(
            f"| {n} | {row['title']} | {row['model']} | {row['mode']} | {row['memory']} [{row['settings_key']}] | "
            f"{_fmt(row['questions'])} | {row['predicted']}{mark} | {row['prediction_errors']} | "
            f"{_fmt(row['generate'])} | {_fmt(row['unreadable'])} | {_fmt(row['loglik'])} | "
            f"{_fmt(row['loglik (per token)'])} | {_fmt(row['chance'])} |"
        )
    lines += [
        "",
        "| # | task or type | n | generate | unreadable | loglik | loglik (per token) | chance |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, row in enumerate(rows, 1):
        for kind, s in row["by_type"].items():
            lines.append(
                f"| {n} | {kind} | {s['n']} | {_fmt(s['generate'])} | {_fmt(s['unreadable'])} | {_fmt(s['loglik'])} | "
                f"{_fmt(s['loglik (per token)'])} | {_fmt(s['chance'])} |"
            )
    published = {(row["title"], p["model"], p["accuracy"], p["source"]) for row in rows for p in row["published"]}
    if published:
        lines += ["", "| published | model | accuracy | source |", "|---|---|---|---|"]
        lines += [f"| {t} | {m} | {a} | {s} |" for t, m, a, s in sorted(published)]
    notes = [
        f"- #{n}: {row['predicted']} of {row['questions']} questions predicted: the accuracies are not the "
        "benchmark's yet"
        for n, row in enumerate(rows, 1)
        if not row["complete"]
    ]
    return "\n".join(lines + (["", *notes] if notes else [])) + "\n"


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.1f}" if isinstance(value, float) else str(value)
