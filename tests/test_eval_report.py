"""The report: one row per run and judge, every count shown, stale verdicts never scored, and its figure."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from vstream.__main__ import main
from vstream.eval.records import content_key, record_key
from vstream.eval.report import build_report, to_markdown

QUESTIONS = [(f"q{i}", "what" if i < 3 else "yes/no") for i in range(6)]
ANNOTATIONS = {"source": "rvs.json", "sha256": "0123456789abcdef", "questions": 6}
MEMORY = {"temporal_clusters": 16, "spatial_frames": 4, "memories": ["spatial", "temporal"]}
OPTIONS = {"max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0, "seed": None}


def settings(model: str, mode: str, **memory) -> dict:
    return {
        "model": model,
        "model_name": model.split("@")[0],
        "weights": model.split("@")[1] * 4,
        "mode": mode,
        "fps": 1.0,
        "realtime": False,
        "memory": {**MEMORY, **memory},
        "options": OPTIONS,
        "vstream_version": "0.0.0",
    }


def prediction(run: dict, qid: str, text: str | None, status: str = "ok") -> dict:
    """A prediction record as the contract has it (`text` None: an error)."""
    qtype = dict(QUESTIONS)[qid]
    key_settings = {k: v for k, v in run.items() if k != "vstream_version"}
    record = {
        "key": record_key(id=qid, **key_settings),
        "status": status,
        "benchmark": "rvs_ego",
        "mode": run["mode"],
        "model": run["model"],
        "settings_key": settings_key(run),
        "settings": run,
        "annotations": ANNOTATIONS,
        "id": qid,
        "video_id": "v0",
        "question": f"What about {qid}?",
        "answer": f"answer {qid}",
        "question_type": qtype,
        "start_time": 0.0,
        "end_time": 1.0,
    }
    record.update(prediction=text) if status == "ok" else record.update(error="no video")
    return record


def verdict(pred: dict, judge: str, status: str = "ok", yes: bool = True, score: int = 5, **extra) -> dict:
    """A verdict record as the contract has it, about the prediction's current text unless `content` is given."""
    content = extra.pop("content", content_key(pred))
    prompt_hash = record_key(judge_prompt="custom-v7 " + judge)[:16]
    record = {
        "key": record_key(content=content, judge=judge, prompt=prompt_hash),
        "prediction_key": pred["key"],
        "content": content,
        "status": status,
        "judge": judge,
        "prompt": "custom-v7",
        "prompt_hash": prompt_hash,
        "server": {"model": judge, "system_fingerprint": None, "host": "127.0.0.1:1", "temperature": 0.0},
    }
    if status == "ok":
        record.update(pred="yes" if yes else "no", score=score, raw_score=score, attempt=1, raw="{}")
    elif status == "unparsed":
        record.update(raw="I think so", attempt=1)
    else:
        record.update(reason="APITimeoutError")
    return {**record, **extra}


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


RUN_A = settings("flash@aaaaaaaaaaaa", "online")
RUN_B = settings("flash@aaaaaaaaaaaa", "online", temporal_clusters=4)  # other settings, same model and mode
RUN_C = settings("other@bbbbbbbbbbbb", "online")  # another model
RUN_D = settings("flash@aaaaaaaaaaaa", "offline")  # another mode


@pytest.fixture
def files(tmp_path):
    """Four runs appended to one predictions file and two judges' verdicts in one verdicts file."""
    a = {q: prediction(RUN_A, q, f"A says {q}") for q, _ in QUESTIONS}
    b = {q: prediction(RUN_B, q, f"B says {q}") for q, _ in QUESTIONS[:4]}
    b_failed = [prediction(RUN_B, q, None, status="error") for q in ("q3", "q4", "q5")]  # q3 retried: ok
    c = [prediction(RUN_C, q, f"C says {q}") for q, _ in QUESTIONS]
    d_old = {q: prediction(RUN_D, q, "an older answer") for q in ("q0", "q1")}  # regenerated since
    d = {q: prediction(RUN_D, q, f"D says {q}") for q, _ in QUESTIONS}
    predictions = [
        *a.values(),
        b_failed[0],
        *b.values(),
        *b_failed[1:],
        prediction(RUN_B, "q2", None, status="error"),  # an error after an ok does not undo it
        *c,
        *d_old.values(),
        *d.values(),
    ]
    outcomes_a = [(True, 5), (True, 4), (False, 1), (True, 4), (False, 2), (True, 5)]
    verdicts = [verdict(a[q], "judge-a", yes=y, score=s) for (q, _), (y, s) in zip(QUESTIONS, outcomes_a, strict=True)]
    verdicts += [  # an older vstream's verdict (no content, no prompt hash): cannot be proven to be about this text
        {"key": "old", "prediction_key": a["q2"]["key"], "status": "ok", "pred": "yes", "score": 5, "judge": "judge-a"}
    ]
    verdicts += [
        verdict(a["q0"], "judge-b", yes=False, score=2),
        verdict(a["q1"], "judge-b", yes=False, score=1),
        verdict(a["q2"], "judge-b", yes=True, score=4),
        verdict(a["q3"], "judge-b", status="unparsed"),
        verdict(a["q3"], "judge-b", status="error"),  # failed to judge
        verdict(a["q4"], "judge-b", yes=True, score=5),
        verdict(a["q4"], "judge-b", status="error"),  # a later failure does not undo an ok
    ]  # q5 not judged by judge-b yet
    verdicts += [
        verdict(b["q0"], "judge-a", status="unparsed"),
        verdict(b["q0"], "judge-a", yes=True, score=5),
        verdict(b["q1"], "judge-a", yes=False, score=0),
        verdict(b["q2"], "judge-a", yes=True, score=3),
        verdict(b["q3"], "judge-a", status="error"),
    ]
    verdicts += [verdict(d[q], "judge-a", yes=True, score=5, content=content_key(d_old[q])) for q in d_old]  # stale
    verdicts += [verdict(d[q], "judge-a", yes=False, score=1) for q, _ in QUESTIONS[2:]]
    verdicts += [{**verdict(c[0], "judge-a"), "prediction_key": "f" * 32}]  # about a prediction not in the files
    return write(tmp_path / "preds.jsonl", predictions), write(tmp_path / "preds.verdicts.jsonl", verdicts)


def settings_key(run: dict) -> str:
    return record_key(**{k: v for k, v in run.items() if k != "vstream_version"})[:16]


def find(report, run, judge):
    """The one row of a run and a judge."""
    wanted = (run["model"], run["mode"], settings_key(run), judge)
    found = [r for r in report["rows"] if (r["model"], r["mode"], r["settings_key"], r["judge"]) == wanted]
    assert len(found) == 1, [(r["model"], r["mode"], r["judge"], r["settings"]) for r in report["rows"]]
    return found[0]


def counts(row):
    keys = ("questions", "predicted", "prediction_errors", "judged", "judge_errors", "unjudged", "stale_verdicts")
    return tuple(row[k] for k in keys)


def test_each_run_and_judge_is_a_row_of_its_own(files):
    report = build_report([files[0]], [files[1]])
    assert report["rows_in_files"] == len(report["rows"]) == 5  # A×judge-a, A×judge-b, B, C (no judge), D
    assert len({(r["model"], r["settings_key"], r["mode"], r["judge"], r["prompt_hash"]) for r in report["rows"]}) == 5
    assert all(r["predicted"] + r["prediction_errors"] <= 6 for r in report["rows"])  # never 4 runs summed
    a_by_a, a_by_b = find(report, RUN_A, "judge-a"), find(report, RUN_A, "judge-b")  # one prediction, two judges
    assert counts(a_by_a) == (6, 6, 0, 6, 0, 0, 1)
    assert (a_by_a["accuracy"], a_by_a["score"]) == (pytest.approx(66.67), 3.5)
    assert counts(a_by_b) == (6, 6, 0, 4, 1, 1, 0)
    assert (a_by_b["accuracy"], a_by_b["score"]) == (50.0, 3.0)
    assert a_by_a["prompt"] == a_by_b["prompt"] == "custom-v7" and a_by_a["prompt_hash"] != a_by_b["prompt_hash"]
    unjudged = find(report, RUN_C, "none")
    assert counts(unjudged) == (6, 6, 0, 0, 0, 6, 0) and unjudged["accuracy"] is None and unjudged["score"] is None
    assert find(report, RUN_D, "judge-a")["mode"] == "offline"
    assert a_by_a["paper"] == {"accuracy": 57.3, "score": 4.0, "source": "paper v2 Table 1"}


def test_verdicts_count_only_for_the_answer_text_they_judged(files):
    report = build_report([files[0]], [files[1]])
    regenerated = find(report, RUN_D, "judge-a")  # two answers regenerated after their "yes" verdicts
    assert counts(regenerated) == (6, 6, 0, 4, 0, 2, 2)
    assert (regenerated["accuracy"], regenerated["score"]) == (0.0, 1.0)  # the stale "yes" verdicts are not scored
    assert find(report, RUN_A, "judge-a")["by_type"]["what"]["accuracy"] == pytest.approx(66.67)  # old "yes" ignored
    assert (report["stale_verdicts"], report["unmatched_verdicts"]) == (3, 1)
    markdown = to_markdown(report)
    assert (
        "verdicts about another answer text than the prediction's (or written by an older vstream), not counted: 3"
        in markdown
    )
    assert "verdicts about predictions not in these files, ignored: 1." in markdown


def test_failures_are_counted_apart_never_as_wrong_answers(files):
    row = find(build_report([files[0]], [files[1]]), RUN_B, "judge-a")
    assert counts(row) == (6, 4, 2, 3, 1, 0, 0)  # q3 failed then succeeded; q2's later error does not count
    assert row["coverage"] == {"predicted": pytest.approx(0.6667), "judged": 0.5} and not row["complete"]
    assert (row["accuracy"], row["score"]) == (pytest.approx(66.67), pytest.approx(2.667))  # over the 3 judged only
    assert row["by_type"]["what"] == {
        "predicted": 3,
        "prediction_errors": 0,
        "judged": 3,
        "judge_errors": 0,
        "unjudged": 0,
        "accuracy": pytest.approx(66.67),
        "score": pytest.approx(2.667),
    }
    typed = row["by_type"]["yes/no"]
    assert (typed["predicted"], typed["prediction_errors"], typed["judge_errors"], typed["accuracy"]) == (1, 2, 1, None)


def test_settings_are_summarised_by_what_differs(files):
    report = build_report([files[0]], [files[1]])
    a, b = find(report, RUN_A, "judge-a"), find(report, RUN_B, "judge-a")
    assert a["settings_key"] != b["settings_key"] and len(a["settings_key"]) == 16
    assert b["settings"].startswith("fps 1, simulated clock, memory temporal_clusters=4, decoding max_new_tokens=64")
    assert "spatial_frames" not in b["settings"]  # the same in every run: not worth a column
    assert a["settings"].startswith("fps 1, simulated clock, memory temporal_clusters=16, decoding")


def test_markdown_shows_every_count_and_marks_incomplete_rows(files):
    report = build_report([files[0]], [files[1]])
    markdown = to_markdown(report)
    rows = {n: r for n, r in enumerate(report["rows"], 1)}
    n_a = next(n for n, r in rows.items() if r is find(report, RUN_A, "judge-a"))
    n_b = next(n for n, r in rows.items() if r is find(report, RUN_B, "judge-a"))
    line_a = next(line for line in markdown.splitlines() if line.startswith(f"| {n_a} | RVS-Ego |"))
    assert line_a.endswith("| 6 | 6 | 0 | 6 | 0 | 0 | 100.0 % | 66.7 | 3.50 | 57.3 | 4.0 |") and "⚠" not in line_a
    assert "judge-a (custom-v7 " in line_a
    line_b = next(line for line in markdown.splitlines() if line.startswith(f"| {n_b} | RVS-Ego |"))
    assert "| 6 | 4 | 2 | 3 | 1 | 0 | 50.0 % ⚠ | 66.7 | 2.67 |" in line_b
    assert (
        f"⚠ row {n_b}: 3 of the 6 questions judged (0 not predicted yet, 2 failed to predict, 1 failed to judge, "
        "0 not judged yet); accuracy and score are over the judged ones only." in markdown
    )
    assert "judged by GPT-3.5 (snapshot not named)" in markdown
    assert "vstream-judge-v1" not in markdown  # the prompt named is the verdicts', not the code's
    assert f"| {n_b} | yes/no | 1 | 2 | 0 | 1 | 0 | – | – |" in markdown


def test_old_records_have_unknown_settings_and_their_verdicts_are_stale(tmp_path):
    old = [
        {"key": "a", "status": "ok", "benchmark": "msvd", "mode": "offline", "model": "m@1", "prediction": "x"},
        {"key": "b", "status": "error", "benchmark": "msvd", "mode": "offline", "model": "m@1", "error": "no video"},
    ]
    verdicts = [{"key": "va", "prediction_key": "a", "status": "ok", "pred": "yes", "score": 5, "judge": "j"}]
    report = build_report([write(tmp_path / "p.jsonl", old)], [write(tmp_path / "v.jsonl", verdicts)])
    (row,) = report["rows"]
    assert (row["settings_key"], row["settings"], row["judge"]) == (
        "unknown",
        "unknown (written by an older vstream)",
        "none",
    )
    assert counts(row) == (None, 1, 1, 0, 0, 1, 1) and row["coverage"] == {"predicted": None, "judged": None}
    assert not row["complete"] and row["by_type"]["?"]["predicted"] == 1
    markdown = to_markdown(report)
    assert "| ? | 1 | 1 | 0 | 0 | 1 | ? ⚠ |" in markdown and "0 of an unknown number of questions judged" in markdown


def report_cli(capsys, *args):
    status = main(["eval", "report", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_filters_rows_and_says_when_the_files_hold_several(files, tmp_path, capsys):
    preds, _ = files  # the verdicts are found beside the predictions
    status, out, err = report_cli(capsys, preds, "--json", tmp_path / "all.json")
    assert status == 0 and len(json.loads((tmp_path / "all.json").read_text())["rows"]) == 5
    assert len(err.strip().splitlines()) == 1 and "5 runs" in err and "--model" in err and "--judge" in err
    assert "other@bbbbbbbbbbbb" in out and "judge-b" in out
    for flags, wanted in [
        (["--model", "other"], [(RUN_C, "none")]),
        (["--model", "flash", "--mode", "offline"], [(RUN_D, "judge-a")]),
        (["--model", "flash@aaaaaaaaaaaa", "--judge", "judge-b"], [(RUN_A, "judge-b")]),
        (["--judge", "judge-a", "--mode", "online"], [(RUN_A, "judge-a"), (RUN_B, "judge-a")]),
    ]:
        status, out, err = report_cli(capsys, preds, *flags, "--json", tmp_path / "some.json")
        rows = json.loads((tmp_path / "some.json").read_text())["rows"]
        assert status == 0 and "showing" in err
        assert sorted((r["model"], r["mode"], r["judge"]) for r in rows) == sorted(
            (run["model"], run["mode"], judge) for run, judge in wanted
        )
    status, out, err = report_cli(capsys, preds, "--model", "nobody")
    assert status == 2 and len(err.strip().splitlines()) == 1 and "no row matches" in err


def test_one_run_needs_no_note(tmp_path, capsys):
    records = [prediction(RUN_A, q, f"A says {q}") for q, _ in QUESTIONS]
    status, out, err = report_cli(capsys, write(tmp_path / "p.jsonl", records))
    assert status == 0 and err == ""
    assert "| flash@aaaaaaaaaaaa | online | fps 1, simulated clock, decoding max_new_tokens=64" in out
    assert "| none yet | 6 | 6 | 0 | 0 | 0 | 6 | 0.0 % ⚠ | – | – | 57.3 | 4.0 |" in out


def test_the_command_runs_and_draws_a_png(files, tmp_path):
    png = tmp_path / "results.png"
    done = subprocess.run(
        [sys.executable, "-m", "vstream", "eval", "report", str(files[0]), "--plot", str(png)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "| RVS-Ego |" in done.stdout
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    import matplotlib.image

    pixels = matplotlib.image.imread(png)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 600
    assert pixels[..., :3].std() > 0.05  # bars and text, not a blank canvas


def test_the_figure_shows_the_reports_numbers(files):
    from vstream.eval.report_plot import build_figure

    report = build_report([files[0]], [files[1]])
    figure = build_figure(report)
    accuracy, score = figure.axes
    assert [t.get_text() for t in accuracy.get_xticklabels()] == ["overall", "what", "yes/no"]
    for n, row in enumerate(report["rows"], 1):
        for ax, metric in ((accuracy, "accuracy"), (score, "score")):
            (bars,) = [c for c in ax.containers if c.get_label().startswith(f"#{n} ")]
            wanted = [row[metric], row["by_type"]["what"][metric], row["by_type"]["yes/no"][metric]]
            heights = [bar.get_height() for bar in bars]
            assert [math.nan if w is None else w for w in wanted] == pytest.approx(heights, nan_ok=True)
    (paper,) = [c for c in accuracy.containers if c.get_label().startswith("paper")]
    assert [bar.get_height() for bar in paper] == [57.3]
    texts = [t.get_text() for t in accuracy.texts]
    assert "6/6" in texts and "3/6" in texts and "0/6 none judged" in texts  # judged/annotated on the figure


def test_a_plot_without_matplotlib_is_a_one_line_error(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    status, _, err = report_cli(capsys, files[0], "--plot", tmp_path / "r.png")
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert 'pip install "vstream[plot]"' in err and not (tmp_path / "r.png").exists()


def test_compare_puts_the_rows_side_by_side_and_warns_across_judges(files, capsys):
    from vstream.eval.report import comparison_markdown

    report = build_report([files[0]], [files[1]], judge="judge-a")
    table = comparison_markdown(report)
    lines = table.splitlines()
    assert lines[0] == "| question type | " + " | ".join(f"#{n}" for n in range(1, len(report["rows"]) + 1)) + " |"
    column = next(
        n for n, row in enumerate(report["rows"]) if row["model"] == RUN_A["model"] and row["mode"] == "online"
    )
    assert lines[2].split(" | ")[column + 1].startswith("66.7")  # run A judged by judge-a, as in the main table
    for kind in ("what", "yes/no"):
        cells = next(line for line in lines if line.startswith(f"| {kind} |")).strip("| ").split(" | ")[1:]
        expected = [row["by_type"].get(kind, {}).get("accuracy") for row in report["rows"]]
        assert [c if c != "–" else None for c in cells] == [None if e is None else f"{e:.1f}" for e in expected]
    assert "different judges" not in table

    mixed = comparison_markdown(build_report([files[0]], [files[1]]))
    assert "judged by 3 different judges or prompts: their numbers are not comparable" in mixed

    assert main(["eval", "report", str(files[0]), "--verdicts", str(files[1]), "--judge", "judge-a", "--compare"]) == 0
    assert table in capsys.readouterr().out


def test_yes_no_questions_are_scored_by_rule_beside_the_judge(tmp_path):
    """VStream-QA's yes/no questions get a number no judge moves: the answer's yes or no against the reference's,
    an answer that says neither (or both) counted as unreadable; the judge's accuracy on the same questions beside."""
    cases = [  # (reference, prediction, judge's verdict)
        ("Yes.", "Yes, the person opens the door.", True),
        ("No", "No.", True),
        ("No, it was before.", "Yes, after lunch.", True),  # the judge is lenient here; the rule is not
        ("Yes", "I think so.", False),  # unreadable
        ("Yes", "Yes and no.", False),  # says both: unreadable
        ("The red cup.", "A red cup.", True),  # not a yes/no question
    ]
    preds, verdicts = [], []
    for i, (reference, text, yes) in enumerate(cases):
        record = prediction(RUN_A, f"q{i}", text)
        record["answer"] = reference
        preds.append(record)
        verdicts.append(verdict(record, "judge-a", yes=yes))
    report = build_report([write(tmp_path / "p.jsonl", preds)], [write(tmp_path / "v.jsonl", verdicts)])
    (row,) = report["rows"]
    closed = row["closed"]
    assert closed["questions"] == 5 and closed["unreadable"] == 2
    assert closed["accuracy"] == 40.0  # 2 of 5 by rule
    assert closed["judged"] == 5 and closed["judge_accuracy"] == 60.0  # 3 of 5 by the judge
    assert closed["rule"].startswith("yes/no-exact-")
    text = to_markdown(report)
    assert "Yes/no questions scored by rule" in text and "| 1 | 5 | 40.0 | 2 | 5 | 60.0 |" in text
