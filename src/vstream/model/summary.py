"""What a checkpoint is, read from its files without loading the weights: `vstream inspect MODEL`."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

from vstream.errors import CheckpointError
from vstream.model.loading import (
    ADAPTER_CONFIG,
    adapter_base,
    check_weights,
    load_config,
    load_tokenizer,
    resolve_checkpoint,
)
from vstream.model.vision import resolve_vision_tower

PARTS = {"projector": "model.mm_projector.", "abstract_memory_attention": "model.attention_model."}


def describe_checkpoint(
    name_or_path: str | os.PathLike, vision_tower: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Architecture, parameters per part, dtypes, memory configuration and token count of a checkpoint.

    Checks every weight's name and shape against the config (a mismatch is a CheckpointError naming them),
    loads the tokenizer and the vision tower's config; reads no weight values.
    """
    folder = resolve_checkpoint(name_or_path)
    base = adapter_base(folder)
    if base is not None:  # a LoRA checkpoint: its base, and what the adapter changes
        adapter = json.loads((folder / ADAPTER_CONFIG).read_text())
        info = describe_checkpoint(base, vision_tower=vision_tower)
        keys = ("r", "lora_alpha", "target_modules", "modules_to_save")
        return {**info, "checkpoint": str(name_or_path), "adapter": {k: adapter.get(k) for k in keys}}
    config = load_config(folder)
    report = check_weights(folder, config)
    report.raise_if_wrong(folder)
    tokenizer = load_tokenizer(folder)
    vision_source = resolve_vision_tower(config.mm_vision_tower, folder, vision_tower)
    try:
        vision_config = CLIPVisionConfig.from_pretrained(vision_source)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot load the vision tower's config from {vision_source!r}: {exc}") from exc
    with torch.device("meta"):
        vision_params = sum(p.numel() for p in CLIPVisionModel(vision_config).parameters())
    patches = (vision_config.image_size // vision_config.patch_size) ** 2
    counts = Counter()
    for name, (shape, _) in report.found.items():
        if name in report.ignored:
            continue
        part = next((part for part, prefix in PARTS.items() if name.startswith(prefix)), "llm")
        counts[part] += int(torch.Size(shape).numel())
    memory = config.memory_config(num_patches=patches + (config.mm_vision_select_feature == "cls_patch"))
    return {
        "checkpoint": str(name_or_path),
        "folder": str(Path(folder).resolve()),
        "architecture": (config.architectures or ["VStreamLlamaForCausalLM"])[0],
        "model_type": config.model_type,
        "parameters": {
            "vision": vision_params,
            "projector": counts["projector"],
            "abstract_memory_attention": counts["abstract_memory_attention"],
            "llm": counts["llm"],
            "total": vision_params + sum(counts.values()),
        },
        "weights_dtype": sorted({dtype for name, (_, dtype) in report.found.items() if name not in report.ignored}),
        "config_dtype": str(getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)).removeprefix(
            "torch."
        ),
        "llm": {
            "hidden_size": config.hidden_size,
            "layers": config.num_hidden_layers,
            "vocab_size": config.vocab_size,
            "tokenizer_size": len(tokenizer),
        },
        "vision_tower": {
            "source": vision_source,
            "hidden_size": vision_config.hidden_size,
            "patches": patches,
            "image_size": vision_config.image_size,
            "select_layer": config.mm_vision_select_layer,
            "select_feature": config.mm_vision_select_feature,
        },
        "projector_type": config.mm_projector_type,
        "memory": memory.to_dict(),
        "memory_tokens": memory.token_layout(),
        "num_tokens": memory.num_tokens,
        "ignored_weights": report.ignored,
    }


def format_description(info: dict[str, Any]) -> str:
    """A human-readable rendering of `describe_checkpoint`'s result."""
    p, m = info["parameters"], info["memory"]
    lines = [
        f"{info['checkpoint']}  ({info['folder']})",
        f"  architecture   {info['architecture']} (model_type {info['model_type']})",
        f"  parameters     {p['total']:,} = vision {p['vision']:,} + projector {p['projector']:,} "
        f"+ abstract-memory attention {p['abstract_memory_attention']:,} + LLM {p['llm']:,}",
        f"  dtype          weights {', '.join(info['weights_dtype'])}; config {info['config_dtype']}",
        f"  LLM            hidden {info['llm']['hidden_size']}, {info['llm']['layers']} layers, vocabulary "
        f"{info['llm']['vocab_size']} (tokenizer {info['llm']['tokenizer_size']})",
        f"  vision tower   {info['vision_tower']['source']}: {info['vision_tower']['patches']} patches × "
        f"{info['vision_tower']['hidden_size']}, layer {info['vision_tower']['select_layer']}, "
        f"{info['vision_tower']['select_feature']}",
        f"  projector      {info['projector_type']}",
        f"  memory         N_a={m['abstract_slots']} s_a={m['abstract_pool']} λ={m['abstract_update_ratio']} "
        f"d={m['abstract_hidden_dim']} | N_t={m['temporal_clusters']} s_t={m['temporal_pool']} | "
        f"N_r={m['retrieved_frames']} | N_s={m['spatial_frames']} s_s={m['spatial_pool']}",
        "  tokens         "
        + " + ".join(f"{k} {v}" for k, v in info["memory_tokens"].items())
        + f" = {info['num_tokens']}",
    ]
    if info["ignored_weights"]:
        lines.append(f"  ignored        {len(info['ignored_weights'])} recomputed buffers (rotary inv_freq)")
    return "\n".join(lines)
