"""The model's parts: projector types, vision tower, tokenization around the placeholder, detokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from vstream.errors import ConfigError
from vstream.model.generation import Detokenizer
from vstream.model.projector import build_projector
from vstream.model.vision import VisionTower, resolve_vision_tower

from conftest import random_frames


@pytest.mark.parametrize(
    ("kind", "names"),
    [
        ("linear", ["weight", "bias"]),
        ("identity", []),
        ("mlp2x_gelu", ["0.weight", "0.bias", "2.weight", "2.bias"]),
        ("mlp3x_gelu", ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]),
    ],
)
def test_projector_types_and_their_checkpoint_names(kind, names):
    projector = build_projector(kind, 8, 8)
    assert list(projector.state_dict()) == names
    assert projector(torch.randn(5, 8)).shape == (5, 8)


def test_bad_projectors():
    with pytest.raises(ConfigError, match="mm_projector_type must be one of"):
        build_projector("mlp0x_gelu", 8, 16)
    with pytest.raises(ConfigError, match="'identity' needs mm_hidden_size"):
        build_projector("identity", 8, 16)


def test_vision_tower_encodes_any_frame_size_into_patch_features(tiny_model):
    vision = tiny_model.vision
    frames = [*random_frames(2, size=(48, 64)), *random_frames(1, size=(31, 17))]
    frames.append(Image.fromarray(random_frames(1, size=(40, 40))[0]))
    frames.append(torch.from_numpy(random_frames(1, size=(50, 30))[0]))
    features = vision.encode(frames, batch_size=2)
    assert features.shape == (5, 16, 32) and vision.num_patches == 16
    pixels = vision.preprocess(frames)
    assert pixels.shape == (5, 3, 32, 32)
    assert torch.allclose(vision.encode(pixels), features, atol=1e-6)
    with torch.no_grad():
        hidden = vision.model(pixel_values=pixels, output_hidden_states=True).hidden_states
    assert torch.equal(features, hidden[-2][:, 1:])  # the penultimate layer, CLS dropped
    with_cls = VisionTower(vision.model, vision.processor, select_layer=-1, select_feature="cls_patch")
    assert with_cls.num_patches == 17 and torch.equal(with_cls.encode(pixels), hidden[-1])
    with pytest.raises(ConfigError, match="must be an \\(H, W, 3\\) RGB array"):
        vision.encode([np.zeros((10, 10), dtype=np.uint8)])
    with pytest.raises(ConfigError, match="outside the vision tower's 3 layers"):
        VisionTower(vision.model, vision.processor, select_layer=-7)


def test_where_the_vision_tower_comes_from(tmp_path):
    (tmp_path / "vision_tower").mkdir()
    assert resolve_vision_tower("vision_tower", tmp_path, None) == str(tmp_path / "vision_tower")
    assert resolve_vision_tower("openai/clip-vit-large-patch14", tmp_path, None) == "openai/clip-vit-large-patch14"
    released = "./ckpt/clip-vit-large-patch14"  # what configs written on the authors' machines say
    assert resolve_vision_tower(released, tmp_path, None) == "openai/clip-vit-large-patch14"
    assert resolve_vision_tower(released, tmp_path, "/my/clip") == "/my/clip"
    with pytest.raises(ConfigError, match="no mm_vision_tower"):
        resolve_vision_tower(None, tmp_path, None)


def test_detokenizer_holds_back_incomplete_characters():
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())  # one token per byte, no merges
    tokenizer = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer)
    ids = fast("é!", add_special_tokens=False).input_ids  # é is two bytes, so two tokens
    assert len(ids) == 3
    detok = Detokenizer(fast)
    assert [detok.push(i) for i in ids] == ["", "é", "!"]
    assert detok.text == "é!" and detok.flush() == ""
