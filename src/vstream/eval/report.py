"""Results: accuracy and mean score per benchmark and per question type, beside the paper's numbers.

Reads predictions and verdicts only (never reruns a model). Accuracy is the share of judged predictions
the judge called a match; the score is the mean 0–5 score. Predictions that failed and predictions not
(yet) judged are counted apart, never as wrong answers.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

from vstream.eval.benchmarks import BENCHMARKS
from vstream.eval.judge import PROMPT_VERSION
from vstream.eval.records import latest_by_key, read_jsonl


def build_report(predictions: list[str | os.PathLike], verdicts: list[str | os.PathLike]) -> dict[str, Any]:
    """The report of some prediction files and their verdict files, as a JSON-able dict."""
    preds: dict[str, dict] = {}
    failed: dict[str, dict] = {}
    for path in predictions:
        records = read_jsonl(path, must_exist=True)
        preds.update(latest_by_key(records))
        failed.update({k: r for k, r in latest_by_key(records, status=None).items() if r.get("status") != "ok"})
    failed = {k: r for k, r in failed.items() if k not in preds}
    judged = {}
    for path in verdicts:
        for record in latest_by_key(read_jsonl(path)).values():
            judged[record["prediction_key"]] = record
    groups: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for key, record in preds.items():
        groups[record["benchmark"]]["all"].append((record, judged.get(key)))
        groups[record["benchmark"]][record.get("question_type") or "all"].append((record, judged.get(key)))
    errors = defaultdict(int)
    for record in failed.values():
        errors[record["benchmark"]] += 1
    judges = sorted({v["judge"] for v in judged.values()})
    rows = {}
    for benchmark, by_type in sorted(groups.items()):
        info = BENCHMARKS.get(benchmark)
        rows[benchmark] = {
            "title": info.title if info else benchmark,
            "mode": sorted({r["mode"] for r, _ in by_type["all"]}),
            "prediction_errors": errors.get(benchmark, 0),
            "paper": {"accuracy": info.paper[0], "score": info.paper[1], "source": info.source}
            if info and info.paper
            else None,
            **_summary(by_type["all"]),
            "by_type": {t: _summary(pairs) for t, pairs in sorted(by_type.items()) if t != "all"},
        }
    for benchmark, count in errors.items():
        rows.setdefault(benchmark, {"title": benchmark, "prediction_errors": count, "questions": 0})
    return {"judges": judges, "prompt": PROMPT_VERSION, "benchmarks": rows}


def _summary(pairs: list[tuple[dict, dict | None]]) -> dict[str, Any]:
    verdicts = [v for _, v in pairs if v is not None]
    out: dict[str, Any] = {"questions": len(pairs), "judged": len(verdicts), "unjudged": len(pairs) - len(verdicts)}
    if verdicts:
        out["accuracy"] = round(100.0 * sum(v["pred"] == "yes" for v in verdicts) / len(verdicts), 2)
        out["score"] = round(sum(v["score"] for v in verdicts) / len(verdicts), 3)
    return out


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables: one row per benchmark, then one per question type."""
    judges = ", ".join(report["judges"]) or "none yet"
    lines = [
        f"Judge: {judges} (prompt {report['prompt']}). Paper: Flash-VStream as published (GPT-3.5 judge, "
        "snapshot not named), for reference.",
        "",
        "| benchmark | questions | judged | accuracy | score | paper accuracy | paper score | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["benchmarks"].values():
        paper = row.get("paper") or {}
        lines.append(
            f"| {row['title']} | {row.get('questions', 0)} | {row.get('judged', 0)} | "
            f"{_fmt(row.get('accuracy'))} | {_fmt(row.get('score'), 2)} | {_fmt(paper.get('accuracy'))} | "
            f"{_fmt(paper.get('score'), 1)} | {row.get('prediction_errors', 0)} |"
        )
    typed = [(row["title"], t, s) for row in report["benchmarks"].values() for t, s in row.get("by_type", {}).items()]
    if typed:
        lines += [
            "",
            "| benchmark | question type | questions | judged | accuracy | score |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {title} | {t} | {s['questions']} | {s['judged']} | {_fmt(s.get('accuracy'))} | "
            f"{_fmt(s.get('score'), 2)} |"
            for title, t, s in typed
        ]
    return "\n".join(lines) + "\n"


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"
