"""Results: accuracy and mean score per run, judge and question type, beside the paper's numbers.

Reads predictions and verdicts only (never reruns a model). A row is one run (benchmark, model, settings,
mode) judged by one judge (model and prompt): two runs or two judges in the same files are never summed
or averaged. A verdict counts only for the exact answer text it judged. Every count is shown: questions of
the annotation set, predicted, failed to predict, judged, failed to judge, not judged yet; accuracy (share
called a match) and mean 0–5 score are over the judged ones only, and a row short of 100 % is marked. A rule
(`vstream eval judge --rule exact`) is a judge of its own (`rule:<version>`); its verdicts have no score.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from vstream.errors import VStreamError
from vstream.eval.benchmarks import BENCHMARKS
from vstream.eval.closed import EXACT_MATCH_VERSION, yes_no
from vstream.eval.records import content_key, latest_outcomes, read_jsonl

PAPER_JUDGE = "GPT-3.5 (snapshot not named)"
CLOSED_RULE = f"yes/no-{EXACT_MATCH_VERSION}"
"""The rule that scores yes/no questions in every report (the exact-match rule's yes/no part)."""
NO_JUDGE = "none"


@dataclass
class _Run:
    """The predictions of one (benchmark, model, settings_key, mode)."""

    ok: dict[str, dict] = field(default_factory=dict)
    failed: dict[str, dict] = field(default_factory=dict)
    annotations: list[dict] = field(default_factory=list)
    settings: dict | None = None


def build_report(
    predictions: list[str | os.PathLike],
    verdicts: list[str | os.PathLike],
    *,
    model: str | None = None,
    judge: str | None = None,
    mode: str | None = None,
) -> dict[str, Any]:
    """The report of prediction files and their verdict files, as a JSON-able dict with one entry per row.

    `model` (full `name@fingerprint` or the name alone), `judge` and `mode` keep only the matching rows;
    `rows_in_files` still counts all of them, so that a caller can say what was left out.
    """
    runs = _read_runs(predictions)
    owner = {key: run for run, r in runs.items() for key in r.ok}
    applied: dict[tuple, dict[tuple, list[dict]]] = defaultdict(lambda: defaultdict(list))  # run -> judge -> list
    stale: dict[tuple, list[dict]] = defaultdict(list)
    unmatched = 0
    for record in _latest_verdicts(verdicts):
        run = owner.get(record["prediction_key"])
        if run is None:
            unmatched += 1
        elif record.get("content") == content_key(runs[run].ok[record["prediction_key"]]):
            applied[run][(record.get("judge") or "?", record.get("prompt_hash"))].append(record)
        else:  # judged another answer text (or an older vstream wrote it): never scored
            stale[run].append(record)
    rows = []
    for run_id, run in sorted(runs.items(), key=lambda item: _sortable(item[0])):
        judges = applied[run_id] or {(NO_JUDGE, None): []}
        for judge_id, records in sorted(judges.items(), key=lambda item: _sortable(item[0])):
            rows.append(_row(run_id, run, judge_id, records, stale[run_id], runs))
    shown = [r for r in rows if _matches(r, model, judge, mode)]
    if rows and not shown:
        raise VStreamError(f"no row matches the filters; rows in the files: {'; '.join(map(row_label, rows))}")
    return {
        "paper_judge": PAPER_JUDGE,
        "filters": {"model": model, "judge": judge, "mode": mode},
        "rows_in_files": len(rows),
        "stale_verdicts": sum(len(v) for v in stale.values()),
        "unmatched_verdicts": unmatched,
        "rows": shown,
    }


def _read_runs(paths: list[str | os.PathLike]) -> dict[tuple, _Run]:
    """Prediction records split by run; the latest record per key, an `ok` one before any error."""
    runs: dict[tuple, _Run] = defaultdict(_Run)
    for key, record in latest_outcomes(paths).items():
        if record.get("format") == "multiple_choice":
            continue  # scored by rule at prediction time: `choice_report`
        run_id = (
            record.get("benchmark") or "?",
            record.get("model") or "?",
            record.get("settings_key") or "unknown",
            record.get("mode") or "?",
        )
        run = runs[run_id]
        (run.ok if record.get("status") == "ok" else run.failed)[key] = record
        if record.get("annotations") not in run.annotations:
            run.annotations.append(record.get("annotations"))
        run.settings = record.get("settings") if record.get("settings_key") else None
    return dict(runs)


def _latest_verdicts(paths: list[str | os.PathLike]) -> list[dict]:
    """The outcome of each (prediction, answer text, judge, prompt): its latest `ok` verdict, else its latest one.

    Grouped by prediction key too, not by the verdict's own key alone: that key is the answer text's, which
    two predictions can share.
    """
    latest: dict[tuple, dict] = {}
    for path in paths:
        for record in read_jsonl(path):
            if "prediction_key" not in record:
                sample = json.dumps(record, default=str)[:80]
                raise VStreamError(f"{path}: a record without a 'prediction_key' ({sample}...): not a verdicts file")
            group = (record["prediction_key"], record.get("content"), record.get("judge"), record.get("prompt_hash"))
            if record.get("status") == "ok" or latest.get(group, {}).get("status") != "ok":
                latest[group] = record  # a later failure does not undo an ok
    return list(latest.values())


def _row(run_id: tuple, run: _Run, judge_id: tuple, verdicts: list[dict], stale: list[dict], runs: dict) -> dict:
    """One row: a run's counts under one judge (its applicable verdicts), overall and per question type."""
    benchmark, model, settings_key, mode = run_id
    judge, prompt_hash = judge_id
    by_prediction = {v["prediction_key"]: v for v in verdicts}
    info = BENCHMARKS.get(benchmark)
    annotations = run.annotations[0] if len(run.annotations) == 1 else None
    annotated = annotations.get("questions") if isinstance(annotations, dict) else None
    overall = _counts(run.ok.values(), run.failed.values(), by_prediction)
    types = sorted({r.get("question_type") or "?" for r in [*run.ok.values(), *run.failed.values()]})
    return {
        "benchmark": benchmark,
        "title": info.title if info else benchmark,
        "model": model,
        "mode": mode,
        "settings_key": settings_key,
        "settings": _settings_summary(run.settings, [r.settings for r in runs.values()]),
        "judge": judge,
        "prompt": ", ".join(sorted({str(v["prompt"]) for v in verdicts if v.get("prompt")})) or None,
        "prompt_hash": prompt_hash,
        "annotations": annotations if len(run.annotations) == 1 else run.annotations,
        "questions": annotated,
        **overall,
        "stale_verdicts": sum(judge in (NO_JUDGE, v.get("judge")) for v in stale),
        "coverage": {
            "predicted": round(overall["predicted"] / annotated, 4) if annotated else None,
            "judged": round(overall["judged"] / annotated, 4) if annotated else None,
        },
        "complete": bool(annotated) and overall["judged"] >= annotated,
        "paper": {"accuracy": info.paper[0], "score": info.paper[1], "source": info.source}
        if info and info.paper
        else None,
        "closed": _closed(run.ok.values(), by_prediction),
        "by_type": {
            t: _counts(
                [r for r in run.ok.values() if (r.get("question_type") or "?") == t],
                [r for r in run.failed.values() if (r.get("question_type") or "?") == t],
                by_prediction,
            )
            for t in types
        },
    }


def _counts(ok: Any, failed: Any, verdicts: dict[str, dict]) -> dict[str, Any]:
    """Predicted, failed, judged, failed to judge, not judged; accuracy and score over the judged only."""
    ok = list(ok)
    outcomes = [verdicts.get(r["key"]) for r in ok]
    judged = [v for v in outcomes if v is not None and v.get("status") == "ok"]
    judge_errors = sum(v is not None and v.get("status") != "ok" for v in outcomes)
    out: dict[str, Any] = {
        "predicted": len(ok),
        "prediction_errors": len(list(failed)),
        "judged": len(judged),
        "judge_errors": judge_errors,
        "unjudged": len(ok) - len(judged) - judge_errors,
        "accuracy": None,
        "score": None,
    }
    if judged:
        out["accuracy"] = round(100.0 * sum(v.get("pred") == "yes" for v in judged) / len(judged), 2)
    scores = [v["score"] for v in judged if isinstance(v.get("score"), (int, float))]
    if scores:  # a rule's verdicts have none: no score, rather than a made-up one
        out["score"] = round(sum(scores) / len(scores), 3)
    return out


def _closed(ok: Any, verdicts: dict[str, dict]) -> dict[str, Any] | None:
    """The yes/no questions (a reference that starts with yes or no) scored by rule from the predictions alone,
    beside this row's judge on the same questions: a number no judge can move."""
    closed = [r for r in ok if yes_no(r.get("answer")) is not None]
    if not closed:
        return None
    said = [yes_no(r.get("prediction")) for r in closed]
    right = sum(s == yes_no(r["answer"]) for s, r in zip(said, closed, strict=True))
    judged = [verdicts.get(r["key"]) for r in closed]
    judged = [v for v in judged if v is not None and v.get("status") == "ok"]
    return {
        "questions": len(closed),
        "rule": CLOSED_RULE,
        "accuracy": round(100.0 * right / len(closed), 2),
        "unreadable": sum(s is None for s in said),
        "judged": len(judged),
        "judge_accuracy": round(100.0 * sum(v.get("pred") == "yes" for v in judged) / len(judged), 2)
        if judged
        else None,
    }


def _settings_summary(settings: dict | None, everyone: list[dict | None]) -> str:
    """fps, clock, the memory sizes that differ between the runs reported, and the decoding options."""
    if not settings:
        return "unknown (written by an older vstream)"
    fps = settings.get("fps")
    parts = [
        f"{settings['input']}" if settings.get("input") else "",
        f"fps {fps:g}" if isinstance(fps, (int, float)) else "the features' own times",
    ]
    parts = [part for part in parts if part]
    if settings.get("mode") == "online":
        parts.append("real time" if settings.get("realtime") else "simulated clock")
    memory = settings.get("memory") or {}
    others = [s.get("memory") or {} for s in everyone if s]
    differing = [k for k in memory if any(o.get(k) != memory[k] for o in others)]
    if differing:
        parts.append("memory " + " ".join(f"{k}={_compact(memory[k])}" for k in differing))
    options = settings.get("options") or {}
    if options:
        parts.append("decoding " + " ".join(f"{k}={_compact(v)}" for k, v in options.items() if v is not None))
    return ", ".join(parts)


def _compact(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _sortable(key: tuple) -> tuple:
    return tuple("" if part is None else str(part) for part in key)


def _matches(row: dict, model: str | None, judge: str | None, mode: str | None) -> bool:
    return (
        (model is None or model in (row["model"], row["model"].split("@")[0]))
        and (judge is None or judge == row["judge"])
        and (mode is None or mode == row["mode"])
    )


def row_label(row: dict[str, Any]) -> str:
    """A short name of a row: benchmark, model, mode, settings key and judge."""
    return f"{row['benchmark']} {row['model']} {row['mode']} settings {row['settings_key']} judge {row['judge']}"


def runs_note(report: dict[str, Any]) -> str | None:
    """One line saying that the files hold several rows and how to pick one; None when they hold one."""
    if report["rows_in_files"] <= 1:
        return None
    return (
        f"note: the files hold {report['rows_in_files']} runs (model, settings, mode, judge); showing "
        f"{len(report['rows'])}; pick with --model NAME, --judge NAME, --mode online|offline"
    )


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: one table row per report row, then one per question type, then the notes."""
    published = any(row.get("paper") for row in report["rows"]) or not report["rows"]
    lines = (
        [
            f"Paper: Flash-VStream as published, judged by {report['paper_judge']}; scores move with the judge, so "
            "compare rows judged alike.",
            "",
        ]
        if published
        else []
    )
    lines += [
        "| # | benchmark | model | mode | settings | judge (prompt) | questions | predicted | failed to predict | "
        "judged | failed to judge | not judged | coverage | accuracy | score | paper accuracy | paper score |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for n, row in enumerate(report["rows"], 1):
        paper = row.get("paper") or {}
        mark = "" if row["complete"] else " ⚠"
        lines.append(
            f"| {n} | {row['title']} | {row['model']} | {row['mode']} | {row['settings']} "
            f"[{row['settings_key']}] | {_judge_label(row)} | {_fmt(row['questions'], None)} | {row['predicted']} | "
            f"{row['prediction_errors']} | {row['judged']} | {row['judge_errors']} | {row['unjudged']} | "
            f"{_percent(row['coverage']['judged'])}{mark} | {_fmt(row['accuracy'])} | {_fmt(row['score'], 2)} | "
            f"{_fmt(paper.get('accuracy'))} | {_fmt(paper.get('score'), 1)} |"
        )
        notes += _row_notes(n, row)
    if not report["rows"]:
        lines.append("| – | no predictions | | | | | | | | | | | | | | | |")
    typed = [(n, t, s) for n, row in enumerate(report["rows"], 1) for t, s in row["by_type"].items()]
    if typed:
        lines += [
            "",
            "| # | question type | predicted | failed to predict | judged | failed to judge | not judged | accuracy "
            "| score |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {n} | {t} | {s['predicted']} | {s['prediction_errors']} | {s['judged']} | {s['judge_errors']} | "
            f"{s['unjudged']} | {_fmt(s['accuracy'])} | {_fmt(s['score'], 2)} |"
            for n, t, s in typed
        ]
    closed = [(n, row["closed"]) for n, row in enumerate(report["rows"], 1) if row.get("closed")]
    if closed:
        lines += [
            "",
            f"Yes/no questions scored by rule ({CLOSED_RULE}: the answer must start with the reference's yes or no "
            "and never say the other; no judge), beside the row's judge on the same questions:",
            "",
            "| # | yes/no questions | accuracy by rule | unreadable | judged | judge's accuracy on them |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {n} | {c['questions']} | {_fmt(c['accuracy'])} | {c['unreadable']} | {c['judged']} | "
            f"{_fmt(c['judge_accuracy'])} |"
            for n, c in closed
        ]
    if report["stale_verdicts"]:
        notes.append(
            f"verdicts about another answer text than the prediction's (or written by an older vstream), not "
            f"counted: {report['stale_verdicts']}; run `vstream eval judge` again to judge the current answers."
        )
    if report["unmatched_verdicts"]:
        notes.append(f"verdicts about predictions not in these files, ignored: {report['unmatched_verdicts']}.")
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def comparison_markdown(report: dict[str, Any]) -> str:
    """The report's rows side by side, one column each (`#n` as in the main table): accuracy over all questions
    and per question type. Rows judged differently get a warning: their numbers are not comparable."""
    rows = report["rows"]
    if not rows:
        return ""
    types = sorted({t for row in rows for t in row["by_type"]})
    head = "| question type | " + " | ".join(f"#{n}" for n in range(1, len(rows) + 1)) + " |"
    lines = [head, "|---|" + "---|" * len(rows)]
    lines.append("| all | " + " | ".join(_fmt(r["accuracy"]) + ("" if r["complete"] else " ⚠") for r in rows) + " |")
    for kind in types:
        cells = [_fmt(r["by_type"][kind]["accuracy"]) if kind in r["by_type"] else "–" for r in rows]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += ["", *(f"- #{n}: {row_label(row)}" for n, row in enumerate(rows, 1))]
    judges = {(row["judge"], row.get("prompt_hash")) for row in rows}
    if len(judges) > 1:
        lines.append(
            f"- ⚠ these columns are judged by {len(judges)} different judges or prompts: their numbers are not "
            "comparable (pick one with --judge)"
        )
    benchmarks = {row["benchmark"] for row in rows}
    if len(benchmarks) > 1:
        lines.append(f"- ⚠ these columns are different benchmarks ({', '.join(sorted(benchmarks))})")
    return "\n".join(lines) + "\n"


def _row_notes(n: int, row: dict[str, Any]) -> list[str]:
    notes = []
    if not row["complete"]:
        of = "an unknown number of" if row["questions"] is None else f"the {row['questions']}"
        notes.append(
            f"⚠ row {n}: {row['judged']} of {of} questions judged ({_left_out(row)} not predicted yet, "
            f"{row['prediction_errors']} failed to predict, {row['judge_errors']} failed to judge, "
            f"{row['unjudged']} not judged yet); accuracy and score are over the judged ones only."
        )
    if row["questions"] is not None and row["predicted"] + row["prediction_errors"] > row["questions"]:
        notes.append(f"row {n}: more predictions than questions in the annotation set: mixed annotation files?")
    if not isinstance(row["annotations"], dict) and row["annotations"] not in ([None], None):
        sources = ", ".join(json.dumps(a) for a in row["annotations"])
        notes.append(f"row {n}: predictions from different annotation files ({sources}).")
    if row["stale_verdicts"]:
        notes.append(f"row {n}: stale verdicts (about another answer text) not counted: {row['stale_verdicts']}.")
    return notes


def _left_out(row: dict[str, Any]) -> str:
    if row["questions"] is None:
        return "?"
    return str(max(row["questions"] - row["predicted"] - row["prediction_errors"], 0))


def _judge_label(row: dict[str, Any]) -> str:
    if row["judge"] == NO_JUDGE:
        return "none yet"
    prompt_hash = f" {row['prompt_hash']}" if row["prompt_hash"] else ""
    return f"{row['judge']} ({row['prompt'] or '?'}{prompt_hash})"


def _percent(fraction: float | None) -> str:
    return "?" if fraction is None else f"{100 * fraction:.1f} %"


def _fmt(value: float | None, digits: int | None = 1) -> str:
    if value is None:
        return "–" if digits is not None else "?"
    return str(value) if digits is None else f"{value:.{digits}f}"
