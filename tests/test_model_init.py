"""The stage-1 starting checkpoint: a plain LLaMA and a CLIP tower with a new projector and attention module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, CLIPVisionConfig, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from vstream.__main__ import main
from vstream.errors import CheckpointError, ConfigError
from vstream.model import GenerationOptions, VStream
from vstream.model.configuration_vstream import MULTIMODAL_DEFAULTS
from vstream.model.init_checkpoint import NEW_MODULES, build_config, init_checkpoint

SMALL_MEMORY = {"spatial_pool": 4, "temporal_pool": 2, "abstract_hidden_dim": 8, "temporal_clusters": 4}
"""Memory sizes that fit the tiny tower's 4×4 patch grid (the released s_s = 8 needs a grid of 8 or 16)."""
SHORT = GenerationOptions(max_new_tokens=4)


@pytest.fixture(scope="module")
def llama(tmp_path_factory, tiny_checkpoint) -> Path:
    """A tiny plain LLaMA (hidden 64, 2 layers, 4 heads) with the tiny checkpoint's tokenizer, as a HF folder."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    folder = tmp_path_factory.mktemp("llama") / "llama"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def initialised(tmp_path_factory, llama, tiny_checkpoint) -> Path:
    """The checkpoint made from the tiny LLaMA and the tiny tower, seed 0 (do not modify it)."""
    out = tmp_path_factory.mktemp("init") / "init"
    return init_checkpoint(llama, tiny_checkpoint / "vision_tower", out, memory=SMALL_MEMORY)


def new_weights(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(folder / "model.safetensors")).items() if k.startswith(NEW_MODULES)}


def test_the_checkpoint_loads_answers_and_keeps_every_llm_weight(initialised, llama, tiny_checkpoint):
    vs = VStream.from_pretrained(initialised)
    features = torch.randn(6, vs.vision.num_patches, vs.config.mm_hidden_size)
    assert isinstance(vs.answer_features(features, "What is happening?", options=SHORT).text, str)

    source, written = load_file(str(llama / "model.safetensors")), load_file(str(initialised / "model.safetensors"))
    assert set(written) - set(source) == {k for k in written if k.startswith(NEW_MODULES)}
    for name, tensor in source.items():
        assert written[name].dtype == tensor.dtype and torch.equal(written[name], tensor), name

    shapes = {k: tuple(v.shape) for k, v in new_weights(initialised).items()}
    assert shapes["model.mm_projector.0.weight"] == (64, 32)  # D = the tower's 32 → H = the LLM's 64
    assert shapes["model.mm_projector.2.weight"] == (64, 64)
    assert shapes["model.attention_model.q_proj.weight"] == (8, 32)  # d = 8
    assert shapes["model.attention_model.out_ln.weight"] == (32,)
    assert len(shapes) == 14

    config = json.loads((initialised / "config.json").read_text())
    assert config["model_type"] == "vstream" and config["architectures"] == ["VStreamLlamaForCausalLM"]
    assert config["mm_vision_tower"] == "vision_tower" and config["mm_hidden_size"] == 32
    assert (config["mm_vision_select_layer"], config["mm_vision_select_feature"]) == (-2, "patch")
    memory = {name: config[name] for name in ("compress_size", "compress_long_memory_size", "video_long_memory_length")}
    assert memory == {"compress_size": 4, "compress_long_memory_size": 2, "video_long_memory_length": 4}
    for name in (tiny_checkpoint / "vision_tower").iterdir():  # a local tower is copied beside, as it was
        assert (initialised / "vision_tower" / name.name).read_bytes() == name.read_bytes()
    assert not initialised.with_name("init.part").exists()


def test_without_changes_the_memory_is_the_released_one(llama):
    vit_l14 = CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_attention_heads=16,
        num_hidden_layers=24,
        image_size=224,
        patch_size=14,
    )
    config = build_config(LlamaConfig.from_pretrained(llama), vit_l14, "openai/clip-vit-large-patch14")
    assert config.mm_vision_tower == "openai/clip-vit-large-patch14" and config.mm_hidden_size == 1024
    for name, value in MULTIMODAL_DEFAULTS.items():
        if name not in ("mm_vision_tower", "mm_hidden_size"):
            assert getattr(config, name) == value, name
    memory = config.memory_config()
    assert memory.token_layout() == {"abstract": 25, "temporal": 400, "retrieved": 192, "spatial": 64}
    assert (memory.spatial_pool, memory.temporal_pool, memory.abstract_pool, memory.retrieved_frames) == (8, 4, 1, 3)


def test_the_same_seed_draws_the_same_new_weights_and_another_seed_others(
    initialised, llama, tiny_checkpoint, tmp_path
):
    tower = tiny_checkpoint / "vision_tower"
    again = new_weights(init_checkpoint(llama, tower, tmp_path / "again", seed=0, memory=SMALL_MEMORY))
    other = new_weights(init_checkpoint(llama, tower, tmp_path / "other", seed=1, memory=SMALL_MEMORY))
    first = new_weights(initialised)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["model.mm_projector.0.weight"], other["model.mm_projector.0.weight"])
    assert not torch.equal(first["model.attention_model.q_proj.weight"], other["model.attention_model.q_proj.weight"])


def test_a_model_that_is_not_a_plain_llama_is_refused(llama, tiny_checkpoint, tmp_path):
    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=100)).save_pretrained(gpt2)
    tower = tiny_checkpoint / "vision_tower"
    with pytest.raises(CheckpointError, match="'gpt2' model; Flash-VStream needs a LLaMA-architecture LLM"):
        init_checkpoint(gpt2, tower, tmp_path / "out", memory=SMALL_MEMORY)
    with pytest.raises(CheckpointError, match="already a Flash-VStream checkpoint"):
        init_checkpoint(tiny_checkpoint, tower, tmp_path / "out", memory=SMALL_MEMORY)
    with pytest.raises(CheckpointError, match="no such folder"):
        init_checkpoint(tmp_path / "absent", tower, tmp_path / "out", memory=SMALL_MEMORY)
    with pytest.raises(CheckpointError, match="must be a CLIP model"):
        init_checkpoint(llama, llama, tmp_path / "out", memory=SMALL_MEMORY)
    with pytest.raises(ConfigError, match=r"spatial_pool=8 does not divide the 4×4 patch grid"):
        init_checkpoint(llama, tower, tmp_path / "out")  # the released sizes need a larger patch grid
    with pytest.raises(ConfigError, match="not stored in a checkpoint's config"):
        init_checkpoint(llama, tower, tmp_path / "out", memory={**SMALL_MEMORY, "memories": ["spatial"]})
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.part").exists()


def test_an_existing_checkpoint_is_replaced_only_when_forced(initialised, llama, tiny_checkpoint, tmp_path):
    tower = tiny_checkpoint / "vision_tower"
    out = init_checkpoint(llama, tower, tmp_path / "out", seed=1, memory=SMALL_MEMORY)
    with pytest.raises(CheckpointError, match="already holds a checkpoint"):
        init_checkpoint(llama, tower, out, memory=SMALL_MEMORY)
    init_checkpoint(llama, tower, out, seed=0, memory=SMALL_MEMORY, force=True)
    assert all(torch.equal(v, new_weights(initialised)[k]) for k, v in new_weights(out).items())
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not empty and holds no checkpoint"):
        init_checkpoint(llama, tower, tmp_path / "notes", memory=SMALL_MEMORY, force=True)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"


def test_the_command_writes_a_checkpoint_that_inspect_describes(llama, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "checkpoints" / "init"
    args = ["--llm", str(llama), "--vision-tower", str(tiny_checkpoint / "vision_tower"), "--output", str(out)]
    memory = [x for name, value in SMALL_MEMORY.items() for x in ("--memory", f"{name}={value}")]
    assert main(["init-checkpoint", *args, *memory, "--seed", "3", "--projector", "mlp2x_gelu"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert main(["inspect", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["projector_type"] == "mlp2x_gelu" and info["parameters"]["projector"] == 32 * 64 + 64 + 64 * 64 + 64
    assert info["memory"]["spatial_pool"] == 4 and info["llm"]["hidden_size"] == 64

    assert main(["init-checkpoint", *args, *memory]) == 2
    refused = f"vstream init-checkpoint: error: {out} already holds a checkpoint; give another folder or --force"
    assert capsys.readouterr().err == refused + " to replace it\n"
    assert main(["init-checkpoint", *args, *memory, "--force"]) == 0
    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=100)).save_pretrained(gpt2)
    capsys.readouterr()
    assert main(["init-checkpoint", *args[2:], "--llm", str(gpt2), "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vstream init-checkpoint: error: ") and "LLaMA-architecture" in err and err.count("\n") == 1


def test_stage1_training_starts_from_it_and_leaves_the_llm(initialised, tmp_path):
    pytest.importorskip("peft")
    from test_train import run_file, write_feature_set

    from vstream.train import load_train_config, train

    write_feature_set(tmp_path)
    run = run_file(tmp_path, str(initialised), stage=1, learning_rate=2.0e-2, max_steps=2, save_steps=2)
    out = train(load_train_config(run))
    before, after = load_file(str(initialised / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert set(before) == set(after)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(name.startswith(NEW_MODULES) for name in changed), changed
    assert any(name.startswith("model.mm_projector.") for name in changed)
    VStream.from_pretrained(out)
