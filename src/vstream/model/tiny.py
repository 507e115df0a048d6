"""Tiny random Flash-VStream checkpoints, made entirely in code (no download), in the released layout.

For tests and for trying the whole pipeline on a CPU. The answers of such a model are meaningless text.

    vstream make-tiny-model ./tiny            # then: VStream.from_pretrained("./tiny")
    VStream.from_pretrained("tiny-random")    # the same, built once in vstream's cache folder
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import CLIPVisionConfig, CLIPVisionModel, PreTrainedTokenizerFast

from vstream.model.compat import clip_image_processor_class, progress_bars
from vstream.model.configuration_vstream import VStreamConfig
from vstream.model.modeling_vstream import VStreamLlamaForCausalLM
from vstream.model.prompts import TEMPLATES
from vstream.paths import cache_dir

TINY_RANDOM = "tiny-random"
"""The name that stands for the tiny random model wherever a checkpoint is named (`--model tiny-random`)."""
log = logging.getLogger(__name__)

TINY_MEMORY = {
    "compress_size": 4,  # s_s: the 4×4 grid of the tiny vision tower, in full
    "compress_long_memory_size": 2,  # s_t
    "compress_Turing_memory_size": 1,  # s_a
    "compress_Turing_hidden_dim": 8,  # d
    "video_long_memory_length": 4,  # N_t
    "video_Turing_memory_length": 4,  # N_a
    "video_current_memory_length": 1,  # N_s
    "video_short_memory_length": 4,
    "video_max_frames": 5,
}
"""Memory sizes of the tiny model: 4 + 4·4 + 3·16 + 16 = 84 tokens."""

_CORPUS = [
    *(t.system for t in TEMPLATES.values()),
    "USER: What is happening in the video? ASSISTANT: A person is cooking in a kitchen.",
    "USER: Did anyone open the door? ASSISTANT: Yes. USER: What color is the car? ASSISTANT: Red.",
    "The camera moves along a street. People walk, talk, eat, drive, play, read and watch the screen.",
    "0 1 2 3 4 5 6 7 8 9 first second minute hour scene frame stream memory question answer",
]


def build_tiny_tokenizer(
    vocab_size: int = 512,
    corpus: list[str] | None = None,
    *,
    split_punctuation: bool = False,
    phrases: Sequence[str] = (),
) -> PreTrainedTokenizerFast:
    """A SentencePiece-like BPE tokenizer (`▁` marks spaces) trained on a few sentences (`corpus`, default a
    handful about videos), over printable ASCII.

    Every token decodes to printable text, so a random model writes nonsense words rather than broken
    bytes; characters outside the alphabet become `<unk>`. `<s>` is BOS, `</s>` EOS. With `split_punctuation`,
    punctuation is a token of its own: a word is then the same token before a `?` as in an answer. Each of
    `phrases` (words joined by single spaces, e.g. `red circle`) is kept in one piece, so that it becomes one token
    wherever it stands, provided `corpus` holds it and `vocab_size` leaves room.
    """
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = _pre_tokenizer(split_punctuation, phrases)
    tokenizer.decoder = decoders.Metaspace()
    if phrases:  # Metaspace's decoder drops every `▁` of the first token, the one inside `▁red▁circle` too
        tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    alphabet = [chr(c) for c in range(33, 127)] + ["\n", "▁"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=alphabet, show_progress=False
    )
    tokenizer.train_from_iterator((corpus or _CORPUS) * 4, trainer)
    bos = ("<s>", tokenizer.token_to_id("<s>"))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[bos]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<unk>"
    )


def _pre_tokenizer(split_punctuation: bool, phrases: Sequence[str]) -> pre_tokenizers.PreTokenizer:
    """Words cut at their `▁` (a space), except inside a phrase; punctuation apart if asked."""
    steps = [pre_tokenizers.Metaspace()]
    if phrases:
        whole = "|".join(re.escape("▁" + phrase.replace(" ", "▁")) for phrase in sorted(phrases, key=len)[::-1])
        pieces = Regex(f"(?:{whole})(?![\\w])|▁[^▁]*|[^▁]+")
        steps = [pre_tokenizers.Metaspace(split=False), pre_tokenizers.Split(pieces, "isolated")]
    if split_punctuation:
        steps.append(pre_tokenizers.Punctuation())
    return steps[0] if len(steps) == 1 else pre_tokenizers.Sequence(steps)


def tiny_config(vocab_size: int, **overrides: object) -> VStreamConfig:
    """The tiny model's config, in the released field names (the vision tower in the `vision_tower/` subfolder)."""
    values = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
        architectures=["VStreamLlamaForCausalLM"],
        mm_vision_tower="vision_tower",
        mm_hidden_size=32,
        mm_projector_type="mlp2x_gelu",
        **TINY_MEMORY,
    )
    values.update(overrides)
    return VStreamConfig(**values)


def make_tiny_model(
    folder: str | os.PathLike,
    *,
    seed: int = 0,
    weights: str = "safetensors",
    shard_size: str | None = None,
    **config_overrides: object,
) -> Path:
    """Write a complete tiny checkpoint (config, weights, tokenizer, CLIP vision tower) to `folder`.

    Args:
        seed: the random weights' seed (same seed, same checkpoint).
        weights: `safetensors` or `bin` (PyTorch pickles, like older releases).
        shard_size: e.g. `"100KB"` to shard the weights with an index file.

    Returns:
        the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vision_config = CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        )
        vision = CLIPVisionModel(vision_config)
        llm = VStreamLlamaForCausalLM(tiny_config(len(tokenizer), **config_overrides))
    with progress_bars(False):  # tiny: written in milliseconds
        vision.save_pretrained(folder / "vision_tower")
        processor = clip_image_processor_class()(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
        processor.save_pretrained(folder / "vision_tower")
        if weights == "bin":
            save_bin_weights(llm, folder, shards=2 if shard_size else 1)
        else:
            llm.save_pretrained(folder, **({"max_shard_size": shard_size} if shard_size else {}))
        tokenizer.save_pretrained(folder)
    return folder


def tiny_random_folder() -> Path:
    """The tiny random model (`tiny-random`), built once in vstream's cache folder and reused."""
    folder = cache_dir() / TINY_RANDOM
    if not (folder / "config.json").is_file():
        log.info("building the tiny random model in %s", folder)
        tmp = folder.with_name(f"{TINY_RANDOM}.{os.getpid()}.tmp")
        make_tiny_model(tmp)
        if folder.is_dir() and not (folder / "config.json").is_file():
            shutil.rmtree(folder, ignore_errors=True)  # half a checkpoint, left by a build that was cut short
        try:
            tmp.rename(folder)  # atomic: two processes building it at once never see half a checkpoint
        except OSError:  # another process finished first; its copy is as good
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def save_bin_weights(llm: VStreamLlamaForCausalLM, folder: Path, shards: int = 1) -> None:
    """Config plus PyTorch-pickle weights (`pytorch_model.bin`, or shards with an index), as older releases ship."""
    llm.config.save_pretrained(folder)
    state = {name: tensor.detach().contiguous().clone() for name, tensor in llm.state_dict().items()}
    if shards == 1:
        torch.save(state, folder / "pytorch_model.bin")
        return
    names = list(state)
    weight_map = {}
    for i in range(shards):
        part = names[i * len(names) // shards : (i + 1) * len(names) // shards]
        file = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        torch.save({n: state[n] for n in part}, folder / file)
        weight_map.update({n: file for n in part})
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2))
