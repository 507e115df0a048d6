"""Closed answers scored by rule: the normaliser, the strict matcher, and `eval judge --rule exact` to the report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vstream.__main__ import main
from vstream.eval.closed import EXACT_MATCH_VERSION, exact_match, normalize_answer, reference_kind, yes_no
from vstream.eval.records import content_key, read_jsonl, record_key

RULE_JUDGE = f"rule:{EXACT_MATCH_VERSION}"


@pytest.mark.parametrize(
    ("answer", "normalized"),
    [
        ("Yes, it did.", "yes"),
        ("No.", "no"),
        ("yes and no", "yes and no"),  # a hedge is not read as either
        ("There are THREE scenes!", "there are 3 scenes"),
        ("A red circle.", "red circle"),
        ("The answer is: twenty", "answer is 20"),
        ("A", "a"),  # a lone letter (a multiple-choice option) is not an article
        ("It didn't.", "it didnt"),
        ("1,000 frames", "1000 frames"),
        ("3.5 seconds.", "3.5 seconds"),
        ("Ｒｅｄ　ｃｉｒｃｌｅ", "red circle"),  # full-width forms
        ("red_circle", "red circle"),
        ("  ", ""),
        (None, ""),
    ],
)
def test_normalize_answer(answer, normalized):
    assert normalize_answer(answer) == normalized


def test_yes_no_and_reference_kinds():
    assert (yes_no("Yes, the person did."), yes_no("No, no triangle."), yes_no("Yes/No"), yes_no("I think yes")) == (
        "yes",
        "no",
        None,
        None,
    )
    kinds = [reference_kind(r) for r in ("Yes", "no.", "3", "three", "3 scenes", "red circle", "", None, "...")]
    assert kinds == ["yes/no", "yes/no", "number", "number", "text", "text", "empty", "empty", "empty"]


@pytest.mark.parametrize(
    ("prediction", "reference", "match"),
    [
        # yes/no: starts with the word, never says the other one
        ("Yes, the person is holding a cup.", "yes", True),
        ("Yes, the person is not moving.", "yes", True),  # a negation after the yes is not a "no"
        ("No.", "no", True),
        ("No, it didn't.", "no", True),
        ("No, no yellow triangle appeared.", "no", True),
        ("No.", "yes", False),
        ("yes and no", "yes", False),
        ("yes and no", "no", False),
        ("Yes/No", "yes", False),
        ("I think yes.", "yes", False),
        ("Nope", "no", False),
        # numbers: every number in the answer is the reference's, and there is one
        ("3", "3", True),
        ("three", "3", True),
        ("Three.", "3", True),
        ("There are 3 scenes.", "3", True),
        ("There were three scenes so far.", "3", True),
        ("3.0", "3", True),
        ("The digit seven was shown.", "7", True),
        ("3 or 4", "3", False),
        ("three or four", "3", False),
        ("3 scenes, 4 shots", "3", False),
        ("Not 3.", "3", False),
        ("4", "3", False),
        ("3rd", "3", False),
        ("twenty", "20", True),
        ("twenty-one", "21", False),  # number words stop at twenty: "20 1" is two numbers
        # text: the normalised words are the reference's
        ("Red circle.", "red circle", True),
        ("a red circle", "red circle", True),
        ("  The RED   circle! ", "red circle", True),
        ("the circle is red", "red circle", False),
        ("red", "red circle", False),
        ("red circles", "red circle", False),
        ("red circle and blue square", "red circle", False),
        ("red circle or blue square", "red circle", False),
        ("Yes, a red circle.", "red circle", False),
        ("three red circles", "3 red circles", True),
        ("3", "3 red circles", False),
        ("A.", "A", True),
        ("(A) red circle", "A", False),
        # nothing never matches anything
        ("", "red circle", False),
        (None, "red circle", False),
        ("None", "red circle", False),
        ("...", "3", False),
        ("red circle", "", False),
        ("red circle", None, False),
        ("", "", False),
        (None, None, False),
    ],
)
def test_exact_match(prediction, reference, match):
    assert exact_match(prediction, reference) is match


SETTINGS = {"model": "flash@aaaaaaaaaaaa", "mode": "online", "fps": 1.0, "memory": {"temporal_clusters": 16}}
ANNOTATIONS = {"source": "shapes.json", "sha256": "0123456789abcdef", "questions": 8}
ROWS = [  # (id, question, reference, prediction or None for a failed prediction)
    ("q0", "What shape is on screen now?", "red circle", "Red circle."),
    ("q1", "How many scenes so far?", "3", "There are 3 scenes."),
    ("q2", "Did a yellow triangle ever appear?", "yes", "Yes, it did."),
    ("q3", "What shape is on screen now?", "green square", "red circle or blue square"),
    ("q4", "What digit was shown at the beginning?", "7", "seven"),
    ("q5", "How many scenes so far?", "2", "2 or 3"),
    ("q6", "Did a red circle ever appear?", "no", None),
]  # the annotation set's eighth question is not predicted yet


def prediction(qid: str, question: str, answer: str, text: str | None) -> dict:
    """A prediction record as `vstream eval predict` writes it (`text` None: a failed prediction)."""
    record = {
        "key": record_key(id=qid, **SETTINGS),
        "status": "ok" if text is not None else "error",
        "benchmark": "shapes_test",
        "mode": "online",
        "model": SETTINGS["model"],
        "settings_key": record_key(**SETTINGS)[:16],
        "settings": SETTINGS,
        "annotations": ANNOTATIONS,
        "id": qid,
        "video_id": "v0",
        "question": question,
        "answer": answer,
        "question_type": "yes/no" if answer in ("yes", "no") else "closed",
        "start_time": 0.0,
        "end_time": 10.0,
    }
    record.update(prediction=text) if text is not None else record.update(error="no video")
    return record


def llm_verdict(pred: dict, yes: bool) -> dict:
    """A verdict of an LLM judge, as `vstream eval judge --model ...` writes it."""
    key = record_key(content=content_key(pred), judge="judge-a", prompt="0123456789abcdef")
    return {
        "key": key,
        "prediction_key": pred["key"],
        "content": content_key(pred),
        "status": "ok",
        "judge": "judge-a",
        "prompt": "vstream-judge-v1",
        "prompt_hash": "0123456789abcdef",
        "pred": "yes" if yes else "no",
        "score": 4 if yes else 1,
    }


@pytest.fixture
def files(tmp_path):
    """A predictions file (6 answered, 1 failed, of 8 questions) and an LLM judge's verdicts beside it."""
    records = [prediction(*row) for row in ROWS]
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in records))
    verdicts = tmp_path / "preds.verdicts.jsonl"  # where `eval judge` and `eval report` look by default
    verdicts.write_text("".join(json.dumps(llm_verdict(r, yes=True)) + "\n" for r in records if r["status"] == "ok"))
    return preds, verdicts


def vstream(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vstream", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def row_line(markdown: str, judge: str) -> str:
    """The line of the report's main table for a judge's row."""
    (line,) = [line for line in markdown.splitlines() if "| shapes_test |" in line and f"| {judge} (" in line]
    return line


def test_judge_by_rule_then_report_through_the_cli(files):
    preds, verdicts = files
    before = len(read_jsonl(verdicts))
    done = vstream("eval", "judge", preds, "--rule", "exact")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"predictions": 6, "cached": 0, "judged": 6, "matched": 4, "failed": 0}
    written = read_jsonl(verdicts)[before:]
    assert len(written) == 6 and {v["judge"] for v in written} == {RULE_JUDGE}
    assert {v["prompt"] for v in written} == {EXACT_MATCH_VERSION} and len({v["prompt_hash"] for v in written}) == 1
    by_id = {next(r[0] for r in ROWS if prediction(*r)["key"] == v["prediction_key"]): v for v in written}
    assert {q: v["pred"] for q, v in by_id.items()} == {
        "q0": "yes",
        "q1": "yes",
        "q2": "yes",
        "q3": "no",
        "q4": "yes",
        "q5": "no",
    }
    assert by_id["q0"]["normalized"] == {"prediction": "red circle", "answer": "red circle"}
    assert all(v["score"] is None for v in written)

    again = vstream("eval", "judge", preds, "--rule", "exact")  # idempotent: nothing new is written
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"predictions": 6, "cached": 6, "judged": 0, "matched": 0, "failed": 0}
    assert len(read_jsonl(verdicts)) == before + 6

    report = vstream("eval", "report", preds, "--json", preds.with_name("report.json"))
    assert report.returncode == 0, report.stderr
    assert "2 runs" in report.stderr  # the rule's row and the LLM judge's, never mixed
    rule_line = row_line(report.stdout, RULE_JUDGE)
    # questions, predicted, failed to predict, judged, failed to judge, not judged, coverage, accuracy, score
    assert rule_line.endswith("| 8 | 6 | 1 | 6 | 0 | 0 | 75.0 % ⚠ | 66.7 | – | – | – |"), rule_line
    assert f"| {RULE_JUDGE} ({EXACT_MATCH_VERSION} {written[0]['prompt_hash']}) |" in rule_line
    llm_line = row_line(report.stdout, "judge-a")
    assert llm_line.endswith("| 8 | 6 | 1 | 6 | 0 | 0 | 75.0 % ⚠ | 100.0 | 4.00 | – | – |"), llm_line
    rows = json.loads(preds.with_name("report.json").read_text())["rows"]
    (rule_row,) = [r for r in rows if r["judge"] == RULE_JUDGE]
    assert (rule_row["accuracy"], rule_row["score"], rule_row["prediction_errors"]) == (pytest.approx(66.67), None, 1)
    assert rule_row["by_type"]["yes/no"] == {
        "predicted": 1,
        "prediction_errors": 1,  # a failed prediction is counted apart, never as a wrong answer
        "judged": 1,
        "judge_errors": 0,
        "unjudged": 0,
        "accuracy": 100.0,
        "score": None,
    }
    only = vstream("eval", "report", preds, "--judge", RULE_JUDGE)
    assert only.returncode == 0 and RULE_JUDGE in only.stdout and "judge-a" not in only.stdout


def test_a_regenerated_answer_is_scored_again_and_nothing_else(files):
    preds, verdicts = files
    assert main(["eval", "judge", str(preds), "--rule", "exact"]) == 0
    count = len(read_jsonl(verdicts))
    regenerated = prediction("q3", "What shape is on screen now?", "green square", "A green square.")
    with open(preds, "a") as f:
        f.write(json.dumps(regenerated) + "\n")
    assert main(["eval", "judge", str(preds), "--rule", "exact"]) == 0
    (new,) = read_jsonl(verdicts)[count:]
    assert (new["prediction_key"], new["content"], new["pred"]) == (regenerated["key"], content_key(regenerated), "yes")


def test_the_rule_needs_no_server_and_refuses_judge_options(files, capsys, monkeypatch):
    preds, verdicts = files
    monkeypatch.setitem(sys.modules, "openai", None)  # as if not installed: no client can be made
    monkeypatch.setenv("VSTREAM_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")  # ignored with --rule
    assert main(["eval", "judge", str(preds), "--rule", "exact", "--verdicts", str(verdicts.with_name("v.jsonl"))]) == 0
    assert len(read_jsonl(verdicts.with_name("v.jsonl"))) == 6
    capsys.readouterr()
    assert main(["eval", "judge", str(preds), "--rule", "exact", "--model", "gpt-4o-2024-08-06"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--model" in err and "--rule exact" in err


def test_a_question_without_reference_is_a_failed_verdict(tmp_path, capsys):
    preds = tmp_path / "p.jsonl"
    records = [prediction("q0", "What shape?", "", "red circle"), prediction("q1", "How many?", "3", "three")]
    preds.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["eval", "judge", str(preds), "--rule", "exact"]) == 1  # like the judge: a failure exits 1
    counts = json.loads(capsys.readouterr().out)
    assert (counts["judged"], counts["failed"], counts["matched"]) == (1, 1, 1)
    failed = [v for v in read_jsonl(tmp_path / "p.verdicts.jsonl") if v["status"] == "error"]
    assert [v["reason"] for v in failed] == ["no reference answer"]
    assert main(["eval", "judge", str(preds), "--rule", "exact"]) == 1  # still failed, and said so
    counts = json.loads(capsys.readouterr().out)
    assert (counts["cached"], counts["judged"], counts["failed"]) == (2, 0, 1)
    assert len(read_jsonl(tmp_path / "p.verdicts.jsonl")) == 2  # a rule's failure is final too: not written again
