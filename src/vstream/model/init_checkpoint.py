"""The starting checkpoint of stage-1 training: a plain LLaMA LLM and a CLIP tower, with a new projector and a new
semantic attention module, written in the released layout.

The paper's stage 1 starts from Vicuna-7B v1.5 and CLIP ViT-L/14 with both new modules untrained (PAPER_RESULTS.md
§6); `vstream train` starts from a checkpoint, so this module makes that checkpoint:

    vstream init-checkpoint --llm lmsys/vicuna-7b-v1.5 --vision-tower openai/clip-vit-large-patch14 \\
        --output checkpoints/init
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer, CLIPVisionConfig, PretrainedConfig
from transformers.utils import logging as hf_logging

from vstream.errors import CheckpointError, ConfigError
from vstream.memory.config import CHECKPOINT_FIELDS
from vstream.model.compat import dtype_kwargs, progress_bars
from vstream.model.configuration_vstream import RETRIEVED_FIELD, VStreamConfig
from vstream.model.loading import IGNORED_KEYS, resolve_dtype, save_checkpoint, shows_progress
from vstream.model.modeling_vstream import VStreamLlamaForCausalLM, init_new_modules

log = logging.getLogger(__name__)

NEW_MODULES = ("model.mm_projector.", "model.attention_model.")
"""Prefixes of the weights a plain LLM lacks: the only ones this module initialises."""
LLM_FIELDS_DROPPED = ("model_type", "architectures", "transformers_version", "_name_or_path", "auto_map")
"""Fields of the LLM's config that describe the LLM's own class or file, not its shape: not carried over."""
CLIP_MODEL_TYPES = ("clip", "clip_vision_model")
MEMORY_FIELDS = {ours: theirs for theirs, ours in CHECKPOINT_FIELDS.items() if ours != "feature_dim"} | {
    "retrieved_frames": RETRIEVED_FIELD
}
"""MemoryConfig fields a checkpoint's config stores (STAR.md §4), to their released names; the feature width is
the vision tower's and is not set by hand."""


def init_checkpoint(
    llm: str | os.PathLike,
    vision_tower: str | os.PathLike,
    output: str | os.PathLike,
    *,
    projector_type: str = "mlp2x_gelu",
    seed: int = 0,
    dtype: torch.dtype | str | None = None,
    memory: Mapping[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write a Flash-VStream checkpoint made of a plain LLaMA LLM, a CLIP tower, and a new projector and semantic
    attention module (the starting point of stage 1), and return its folder.

    Every LLM weight is the source's, bit for bit (in `dtype`); only `model.mm_projector.*` and
    `model.attention_model.*` are new, drawn with `torch.manual_seed(seed)` by PyTorch's default initialisation of
    freshly built layers (the global random state is left as it was). The folder is written as `output.part` and
    renamed when complete, so a cut-short run never leaves something that looks like a checkpoint.

    Args:
        llm: a folder or Hub id of a LLaMA-architecture causal LM with its tokenizer (e.g. `lmsys/vicuna-7b-v1.5`).
        vision_tower: a folder or Hub id of a CLIP model; a folder is copied beside the checkpoint as
            `vision_tower/`, a Hub id is kept as a name.
        projector_type: `mlp2x_gelu` (the released one), `linear`, `mlp<N>x_gelu` or `identity`.
        dtype: the weights' dtype (a dtype or its name); None or `"auto"`: the LLM's own.
        memory: memory sizes to change from the released ones, in MemoryConfig names (e.g. `spatial_pool=4` for a
            tower with a smaller patch grid); they are written under the released config names.
        force: replace `output` when it already holds a checkpoint.
    """
    output = Path(output).expanduser()
    check_output(output, force=force)
    llm_source = source_name(llm, "LLM")
    tower_source = source_name(vision_tower, "vision tower")
    config = build_config(
        read_llm_config(llm_source), read_vision_config(tower_source), tower_source, projector_type, memory
    )
    tokenizer = read_tokenizer(llm_source, config)
    model = load_llm_weights(llm_source, config, resolve_dtype(dtype))
    init_new_modules(model, seed)
    part = output.with_name(output.name + ".part")
    if part.exists():
        shutil.rmtree(part)  # left by a run that was cut short
    try:
        save_checkpoint(part, model, tokenizer, tower_source)
        check_output(output, force=force)  # again: something may have appeared there while the weights loaded
        if (output / "config.json").is_file():
            shutil.rmtree(output)
        elif output.exists():
            output.rmdir()
        part.rename(output)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    log.info(
        "wrote %s: %s + %s, new %s projector and attention (seed %d)", output, llm, vision_tower, projector_type, seed
    )
    return output


def check_output(output: Path, *, force: bool) -> None:
    """Refuse an output that is a file, a checkpoint (unless `force`) or a folder holding anything else."""
    if not output.exists():
        return
    if not output.is_dir():
        raise CheckpointError(f"{output} is a file; give a folder for the new checkpoint")
    if (output / "config.json").is_file():
        if not force:
            raise CheckpointError(f"{output} already holds a checkpoint; give another folder or --force to replace it")
    elif any(output.iterdir()):
        raise CheckpointError(f"{output} is a folder that is not empty and holds no checkpoint; give another folder")


def source_name(name: str | os.PathLike, what: str) -> str:
    """A local folder (as a path) or a Hub id; a local-looking path that is not a model's folder is an error."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{what} {path}: no config.json in that folder (give a Hugging Face model's folder)")
        return str(path)
    text = str(name)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise CheckpointError(f"{what} {text}: no such folder (and not a Hub id like 'lmsys/vicuna-7b-v1.5')")
    return text


def read_llm_config(source: str) -> PretrainedConfig:
    """The LLM's config; anything but a plain LLaMA (a Flash-VStream checkpoint included) is an error."""
    try:
        kind = PretrainedConfig.get_config_dict(source)[0].get("model_type")
        if kind == VStreamConfig.model_type:
            raise CheckpointError(
                f"{source} is already a Flash-VStream checkpoint; give the plain LLaMA LLM it started from"
            )
        if kind != "llama":
            raise CheckpointError(
                f"{source} is a {kind!r} model; Flash-VStream needs a LLaMA-architecture LLM "
                f"(model_type 'llama', e.g. lmsys/vicuna-7b-v1.5)"
            )
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the LLM's config from {source}: {one_line(exc)}") from exc


def read_vision_config(source: str) -> CLIPVisionConfig:
    """The CLIP vision config of a CLIP model or of a CLIP vision tower alone; other models are an error."""
    try:
        data, _ = CLIPVisionConfig.get_config_dict(source)
        kind = data.get("model_type")
        if kind not in CLIP_MODEL_TYPES:
            raise CheckpointError(
                f"the vision tower {source} is a {kind!r} model; it must be a CLIP model "
                "(e.g. openai/clip-vit-large-patch14)"
            )
        return CLIPVisionConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the vision tower's config from {source}: {one_line(exc)}") from exc


def build_config(
    llm_config: PretrainedConfig,
    vision_config: CLIPVisionConfig,
    vision_source: str,
    projector_type: str = "mlp2x_gelu",
    memory: Mapping[str, Any] | None = None,
) -> VStreamConfig:
    """The Flash-VStream config: the LLM's fields, the tower's width as `mm_hidden_size`, the released vision
    settings (layer -2, patch tokens) and memory sizes (MULTIMODAL_DEFAULTS, changed by `memory`).

    The memory sizes are checked against the tower's patch grid here, before any weight is read.
    """
    values = {k: v for k, v in llm_config.to_dict().items() if k not in LLM_FIELDS_DROPPED}
    unknown = sorted(set(memory or {}) - set(MEMORY_FIELDS))
    if unknown:
        raise ConfigError(
            f"memory fields {unknown} are not stored in a checkpoint's config; use {', '.join(sorted(MEMORY_FIELDS))}"
        )
    values.update({MEMORY_FIELDS[name]: value for name, value in (memory or {}).items()})
    config = VStreamConfig(
        **values,
        architectures=["VStreamLlamaForCausalLM"],
        mm_vision_tower=vision_source,
        mm_hidden_size=vision_config.hidden_size,
        mm_projector_type=projector_type,
        mm_vision_select_layer=-2,
        mm_vision_select_feature="patch",
    )
    side = vision_config.image_size // vision_config.patch_size
    try:
        config.memory_config(num_patches=side * side)
    except ConfigError as exc:
        raise ConfigError(
            f"the memory sizes do not fit the vision tower's {side}×{side} patch grid: {exc} "
            "(change them with memory=..., --memory FIELD=VALUE on the command line)"
        ) from exc
    return config


def read_tokenizer(source: str, config: VStreamConfig) -> Any:
    """The LLM's tokenizer; one with ids beyond the LLM's vocabulary is an error."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot load the tokenizer of {source}: {one_line(exc)}") from exc
    if len(tokenizer) > config.vocab_size:
        raise CheckpointError(
            f"the tokenizer of {source} has {len(tokenizer)} tokens, "
            f"more than the LLM's vocabulary ({config.vocab_size})"
        )
    return tokenizer


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (transformers' messages span several)."""
    return " ".join(str(exc).split())


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' load report: the new weights it lists as missing are checked below, by name."""
    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


def load_llm_weights(source: str, config: VStreamConfig, dtype: torch.dtype | None) -> VStreamLlamaForCausalLM:
    """The LLM's weights in a Flash-VStream model; anything missing but the new modules, or unexpected, is an error."""
    local = Path(source).is_dir()
    try:
        with progress_bars(shows_progress(Path(source)) if local else True), _quiet_transformers():
            model, info = VStreamLlamaForCausalLM.from_pretrained(
                source, config=config, output_loading_info=True, **dtype_kwargs(dtype or "auto")
            )
    except (OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"cannot load the LLM's weights from {source}: {one_line(exc)}") from exc
    new = {name for name in model.state_dict() if name.startswith(NEW_MODULES)}
    missing = set(info.get("missing_keys", ())) - ({"lm_head.weight"} if config.tie_word_embeddings else set())
    problems = []
    if missing - new:
        problems.append(f"missing LLM weights {sorted(missing - new)}")
    if new - missing:
        problems.append(f"weights of the new modules already there {sorted(new - missing)}")
    unexpected = sorted(k for k in info.get("unexpected_keys", ()) if not IGNORED_KEYS.match(k))
    if unexpected:
        problems.append(f"unexpected weights {unexpected}")
    if info.get("mismatched_keys"):
        problems.append(f"weights of the wrong shape {sorted(map(str, info['mismatched_keys']))}")
    if problems:
        raise CheckpointError(f"{source} is not a plain LLaMA checkpoint of its config: " + "; ".join(problems))
    return model.eval()
