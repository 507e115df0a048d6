"""The training run on Hugging Face `Trainer`: DDP, DeepSpeed, gradient accumulation and checkpointing
come from it; vstream adds what is its own: which parts learn, how a batch becomes the LLM's inputs, and
checkpoints in the released layout.

A batch is a list of samples (media features, token ids with labels); the model the engine wraps turns it into
the loss in its forward (`train/model.py`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import Trainer

from vstream.errors import ConfigError
from vstream.memory import MemoryConfig
from vstream.model import VStream
from vstream.train.config import TrainConfig
from vstream.train.data import MemoryReadout, TrainingDataset, collate_samples
from vstream.train.media import MediaRoots
from vstream.train.model import TrainingModel
from vstream.train.records import load_training_records

log = logging.getLogger(__name__)

RUN_FILE = "train_config.json"
"""Written beside every checkpoint: the run that made it."""


def train(config: TrainConfig, *, resume: bool = False, callbacks: list | None = None) -> Path:
    """Run the training `config` describes (resuming from its last checkpoint with `resume`; `callbacks`:
    Hugging Face `TrainerCallback`s to add); returns the folder of the final checkpoint (`output_dir`), in the
    released layout."""
    from transformers import set_seed

    set_seed(config.seed)
    trainer = build_trainer(config)
    for callback in callbacks or ():
        trainer.add_callback(callback)
    output = Path(config.output_dir)
    checkpoint = last_complete_checkpoint(output) if resume else None
    if resume and checkpoint is None:
        log.warning("%s holds no checkpoint to resume from: starting from the beginning", output)
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model(str(output))
        if _distributed():
            torch.distributed.barrier()  # every process waits for the final checkpoint to be written
    finally:
        if _distributed():
            # a group left alive is torn down at exit with its communication threads running: the process aborts
            torch.distributed.destroy_process_group()
    return output


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def last_complete_checkpoint(output: Path) -> str | None:
    """The newest `checkpoint-N` in `output` that was written to the end (its `trainer_state.json`, written last,
    is there); a checkpoint cut short by a kill is passed over with a warning."""
    numbered = sorted(
        (int(path.name.split("-")[1]), path)
        for path in output.glob("checkpoint-*")
        if path.is_dir() and path.name.split("-")[1].isdigit()
    )
    for _, path in reversed(numbered):
        if (path / "trainer_state.json").is_file():
            return str(path)
        log.warning("%s was not written to the end (killed while saving?): resuming from an earlier one", path)
    return None


def build_trainer(config: TrainConfig) -> VStreamTrainer:
    """The model with its trainable parts chosen, the checked data, and a `Trainer` set up as `config` says."""
    if config.fsdp and _on_cpu(config):
        raise ConfigError("fsdp runs on GPUs only (accelerate does not shard on CPUs): on CPUs use DDP or deepspeed")
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    accumulation = config.accumulation_steps(processes)
    vs = _load_model(config)
    memory = vs.memory_config().replace(**config.memory)
    model = choose_trainable(vs.llm, config)
    records = load_training_records(
        [Path(f) for f in config.data.files],
        MediaRoots(*(Path(p) if p else None for p in (config.data.features, config.data.videos, config.data.images))),
        feature_shape=(memory.num_patches, vs.config.mm_hidden_size),
    ).items
    dataset = TrainingDataset(
        records,
        vs.processor,
        memory,
        encoder=vs.encode_frames if vs.vision is not None else None,
        fps=config.data.fps,
        model_max_length=config.model_max_length,
        mm_hidden_size=vs.config.mm_hidden_size,
        num_patches=memory.num_patches,
        too_long=config.too_long,
        readout=MemoryReadout(memory, vs.llm.model.attention_model, cache=config.cache_memories)
        if config.freeze_memory_attention
        else None,
        worker_nice=config.dataloader_nice,
        isolated_turns=config.isolated_turns,
    )
    log.warning(
        "training on %d samples (%d cut to model_max_length %d, %d left out)",
        len(dataset),
        len(dataset.truncated),
        config.model_max_length,
        len(dataset.dropped),
    )
    if len(dataset) == 0:
        raise ConfigError("no training sample is left (every record was left out); see the warnings above")
    return VStreamTrainer(
        model=TrainingModel(model, vs.processor, memory),
        args=training_arguments(config, accumulation),
        train_dataset=dataset,
        data_collator=collate_samples,
        processing_class=vs.tokenizer,
        vstream=vs,
        memory_config=memory,
        run=config,
    )


def _load_model(config: TrainConfig) -> VStream:
    on_cpu = _on_cpu(config)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = "cpu" if on_cpu else f"cuda:{local_rank}"
    # weights in bf16 only where DeepSpeed keeps fp32 master copies; otherwise fp32 weights and mixed precision
    dtype = torch.bfloat16 if config.deepspeed and config.precision == "bf16" and not on_cpu else torch.float32
    options: dict[str, Any] = {"dtype": dtype, "device": device, "vision_tower": config.vision_tower}
    if config.lora is not None and config.lora.quantize:
        options.update(quantization=config.lora.quantize, dtype=_compute_dtype(config))
    return VStream.from_pretrained(config.model, template=config.prompt_template, cache_prefix=False, **options)


def _on_cpu(config: TrainConfig) -> bool:
    return config.device == "cpu" or not torch.cuda.is_available()


def _compute_dtype(config: TrainConfig) -> torch.dtype:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision, torch.float32)


def choose_trainable(llm: nn.Module, config: TrainConfig) -> nn.Module:
    """Freeze what the stage keeps and open what it trains; returns the model to train (a PEFT model with LoRA).

    Stage 1: the projector and the memory attention's q/k (the parts of it the memory uses; not with
    `freeze_memory_attention`). Stage 2: those and the LLM, in full or through LoRA adapters on its decoder layers.
    The vision tower is never in the model.
    """
    llm.requires_grad_(False)
    if config.stage == 2 and config.lora is None:
        llm.requires_grad_(True)
    attention = llm.model.attention_model
    trained = [llm.model.mm_projector] + (
        [] if config.freeze_memory_attention else [attention.q_proj, attention.k_proj]
    )
    attention.requires_grad_(False)
    for module in trained:
        module.requires_grad_(True)
    if config.stage == 1 or config.lora is None:
        return llm
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.lora.quantize:
        llm = prepare_model_for_kbit_training(llm, use_gradient_checkpointing=config.gradient_checkpointing)
    layers = "|".join(config.lora.target_modules)
    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=rf".*\.layers\.\d+\.(self_attn|mlp)\.({layers})",  # the decoder's, not the memory attention's
        modules_to_save=["mm_projector", "attention_model"],
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(llm, lora)
    for name, parameter in model.named_parameters():
        opened = not config.freeze_memory_attention and (".q_proj." in name or ".k_proj." in name)
        if "attention_model" in name and not opened:
            parameter.requires_grad_(False)
    return model


def training_arguments(config: TrainConfig, accumulation: int):
    """Hugging Face `TrainingArguments` for the run (the paper's optimizer: AdamW, cosine decay, warmup)."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    on_cpu = _on_cpu(config)
    options: dict[str, Any] = {
        "output_dir": config.output_dir,
        "per_device_train_batch_size": config.per_device_batch_size,
        "gradient_accumulation_steps": accumulation,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": config.lr_scheduler,
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.max_grad_norm,
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps or -1,
        "bf16": config.precision == "bf16" and not on_cpu,
        "fp16": config.precision == "fp16" and not on_cpu,
        "deepspeed": config.deepspeed_config(),
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": config.save_total_limit,
        "logging_steps": config.logging_steps,
        "logging_first_step": True,
        "seed": config.seed,
        "data_seed": config.seed,
        "report_to": _report_to(config.report_to),
        "remove_unused_columns": False,
        "dataloader_num_workers": config.dataloader_workers,
        "dataloader_persistent_workers": config.dataloader_workers > 0 and config.cache_memories,
        "use_cpu": on_cpu,
        "ddp_find_unused_parameters": False,
        "optim": "adamw_torch",
    }
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    if config.fsdp:
        options.update(fsdp_arguments(config))
    else:
        options[checkpointing] = config.gradient_checkpointing  # renamed in transformers 5
        if config.gradient_checkpointing:
            options[f"{checkpointing}_kwargs"] = {"use_reentrant": False}
    if "warmup_ratio" in names:  # transformers 4.x; 5.x takes the ratio as a float number of warmup steps
        options["warmup_ratio"] = config.warmup_ratio
    else:
        options["warmup_steps"] = config.warmup_ratio
    if on_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        options["ddp_backend"] = "gloo"  # processes on CPUs talk through gloo
    return TrainingArguments(**options)


def fsdp_arguments(config: TrainConfig) -> dict[str, Any]:
    """`TrainingArguments` options for FSDP: every weight sharded over all processes, one unit per decoder layer,
    full weights gathered at save time (the released layout); activation checkpointing done by FSDP itself."""
    import transformers

    settings = {
        "transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"],
        "state_dict_type": "FULL_STATE_DICT",
        "activation_checkpointing": config.gradient_checkpointing,
    }
    if int(transformers.__version__.split(".")[0]) >= 5:
        return {"fsdp": True, "fsdp_config": {"version": 2, **settings}}
    return {"fsdp": "full_shard auto_wrap", "fsdp_config": {**settings, "use_orig_params": True}}


def _report_to(value: str | list[str]) -> str | list[str]:
    if value != "auto":
        return value
    import importlib.util

    found = [
        name
        for name, module in (("tensorboard", "tensorboard"), ("wandb", "wandb"))
        if importlib.util.find_spec(module)
    ]
    return found or "none"


class VStreamTrainer(Trainer):
    """`Trainer` whose batches are lists of samples, whose checkpoints are in the released layout, and whose logs
    add tokens and samples a second."""

    def __init__(self, *args: Any, vstream: VStream, memory_config: MemoryConfig, run: TrainConfig, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.vstream, self.memory_config, self.run = vstream, memory_config, run
        self.model_accepts_loss_kwargs = False  # the loss is a mean per micro-batch; Trainer scales it
        self._tokens = self._samples = 0
        self._since = time.perf_counter()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The LLM's loss on the answers of the batch's samples (memory and prompt built in the model's forward)."""
        loss, tokens = model(samples=inputs["samples"])
        self._tokens += int(tokens)
        self._samples += len(inputs["samples"])
        return (loss, {"loss": loss}) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Hugging Face's logs plus tokens and samples a second (over all processes) since the last log."""
        elapsed = time.perf_counter() - self._since
        if "loss" in logs and elapsed > 0:
            logs["tokens_per_second"] = round(self._tokens * self.args.world_size / elapsed, 1)
            logs["samples_per_second"] = round(self._samples * self.args.world_size / elapsed, 3)
            self._tokens = self._samples = 0
            self._since = time.perf_counter()
        super().log(logs, *args, **kwargs)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """The LLM writes itself (full weights, or the adapter with LoRA), not the training wrapper around it."""
        wrapper = self.model
        if state_dict is not None:  # gathered by the engine (ZeRO-3, FSDP), under the wrapper's names
            state_dict = {name.removeprefix("llm."): tensor for name, tensor in state_dict.items()}
        self.model = wrapper.llm
        try:
            super()._save(output_dir, state_dict)
        finally:
            self.model = wrapper
        if self.args.should_save:  # the writing process only (every process passes here under torchrun)
            finish_checkpoint(Path(output_dir or self.args.output_dir), self.vstream.vision_source, self.run)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        """Weights written by the LLM are read back into the LLM (engines' own checkpoints into what they wrap)."""
        super()._load_from_checkpoint(resume_from_checkpoint, self.model.llm if model is None else model)


def finish_checkpoint(folder: Path, vision_source: str | None, run: TrainConfig) -> None:
    """Make a saved folder a checkpoint in the released layout: the vision tower beside it (when it is a local
    folder), the config pointing at it, and the run file."""
    source = Path(vision_source) if vision_source else None
    config_file = folder / "config.json"
    if source is not None and source.is_dir():
        if source.resolve() != (folder / "vision_tower").resolve():
            shutil.copytree(source, folder / "vision_tower", dirs_exist_ok=True)
        if config_file.is_file():
            data = json.loads(config_file.read_text())
            data["mm_vision_tower"] = "vision_tower"
            config_file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    (folder / RUN_FILE).write_text(json.dumps(run.to_dict(), indent=2) + "\n")
