"""A training run described by one YAML file, read into typed dataclasses and checked before any work.

    stage: 2
    model: ./checkpoints/stage1          # a VStream checkpoint (folder, Hub id or tiny-random) to start from
    output_dir: ./checkpoints/stage2
    data:
      files: [llava_v1_5_mix665k_with_video_chatgpt.json]
      features: ./features                # where the records' media are found
    global_batch_size: 128
    learning_rate: 2.0e-5

Every field has the paper's value by default where the paper gives one (PAPER_RESULTS.md §6); the presets
(`vstream.train.presets`) are complete files. An unknown field, a wrong type or two fields that contradict each
other is a `ConfigError` that names the field.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from vstream.errors import ConfigError

PRESETS = Path(__file__).with_name("presets")
DEEPSPEED_CONFIGS = Path(__file__).with_name("deepspeed")
LLAMA_LINEAR_LAYERS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class DataConfig:
    """Where the samples are.

    Attributes:
        files: LLaVA-format JSON or JSONL files (conversations with an `image` or `video` path).
        features, videos, images: folders a record's media path is looked up in (feature files; raw videos or
            image folders; raw images), in that order; absolute paths are used as they are.
        fps: frames a second taken from raw videos (feature files play at the times they store).
    """

    files: list[str]
    features: str | None = None
    videos: str | None = None
    images: str | None = None
    fps: float = 1.0


@dataclass(frozen=True)
class LoraSettings:
    """LoRA on the LLM's linear layers (stage 2); projector and memory attention are trained in full beside it.

    Attributes:
        quantize: `4bit` or `8bit` loads the frozen LLM quantized (QLoRA; bitsandbytes, CUDA).
    """

    r: int = 128
    alpha: int = 256
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(LLAMA_LINEAR_LAYERS))
    quantize: Literal["4bit", "8bit"] | None = None


@dataclass(frozen=True)
class TrainConfig:
    """One training run (paper Table 7 defaults for stage 2; `stage1.yaml` holds stage 1's).

    Attributes:
        stage: 1 trains the projector and the memory attention with the LLM frozen (`plain` template);
            2 trains them and the LLM, in full or with `lora` (`vicuna_v1` template). The vision tower never trains.
        model: the checkpoint to start from (a folder, a Hub id, or `tiny-random`).
        global_batch_size: samples per optimizer step over all processes; reached with gradient accumulation
            (global = per_device × processes × accumulation, which must divide exactly).
        deepspeed: `zero0`, `zero1`, `zero2`, `zero2_offload`, `zero3`, `zero3_offload` (shipped configs) or a
            JSON file. A ZeRO-3 file must gather the weights at save time
            (`stage3_gather_16bit_weights_on_model_save`), so that checkpoints are in the released layout.
        fsdp: PyTorch FSDP (full sharding, one unit per decoder layer), where DeepSpeed is not installed; GPUs
            only (accelerate shards on accelerators, not on CPUs). Not with `deepspeed`.
        too_long: a sample longer than `model_max_length` is cut at the end (`truncate`) or left out (`drop`);
            either way it is counted before training starts.
        isolated_turns: learn each turn of a multi-turn record as if it were asked alone (it sees the memory and
            its own question, never the other turns), as an online evaluation asks every question; the record's
            memory is still read out once for all its answers. False: the turns form one conversation.
        memory: memory sizes to change from the model's (MemoryConfig field names).
        freeze_memory_attention: keep the memory attention's q/k as they are (the released recipe trains them).
            The memory then has no gradient, so it is read out in the data pipeline, outside the training step.
        cache_memories: keep each sample's memory tokens in RAM after its first read, so later epochs skip the
            readout (about N × D × 4 bytes a sample; needs `freeze_memory_attention`). With `dataloader_workers`
            the cache lives in each worker (kept across epochs: workers are persistent then).
        dataloader_workers: processes that read samples (and their memory) beside the training step.
        dataloader_nice: niceness the data workers add to themselves (Unix; 0 leaves them as they are). Where the
            step itself runs on the CPU, 19 lets its threads keep the cores and the workers prepare samples in the
            step's idle moments: the smol run on 2 cores took 130-143 ms a step with one worker at 19, 187 ms at 0
            and 185-194 ms with the memory read in the step's process (`benchmarks/smol_step_time.py`).
        max_steps: stop after this many optimizer steps (default: `epochs` over the data).
        save_steps, save_total_limit: a checkpoint every N steps, the last K kept.
        report_to: `auto` (TensorBoard and W&B when installed), `none`, or a list.
        device: `cpu` to train on the CPU even where there is a GPU.
    """

    stage: Literal[1, 2]
    model: str
    output_dir: str
    data: DataConfig
    template: str | None = None
    global_batch_size: int = 128
    per_device_batch_size: int = 16
    learning_rate: float = 2e-5
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    epochs: float = 1.0
    max_steps: int | None = None
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    gradient_checkpointing: bool = False
    deepspeed: str | None = None
    fsdp: bool = False
    lora: LoraSettings | None = None
    model_max_length: int = 2048
    too_long: Literal["truncate", "drop"] = "truncate"
    isolated_turns: bool = False
    memory: dict[str, Any] = field(default_factory=dict)
    freeze_memory_attention: bool = False
    cache_memories: bool = False
    vision_tower: str | None = None
    save_steps: int = 500
    save_total_limit: int | None = 2
    logging_steps: int = 1
    seed: int = 42
    report_to: str | list[str] = "auto"
    dataloader_workers: int = 0
    dataloader_nice: int = 0
    device: str | None = None

    def __post_init__(self) -> None:
        for name in ("global_batch_size", "per_device_batch_size", "model_max_length", "save_steps", "logging_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.global_batch_size % self.per_device_batch_size:
            raise ConfigError(
                f"global_batch_size {self.global_batch_size} is not a multiple of per_device_batch_size "
                f"{self.per_device_batch_size}"
            )
        if not self.learning_rate > 0 or not 0 <= self.warmup_ratio < 1 or self.weight_decay < 0:
            raise ConfigError("learning_rate must be > 0, warmup_ratio in [0, 1), weight_decay >= 0")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be at least 1, got {self.max_steps}")
        if not self.epochs > 0:
            raise ConfigError(f"epochs must be > 0, got {self.epochs}")
        if self.stage == 1 and self.lora is not None:
            raise ConfigError("lora is for stage 2: stage 1 trains only the projector and the memory attention")
        if self.cache_memories and not self.freeze_memory_attention:
            raise ConfigError(
                "cache_memories needs freeze_memory_attention: true (a memory whose q/k learn changes every step)"
            )
        if self.fsdp and self.deepspeed:
            raise ConfigError("fsdp and deepspeed both shard the training: choose one")
        if self.precision == "fp32" and self.lora is not None and self.lora.quantize:
            raise ConfigError("lora.quantize (QLoRA) computes in bf16 or fp16: set precision to bf16 or fp16")
        if self.dataloader_workers < 0 or not 0 <= self.dataloader_nice <= 19:
            raise ConfigError(
                f"dataloader_workers must be >= 0 and dataloader_nice in [0, 19]; got {self.dataloader_workers} and "
                f"{self.dataloader_nice}"
            )
        if self.data.fps <= 0:
            raise ConfigError(f"data.fps must be > 0, got {self.data.fps}")
        if not self.data.files:
            raise ConfigError("data.files names no file")
        self.deepspeed_config()  # a wrong name fails here, before any work
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise ConfigError("save_total_limit must be at least 1 (or null to keep every checkpoint)")

    @property
    def prompt_template(self) -> str:
        """The template: as given, else `plain` for stage 1 and `vicuna_v1` for stage 2 (as the released recipe)."""
        return self.template or ("plain" if self.stage == 1 else "vicuna_v1")

    def accumulation_steps(self, processes: int) -> int:
        """Gradient accumulation that keeps the global batch over `processes` processes."""
        per_step = self.per_device_batch_size * processes
        if self.global_batch_size % per_step:
            raise ConfigError(
                f"global_batch_size {self.global_batch_size} is not a multiple of per_device_batch_size "
                f"{self.per_device_batch_size} × {processes} processes"
            )
        return self.global_batch_size // per_step

    def deepspeed_config(self) -> str | None:
        """The DeepSpeed JSON file: a shipped one by name, or the path given."""
        if self.deepspeed is None:
            return None
        shipped = DEEPSPEED_CONFIGS / f"{self.deepspeed}.json"
        path = shipped if shipped.is_file() else Path(self.deepspeed)
        if path.is_file():
            try:
                zero = json.loads(path.read_text()).get("zero_optimization", {})
                stage, gathers = zero.get("stage", 0), zero.get("stage3_gather_16bit_weights_on_model_save")
            except (ValueError, AttributeError) as exc:
                raise ConfigError(f"deepspeed: {path} is not a DeepSpeed JSON config ({exc})") from exc
            if stage == 3 and gathers is not True:
                raise ConfigError(
                    f"deepspeed: {path} is ZeRO stage 3 without zero_optimization.stage3_gather_16bit_weights_on_model_"
                    "save: true; without it checkpoints hold only shards, not weights in the released layout"
                )
            return str(path)
        names = sorted(p.stem for p in DEEPSPEED_CONFIGS.glob("*.json"))
        raise ConfigError(f"deepspeed: {self.deepspeed!r} is neither a shipped config ({', '.join(names)}) nor a file")

    def to_dict(self) -> dict[str, Any]:
        """The run as plain data (saved beside the checkpoints, so a run says how it was made)."""
        return dataclasses.asdict(self)


def load_train_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML run file (or a preset's name: `stage1`, `stage2`, `stage2_lora`, `tiny_cpu`, `smol`), with
    `key=value` overrides (`learning_rate=1e-4`, `data.features=/x`), into a checked TrainConfig."""
    import yaml

    path = resolve_preset(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields at the top level")
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {override!r}: expected key=value")
        target = data
        *parents, last = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"override {override!r}: {part} is not a group of fields")
        target[last] = yaml.safe_load(value)
    base = path.parent
    config = _build(TrainConfig, data, "")
    return _relative_to(config, base)


def resolve_preset(path: str | os.PathLike) -> Path:
    """A YAML file as given, or a shipped preset by name."""
    given = Path(path)
    if given.is_file():
        return given
    preset = PRESETS / f"{given.name}.yaml" if given.suffix == "" else PRESETS / given.name
    if preset.is_file():
        return preset
    names = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
    raise ConfigError(f"{path}: no such file (presets: {names})")


def _relative_to(config: TrainConfig, base: Path) -> TrainConfig:
    """Relative data paths in a run file are relative to the file, so a run file can travel with its data."""
    if config.data is None:
        return config

    def fix(value: str | None) -> str | None:
        if value is None or Path(value).is_absolute() or base.resolve() == PRESETS.resolve():
            return value
        return str(base / value)

    data = config.data
    changed = dataclasses.replace(
        data,
        files=[fix(f) for f in data.files],
        features=fix(data.features),
        videos=fix(data.videos),
        images=fix(data.images),
    )
    return dataclasses.replace(config, data=changed)


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'the run file'}: expected a mapping of fields, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(where + u for u in unknown)}; "
            f"known: {', '.join(known)}"
        )
    values = {}
    for name, value in data.items():
        values[name] = _convert(hints[name], value, f"{where}{name}")
    missing = [
        name
        for name, f in known.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing field{'s' if len(missing) > 1 else ''}: {', '.join(where + m for m in missing)}")
    return cls(**values)


def _convert(hint: Any, value: Any, where: str) -> Any:
    """`value` checked against (and lightly converted to) the type `hint`."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} is not {_name(hint)}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{where}.")
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_convert(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return str(value)
    if hint is Any:
        return value
    raise ConfigError(f"{where}: cannot read a value of type {_name(hint)}")


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))
