"""Flags shared by the commands that load a model and generate: `--model`, `--device`, `--dtype`, decoding."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from vstream.cli.memory_args import add_memory_arguments, given_memory_fields
from vstream.errors import ConfigError

TINY = "tiny-random"
DTYPES = ("auto", "float32", "float16", "bfloat16")
log = logging.getLogger(__name__)


def add_model_arguments(parser: argparse.ArgumentParser, *, speed: float) -> None:
    """`--model`, `--device`, `--dtype`, `--vision-tower`, `--fps`, `--speed`, decoding flags and memory sizes."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default="IVGSZ/Flash-VStream-7b",
        help=f"checkpoint folder or Hub id; '{TINY}' builds a tiny random model (meaningless answers)",
    )
    group.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)")
    group.add_argument(
        "--dtype", choices=DTYPES, default="auto", help="weights dtype (auto: bfloat16 on GPU, float32 on CPU)"
    )
    group.add_argument("--vision-tower", default=None, help="CLIP tower to use instead of the config's")
    group.add_argument("--max-new-tokens", type=int, default=256)
    group.add_argument("--temperature", type=float, default=0.0, help="0 decodes greedily")
    group.add_argument("--top-p", type=float, default=1.0)
    stream = parser.add_argument_group("stream")
    stream.add_argument("--fps", type=float, default=1.0, help="frames per second taken from the source")
    stream.add_argument(
        "--speed", type=float, default=speed, help="1 real time, 2 twice as fast, 0 as fast as possible (files)"
    )
    add_memory_arguments(parser)


def load_model_from_args(args: argparse.Namespace):
    """The model the flags name, on the device and dtype they ask for."""
    import torch

    from vstream.model import VStream

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    name = tiny_model_folder() if args.model == TINY else args.model
    return VStream.from_pretrained(name, dtype=dtype, device=device, vision_tower=args.vision_tower)


def tiny_model_folder() -> Path:
    """The tiny random model, built once in the cache folder."""
    from vstream.model.tiny import make_tiny_model
    from vstream.stream.synthetic import cache_dir

    folder = cache_dir() / TINY
    if not (folder / "config.json").is_file():
        log.info("building the tiny random model in %s", folder)
        make_tiny_model(folder)
    return folder


def generation_options_from_args(args: argparse.Namespace):
    """Decoding options from the flags."""
    from vstream.model import GenerationOptions

    return GenerationOptions(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p)


def memory_overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Only the memory sizes given on the command line (the model's own sizes are the defaults)."""
    if getattr(args, "memory_config", None) is not None:
        raise ConfigError(
            "--memory-config is not used with a model: the model's config sets the memory sizes; "
            "override single sizes with their own flags"
        )
    return given_memory_fields(args)
