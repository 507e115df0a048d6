"""`vstream eval predict`: results keyed by what made them, the same every run, at the times the data says."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from vstream.__main__ import main
from vstream.eval.datasets import QAItem, load_annotations
from vstream.eval.predict import PredictConfig, run_predict
from vstream.eval.records import read_jsonl
from vstream.features import save_features
from vstream.model import GenerationOptions, VStream

from conftest import encode_video

SHORT = GenerationOptions(max_new_tokens=3)
TIMINGS = ("ttft_s", "total_s")


def vstream_cli(env, *args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "vstream", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "VSTREAM_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}


def test_two_online_runs_of_one_command_from_a_video_give_the_same_file(tmp_path, env):
    (tmp_path / "videos").mkdir()
    encode_video(tmp_path / "videos" / "walk.mp4", frames=60, fps=2)  # 30 s, 30 different grey levels
    questions = [
        {"question": f"What happens by {t} s?", "answer": "grey", "start_time": 0, "end_time": t}
        for t in (3, 9.5, 17, 29)
    ]
    (tmp_path / "qa.json").write_text(json.dumps([{"video_id": "walk", "duration": 30, "conversations": questions}]))
    runs = []
    for name in ("a", "b"):
        output = tmp_path / f"{name}.jsonl"
        result = vstream_cli(
            env,
            *("eval", "predict", "--benchmark", "rvs_ego", "--annotations", str(tmp_path / "qa.json")),
            *("--videos", str(tmp_path / "videos"), "--output", str(output), "--model", "tiny-random"),
            *("--max-new-tokens", "12", "--fps", "2"),
        )
        assert result.returncode == 0, result.stderr
        runs.append([{k: v for k, v in r.items() if k not in TIMINGS} for r in read_jsonl(output)])
    assert runs[0] == runs[1]  # byte for byte, apart from timings
    record = runs[0][-1]
    settings = record["settings"]  # what made the answer, in the clear
    assert settings["fps"] == 2.0 and settings["realtime"] is False and settings["mode"] == "online"
    assert settings["input"] == "videos"
    assert settings["options"]["max_new_tokens"] == 12 and settings["memory"]["temporal_clusters"] > 0
    assert settings["vstream_version"] and record["model"] == settings["model"]
    assert record["model"].startswith("tiny-random@") and len(settings["weights"]) == 64
    assert record["annotations"] == {
        "source": "qa.json",
        "sha256": load_annotations(tmp_path / "qa.json").digest,
        "questions": 4,
    }
    assert [r["latest_frame_time"] for r in runs[0]] == [3.0, 9.5, 17.0, 29.0]


def _features_at_half_fps(tiny_model, path, seconds=120):
    """Features of one frame every 2 s, as `extract-features --fps 0.5` writes them: row i is grey level 2·i."""
    frames = [np.full((32, 32, 3), 2 * i, np.uint8) for i in range(seconds // 2)]
    times = [2.0 * i for i in range(len(frames))]
    save_features(path, tiny_model.encode_frames(frames), {"fps": "0.5", "times": json.dumps(times)})


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_features_stored_at_half_fps_are_answered_at_their_own_times(tiny_model, tmp_path, mode):
    (tmp_path / "features").mkdir()
    _features_at_half_fps(tiny_model, tmp_path / "features" / "clip.safetensors")
    items = [QAItem(f"q{t}", "clip", f"What at {t}?", "grey", 0.0, t) for t in (60.0, 101.0)]
    config = PredictConfig(
        benchmark="rvs_ego", output=tmp_path / "p.jsonl", features=tmp_path / "features", mode=mode, options=SHORT
    )
    counts = run_predict(tiny_model, items, config, "tiny")
    assert counts["answered"] == 2 and counts["errors"] == 0
    records = read_jsonl(config.output)
    assert records[0]["settings"]["fps"] is None and records[0]["settings"]["input"] == "features"
    if mode == "online":  # the question at 60 s sees the frames up to 60 s: 31 frames, the newest at 60 s
        assert [(r["latest_frame_time"], r["frames_seen"]) for r in records] == [(60.0, 31), (100.0, 51)]
    else:  # the whole clip: 60 frames, the last at 118 s
        assert [(r["latest_frame_time"], r["frames_seen"]) for r in records] == [(118.0, 60), (118.0, 60)]
    assert all("warning" not in r for r in records)
    conflicting = PredictConfig(
        benchmark="rvs_ego", output=tmp_path / "q.jsonl", features=tmp_path / "features", mode=mode, fps=1.0
    )
    assert run_predict(tiny_model, items, conflicting, "tiny")["errors"] == 2
    error = read_jsonl(conflicting.output)[0]["error"]
    assert "extracted at 0.5 fps, not 1" in error and "leave --fps out" in error


def test_npy_movie_features_are_played_from_the_clip_start(tiny_model, tmp_path):
    """RVS-Movie: `video_path` is a `.npy` of the whole movie at 1 fps; the stream is [clip_start, clip_end]."""
    (tmp_path / "features").mkdir()
    features = tiny_model.encode_frames([np.full((32, 32, 3), i, np.uint8) for i in range(100)])
    np.save(tmp_path / "features" / "tt0001.npy", features.to(torch.float16).numpy())
    movie = {
        "video_id": "tt0001",
        "video_path": "/data/rvs/movie/videos/tt0001.npy",
        "duration": 100,
        "clip_start_time": 40,
        "clip_end_time": 80,
        "conversations": [
            {"question": "Who is there?", "answer": "a man", "start_time": 40, "end_time": 55},
            {"question": "What then?", "answer": "he leaves", "start_time": 40, "end_time": 92},
        ],
    }
    (tmp_path / "movie.json").write_text(json.dumps([movie]))
    annotations = load_annotations(tmp_path / "movie.json")
    config = PredictConfig(
        benchmark="rvs_movie", output=tmp_path / "p.jsonl", features=tmp_path / "features", options=SHORT
    )
    assert run_predict(tiny_model, annotations, config, "tiny")["answered"] == 2
    first, second = read_jsonl(config.output)
    assert (first["latest_frame_time"], first["frames_seen"]) == (55.0, 16)  # 40..55 s, not the movie's start
    assert (second["latest_frame_time"], second["frames_seen"]) == (80.0, 41)  # the clip ends at 80 s
    assert second["warning"] == "asked at 92 s but the video ends at 80 s: answered from the whole video"
    assert "warning" not in first


def test_a_retrained_checkpoint_at_the_same_path_answers_again(tiny_checkpoint, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("VSTREAM_CACHE", str(tmp_path / "cache"))
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "checkpoint")
    (tmp_path / "features").mkdir()
    save_features(tmp_path / "features" / "clip.safetensors", torch.randn(6, 16, 32))
    items = [QAItem(f"q{i}", "clip", f"Question {i}?", "answer", 0.0, 5.0) for i in range(3)]
    config = PredictConfig(
        benchmark="vs_ego", output=tmp_path / "p.jsonl", features=tmp_path / "features", options=SHORT
    )
    model = VStream.from_pretrained(folder)
    first = run_predict(model, items, config, str(folder))
    assert first["answered"] == 3
    assert run_predict(VStream.from_pretrained(folder), items, config, str(folder))["already_done"] == 3
    digests = json.loads((tmp_path / "cache" / "file_digests.json").read_text())
    assert any(entry.startswith(str(folder / "model.safetensors")) for entry in digests)  # hashed once, cached

    with torch.no_grad():  # "retrain": other weights, saved to the same folder
        model.llm.get_input_embeddings().weight.add_(0.01)
    model.save_pretrained(folder)
    retrained = VStream.from_pretrained(folder)
    again = run_predict(retrained, items, config, str(folder))
    assert again["answered"] == 3 and again["already_done"] == 0 and again["model"] != first["model"]


def test_predict_refuses_speed_and_a_hub_model_without_a_gpu(tmp_path, env, capsys):
    (tmp_path / "videos").mkdir()
    (tmp_path / "qa.json").write_text(json.dumps([{"id": "1", "video_id": "v", "question": "q?", "answer": "a"}]))
    common = ["eval", "predict", "--benchmark", "msvd", "--annotations", str(tmp_path / "qa.json")]
    common += ["--videos", str(tmp_path / "videos"), "--output", str(tmp_path / "p.jsonl")]
    with pytest.raises(SystemExit) as speed:  # in this process: the checks come before any model loads
        main([*common, "--model", "tiny-random", "--speed", "2"])
    assert speed.value.code == 2 and "unrecognized arguments: --speed" in capsys.readouterr().err
    if torch.cuda.is_available():
        return
    assert main([*common, "--model", "IVGSZ/Flash-VStream-7b"]) == 2
    err = capsys.readouterr().err
    assert "no GPU here" in err and "--device cpu" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "p.jsonl").exists()
    insisted = vstream_cli(env, *common, "--model", "IVGSZ/Flash-VStream-7b", "--device", "cpu")
    assert insisted.returncode != 0 and "no GPU here" not in insisted.stderr  # then the Hub is out of reach here


def test_merge_refuses_an_incomplete_set_of_shards(tmp_path, capsys):
    for index in (0, 2):
        (tmp_path / f"run.chunk{index}-of-3.jsonl").write_text(json.dumps({"key": str(index), "status": "ok"}) + "\n")
    shards = [str(tmp_path / f"run.chunk{index}-of-3.jsonl") for index in (0, 2)]
    assert main(["eval", "merge", *shards, "--output", str(tmp_path / "run.jsonl")]) == 2
    assert "1 of 3 shards are missing: run.chunk1-of-3.jsonl" in capsys.readouterr().err
    assert not (tmp_path / "run.jsonl").exists()
    (tmp_path / "run.chunk1-of-3.jsonl").write_text(json.dumps({"key": "1", "status": "ok"}) + "\n")
    shards.append(str(tmp_path / "run.chunk1-of-3.jsonl"))
    assert main(["eval", "merge", *shards, "--output", str(tmp_path / "run.jsonl")]) == 0
    assert len(read_jsonl(tmp_path / "run.jsonl")) == 3
