"""Loading checkpoints in the released layout, strictly; `vstream inspect`; saving our own."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from vstream.errors import CheckpointError, ConfigError
from vstream.model import VStream, VStreamConfig, make_tiny_model
from vstream.model.configuration_vstream import MULTIMODAL_DEFAULTS, RETRIEVED_FIELD
from vstream.model.loading import check_weights, load_config

ATTENTION = [
    f"model.attention_model.{m}.{p}"
    for m in ("q_proj", "k_proj", "v_proj", "out_proj", "out_ln")
    for p in ("weight", "bias")
]
PROJECTOR = [f"model.mm_projector.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")]


def released_copy(tiny_checkpoint, tmp_path):
    """The tiny checkpoint as the released one is: no field of ours in config.json."""
    folder = tmp_path / "released"
    shutil.copytree(tiny_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop(RETRIEVED_FIELD)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_released_layout_loads_with_every_weight_accounted_for(tiny_checkpoint, tmp_path):
    folder = released_copy(tiny_checkpoint, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "vstream" and config["architectures"] == ["VStreamLlamaForCausalLM"]
    assert set(MULTIMODAL_DEFAULTS) <= set(config)  # every field STAR.md §4 lists
    names = set(load_file(folder / "model.safetensors"))
    llama = {n for n in names if not n.startswith(("model.mm_projector.", "model.attention_model."))}
    assert names - llama == set(ATTENTION) | set(PROJECTOR)
    assert {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"} <= llama
    assert all(n.startswith(("model.layers.", "model.embed_tokens", "model.norm", "lm_head")) for n in llama)
    report = check_weights(folder, load_config(folder))
    assert (report.missing, report.unexpected, report.mismatched) == ([], [], [])
    vs = VStream.from_pretrained(folder)
    assert vs.memory_config().retrieved_frames == 3 and vs.memory_config().num_tokens == 84
    result = subprocess.run(
        [sys.executable, "-m", "vstream", "inspect", str(folder), "--json"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["architecture"] == "VStreamLlamaForCausalLM" and info["num_tokens"] == 84
    assert info["parameters"]["projector"] == sum(
        vs.llm.model.mm_projector.state_dict()[k].numel() for k in vs.llm.model.mm_projector.state_dict()
    )
    attention = sum(p.numel() for p in vs.llm.model.attention_model.parameters())
    assert info["parameters"]["abstract_memory_attention"] == attention == 3 * (32 * 8 + 8) + (8 * 32 + 32) + 2 * 32
    assert info["memory_tokens"] == {"abstract": 4, "temporal": 16, "retrieved": 48, "spatial": 16}
    assert info["vision_tower"]["patches"] == 16 and info["weights_dtype"] == ["float32"]


@pytest.mark.parametrize(("weights", "shards"), [("safetensors", "100KB"), ("bin", None), ("bin", "2")])
def test_sharded_and_pickled_weights_load(tmp_path, weights, shards):
    folder = make_tiny_model(tmp_path / "ckpt", weights=weights, shard_size=shards)
    index = list(folder.glob("*.index.json"))
    assert bool(index) == bool(shards)
    vs = VStream.from_pretrained(folder)
    reference = VStream.from_pretrained(make_tiny_model(tmp_path / "reference"))
    for name, tensor in reference.llm.state_dict().items():
        assert torch.equal(vs.llm.state_dict()[name], tensor), name


def test_old_rotary_buffers_are_accepted_and_reported(tiny_checkpoint, tmp_path):
    folder = released_copy(tiny_checkpoint, tmp_path)
    state = load_file(folder / "model.safetensors")
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    report = check_weights(folder, load_config(folder))
    assert report.ignored == ["model.layers.0.self_attn.rotary_emb.inv_freq"] and not report.unexpected
    VStream.from_pretrained(folder)


def test_missing_unexpected_and_misshapen_weights_are_named(tiny_checkpoint, tmp_path):
    folder = released_copy(tiny_checkpoint, tmp_path)
    state = load_file(folder / "model.safetensors")
    del state["model.attention_model.k_proj.weight"]
    state["model.mm_projector.4.weight"] = torch.zeros(2, 2)
    state["model.mm_projector.2.bias"] = torch.zeros(7)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as info:
        VStream.from_pretrained(folder)
    message = str(info.value)
    assert "1 weights missing: model.attention_model.k_proj.weight" in message
    assert "1 weights unexpected: model.mm_projector.4.weight" in message
    assert "model.mm_projector.2.bias (7,) (config wants (64,))" in message
    result = subprocess.run(
        [sys.executable, "-m", "vstream", "inspect", str(folder)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2 and "model.attention_model.k_proj.weight" in result.stderr
    assert "Traceback" not in result.stderr


def edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"mm_projector_type": "mlp2x_relu"}, ConfigError, "mm_projector_type must be one of linear, identity"),
        ({"mm_vision_tower": None}, ConfigError, "the config has no mm_vision_tower"),
        ({"mm_vision_tower": "missing_tower"}, CheckpointError, "cannot load the vision tower 'missing_tower'"),
        ({"mm_hidden_size": 48}, CheckpointError, "model.mm_projector.0.weight (64, 32) (config wants (64, 48))"),
        ({"mm_vision_select_feature": "cls"}, ConfigError, "mm_vision_select_feature must be one of patch, cls_patch"),
        ({"model_type": "llava"}, CheckpointError, "model_type is 'llava', expected 'vstream'"),
    ],
)
def test_wrong_configs_fail_with_clear_errors(tiny_checkpoint, tmp_path, changes, error, message):
    folder = released_copy(tiny_checkpoint, tmp_path)
    edit_config(folder, **changes)
    with pytest.raises(error) as info:
        VStream.from_pretrained(folder)
    assert message in str(info.value)


def test_vision_tower_of_the_wrong_width_is_refused(tiny_checkpoint, tmp_path):
    folder = released_copy(tiny_checkpoint, tmp_path)
    config = json.loads((folder / "vision_tower" / "config.json").read_text())
    config["hidden_size"], config["intermediate_size"] = 16, 32
    other = tmp_path / "other_tower"
    from transformers import CLIPVisionConfig, CLIPVisionModel

    CLIPVisionModel(
        CLIPVisionConfig(**{k: v for k, v in config.items() if k in CLIPVisionConfig().to_dict()})
    ).save_pretrained(other)
    shutil.copy(folder / "vision_tower" / "preprocessor_config.json", other)
    with pytest.raises(ConfigError, match="mm_hidden_size=32 but the vision tower's hidden size is 16"):
        VStream.from_pretrained(folder, vision_tower=other)


def test_save_then_load_our_own_checkpoint(tiny_model, tmp_path):
    saved = tiny_model.save_pretrained(tmp_path / "ours")
    assert json.loads((saved / "config.json").read_text())["mm_vision_tower"] == "vision_tower"
    again = VStream.from_pretrained(saved)
    for name, tensor in tiny_model.llm.state_dict().items():
        assert torch.equal(again.llm.state_dict()[name], tensor), name
    assert isinstance(again.config, VStreamConfig) and again.config.to_dict()["compress_size"] == 4


def test_hugging_face_style_dtype_and_placement_options(tiny_checkpoint):
    from vstream.model import GenerationOptions

    vs = VStream.from_pretrained(tiny_checkpoint, torch_dtype="bfloat16", device_map="auto")
    assert {p.dtype for p in vs.llm.parameters()} == {torch.bfloat16} and vs.llm.device.type == "cpu"
    assert vs.vision.model.dtype == torch.bfloat16
    memory = vs.new_memory()
    memory.update(vs.encode_frames([np.full((40, 56, 3), 90, np.uint8)] * 3), timestamps=[0, 1, 2])
    answer = vs.answer(memory.readout(), "What?", options=GenerationOptions(max_new_tokens=3, min_new_tokens=3))
    assert answer.new_tokens == 3
    assert VStream.from_pretrained(tiny_checkpoint, dtype="torch.float32", load_vision=False).llm.dtype == torch.float32
    with pytest.raises(ConfigError, match="unknown dtype 'float17'; use one of float32, float16, bfloat16 or 'auto'"):
        VStream.from_pretrained(tiny_checkpoint, dtype="float17")
    with pytest.raises(ConfigError, match="disagree"):
        VStream.from_pretrained(tiny_checkpoint, dtype=torch.float16, torch_dtype=torch.bfloat16)
    with pytest.raises(ConfigError, match="not both"):
        VStream.from_pretrained(tiny_checkpoint, device="cpu", device_map="auto")


def test_one_rule_picks_the_device_and_dtype_for_the_commands_and_the_api(monkeypatch):
    from vstream.model import resolve_device_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "3")  # a torchrun worker without a GPU still runs on the CPU
    assert resolve_device_dtype() == (torch.device("cpu"), torch.float32)
    assert resolve_device_dtype(None, "auto") == (torch.device("cpu"), torch.float32)
    assert resolve_device_dtype("cpu", "bfloat16") == (torch.device("cpu"), torch.bfloat16)
    assert resolve_device_dtype(dtype=torch.float16, device_map="auto") == (None, torch.float16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_device_dtype() == (torch.device("cuda:3"), torch.bfloat16)  # torchrun: this worker's GPU
    monkeypatch.delenv("LOCAL_RANK")
    assert resolve_device_dtype() == (torch.device("cuda"), torch.bfloat16)
    assert resolve_device_dtype("cpu") == (torch.device("cpu"), torch.float32)
    assert resolve_device_dtype(device_map="auto") == (None, torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)  # e.g. a V100 or a T4
    assert resolve_device_dtype("cuda:1") == (torch.device("cuda:1"), torch.float16)
    with pytest.raises(ConfigError, match="not both"):
        resolve_device_dtype("cuda", device_map="auto")


def test_quantization_needs_bitsandbytes(tiny_checkpoint):
    try:
        import bitsandbytes  # noqa: F401

        pytest.skip("bitsandbytes is installed here")
    except ImportError:
        pass
    with pytest.raises(ConfigError, match=r"8bit loading needs bitsandbytes: pip install 'vstream\[quant\]'"):
        VStream.from_pretrained(tiny_checkpoint, quantization="8bit")
    with pytest.raises(ConfigError, match="quantization must be one of 8bit, 4bit"):
        VStream.from_pretrained(tiny_checkpoint, quantization="2bit")


def test_unknown_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        VStream.from_pretrained(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        VStream.from_pretrained(tmp_path / "empty")
