"""Finding a checkpoint, checking its weights against its config, and loading it strictly.

A checkpoint is a folder (or a Hugging Face Hub id, downloaded to the usual cache) in the released layout:
`config.json` (model_type "vstream"), weights as `model.safetensors`, `pytorch_model.bin`, or shards of
either with an index file, and the tokenizer files. Missing, unexpected or misshapen weights are an error
that names them, never a warning.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers import AutoTokenizer

from vstream.errors import CheckpointError, ConfigError
from vstream.model.compat import dtype_kwargs, progress_bars
from vstream.model.configuration_vstream import VStreamConfig
from vstream.model.modeling_vstream import VStreamLlamaForCausalLM
from vstream.model.smol import SMOL, smol_folder
from vstream.model.tiny import TINY_RANDOM, tiny_random_folder
from vstream.model.vision import VisionTower, resolve_vision_tower

WEIGHT_FILES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
)
IGNORED_KEYS = re.compile(r".*rotary_emb\.inv_freq$")
"""Buffers that old LLaMA checkpoints saved and current ones recompute: accepted and reported, not loaded."""
QUANTIZATIONS = ("8bit", "4bit")
DTYPE_NAMES = ("float32", "float16", "bfloat16")
PROGRESS_MIN_BYTES = 1 << 30
"""Checkpoints whose weights are smaller than this load without progress bars (they load in a blink)."""
SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """A local folder as is; `tiny-random`, the tiny random model (built once); `smol`, the small model of the
    synthetic world shipped in the package; anything else is taken for a Hugging Face Hub id and downloaded (or
    found in the cache)."""
    if str(name_or_path) == TINY_RANDOM:
        return tiny_random_folder()
    if str(name_or_path) == SMOL:
        return smol_folder()
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; give the checkpoint's folder (the one with config.json)")
    name = str(name_or_path)
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise CheckpointError(f"{name}: no such checkpoint folder (and not a Hub id like 'IVGSZ/Flash-VStream-7b')")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name))
    except Exception as exc:  # the hub client raises many types (offline, 401, 404, ...); all mean "not loadable"
        reason = " ".join(str(exc).split())
        raise CheckpointError(f"cannot download {name!r} from the Hugging Face Hub: {reason}") from exc


def load_config(folder: Path) -> VStreamConfig:
    """The checkpoint's config; a config that is not a Flash-VStream one is an error."""
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder}: no config.json")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if data.get("model_type") != VStreamConfig.model_type:
        raise CheckpointError(f"{path}: model_type is {data.get('model_type')!r}, expected 'vstream'")
    return VStreamConfig.from_dict(data)


@dataclass(frozen=True)
class WeightReport:
    """How a checkpoint's tensors compare with what its config builds."""

    found: dict[str, tuple[tuple[int, ...], str]]
    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]
    ignored: list[str]

    def raise_if_wrong(self, folder: Path) -> None:
        """A CheckpointError naming every missing, unexpected and misshapen weight."""
        problems = []
        for label, names in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("with the wrong shape", self.mismatched),
        ):
            if names:
                shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
                problems.append(f"{len(names)} weights {label}: {shown}")
        if problems:
            raise CheckpointError(f"{folder}: the weights do not match the config: " + "; ".join(problems))


def check_weights(folder: Path, config: VStreamConfig) -> WeightReport:
    """Compare the checkpoint's tensor names and shapes with the model its config describes (reads headers only)."""
    found = read_tensor_specs(folder)
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in VStreamLlamaForCausalLM(config).state_dict().items()}
    if config.tie_word_embeddings:
        expected.pop("lm_head.weight", None)
        found_names = set(found) - {"lm_head.weight"}
    else:
        found_names = set(found)
    ignored = sorted(n for n in found_names if IGNORED_KEYS.match(n))
    found_names -= set(ignored)
    missing = sorted(set(expected) - found_names)
    unexpected = sorted(found_names - set(expected))
    mismatched = sorted(
        f"{n} {found[n][0]} (config wants {expected[n]})"
        for n in found_names & set(expected)
        if found[n][0] != expected[n]
    )
    return WeightReport(found, missing, unexpected, mismatched, ignored)


def read_tensor_specs(folder: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name → (shape, dtype) of every tensor in the checkpoint's weight files, without loading them."""
    files = weight_files(folder)
    specs: dict[str, tuple[tuple[int, ...], str]] = {}
    for file in files:
        try:
            if file.suffix == ".safetensors":
                with safe_open(str(file), framework="pt") as f:
                    for name in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
                        piece = f.get_slice(name)
                        specs[name] = (
                            tuple(piece.get_shape()),
                            SAFETENSORS_DTYPES.get(piece.get_dtype(), piece.get_dtype()),
                        )
            else:
                state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
                specs.update({name: (tuple(t.shape), str(t.dtype).removeprefix("torch.")) for name, t in state.items()})
        except Exception as exc:  # safetensors and torch.load raise several unrelated types for damaged files
            raise CheckpointError(f"{file}: cannot read the weights ({exc})") from exc
    return specs


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a checkpoint, following an index file when there is one."""
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if name.endswith(".index.json"):
            try:
                weight_map = json.loads(path.read_text())["weight_map"]
            except (ValueError, KeyError) as exc:
                raise CheckpointError(f"{path}: not a weight index ({exc})") from exc
            files = [folder / f for f in sorted(set(weight_map.values()))]
            absent = [f.name for f in files if not f.is_file()]
            if absent:
                raise CheckpointError(f"{path} lists weight files that are not there: {absent}")
            return files
        return [path]
    raise CheckpointError(f"{folder}: no weights ({' or '.join(WEIGHT_FILES)})")


def shows_progress(folder: Path) -> bool:
    """Whether loading this checkpoint shows progress bars: only when its weight files make PROGRESS_MIN_BYTES."""
    try:
        return sum(file.stat().st_size for file in weight_files(folder)) >= PROGRESS_MIN_BYTES
    except CheckpointError:
        return False


@dataclass(frozen=True)
class LoadedCheckpoint:
    """The parts of a loaded checkpoint: the LLM, its tokenizer, the vision tower (None when not loaded), where
    the tower came from, and the checkpoint's folder."""

    llm: VStreamLlamaForCausalLM
    tokenizer: Any
    vision: VisionTower | None
    vision_source: str | None
    folder: Path | None = None


def load_pretrained(
    name_or_path: str | os.PathLike,
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    device_map: str | dict[str, Any] | None = None,
    vision_tower: str | os.PathLike | None = None,
    load_vision: bool = True,
    quantization: str | None = None,
    torch_dtype: torch.dtype | str | None = None,
) -> LoadedCheckpoint:
    """Find, check and load a checkpoint: a folder, a Hub id (e.g. `IVGSZ/Flash-VStream-7b`) or `tiny-random`.

    Args:
        dtype: a `torch.dtype` or its name (`torch_dtype`: the same, under its older Hugging Face name).
        device: `cpu`, `cuda`, `cuda:1`, ...; or `device_map` instead: Hugging Face placement of the LLM's layers
            (`"auto"` spreads a model that does not fit one GPU over several, or onto the CPU). Defaults for both:
            `resolve_device_dtype`.
        vision_tower: a CLIP tower to load instead of the config's `mm_vision_tower`.
        load_vision: False to answer from precomputed features only.
        quantization: `8bit` or `4bit` (bitsandbytes, CUDA).

    Progress bars show only for checkpoints large enough to take a while.
    """
    device, dtype = resolve_device_dtype(device, resolve_dtype(dtype, torch_dtype), device_map=device_map)
    folder = resolve_checkpoint(name_or_path)
    base = adapter_base(folder)
    if base is not None:  # a LoRA checkpoint of `vstream train`: its base, with the adapter folded in
        return load_with_adapter(
            folder,
            base,
            dtype=dtype,
            device=device,
            device_map=device_map,
            vision_tower=vision_tower,
            load_vision=load_vision,
            quantization=quantization,
        )
    config = load_config(folder)
    llm = load_llm(folder, config, dtype=dtype, device=device, device_map=device_map, quantization=quantization)
    vision, source = None, None
    if load_vision:
        source = resolve_vision_tower(config.mm_vision_tower, folder, vision_tower)
        vision = VisionTower.load(
            source,
            select_layer=config.mm_vision_select_layer,
            select_feature=config.mm_vision_select_feature,
            dtype=dtype,
            device=device if device is not None else llm.get_input_embeddings().weight.device,
            progress=shows_progress(folder),
        )
    return LoadedCheckpoint(llm, load_tokenizer(folder), vision, source, folder)


ADAPTER_CONFIG = "adapter_config.json"


def adapter_base(folder: Path) -> str | None:
    """The base checkpoint a LoRA adapter folder names (None when `folder` is a whole checkpoint)."""
    path = folder / ADAPTER_CONFIG
    if not path.is_file():
        return None
    try:
        base = json.loads(path.read_text())["base_model_name_or_path"]
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: not a LoRA adapter config ({exc})") from exc
    if not base:
        raise CheckpointError(f"{path} names no base checkpoint; give it with --base")
    return str(base)


def load_with_adapter(folder: Path, base: str, **options: Any) -> LoadedCheckpoint:
    """The base checkpoint with the LoRA adapter of `folder` merged into its LLM (peft, `pip install vstream[train]`);
    the adapter folder's own tokenizer and vision tower, when it has them, are used."""
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise CheckpointError(
            f"{folder} is a LoRA adapter: loading it needs peft (pip install 'vstream[train]')"
        ) from exc
    loaded = load_pretrained(base, **options)
    try:
        llm = PeftModel.from_pretrained(loaded.llm, folder).merge_and_unload()
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{folder}: cannot apply the LoRA adapter to {base} ({exc})") from exc
    tokenizer = load_tokenizer(folder) if (folder / "tokenizer_config.json").is_file() else loaded.tokenizer
    return LoadedCheckpoint(llm, tokenizer, loaded.vision, loaded.vision_source, folder)


def merge_lora(adapter: str | os.PathLike, output: str | os.PathLike, *, base: str | None = None) -> Path:
    """Fold a LoRA adapter into its base and write a whole checkpoint in the released layout."""
    folder = resolve_checkpoint(adapter)
    base = base or adapter_base(folder)
    if base is None:
        raise CheckpointError(f"{folder}: no {ADAPTER_CONFIG}: not a LoRA adapter")
    loaded = load_with_adapter(folder, base, dtype=torch.float32, device="cpu")
    return save_checkpoint(output, loaded.llm, loaded.tokenizer, loaded.vision_source)


def save_checkpoint(
    folder: str | os.PathLike, llm: VStreamLlamaForCausalLM, tokenizer: Any, vision_source: str | None
) -> Path:
    """Write a checkpoint in the released layout; a local vision tower is copied beside it as `vision_tower/`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = llm.config
    original = config.mm_vision_tower
    source = Path(vision_source) if vision_source else None
    if source is not None and source.is_dir():
        if source.resolve() != (folder / "vision_tower").resolve():
            shutil.copytree(source, folder / "vision_tower", dirs_exist_ok=True)
        config.mm_vision_tower = "vision_tower"
    try:
        size = sum(p.numel() * p.element_size() for p in llm.parameters())
        with progress_bars(size >= PROGRESS_MIN_BYTES):
            llm.save_pretrained(folder)
    finally:
        config.mm_vision_tower = original
    tokenizer.save_pretrained(folder)
    return folder


def load_llm(
    folder: Path,
    config: VStreamConfig,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    device_map: str | dict[str, Any] | None = None,
    quantization: str | None = None,
) -> VStreamLlamaForCausalLM:
    """The language model with its projector and semantic attention, loaded strictly."""
    check_weights(folder, config).raise_if_wrong(folder)
    kwargs = dtype_kwargs(dtype)
    if quantization is not None:
        kwargs["quantization_config"] = quantization_config(quantization, dtype)
    if device_map is not None:
        kwargs["device_map"] = device_map
    elif quantization is not None or (device is not None and torch.device(device).type != "cpu"):
        kwargs["device_map"] = {"": str(device or "cuda")}
    try:
        with progress_bars(shows_progress(folder)):
            llm, info = VStreamLlamaForCausalLM.from_pretrained(
                folder, config=config, output_loading_info=True, **kwargs
            )
    except (OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{folder}: cannot load the weights ({exc})") from exc
    missing = [k for k in info.get("missing_keys", []) if not (config.tie_word_embeddings and k == "lm_head.weight")]
    unexpected = [k for k in info.get("unexpected_keys", []) if not IGNORED_KEYS.match(k)]
    if missing or unexpected or info.get("mismatched_keys"):
        raise CheckpointError(
            f"{folder}: missing weights {missing}, unexpected weights {unexpected}, "
            f"mismatched {info.get('mismatched_keys')}"
        )
    return llm.eval()


def resolve_dtype(dtype: torch.dtype | str | None, torch_dtype: torch.dtype | str | None = None) -> torch.dtype | None:
    """A `torch.dtype` from a dtype or its name (`"bfloat16"`, `"torch.float16"`); None for `"auto"` or nothing."""
    if dtype is not None and torch_dtype is not None and dtype != torch_dtype:
        raise ConfigError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree; give one of them")
    value = dtype if dtype is not None else torch_dtype
    if value is None or isinstance(value, torch.dtype):
        return value
    name = str(value).removeprefix("torch.")
    if name == "auto":
        return None
    if name not in DTYPE_NAMES:
        raise ConfigError(f"unknown dtype {value!r}; use one of {', '.join(DTYPE_NAMES)} or 'auto'")
    return getattr(torch, name)


def resolve_device_dtype(
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    *,
    device_map: str | dict[str, Any] | None = None,
) -> tuple[torch.device | None, torch.dtype]:
    """Where and in which precision to run, by one rule for every command and the Python API.

    device: as given; else `cuda:$LOCAL_RANK` under torchrun/accelerate, `cuda` when there is a GPU, else `cpu`;
    None when `device_map` places the model instead. dtype: as given (a dtype or its name; `"auto"` or None: the
    default), else float32 on the CPU and, on a GPU, bfloat16 where it is supported, else float16.
    """
    if device is not None and device_map is not None:
        raise ConfigError("give device (the whole model on one device) or device_map, not both")
    resolved = resolve_dtype(dtype)
    if device_map is None and device is None:
        local_rank = os.environ.get("LOCAL_RANK")
        device = (f"cuda:{local_rank}" if local_rank else "cuda") if torch.cuda.is_available() else "cpu"
    where = torch.device(device) if device is not None else None
    if resolved is None and (where.type == "cuda" if where is not None else torch.cuda.is_available()):
        resolved = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return where, resolved or torch.float32


def quantization_config(kind: str, dtype: torch.dtype | None):
    """8-bit or 4-bit loading through bitsandbytes; the projector and the memory attention stay in full precision."""
    if kind not in QUANTIZATIONS:
        raise ConfigError(f"quantization must be one of {', '.join(QUANTIZATIONS)}; got {kind!r}")
    if find_spec("bitsandbytes") is None:
        raise ConfigError(f"{kind} loading needs bitsandbytes: pip install 'vstream[quant]' (CUDA only)")
    from transformers import BitsAndBytesConfig

    skip = ["mm_projector", "attention_model", "lm_head"]
    if kind == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_compute_dtype=dtype or torch.float16, llm_int8_skip_modules=skip
    )


def load_tokenizer(folder: Path):
    """The checkpoint's tokenizer."""
    try:
        return AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder}: cannot load the tokenizer ({exc})") from exc


def load_vision_tower(
    name_or_path: str | os.PathLike,
    *,
    vision_tower: str | os.PathLike | None = None,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
) -> VisionTower:
    """Only the vision tower of a checkpoint (for feature extraction: no LLM is loaded), with its select layer
    and feature; `vision_tower` points elsewhere. Device and dtype defaults follow `resolve_device_dtype`."""
    device, dtype = resolve_device_dtype(device, dtype)
    folder = resolve_checkpoint(name_or_path)
    config = load_config(folder)
    source = resolve_vision_tower(config.mm_vision_tower, folder, vision_tower)
    return VisionTower.load(
        source,
        select_layer=config.mm_vision_select_layer,
        select_feature=config.mm_vision_select_feature,
        dtype=dtype,
        device=device,
        progress=shows_progress(folder),
    )
