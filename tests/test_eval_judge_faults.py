"""The judge against a server that misbehaves in every way (a real HTTP server process), and reading messy replies."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import urllib.request
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest

from vstream.eval.judge import DEFAULT_PROMPT, JudgeConfig, parse_verdict, run_judge, unpinned_model, verdict_key
from vstream.eval.judge_prompt import JudgePrompt, load_judge_prompt
from vstream.eval.records import content_key, read_jsonl

FLAKY = Path(__file__).with_name("flaky_judge_server.py")
FAULT_KINDS = ["empty", "notjson", "nochoices", "emptychoices", "nullcontent", "truncated", "ambiguous", "slow"]
FAULT_KINDS += ["server_error", "429"]  # what the server's `mixed` mode answers to each prompt, in turn
FAULTS = len(FAULT_KINDS)


@contextmanager
def judge_server(*args: str):
    """The URL of a flaky judge server started with these arguments, stopped afterwards."""
    process = subprocess.Popen([sys.executable, str(FLAKY), *args], stdout=subprocess.PIPE, text=True)
    try:
        yield f"http://127.0.0.1:{process.stdout.readline().split()[1]}"
    finally:
        process.terminate()
        process.wait(10)


def stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/stats", timeout=10) as reply:
        return json.loads(reply.read())


def write_predictions(path: Path, count: int, prediction: str = "Yes.") -> list[dict]:
    """`count` ok predictions; every second one's reference answer is "Yes." (the server then says yes/5)."""
    records = [
        {
            "key": f"k{i}",
            "status": "ok",
            "benchmark": "msvd",
            "mode": "offline",
            "id": f"q{i}",
            "question": f"Question {i}?",
            "answer": "Yes." if i % 2 else "Something else.",
            "prediction": prediction,
        }
        for i in range(count)
    ]
    with open(path, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return records


def expected(record: dict) -> tuple[str, int]:
    return ("yes", 5) if record["answer"] == "Yes." else ("no", 1)


def config(url: str, **kwargs) -> JudgeConfig:
    return JudgeConfig(
        **{"base_url": f"{url}/v1", "model": "m-2024-01-01", "backoff": 0.01, "max_backoff": 0.05} | kwargs
    )


def test_every_bad_reply_is_a_retried_failure_and_the_run_goes_on(tmp_path):
    """Empty, non-JSON, choice-less, null and cut-short replies, an ambiguous verdict, a reply slower than the
    timeout, 500 and 429, and a refused response_format for 8 workers at once: every question is judged in the end,
    and only from a good reply."""
    records = write_predictions(tmp_path / "p.jsonl", 16)
    with judge_server("--mode", "mixed", "--hold-refusals", "8", "--slow", "6") as url:
        counts = run_judge(tmp_path / "p.jsonl", tmp_path / "v.jsonl", config(url, attempts=FAULTS + 3, timeout=2))
        served = stats(url)
    assert counts["judged"] == 16 and counts["failed"] == 0, counts
    assert served["refused_format"] == 8  # the 8 first requests, all in flight at once; none after
    assert all(served[kind] == 16 for kind in FAULT_KINDS), served  # each bad reply, once per question
    failures = counts["bad_replies"] + counts["unparsed_replies"] + counts["server_errors"]
    assert failures == sum(served.values()) - served["refused_format"] - 16  # one attempt per reply
    # (a good reply slower than the timeout on a busy machine counts as a server error, hence no equalities)
    assert 0 < counts["bad_replies"] <= 16 * 6 and counts["unparsed_replies"] <= 16
    assert counts["server_errors"] >= 16 * 3  # the slow, 500 and 429 replies
    verdicts = read_jsonl(tmp_path / "v.jsonl")
    assert Counter(v["status"] for v in verdicts) == {"ok": 16, "unparsed": counts["unparsed_replies"]}
    assert all(v["reason"].startswith("ambiguous") for v in verdicts if v["status"] == "unparsed")
    ok = {v["prediction_key"]: v for v in verdicts if v["status"] == "ok"}
    for record in records:
        verdict = ok[record["key"]]
        assert (verdict["pred"], verdict["score"]) == expected(record)  # never the decoy no/0 of a bad reply
        assert verdict["attempt"] > FAULTS and verdict["server"]["forced_format"] is False


def test_a_question_whose_every_reply_is_bad_is_listed_as_failed(tmp_path):
    write_predictions(tmp_path / "p.jsonl", 6)
    with judge_server("--mode", "mixed") as url:
        counts = run_judge(tmp_path / "p.jsonl", tmp_path / "v.jsonl", config(url, attempts=4, workers=3))
    assert (counts["judged"], counts["failed"], counts["bad_replies"]) == (0, 6, 24)
    verdicts = read_jsonl(tmp_path / "v.jsonl")
    assert sorted(v["prediction_key"] for v in verdicts) == [f"k{i}" for i in range(6)]
    for verdict in verdicts:
        assert verdict["status"] == "error" and "score" not in verdict and verdict["attempt"] == 4
        reasons = " | ".join(verdict["reasons"])
        assert all(word in reasons for word in ("empty body", "not JSON", "no choices")), reasons


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("empty", "bad reply: empty body"),
        ("notjson", "bad reply: not JSON"),
        ("nochoices", "bad reply: no choices"),
        ("emptychoices", "bad reply: no choices"),
        ("nullcontent", "bad reply: no message content"),
        ("truncated", "bad reply: not JSON"),
        ("ambiguous", "ambiguous"),
        ("slow", "APITimeoutError"),
        ("ratelimit", "RateLimitError"),
    ],
)
def test_a_bad_reply_is_never_scored(tmp_path, mode, reason):
    write_predictions(tmp_path / "p.jsonl", 3)
    with judge_server("--mode", mode, "--slow", "5") as url:
        timeout = 1 if mode == "slow" else 30
        counts = run_judge(tmp_path / "p.jsonl", tmp_path / "v.jsonl", config(url, attempts=2, timeout=timeout))
    assert (counts["judged"], counts["failed"]) == (0, 3)
    verdicts = read_jsonl(tmp_path / "v.jsonl")
    failures = [v for v in verdicts if v["status"] == "error"]
    assert len(failures) == 3 and all(reason in f["reason"] and len(f["reasons"]) == 2 for f in failures)
    assert all(v["status"] != "ok" and "score" not in v for v in verdicts)


def test_a_refused_response_format_is_decided_once_for_all_workers(tmp_path):
    write_predictions(tmp_path / "p.jsonl", 16)
    with judge_server("--mode", "noschema", "--hold-refusals", "8") as url:
        counts = run_judge(tmp_path / "p.jsonl", tmp_path / "v.jsonl", config(url, attempts=1, workers=8))
        served = stats(url)
    assert counts["judged"] == 16 and counts["failed"] == 0  # a refusal is not an attempt, for any worker
    assert served["refused_format"] == 8 and served["verdict"] == 16


def test_a_regenerated_answer_is_judged_again(tmp_path):
    predictions = tmp_path / "p.jsonl"
    write_predictions(predictions, 2)
    with judge_server("--mode", "good") as url:
        first = run_judge(predictions, tmp_path / "v.jsonl", config(url))
        (regenerated,) = write_predictions(predictions, 1, prediction="No, something else.")  # same key k0
        second = run_judge(predictions, tmp_path / "v.jsonl", config(url))
        assert stats(url)["verdict"] == 3
    assert first["judged"] == 2 and (second["judged"], second["cached"]) == (1, 1)
    latest = [v for v in read_jsonl(tmp_path / "v.jsonl") if v["prediction_key"] == "k0"][-1]
    assert latest["content"] == content_key(regenerated) and latest["status"] == "ok"
    assert latest["key"] == verdict_key(regenerated, config(url))


def test_a_verdict_names_what_it_judged_and_who_judged_it(tmp_path, caplog):
    records = write_predictions(tmp_path / "p.jsonl", 4)
    with judge_server("--mode", "good", "--report-model", "gpt-4o-2024-08-06") as url, caplog.at_level(logging.WARNING):
        counts = run_judge(tmp_path / "p.jsonl", tmp_path / "v.jsonl", config(url, model="gpt-4o", workers=4))
    assert counts["judged"] == 4
    port = url.rsplit(":", 1)[1]
    verdicts = {v["prediction_key"]: v for v in read_jsonl(tmp_path / "v.jsonl")}
    assert len(verdicts) == 4
    for record in records:
        verdict = verdicts[record["key"]]
        assert verdict["content"] == content_key(record)
        assert (verdict["judge"], verdict["prompt"], verdict["prompt_hash"]) == (
            "gpt-4o",
            "vstream-judge-v1",
            DEFAULT_PROMPT.hash,
        )
        assert re.fullmatch(r"[0-9a-f]{16}", verdict["prompt_hash"])
        assert verdict["server"] == {
            "model": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_test",
            "host": f"127.0.0.1:{port}",
            "temperature": 0.0,
            "forced_format": True,
        }
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "not be reproducible" in w and "'gpt-4o'" in w]) == 1
    assert len([w for w in warnings if "'gpt-4o-2024-08-06'" in w and "as asked" in w]) == 1


@pytest.mark.parametrize(
    ("model", "unpinned"),
    [
        ("gpt-3.5-turbo", True),
        ("gpt-4o", True),
        ("gpt-4-turbo", True),
        ("gpt-4o-mini", True),
        ("openai/gpt-4o", True),
        ("gpt-3.5-turbo-0125", False),
        ("gpt-4o-2024-08-06", False),
        ("gpt-4-1106-preview", False),
        ("ft:gpt-3.5-turbo-0125:org::abc", False),
        ("Qwen/Qwen2.5-7B-Instruct", False),
    ],
)
def test_an_unpinned_openai_alias_is_told_apart(model, unpinned):
    assert unpinned_model(model) is unpinned


def test_the_same_answer_is_judged_once_for_every_prediction_that_gives_it(tmp_path):
    predictions = tmp_path / "p.jsonl"
    same = {"status": "ok", "benchmark": "msvd", "question": "Q?", "answer": "Yes.", "prediction": "Yes."}
    predictions.write_text("".join(json.dumps({"key": key, **same}) + "\n" for key in ("run1", "run2")))
    with judge_server("--mode", "good") as url:
        first = run_judge(predictions, tmp_path / "v.jsonl", config(url))
        with open(predictions, "a") as f:
            f.write(json.dumps({"key": "run3", **same}) + "\n")
        second = run_judge(predictions, tmp_path / "v.jsonl", config(url))
        asked = stats(url)["verdict"]
    assert asked == 1 and first["judged"] == 2 and second["cached"] == 3
    verdicts = read_jsonl(tmp_path / "v.jsonl")
    assert sorted(v["prediction_key"] for v in verdicts) == ["run1", "run2", "run3"]
    assert all((v["status"], v["pred"], v["score"]) == ("ok", "yes", 5) for v in verdicts)


def test_a_fractional_score_is_truncated_and_kept_as_written(tmp_path):
    records = write_predictions(tmp_path / "p.jsonl", 2)
    with judge_server("--mode", "fraction") as url:
        assert run_judge(tmp_path / "p.jsonl", tmp_path / "v.jsonl", config(url))["judged"] == 2
    verdicts = {v["prediction_key"]: v for v in read_jsonl(tmp_path / "v.jsonl")}
    assert [(verdicts[r["key"]]["score"], verdicts[r["key"]]["raw_score"]) for r in records] == [(1, 1.5), (4, 4.8)]


def test_the_progress_bar_shows_failures_and_time_left(tmp_path, capsys):
    write_predictions(tmp_path / "p.jsonl", 3)
    with judge_server("--mode", "ratelimit") as url:
        run_judge(tmp_path / "p.jsonl", tmp_path / "v.jsonl", config(url, attempts=1, workers=1))
    bar = capsys.readouterr().err.split("\r")[-1]
    assert "3/3" in bar and "failed=3" in bar and re.search(r"\[\d\d:\d\d<\d\d:\d\d", bar), bar


PROMPT = {
    "version": "my-judge-v2",
    "system": "Grade the predicted answer against the correct one.",
    "user": "Question: {question}\nCorrect answer: {answer}\nPredicted answer: {prediction}\n"
    "Answer like {{'pred': 'yes', 'score': 4.8}}.",
}


def test_a_prompt_file_is_used_and_named_in_every_verdict(tmp_path):
    from vstream.__main__ import main

    (tmp_path / "prompt.json").write_text(json.dumps(PROMPT))
    records = write_predictions(tmp_path / "p.jsonl", 2)
    with judge_server("--mode", "echo") as url:
        args = ["eval", "judge", str(tmp_path / "p.jsonl"), "--base-url", f"{url}/v1", "--model", "m-0125"]
        assert main([*args, "--judge-prompt", str(tmp_path / "prompt.json")]) == 0
    prompt = load_judge_prompt(tmp_path / "prompt.json")
    assert prompt.examples == {("yes", 4)} and prompt.hash != DEFAULT_PROMPT.hash
    verdicts = {v["prediction_key"]: v for v in read_jsonl(tmp_path / "p.verdicts.jsonl")}
    for record in records:
        verdict = verdicts[record["key"]]
        assert (verdict["prompt"], verdict["prompt_hash"]) == ("my-judge-v2", prompt.hash)
        assert (verdict["pred"], verdict["score"]) == expected(record)
    messages = prompt.messages(records[0])
    assert messages[0] == {"role": "system", "content": PROMPT["system"]}
    assert messages[1]["content"].endswith("Predicted answer: Yes.\nAnswer like {'pred': 'yes', 'score': 4.8}.")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"user": "Q: {question} A: {answer} P: {prediction} {context}"}, "unknown field {context}"),
        ({"user": "Q: {question} A: {answer}"}, "does not use {prediction}"),
        ({"user": "Q: {question} A: {answer} P: {prediction} {}"}, "unknown field {}"),
        ({"user": "Q: {question!r} A: {answer} P: {prediction}"}, "without a conversion or format spec"),
        ({"user": "Q: {question} A: {answer} P: {prediction} {'pred': 'yes'}"}, "unknown field"),
        ({"user": "Q: {question} A: {answer} P: {prediction} }"}, "malformed"),
        ({"version": 2}, "'version' must be a string"),
        ({"version": " "}, "must not be empty"),
        ({"examples": []}, "unknown 'examples'"),
        ({"system": None}, "'system' must be a string"),
    ],
)
def test_a_bad_prompt_file_is_an_error_before_any_request(tmp_path, capsys, change, message):
    from vstream.__main__ import main

    (tmp_path / "prompt.json").write_text(json.dumps(PROMPT | change))
    write_predictions(tmp_path / "p.jsonl", 2)
    with judge_server("--mode", "good") as url:
        args = ["eval", "judge", str(tmp_path / "p.jsonl"), "--base-url", f"{url}/v1", "--model", "m-0125"]
        assert main([*args, "--judge-prompt", str(tmp_path / "prompt.json")]) == 2
        assert stats(url) == {}
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--judge-prompt" in err[0] and message in err[0], err
    assert not (tmp_path / "p.verdicts.jsonl").exists()


@pytest.mark.parametrize(
    ("text", "problem"),
    [("{not json", "not JSON"), ('["version"]', "must be a JSON object"), ('{"user": "{question}"}', "missing")],
)
def test_a_prompt_file_that_is_not_a_prompt_says_so(tmp_path, text, problem):
    from vstream.errors import ConfigError

    (tmp_path / "prompt.json").write_text(text)
    with pytest.raises(ConfigError, match=problem):
        load_judge_prompt(tmp_path / "prompt.json")
    with pytest.raises(ConfigError, match="cannot read"):
        load_judge_prompt(tmp_path / "missing.json")


def said(reply: str | None, **kwargs) -> tuple[str, int] | None:
    """(pred, score) of a reply's verdict, or None."""
    verdict = parse_verdict(reply, **kwargs)
    return None if verdict is None else (verdict[0], verdict[1])


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ('```json\n{"pred": "yes", "score": 4}\n```', ("yes", 4)),
        ('Here is my verdict:\n```\n{"pred": "no", "score": 2}\n```\nI hope it helps.', ("no", 2)),
        ('{"pred": "yes", "score": "4"}', ("yes", 4)),
        ('{"pred": "yes", "score": " 4.0 "}', ("yes", 4)),
        ('{"pred": "yes", "score": 4.5}', ("yes", 4)),
        ('{"pred": "yes", "score": 0.9}', ("yes", 0)),
        ('{"pred": "Yes", "score": 3}', ("yes", 3)),
        ('{"pred": " NO ", "score": 1}', ("no", 1)),
        ('{"Pred": "yes", "SCORE": 5, "reason": "same meaning"}', ("yes", 5)),
        ('{"pred": "yes", "score": 3} and that is final. Trailing words {', ("yes", 3)),
        ("{'pred': 'yes', 'score': 4.8}", ("yes", 4)),
        ('{"verdict": {"pred": "no", "score": 1}}', ("no", 1)),
        # the prompt's example echoed, then the verdict: the verdict
        ('As in {"pred": "yes", "score": 4}, my verdict: {"pred": "no", "score": 1}', ("no", 1)),
        ('{"pred": "yes", "score": 4} ... {"pred": "yes", "score": 4}', ("yes", 4)),
        ('{"pred": "no", "score": 1}\nSo: {"pred": "no", "score": "1"}', ("no", 1)),
        # two different verdicts that are not an echo of the example: ambiguous
        ('{"pred": "yes", "score": 5} or maybe {"pred": "no", "score": 0}', None),
        ('{"pred": "no", "score": 1}, as in the example {"pred": "yes", "score": 4}', None),
        ('{"pred": "yes", "score": 5.5}', None),
        ('{"pred": "yes", "score": -1}', None),
        ('{"pred": "yes", "score": true}', None),
        ('{"pred": "yes", "score": NaN}', None),
        ('{"pred": "yes", "score": "four"}', None),
        ('{"pred": "maybe", "score": 3}', None),
        ('{"pred": "yes"}', None),
        ("Yes, it matches.", None),
        ("", None),
        (None, None),
    ],
)
def test_a_messy_reply_is_read_by_its_verdict(reply, verdict):
    assert said(reply) == verdict


def test_a_verdict_keeps_its_score_as_written_and_knows_the_prompts_examples():
    assert parse_verdict('{"pred": "yes", "score": "4.0"}').raw_score == "4.0"
    assert parse_verdict('{"pred": "yes", "score": 4.5}').raw_score == 4.5
    reply = 'Like {"pred": "no", "score": 0}: {"pred": "yes", "score": 3}'
    assert said(reply) is None  # no/0 is not vstream's example
    assert said(reply, examples=frozenset({("no", 0)})) == ("yes", 3)
    prompt = JudgePrompt("v", 'e.g. {"pred": "no", "score": 0}', "{question} {answer} {prediction}")
    assert prompt.examples == {("no", 0)}
