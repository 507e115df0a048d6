"""vstream-smol: a small Flash-VStream for the synthetic world (`vstream.synth`), in the released layout.

The same architecture and code path as the released model, at small sizes: a CLIP-architecture vision tower
for 64×64 frames (an 8×8 grid of 64-wide patch features), a 4-layer LLaMA with a tokenizer whose words are the
world's, and the STAR memory scaled down so that each memory keeps its role: the spatial and retrieved memories
at the full 8×8 grid (where the corner digit can be read), the temporal memory at 2×2, the abstract at 1×1.

    make_smol_model("./smol-init", vision=tower)   # the untrained starting point (the tower trained or not)
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

from vstream.errors import CheckpointError
from vstream.model.compat import clip_image_processor_class, progress_bars
from vstream.model.modeling_vstream import VStreamLlamaForCausalLM, init_new_modules
from vstream.model.prompts import TEMPLATES
from vstream.model.tiny import build_tiny_tokenizer, tiny_config
from vstream.synth.questions import question_corpus
from vstream.synth.world import COLOURS, SHAPES

SMOL = "smol"
"""The name of the shipped smol checkpoint wherever a model is named (`--model smol`)."""
SMOL_FOLDER = Path(__file__).with_name("smol_checkpoint")
"""Where the package keeps it (safetensors, a few MB; its model card is README.md there)."""


def smol_folder() -> Path:
    """The shipped smol checkpoint's folder."""
    if not (SMOL_FOLDER / "config.json").is_file():
        raise CheckpointError(
            f"this installation has no smol checkpoint ({SMOL_FOLDER}); build one with `vstream build-smol --out DIR`"
        )
    return SMOL_FOLDER


OBJECTS = tuple(f"{colour} {shape}" for colour in COLOURS for shape in SHAPES)
"""The world's objects, each one token of the smol tokenizer."""

SMOL_MEMORY = {
    "compress_size": 8,  # s_s: spatial and retrieved frames in full (8×8)
    "compress_long_memory_size": 2,  # s_t
    "compress_Turing_memory_size": 1,  # s_a
    "compress_Turing_hidden_dim": 16,  # d
    "video_long_memory_length": 16,  # N_t
    "video_Turing_memory_length": 8,  # N_a
    "video_current_memory_length": 1,  # N_s
    "video_retrieved_memory_length": 1,  # N_r: the digit scene, the heaviest cluster, is the one retrieved
}
"""8 abstract + 16·4 temporal + 64 retrieved + 64 spatial = 200 tokens."""


def smol_vision_config() -> CLIPVisionConfig:
    """The vision tower's shape: 64×64 frames, 8×8 patches, 3 layers 64 wide."""
    return CLIPVisionConfig(
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=64,
        patch_size=8,
    )


def temporal_memory_sizes(text: str) -> dict[str, int]:
    """The checkpoint fields of a temporal memory written `NxS` (N centroids of S×S tokens), e.g. `32x1`."""
    try:
        clusters, side = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"temporal memory {text!r}: expected NxS, e.g. 16x2 (16 centroids of 2x2 tokens)") from None
    if clusters < 1 or side < 1 or side > 8:
        raise ValueError(f"temporal memory {text!r}: N must be >= 1 and S between 1 and 8 (the 8x8 patch grid)")
    return {"video_long_memory_length": clusters, "compress_long_memory_size": side}


def make_smol_model(
    folder: str | os.PathLike,
    *,
    vision: CLIPVisionModel | None = None,
    seed: int = 0,
    vocab_size: int = 384,
    temporal_memory: str | None = None,
    llm_layers: int = 4,
) -> Path:
    """Write the untrained smol checkpoint to `folder`: a new LLM, projector and memory attention drawn from
    `seed`, the tokenizer, and `vision` (a smol vision tower, e.g. one taught the world's frames; default a new
    random one). `temporal_memory` (`NxS`) replaces the temporal memory's size of `SMOL_MEMORY`, and `llm_layers`
    the LLM's depth, for the experiments that try another one."""
    memory = {**SMOL_MEMORY, **(temporal_memory_sizes(temporal_memory) if temporal_memory else {})}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    roles = " ".join(f"{role}:" for t in TEMPLATES.values() for role in t.roles if role)  # each role word one token
    corpus = [*(t.system for t in TEMPLATES.values() if t.system), *question_corpus(), roles]
    # Punctuation apart: `Which appeared first, the red circle or the blue square?` ends in the answer's tokens.
    # Each object one token (`red circle`): an answer is one token, and whether an object was named before is one
    # token's match (on held-out transcripts, after 800 steps, `now` 0.95 instead of 0.12 and `order` 0.65
    # instead of 0.11; docs/smol.md).
    tokenizer = build_tiny_tokenizer(vocab_size, corpus, split_punctuation=True, phrases=OBJECTS)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vision = vision if vision is not None else CLIPVisionModel(smol_vision_config())
        config = tiny_config(
            len(tokenizer),
            hidden_size=128,
            intermediate_size=512,
            num_hidden_layers=llm_layers,
            # Eight heads of 16 rather than four of 32: more places for the lookups the questions need (find the
            # named object, the last full stop...). On held-out transcripts after the same 1,600 steps, seed 0:
            # order 0.75 -> 0.88, ever 0.67 -> 0.81, count 0.53 -> 0.72, earlier 0.48 -> 0.60. Copying still
            # depends on the draw: the seed-3 build did not learn it with either (docs/smol.md).
            num_attention_heads=8,
            num_key_value_heads=8,
            max_position_embeddings=1024,
            # One matrix reads and writes words: copying a word of the context (the digit, an object named in the
            # question) then needs no second mapping learned from nothing. On transcripts this took `detail` from
            # 0.09 to 1.00 and `beginning` from 0.50 to 0.98 in the same 2,000 steps (docs/smol.md).
            tie_word_embeddings=True,
            mm_hidden_size=vision.config.hidden_size,
            mm_vision_select_layer=-1,
            **memory,
        )
        llm = VStreamLlamaForCausalLM(config)
    # transformers draws every linear layer at std 0.02, the projector's too; the released recipe adds its
    # projector to a trained LLM as fresh PyTorch layers. Drawn at 0.02, the LLM did not learn to read one patch
    # (the digit) out of 200 memory tokens (benchmarks/smol_retrieval.py --learn: 19.7 % against 86.1 %).
    init_new_modules(llm, seed)
    side = vision.config.image_size
    with progress_bars(False):
        vision.save_pretrained(folder / "vision_tower")
        processor = clip_image_processor_class()(
            size={"shortest_edge": side}, crop_size={"height": side, "width": side}
        )
        processor.save_pretrained(folder / "vision_tower")
        llm.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder
