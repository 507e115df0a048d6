"""vstream-smol: the small model of the synthetic world, its vision tower's teaching and its whole build."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import CLIPVisionModel

from vstream.model import VStream
from vstream.model.smol import make_smol_model, smol_vision_config
from vstream.synth.questions import QUESTION_TYPES, question_corpus
from vstream.train.smol import CLIP_MEAN, CLIP_STD
from vstream.train.vision_pretrain import pretrain_vision_tower

ROOT = Path(__file__).resolve().parents[1]


def test_the_smol_checkpoint_is_the_released_layout_at_small_sizes(tmp_path):
    vs = VStream.from_pretrained(make_smol_model(tmp_path / "smol"))
    memory = vs.memory_config()
    assert memory.num_tokens == 200 and memory.token_layout() == {
        "abstract": 8,
        "temporal": 64,
        "retrieved": 64,
        "spatial": 64,
    }
    assert vs.vision.num_patches == memory.num_patches == 64 and vs.config.mm_hidden_size == 64
    words = {word for line in question_corpus() for word in line.split()}
    for word in words:  # every word of the world is one token: no <unk>, nothing split
        assert len(vs.tokenizer(word, add_special_tokens=False).input_ids) == 1, word


def test_teaching_the_vision_tower_makes_colours_readable_from_pooled_features():
    torch.manual_seed(0)
    tower = CLIPVisionModel(smol_vision_config())
    result = pretrain_vision_tower(tower, CLIP_MEAN, CLIP_STD, select_layer=-1, seconds=600, max_steps=60)
    assert result.steps == 60
    assert result.accuracy["colour@2x2"] >= 0.5 and result.accuracy["colour@1x1"] >= 0.5  # chance: 1/7


def test_build_smol_runs_every_step_and_resumes_without_redoing_them(tmp_path):
    command = [
        sys.executable,
        "-m",
        "vstream",
        "build-smol",
        "--out",
        str(tmp_path),
        "--streams",
        "4",
        "--minutes",
        "1.5",
        "--vision-seconds",
        "2",
        "--heldout",
        "2",
        "--heldout-minutes",
        "1.5",
        "max_steps=2",
        "per_device_batch_size=4",
        "global_batch_size=4",
    ]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert set(summary["by_type"]) <= set(QUESTION_TYPES) and set(summary["chance"]) == set(QUESTION_TYPES)
    record = json.loads((tmp_path / "build.json").read_text())
    assert {"world", "vision", "features", "train"} <= set(record)
    card = (tmp_path / "checkpoint" / "README.md").read_text()
    assert "vstream build-smol --out" in card and "| now |" in card
    answer = VStream.from_pretrained(tmp_path / "checkpoint").answer_features(
        next((tmp_path / "data" / "train" / "features").glob("*.safetensors")), "What is on the screen now?"
    )
    assert answer.text is not None
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    redone = json.loads((tmp_path / "build.json").read_text())
    for step in ("world", "vision", "features"):
        assert redone[step] == record[step]  # kept, not redone
        assert f"smol build: {step} already done" in again.stderr
    ablation = [sys.executable, "benchmarks/star_ablation.py", "--build", str(tmp_path), "--variants"]
    ablation += ["full,no_spatial,recent_frames", "--seconds", "1", "--heldout", "1", "--heldout-minutes", "1.5"]
    result = subprocess.run(ablation, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [line["variant"] for line in lines] == ["full", "no_spatial", "recent_frames"]
    assert [line["tokens"] for line in lines] == [200, 136, 192]  # the spatial memory's 64 tokens gone; 12 × 4×4
    assert all(line["steps"] >= 1 and set(line["by_type"]) <= set(QUESTION_TYPES) for line in lines)


@pytest.mark.parametrize("wrong", [["--streams", "0"], ["--minutes", "0.5"], ["--heldout", "0"]])
def test_build_smol_refuses_wrong_sizes_before_any_work(tmp_path, capsys, wrong):
    from vstream.__main__ import main

    assert main(["build-smol", "--out", str(tmp_path / "b"), *wrong]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("name", ["smol"])
def test_a_missing_smol_checkpoint_is_one_clear_error(name, monkeypatch, tmp_path):
    from vstream.errors import CheckpointError
    from vstream.model import smol
    from vstream.model.loading import resolve_checkpoint

    monkeypatch.setattr(smol, "SMOL_FOLDER", tmp_path / "absent")
    with pytest.raises(CheckpointError, match="vstream build-smol"):
        resolve_checkpoint(name)


def test_the_shipped_smol_model_sees_what_is_on_screen_in_streams_it_never_saw(tmp_path):
    from vstream.eval.datasets import load_annotations
    from vstream.eval.judge import run_rule, verdict_paths
    from vstream.eval.predict import PredictConfig, run_predict
    from vstream.eval.report import build_report
    from vstream.model import GenerationOptions
    from vstream.synth.files import write_world
    from vstream.synth.questions import CHANCE

    world = write_world(tmp_path / "world", seed=20_261_201, streams=16, seconds=150)  # a seed never trained on
    questions = [q for q in load_annotations(world.annotations).items if q.question_type == "now"]
    predictions = tmp_path / "smol.jsonl"
    config = PredictConfig("synth", predictions, videos=world.videos, options=GenerationOptions(max_new_tokens=6))
    run_predict(VStream.from_pretrained("smol"), questions, config, "smol")
    run_rule(predictions, verdict_paths(predictions))
    (row,) = build_report([predictions], [verdict_paths(predictions)])["rows"]
    assert row["by_type"]["now"]["predicted"] == len(questions) >= 20
    assert row["by_type"]["now"]["accuracy"] >= 40 > 100 * CHANCE["now"] * 4  # its model card: about 67 %
