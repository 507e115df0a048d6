"""Training end to end on the tiny model: what learns and what stays, checkpoints, resume, LoRA, torchrun."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from vstream.errors import ConfigError
from vstream.features import save_features
from vstream.model import GenerationOptions, VStream

from conftest import encode_video

pytest.importorskip("peft")
COLORS = ["red", "green", "blue", "white"]
SHORT = GenerationOptions(max_new_tokens=8)


def write_feature_set(root: Path, count: int = 8, seed: int = 0) -> Path:
    """Feature files whose content says which colour to answer: a memorisable set (16 patches × 32, tiny sizes)."""
    rng = np.random.default_rng(seed)
    (root / "features").mkdir(parents=True, exist_ok=True)
    centers = rng.normal(size=(len(COLORS), 16, 32)).astype(np.float32)
    records = []
    for i in range(count):
        k = i % len(COLORS)
        frames = centers[k] + 0.05 * rng.normal(size=(10, 16, 32)).astype(
            np.float32
        )  # > N_a: the abstract memory updates
        save_features(root / "features" / f"clip{i}.safetensors", torch.from_numpy(frames))
        records.append(
            {
                "id": str(i),
                "video": f"clip{i}.safetensors",
                "conversations": [
                    {"from": "human", "value": "<video>\nWhat colour is it?"},
                    {"from": "gpt", "value": COLORS[k]},
                ],
            }
        )
    (root / "train.json").write_text(json.dumps(records))
    return root / "train.json"


def run_file(root: Path, model: str, **fields) -> Path:
    """A run file for the tiny model on the CPU, with `fields` changed."""
    run = {
        "stage": 2,
        "model": model,
        "output_dir": str(root / "out"),
        "data": {"files": [str(root / "train.json")], "features": str(root / "features")},
        "global_batch_size": 4,
        "per_device_batch_size": 2,
        "learning_rate": 5.0e-3,
        "warmup_ratio": 0.0,
        "max_steps": 6,
        "precision": "fp32",
        "model_max_length": 256,
        "save_steps": 2,
        "save_total_limit": 10,
        "logging_steps": 1,
        "device": "cpu",
        "report_to": "none",
        **fields,
    }
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(run))
    return path


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def vstream_cli(*args, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "vstream", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def losses(folder: Path) -> list[float]:
    state = json.loads((folder / "checkpoint-6" / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def test_stage1_trains_the_projector_and_attention_and_leaves_the_llm_and_vision_tower(tiny_checkpoint, tmp_path):
    from vstream.train import load_train_config, train

    write_feature_set(tmp_path)
    config = load_train_config(run_file(tmp_path, str(tiny_checkpoint), stage=1, learning_rate=2.0e-2, max_steps=6))
    out = train(config)
    before, after = weights(tiny_checkpoint), weights(out)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(n.startswith(("model.mm_projector.", "model.attention_model.")) for n in changed), changed
    assert {"model.attention_model.q_proj.weight", "model.attention_model.k_proj.weight"} <= changed
    assert any(n.startswith("model.mm_projector.") for n in changed)
    for name in (tiny_checkpoint / "vision_tower").iterdir():  # the vision tower is copied as it was
        assert (out / "vision_tower" / name.name).read_bytes() == name.read_bytes()
    assert json.loads((out / "config.json").read_text())["mm_vision_tower"] == "vision_tower"
    trace = losses(out)
    assert trace[-1] < trace[0]
    model = VStream.from_pretrained(out)  # the released layout: loads and answers
    assert model.answer_features(tmp_path / "features" / "clip0.safetensors", "What?", options=SHORT).text is not None


def test_stage2_learns_a_small_set_from_feature_files(tiny_checkpoint, tmp_path):
    from vstream.train import load_train_config, train

    write_feature_set(tmp_path, count=4)
    config = load_train_config(
        run_file(tmp_path, str(tiny_checkpoint), max_steps=60, save_steps=60, learning_rate=1.0e-2)
    )
    out = train(config)
    state = json.loads((out / "checkpoint-60" / "trainer_state.json").read_text())
    trace = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert trace[-1] < 0.05 * trace[0], trace  # memorised
    model = VStream.from_pretrained(out)
    answers = [
        model.answer_features(tmp_path / "features" / f"clip{i}.safetensors", "What colour is it?", options=SHORT)
        for i in range(4)
    ]
    assert [a.text.strip() for a in answers] == COLORS
    before, after = weights(tiny_checkpoint), weights(out)
    assert not torch.equal(
        before["model.layers.0.self_attn.q_proj.weight"], after["model.layers.0.self_attn.q_proj.weight"]
    )


def test_lora_changes_only_the_adapter_until_merged(tiny_checkpoint, tmp_path):
    from vstream.train import load_train_config, train

    write_feature_set(tmp_path)
    base_file = (tiny_checkpoint / "model.safetensors").read_bytes()
    lora = {"r": 4, "alpha": 8, "dropout": 0.0}
    out = train(load_train_config(run_file(tmp_path, str(tiny_checkpoint), lora=lora, max_steps=4, save_steps=4)))
    saved = load_file(str(out / "adapter_model.safetensors"))
    assert not (out / "model.safetensors").exists()  # an adapter: the base weights are not copied
    assert any("lora_A" in name for name in saved) and any("mm_projector" in name for name in saved)
    assert not any("attention_model" in name and "lora_" in name for name in saved)  # LoRA on the decoder only
    trained_in_full = (".mm_projector.", ".attention_model.")  # saved whole beside the adapter
    assert all("lora_" in name or any(part in name for part in trained_in_full) for name in saved), sorted(saved)
    assert (tiny_checkpoint / "model.safetensors").read_bytes() == base_file  # the base itself is untouched
    merged = tmp_path / "merged"
    result = vstream_cli("merge-lora", str(out), "--output", str(merged))
    assert result.returncode == 0, result.stderr
    base, whole = weights(tiny_checkpoint), weights(merged)
    assert set(base) == set(whole)  # the released layout, no adapter names left
    assert not torch.equal(
        base["model.layers.0.self_attn.q_proj.weight"], whole["model.layers.0.self_attn.q_proj.weight"]
    )
    assert not torch.equal(base["model.mm_projector.0.weight"], whole["model.mm_projector.0.weight"])
    assert torch.equal(base["model.embed_tokens.weight"], whole["model.embed_tokens.weight"])  # not a LoRA target
    features = tmp_path / "features" / "clip0.safetensors"
    from_adapter = VStream.from_pretrained(out).answer_features(features, "What colour?", options=SHORT).text
    from_merged = VStream.from_pretrained(merged).answer_features(features, "What colour?", options=SHORT).text
    assert from_adapter == from_merged
    asked = vstream_cli("ask", str(features), "--model", str(out), "--at", "5", "What colour?", "--max-new-tokens", "4")
    assert asked.returncode == 0, asked.stderr[-2000:]
    inspected = vstream_cli("inspect", str(out), "--json")
    assert inspected.returncode == 0 and json.loads(inspected.stdout)["adapter"]["r"] == 4


def test_a_run_killed_mid_way_and_resumed_ends_with_the_same_weights(tiny_checkpoint, tmp_path):
    write_feature_set(tmp_path)
    env = {**os.environ, "VSTREAM_CACHE": str(tmp_path / "cache")}
    whole = run_file(tmp_path, str(tiny_checkpoint), max_steps=8, output_dir=str(tmp_path / "whole"))
    assert vstream_cli("train", str(whole), env=env).returncode == 0
    killed = run_file(tmp_path, str(tiny_checkpoint), max_steps=8, output_dir=str(tmp_path / "killed"))
    process = subprocess.Popen(
        [sys.executable, "-m", "vstream", "train", str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if (tmp_path / "killed" / "checkpoint-4" / "trainer_state.json").exists():
            process.send_signal(signal.SIGKILL)  # no chance to clean up
            break
        time.sleep(0.05)
    process.wait(30)
    assert process.returncode == -signal.SIGKILL, "the run was not killed mid-way"
    assert not (tmp_path / "killed" / "model.safetensors").exists()
    half = tmp_path / "killed" / "checkpoint-9"  # a checkpoint cut short by a kill while saving: passed over
    half.mkdir(exist_ok=True)
    (half / "model.safetensors").write_bytes(b"cut short")
    resumed = vstream_cli("train", str(killed), "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "checkpoint-9 was not written to the end" in resumed.stderr
    final, reference = weights(tmp_path / "killed"), weights(tmp_path / "whole")
    assert final.keys() == reference.keys()
    assert all(torch.equal(final[name], reference[name]) for name in final)


def test_two_processes_under_torchrun_train_and_save_one_checkpoint(tiny_checkpoint, tmp_path):
    write_feature_set(tmp_path)
    run = run_file(tmp_path, str(tiny_checkpoint), max_steps=2, per_device_batch_size=1)  # 4 = 1 × 2 × 2
    launch = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "vstream.train",
            str(run),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "VSTREAM_CACHE": str(tmp_path / "cache")},
    )
    assert launch.returncode == 0, launch.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert VStream.from_pretrained(out).answer_features(
        tmp_path / "features" / "clip1.safetensors", "Q?", options=SHORT
    )


def test_a_training_sample_is_the_inference_prompt_followed_by_its_answer(tiny_model, tmp_path):
    from vstream.memory import offline_readout
    from vstream.train.data import TrainingSample
    from vstream.train.model import batch_inputs

    features = torch.randn(5, 16, 32)
    memory = tiny_model.memory_config()
    ids = tiny_model.processor.sample_ids([("What colour is it?", "red")])
    embeds, labels, mask = batch_inputs(
        tiny_model.llm, tiny_model.processor, memory, [TrainingSample(features, [0.0, 1, 2, 3, 4], ids, "x")]
    )
    snapshot = offline_readout(features, [0.0, 1, 2, 3, 4], memory, tiny_model.semantic_attention())
    prompt = tiny_model.prompt(snapshot, "What colour is it?")
    inference = torch.cat([prompt.prefix(), prompt.suffix], dim=1)
    with torch.no_grad():
        assert torch.equal(embeds[:, : inference.shape[1]], inference)
    first_learned = int((labels[0] != -100).nonzero()[0])
    assert first_learned == inference.shape[1] and mask.all()


def test_isolated_turns_are_each_learned_as_the_question_asked_alone(tiny_model):
    from vstream.memory import offline_readout
    from vstream.train.data import TrainingSample
    from vstream.train.model import TrainingModel, batch_inputs, isolated_turns

    torch.manual_seed(0)
    turns = [("What colour is it?", "red"), ("How many are there?", "three of them"), ("Is it moving?", "no")]
    times = [0.0, 1, 2, 3, 4]
    memory = tiny_model.memory_config()
    snapshot = offline_readout(torch.randn(5, 16, 32), times, memory, tiny_model.semantic_attention())
    ids = tiny_model.processor.sample_ids(turns, isolated=True)
    assert ids.turns is not None and len(ids.turns) == 3 and sum(ids.turns) == len(ids.after)
    short = TrainingSample(torch.empty(0), [], tiny_model.processor.sample_ids(turns[:1]), "short", snapshot.tokens)
    long = TrainingSample(torch.empty(0), [], ids, "long", snapshot.tokens)
    llm, processor = tiny_model.llm.float().eval(), tiny_model.processor
    embeds, _, mask = batch_inputs(llm, processor, memory, [short, long])  # padding in the first row
    attention, positions = isolated_turns([short, long], mask, embeds.dtype)
    with torch.no_grad():
        logits = llm(inputs_embeds=embeds, attention_mask=attention, position_ids=positions).logits
        start = int(mask[1].sum()) - len(ids.after)
        for (question, answer), length in zip(turns, ids.turns, strict=True):
            alone = processor.sample_ids([(question, answer)])
            assert len(alone.after) == length
            prompt = tiny_model.prompt(snapshot, question)
            inputs = torch.cat([prompt.prefix(), processor.embed_suffix(llm, alone)], dim=1)
            expected = llm(inputs_embeds=inputs).logits[0, -length:]
            torch.testing.assert_close(logits[1, start : start + length], expected, rtol=1e-4, atol=1e-4)
            start += length
        # the first row has no isolated turns: the usual causal attention over its own tokens
        n = int(mask[0].sum())
        torch.testing.assert_close(logits[0, :n], llm(inputs_embeds=embeds[:1, :n]).logits[0], rtol=1e-4, atol=1e-4)
    loss, tokens = TrainingModel(llm, processor, memory)([short, long])
    assert torch.isfinite(loss) and int(tokens) == int(mask.sum())
    # the turns are not one conversation: tokenized as one, the same turns give other ids
    together = tiny_model.processor.sample_ids(turns)
    assert together.turns is None and together.after != ids.after


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": 1}, "unknown field colour"),
        ({"stage": 1, "lora": {"r": 4}}, "lora is for stage 2"),
        ({"global_batch_size": 5}, "not a multiple of per_device_batch_size"),
        ({"learning_rate": "fast"}, "learning_rate: expected a number"),
        ({"data": {"files": ["x.json"], "fps": 0}}, "data.fps must be > 0"),
        ({"deepspeed": "zero9"}, "neither a shipped config"),
        ({"deepspeed": "{zero3}"}, "stage3_gather_16bit_weights_on_model_save: true"),
        ({"fsdp": True}, "fsdp runs on GPUs only"),
        ({"fsdp": True, "deepspeed": "zero2"}, "choose one"),
        ({"precision": "fp8"}, "precision: 'fp8' is not one of"),
    ],
)
def test_a_wrong_run_file_is_one_error_before_any_work(tmp_path, capsys, change, message):
    from vstream.__main__ import main

    write_feature_set(tmp_path, count=1)
    (tmp_path / "zero3.json").write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    if change.get("deepspeed") == "{zero3}":
        change = {"deepspeed": str(tmp_path / "zero3.json")}
    assert main(["train", str(run_file(tmp_path, "tiny-random", **change))]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_bad_records_are_listed_before_training_starts(tiny_checkpoint, tmp_path):
    write_feature_set(tmp_path, count=2)
    records = json.loads((tmp_path / "train.json").read_text())
    records.append({"video": "missing.safetensors", "conversations": records[0]["conversations"]})
    records.append({"video": "clip0.safetensors", "conversations": [{"from": "human", "value": "<video>\nQ?"}]})
    (tmp_path / "train.json").write_text(json.dumps(records))
    result = vstream_cli("train", str(run_file(tmp_path, str(tiny_checkpoint))))
    assert result.returncode == 2 and "record 2" in result.stderr and "record 3" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_presets_and_deepspeed_configs_are_complete():
    from vstream.train.config import DEEPSPEED_CONFIGS, load_train_config

    stage1, stage2 = load_train_config("stage1"), load_train_config("stage2")
    assert (stage1.stage, stage1.global_batch_size, stage1.learning_rate) == (1, 256, 1e-3)
    assert (stage2.stage, stage2.global_batch_size, stage2.learning_rate) == (2, 128, 2e-5)
    for run in (stage1, stage2):
        assert (run.lr_scheduler, run.warmup_ratio, run.weight_decay, run.epochs, run.precision) == (
            "cosine",
            0.03,
            0.0,
            1.0,
            "bf16",
        )
        assert run.accumulation_steps(8) * 8 * run.per_device_batch_size == run.global_batch_size
    assert stage1.prompt_template == "plain" and stage2.prompt_template == "vicuna_v1"
    assert load_train_config("stage2_lora").lora.r == 128 and load_train_config("tiny_cpu").device == "cpu"
    assert stage2.accumulation_steps(2) == 4  # fewer GPUs: more accumulation, the same global batch
    shipped = (("zero0", 0), ("zero1", 1), ("zero2", 2), ("zero2_offload", 2), ("zero3", 3), ("zero3_offload", 3))
    for name, stage in shipped:
        config = json.loads((DEEPSPEED_CONFIGS / f"{name}.json").read_text())
        assert config["zero_optimization"]["stage"] == stage and config["train_batch_size"] == "auto"
    with pytest.raises(ConfigError, match="not a multiple"):
        stage1.accumulation_steps(3)


@pytest.mark.parametrize("stage", [1, 2])
def test_each_stage_trains_from_raw_videos_and_images(tiny_checkpoint, tmp_path, stage):
    from PIL import Image

    from vstream.train import load_train_config, train

    (tmp_path / "videos").mkdir()
    (tmp_path / "images").mkdir()
    encode_video(tmp_path / "videos" / "walk.mp4", frames=12, fps=3)
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(tmp_path / "images" / "cat.png")
    turns = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "grey"}]
    records = [{"video": "walk.mp4", "conversations": turns}, {"image": "cat.png", "conversations": turns}] * 2
    (tmp_path / "train.json").write_text(json.dumps(records))
    data = {
        "files": [str(tmp_path / "train.json")],
        "videos": str(tmp_path / "videos"),
        "images": str(tmp_path / "images"),
    }
    run = run_file(tmp_path, str(tiny_checkpoint), stage=stage, data=data, max_steps=2, save_steps=2)
    out = train(load_train_config(run))
    assert (out / "checkpoint-2").is_dir()
    for name in (tiny_checkpoint / "vision_tower").iterdir():  # the tower encoded the frames and did not learn
        assert (out / "vision_tower" / name.name).read_bytes() == name.read_bytes()
    before, after = weights(tiny_checkpoint), weights(out)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(before[q], after[q]) == (stage == 1)
    model = VStream.from_pretrained(out)
    assert model.answer_features(model.encode_frames([np.zeros((40, 40, 3), np.uint8)]), "What?", options=SHORT)
    shutil.rmtree(out)


def test_a_frozen_memory_attention_is_read_out_by_the_data_pipeline_and_cached(tiny_checkpoint, tmp_path):
    """With the q/k frozen the memory is computed beside the step (and kept): the same first loss as the
    in-step memory, q/k unchanged, everything else learning; a cached sample is not read from disk again."""
    from vstream.train import load_train_config, train
    from vstream.train.trainer import build_trainer

    write_feature_set(tmp_path, count=4)
    trained = train(load_train_config(run_file(tmp_path, str(tiny_checkpoint))))
    frozen_root = tmp_path / "frozen"
    shutil.copytree(tmp_path / "features", frozen_root / "features")
    shutil.copy(tmp_path / "train.json", frozen_root / "train.json")
    run = run_file(frozen_root, str(tiny_checkpoint), freeze_memory_attention=True, cache_memories=True)
    frozen = train(load_train_config(run))
    assert losses(frozen)[0] == pytest.approx(losses(trained)[0], abs=1e-6)  # the same memory, read elsewhere
    assert losses(frozen)[-1] < losses(frozen)[0]
    before, after = weights(tiny_checkpoint), weights(frozen)
    for name in ("model.attention_model.q_proj.weight", "model.attention_model.k_proj.weight"):
        assert torch.equal(before[name], after[name]) and not torch.equal(before[name], weights(trained)[name])
    for name in ("model.mm_projector.0.weight", "model.layers.0.self_attn.q_proj.weight"):
        assert not torch.equal(before[name], after[name])

    dataset = build_trainer(load_train_config(run)).train_dataset
    first = dataset[1]
    for clip in ("clip1", "clip2"):  # a cached sample needs its features no more; another one does
        (frozen_root / "features" / f"{clip}.safetensors").unlink()
    assert dataset[1].memory is first.memory and first.memory.shape[0] > 0
    with pytest.raises(Exception, match="clip2"):
        dataset[2]


@pytest.mark.parametrize("field, value", [("dataloader_nice", 20), ("dataloader_nice", -1), ("dataloader_workers", -1)])
def test_data_worker_settings_out_of_range_are_refused(tmp_path, field, value):
    from vstream.train import load_train_config

    write_feature_set(tmp_path, count=2)
    with pytest.raises(ConfigError, match="dataloader_nice in \\[0, 19\\]"):
        load_train_config(run_file(tmp_path, "tiny-random", **{field: value}))


def test_cached_memories_need_a_frozen_memory_attention(tmp_path):
    from vstream.train import load_train_config

    write_feature_set(tmp_path, count=2)
    with pytest.raises(ConfigError, match="cache_memories needs freeze_memory_attention"):
        load_train_config(run_file(tmp_path, "tiny-random", cache_memories=True))
