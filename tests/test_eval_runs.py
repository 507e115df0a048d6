"""Benchmark runs end to end: predict → judge → report, resumed after a crash, sharded, online and offline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from vstream.eval.records import read_jsonl

from conftest import encode_video

FLAKY = Path(__file__).with_name("flaky_judge_server.py")
VIDEOS = ["alpha", "bravo", "charlie", "delta"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """Four 8-second videos and 15 questions about each (the last video has no file), as conversations."""
    root = tmp_path_factory.mktemp("bench")
    (root / "videos").mkdir()
    for name in VIDEOS[:3]:
        encode_video(root / "videos" / f"{name}.mp4", frames=24, fps=3)
    annotations = [
        {
            "video_id": name,
            "duration": 8.0,
            "conversations": [
                {
                    "question": f"What happens in {name} at step {i}?",
                    "answer": "Yes." if i % 2 else "Something grey.",
                    "start_time": 0,
                    "end_time": round(0.5 * i, 1),
                }
                for i in range(15)
            ],
        }
        for name in VIDEOS
    ]
    (root / "rvs.json").write_text(json.dumps(annotations))
    env = {**os.environ, "VSTREAM_CACHE": str(root / "cache"), "HF_HUB_OFFLINE": "1"}
    return root, env


def vstream(env, *args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "vstream", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def predict_args(root, output, *extra):
    return [
        "eval",
        "predict",
        "--benchmark",
        "rvs_ego",
        "--annotations",
        str(root / "rvs.json"),
        "--videos",
        str(root / "videos"),
        "--output",
        str(output),
        "--model",
        "tiny-random",
        "--max-new-tokens",
        "24",
        *extra,
    ]


@pytest.fixture
def flaky_server():
    process = subprocess.Popen([sys.executable, str(FLAKY)], stdout=subprocess.PIPE, text=True)
    port = process.stdout.readline().split()[1]
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


def stats(url):
    import urllib.request

    with urllib.request.urlopen(f"{url}/stats", timeout=10) as reply:
        return json.loads(reply.read())


def test_predict_judge_report_resumes_after_a_crash(bench, flaky_server, tmp_path):
    root, env = bench
    output = tmp_path / "preds.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "vstream", *predict_args(root, output)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if output.exists() and output.read_text().count("\n") >= 10:
            process.send_signal(signal.SIGKILL)  # a crash halfway: no chance to clean up
            break
        time.sleep(0.02)
    process.wait(30)
    written = read_jsonl(output)
    assert 10 <= len(written) < 60, "the run was not interrupted halfway"
    rerun = vstream(env, *predict_args(root, output))
    assert rerun.returncode == 1 and "15 questions failed" in rerun.stderr  # delta has no video
    counts = json.loads(rerun.stdout.splitlines()[-1])
    assert counts["already_done"] >= len([r for r in written if r["status"] == "ok"]) - 1
    records = read_jsonl(output)
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) == 45 and len({r["key"] for r in ok}) == 45  # nothing lost, nothing answered twice
    assert {r["video_id"] for r in records if r["status"] == "error"} == {"delta"}
    for record in ok:  # online: each answer saw only the frames up to its question's time
        assert record["latest_frame_time"] <= record["end_time"] and record["asked_at"] == record["end_time"]
        assert record["frames_seen"] == int(record["end_time"]) + 1

    judge = ["eval", "judge", str(output), "--base-url", f"{flaky_server}/v1", "--model", "flaky-judge"]
    first = vstream(env, *judge, "--attempts", "1")  # every first request fails: nothing may be scored
    assert first.returncode == 1 and json.loads(first.stdout.splitlines()[-1])["failed"] == 45
    second = vstream(env, *judge, "--attempts", "4")
    summary = json.loads(second.stdout.splitlines()[-1])
    assert second.returncode == 0 and summary["judged"] == 45
    assert summary["unparsed_replies"] == 45  # each prompt's second reply was not a verdict: recorded, asked again
    verdicts = read_jsonl(tmp_path / "preds.verdicts.jsonl")
    assert Counter(v["status"] for v in verdicts) == {"ok": 45, "unparsed": 45, "error": 45}
    before = stats(flaky_server)
    third = vstream(env, *judge)
    assert json.loads(third.stdout.splitlines()[-1])["cached"] == 45 and stats(flaky_server) == before

    report = vstream(env, "eval", "report", str(output), "--json", str(tmp_path / "report.json"))
    assert report.returncode == 0, report.stderr
    (row,) = json.loads((tmp_path / "report.json").read_text())["rows"]
    assert (row["questions"], row["predicted"], row["prediction_errors"], row["judged"]) == (60, 45, 15, 45)
    assert row["judge"] == "flaky-judge" and not row["complete"]
    assert row["by_type"]["yes/no"]["accuracy"] == 100.0 and row["by_type"]["open-ended"]["accuracy"] == 0.0
    assert row["accuracy"] == pytest.approx(100 * 21 / 45, abs=0.01) and row["paper"]["accuracy"] == 57.3
    assert "| 60 | 45 | 15 | 45 | 0 | 0 | 75.0 % ⚠ | 46.7 |" in report.stdout and "flaky-judge" in report.stdout


def test_a_judge_that_is_down_scores_nothing(bench, tmp_path):
    from vstream.eval.judge import JudgeConfig, run_judge

    process = subprocess.Popen([sys.executable, str(FLAKY), "--mode", "down"], stdout=subprocess.PIPE, text=True)
    port = process.stdout.readline().split()[1]
    try:
        predictions = tmp_path / "p.jsonl"
        predictions.write_text(
            json.dumps(
                {
                    "key": "k1",
                    "status": "ok",
                    "benchmark": "msvd",
                    "mode": "offline",
                    "question": "Q?",
                    "answer": "A.",
                    "prediction": "A.",
                }
            )
            + "\n"
        )
        config = JudgeConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", attempts=3, backoff=0.01)
        counts = run_judge(predictions, tmp_path / "v.jsonl", config)
    finally:
        process.terminate()
        process.wait(10)
    assert counts["failed"] == 1 and counts["server_errors"] == 3 and counts["judged"] == 0
    (record,) = read_jsonl(tmp_path / "v.jsonl")
    assert record["status"] == "error" and "InternalServerError" in record["reason"] and "score" not in record


def test_sharded_predictions_merge_into_the_same_set(bench, tmp_path):
    root, env = bench
    whole = tmp_path / "whole.jsonl"
    assert vstream(env, *predict_args(root, whole, "--max-new-tokens", "2")).returncode == 1  # delta has no video
    shards = []
    for index in range(2):
        result = vstream(
            env,
            *predict_args(
                root,
                tmp_path / "sharded.jsonl",
                "--max-new-tokens",
                "2",
                "--num-chunks",
                "2",
                "--chunk-idx",
                str(index),
            ),
        )
        assert result.returncode == index, result.stderr  # the second shard holds delta, which has no video
        shards.append(tmp_path / f"sharded.chunk{index}-of-2.jsonl")
    videos = [{r["video_id"] for r in read_jsonl(shard)} for shard in shards]
    assert not videos[0] & videos[1] and videos[0] | videos[1] == set(VIDEOS)
    merged = vstream(env, "eval", "merge", *map(str, shards), "--output", str(tmp_path / "merged.jsonl"))
    assert merged.returncode == 0
    assert {r["key"] for r in read_jsonl(tmp_path / "merged.jsonl")} == {r["key"] for r in read_jsonl(whole)}


def test_offline_predictions_from_videos_and_from_their_extracted_features_agree(bench, tmp_path):
    root, env = bench
    extracted = vstream(
        env,
        "extract-features",
        str(root / "videos"),
        "--output-dir",
        str(tmp_path / "features"),
        "--model",
        "tiny-random",
    )
    assert extracted.returncode == 0, extracted.stderr
    assert json.loads(extracted.stdout.splitlines()[-1])["extracted"] == 3
    runs = {}
    for given in ("--features", "--videos"):
        folder = tmp_path / "features" if given == "--features" else root / "videos"
        output = tmp_path / f"offline{given}.jsonl"
        offline = ["--benchmark", "vs_ego", "--annotations", str(root / "rvs.json"), given, str(folder)]
        result = vstream(
            env, "eval", "predict", *offline, "--output", str(output), "--model", "tiny-random", "--max-new-tokens", "8"
        )
        assert result.returncode == 1 and "15 questions failed" in result.stderr, result.stderr
        runs[given] = {r["id"]: r for r in read_jsonl(output)}
    for records in runs.values():
        ok = [r for r in records.values() if r["status"] == "ok"]
        assert len(ok) == 45 and all(r["mode"] == "offline" and r["frames_seen"] == 8 for r in ok)
        errors = [r for r in records.values() if r["status"] == "error"]
        assert len(errors) == 15 and all(r["video_id"] == "delta" for r in errors)
    assert "no features for delta" in runs["--features"]["delta#0"]["error"]
    assert "no video for delta" in runs["--videos"]["delta#0"]["error"]
    for question, record in runs["--videos"].items():  # the same clip memory, so the same greedy answers
        assert record.get("prediction") == runs["--features"][question].get("prediction"), question


def test_a_torchrun_launch_shards_the_videos_and_merges(bench, tmp_path):
    root, env = bench
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m"]
    launch = subprocess.run(
        [*torchrun, "vstream", *predict_args(root, tmp_path / "run.jsonl", "--max-new-tokens", "2")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert launch.returncode != 0 and "15 questions failed" in launch.stderr, launch.stderr[-3000:]  # rank 1: delta
    shards = [tmp_path / f"run.chunk{rank}-of-2.jsonl" for rank in range(2)]
    assert not (tmp_path / "run.jsonl").exists()
    videos = [{r["video_id"] for r in read_jsonl(shard)} for shard in shards]
    assert videos == [{"alpha", "charlie"}, {"bravo", "delta"}]  # every second video, one set per process
    merged = vstream(env, "eval", "merge", *map(str, shards), "--output", str(tmp_path / "run.jsonl"))
    assert merged.returncode == 0, merged.stderr
    assert len(read_jsonl(tmp_path / "run.jsonl")) == 60


def test_a_judge_without_structured_outputs_is_asked_in_the_prompt_only(tmp_path):
    from vstream.eval.judge import JudgeConfig, run_judge

    process = subprocess.Popen([sys.executable, str(FLAKY), "--mode", "noschema"], stdout=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{process.stdout.readline().split()[1]}"
    try:
        predictions = tmp_path / "p.jsonl"
        predictions.write_text(
            "".join(
                json.dumps(
                    {
                        "key": f"k{i}",
                        "status": "ok",
                        "benchmark": "msvd",
                        "mode": "offline",
                        "question": f"Q{i}?",
                        "answer": "Yes.",
                        "prediction": "Yes.",
                    }
                )
                + "\n"
                for i in range(6)
            )
        )
        counts = run_judge(
            predictions, tmp_path / "v.jsonl", JudgeConfig(base_url=f"{url}/v1", model="gpt-3.5", workers=1)
        )
        refused = stats(url).get("refused_format", 0)
    finally:
        process.terminate()
        process.wait(10)
    assert counts["judged"] == 6 and counts["failed"] == 0
    assert refused == 1  # found out once, then not asked again


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["judge", "{tmp}/missing.jsonl", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"],
            "{tmp}/missing.jsonl: no such file",
        ),
        (["report", "{tmp}/garbage.jsonl"], "garbage.jsonl: not a JSONL file of records"),
        (["report", "{tmp}/questions.jsonl"], "not a file of vstream predictions or verdicts"),
        (["merge", "{tmp}/missing.jsonl", "--output", "{tmp}/merged.jsonl"], "{tmp}/missing.jsonl: no such file"),
        (
            [
                *("predict", "--benchmark", "rvs_ego", "--annotations", "{tmp}/questions.jsonl"),
                *("--videos", "{tmp}/nowhere", "--output", "{tmp}/p.jsonl", "--model", "tiny-random"),
            ],
            "--videos {tmp}/nowhere: no such folder",
        ),
    ],
)
def test_wrong_eval_inputs_are_one_line_errors(tmp_path, capsys, args, message):
    from vstream.__main__ import main

    (tmp_path / "garbage.jsonl").write_text("not json\nnor this\n")
    (tmp_path / "questions.jsonl").write_text('{"id": "1", "video_id": "v", "question": "q?", "answer": "a"}\n')
    assert main(["eval", *(a.format(tmp=tmp_path) for a in args)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vstream eval: error: ") and message.format(tmp=tmp_path) in err[0]
    assert not (tmp_path / "merged.jsonl").exists() and not (tmp_path / "p.jsonl").exists()


def test_online_runs_on_a_simulated_clock_or_in_real_time(tiny_model, tmp_path):
    from vstream.eval.datasets import QAItem
    from vstream.eval.predict import PredictConfig, run_predict
    from vstream.model import GenerationOptions

    (tmp_path / "short").mkdir()
    (tmp_path / "long").mkdir()
    encode_video(tmp_path / "short" / "clip.mp4", frames=12, fps=3)  # 4 s, played in real time
    encode_video(tmp_path / "long" / "clip.mp4", frames=40, fps=1)  # 40 s, on the simulated clock
    took = {}
    for realtime, folder, times in ((True, "short", (1.0, 3.0)), (False, "long", (1.0, 39.0))):
        items = [QAItem(f"q{i}", "clip", f"What at {t}?", "grey", 0.0, t) for i, t in enumerate(times)]
        config = PredictConfig(
            benchmark="rvs_ego",
            output=tmp_path / f"run-{realtime}.jsonl",
            videos=tmp_path / folder,
            realtime=realtime,
            options=GenerationOptions(max_new_tokens=2),
        )
        began = time.monotonic()
        counts = run_predict(tiny_model, items, config, "tiny")
        took[realtime] = time.monotonic() - began
        assert counts["answered"] == 2
        latest = [r["latest_frame_time"] for r in read_jsonl(config.output)]
        if realtime:  # asked the moment the stream gets there, from what the memory holds then: the past only
            assert all(t - 1.05 <= seen <= t for seen, t in zip(latest, times, strict=True)), latest
        else:  # the simulated clock waits at each question until every frame up to it is in the memory
            assert latest == list(times)
    assert took[True] > 2.9  # the question at 3 s waited for the stream to get there
    assert took[False] < 20  # the simulated clock does not wait: 40 s of stream in far less (a load-proof margin)
