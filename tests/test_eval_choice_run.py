"""Multiple-choice and streaming benchmarks run end to end: options scored by likelihood, letters read strictly,
OVO-Bench questions asked at their time, and the report per run, task and method."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vstream.__main__ import main
from vstream.eval.mcq import MCQuestion
from vstream.eval.predict import PredictConfig, run_predict
from vstream.eval.questions import load_questions
from vstream.eval.records import read_jsonl
from vstream.model import GenerationOptions, VStream

from conftest import encode_video

SHORT = GenerationOptions(max_new_tokens=4)
TAUGHT = {"What colour is the sky in this video?": "blue", "What colour is the grass in this video?": "green"}
CANDIDATES = ("red", "blue", "green")


@pytest.fixture(scope="module")
def taught_model(tiny_checkpoint):
    """The tiny model after a few steps of learning one answer per question (so its preferences are not random)."""
    model = VStream.from_pretrained(tiny_checkpoint)
    frames = [np.full((32, 32, 3), 40 * i, np.uint8) for i in range(4)]
    snapshot = model.clip_snapshot(model.encode_frames(frames), [0.0, 1.0, 2.0, 3.0])
    llm = model.llm
    optimizer = torch.optim.Adam(llm.parameters(), lr=3e-3)
    llm.train()
    for _ in range(80):
        for question, answer in TAUGHT.items():
            sample = model.processor.build(llm, snapshot, model.processor.sample_ids([(question, answer)]))
            loss = llm(inputs_embeds=sample.inputs_embeds, labels=sample.labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    llm.eval()
    return model, snapshot


def test_log_likelihood_picks_the_option_the_model_was_taught(taught_model):
    model, snapshot = taught_model
    for question, answer in TAUGHT.items():
        scores = model.score_answers(snapshot, question, CANDIDATES)
        assert [s.answer for s in scores] == list(CANDIDATES)
        assert all(s.tokens >= 2 for s in scores)  # the option and the end mark
        best = max(scores, key=lambda s: s.logprob)
        assert best.answer == answer, scores
        others = [s.logprob for s in scores if s.answer != answer]
        assert best.logprob > max(others) + 1.0  # by a clear margin, not a coin toss


def test_a_multiple_choice_file_is_answered_both_ways_and_reported(taught_model, tmp_path, capsys):
    model, _ = taught_model
    (tmp_path / "videos").mkdir()
    encode_video(tmp_path / "videos" / "field.mp4", frames=8, fps=2)
    records = [
        {
            "id": f"q{i}",
            "video_id": "field",
            "question": f"{question}\n(A) red\n(B) blue\n(C) green",
            "answer": CANDIDATES.index(answer),
            "task_type": name,
        }
        for i, ((question, answer), name) in enumerate(zip(TAUGHT.items(), ("sky", "grass"), strict=True))
    ]
    (tmp_path / "mine.json").write_text(json.dumps(records))
    benchmark, questions = load_questions(tmp_path / "mine.json", "custom")
    assert benchmark == "custom:mine" and all(isinstance(q, MCQuestion) for q in questions.items)
    output = tmp_path / "preds.jsonl"
    config = PredictConfig(benchmark=benchmark, output=output, videos=tmp_path / "videos", options=SHORT)
    counts = run_predict(model, questions, config, "taught")
    assert counts["answered"] == 2 and counts["errors"] == 0
    rows = read_jsonl(output)
    for row in rows:
        assert row["format"] == "multiple_choice" and row["mode"] == "offline"
        assert row["loglik_correct"] is True and row["loglik_choice"] == row["answer"]
        assert row["settings"]["choice_methods"] == ["generate", "loglik"]
        assert row["choice"] in (None, "A", "B", "C")  # read strictly: never a default letter
        assert row["correct"] == (row["choice"] == row["answer"])
        assert row["frames_seen"] == 4  # offline: the whole 4 s video at the default 1 fps
    assert run_predict(model, questions, config, "taught")["already_done"] == 2  # resumed, nothing redone
    assert main(["eval", "report", str(output), "--json", str(tmp_path / "r.json")]) == 0
    shown = capsys.readouterr().out
    assert "| 1 | mine | taught@" in shown and "| 1 | sky | 1 |" in shown
    (row,) = json.loads((tmp_path / "r.json").read_text())["multiple_choice"]
    assert row["loglik"] == 100.0 and row["predicted"] == 2 and row["questions"] == 2 and row["complete"]
    assert row["chance"] == pytest.approx(33.33, abs=0.01)


def test_ovo_bench_questions_see_only_the_frames_up_to_their_time(tiny_model, tmp_path):
    """Each answer sees the frames up to its question's `realtime` (and each forward probe, up to its own)."""
    (tmp_path / "videos" / "COIN").mkdir(parents=True)
    encode_video(tmp_path / "videos" / "COIN" / "walk.mp4", frames=60, fps=2)  # 30 s, a frame every 0.5 s
    records = [
        {
            "id": 1,
            "task": "EPM",
            "video": "COIN/walk.mp4",
            "realtime": 7.3,
            "question": "What did I put down?",
            "options": ["a cup", "a key", "a pen", "a book"],
            "gt": 2,
            "answer": "a pen",
        },
        {
            "id": 2,
            "task": "OCR",
            "video": "COIN/walk.mp4",
            "realtime": 21,
            "question": "What is written on the sign?",
            "options": ["STOP", "EXIT", "OPEN", "WAIT"],
            "gt": 0,
            "answer": "STOP",
        },
        {
            "id": 3,
            "task": "CRR",
            "video": "COIN/walk.mp4",
            "question": "Where does the road lead?",
            "answer": "to the river",
            "ask_time": 2,
            "clue_time": 14,
            "test_info": [{"realtime": 5, "type": 0}, {"realtime": 15.5, "type": 1}],
        },
    ]
    (tmp_path / "ovo.json").write_text(json.dumps(records))
    benchmark, questions = load_questions(tmp_path / "ovo.json", "ovobench")
    config = PredictConfig(
        benchmark=benchmark, output=tmp_path / "p.jsonl", videos=tmp_path / "videos", fps=2.0, options=SHORT
    )
    assert config.mode == "online"
    counts = run_predict(tiny_model, questions, config, "tiny")
    assert counts["answered"] == 4 and counts["errors"] == 0
    by_time = {r["at"]: r for r in read_jsonl(config.output)}
    assert sorted(by_time) == [5, 7.3, 15.5, 21]
    for at, row in by_time.items():
        newest = np.floor(at * 2) / 2  # the last frame at or before the question
        assert row["asked_at"] == at and row["latest_frame_time"] == pytest.approx(newest)
        assert row["frames_seen"] == int(newest * 2) + 1
    assert by_time[15.5]["options"] == ["Yes", "No"] and by_time[15.5]["answer"] == "A"
    assert by_time[5]["answer"] == "B" and by_time[7.3]["answer"] == "C"


def test_streamingbench_questions_are_asked_at_their_time_stamp(tiny_model, tmp_path):
    (tmp_path / "videos").mkdir()
    encode_video(tmp_path / "videos" / "sample_3_real.mp4", frames=40, fps=2)  # 20 s
    entry = {"video_path": "./videos/sample_3_real.mp4", "video_categories": "walking", "time": "0:20"}
    entry["questions"] = [
        {
            "task_type": "Object Recognition",
            "question": "What is in my hand right now?",
            "time_stamp": stamp,
            "options": ["A. A cup.", "B. A key.", "C. A pen.", "D. Nothing."],
            "answer": answer,
        }
        for stamp, answer in (("00:00:06", "B"), ("00:00:17", "D"))
    ]
    (tmp_path / "sb.json").write_text(json.dumps([entry]))
    benchmark, questions = load_questions(tmp_path / "sb.json", "streamingbench")
    config = PredictConfig(benchmark=benchmark, output=tmp_path / "p.jsonl", videos=tmp_path / "videos", options=SHORT)
    assert run_predict(tiny_model, questions, config, "tiny")["answered"] == 2
    rows = read_jsonl(config.output)
    assert [(r["at"], r["latest_frame_time"], r["frames_seen"]) for r in rows] == [(6.0, 6.0, 7), (17.0, 17.0, 18)]
    assert [r["answer"] for r in rows] == ["B", "D"] and rows[0]["options"][1] == "A key."
