"""Flags shared by the commands that load a model and generate: `--model`, `--device`, `--dtype`, decoding."""

from __future__ import annotations

import argparse
from typing import Any

from vstream.cli.memory_args import add_memory_arguments, given_memory_fields
from vstream.errors import ConfigError

DTYPES = ("auto", "float32", "float16", "bfloat16")


def add_model_arguments(parser: argparse.ArgumentParser, *, speed: float | None) -> None:
    """`--model`, `--device`, `--dtype`, `--vision-tower`, `--fps`, `--speed` (unless `speed` is None), decoding
    flags and memory sizes."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default="IVGSZ/Flash-VStream-7b",
        help="checkpoint folder or Hub id; 'tiny-random' builds a tiny random model (meaningless answers)",
    )
    add_device_arguments(group)
    group.add_argument("--vision-tower", default=None, help="CLIP tower to use instead of the config's")
    group.add_argument("--max-new-tokens", type=int, default=256)
    group.add_argument("--temperature", type=float, default=0.0, help="0 decodes greedily")
    group.add_argument("--top-p", type=float, default=1.0)
    stream = parser.add_argument_group("stream")
    stream.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frames per second taken from the source (default 1; a feature file: the times it stores)",
    )
    if speed is not None:
        stream.add_argument(
            "--speed", type=float, default=speed, help="1 real time, 2 twice as fast, 0 as fast as possible (files)"
        )
    add_memory_arguments(parser)


def add_device_arguments(group: argparse._ActionsContainer) -> None:
    """`--device` and `--dtype`, whose defaults `vstream.model.resolve_device_dtype` decides for every command."""
    group.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda, cuda:$LOCAL_RANK under torchrun, if any)"
    )
    group.add_argument(
        "--dtype",
        choices=DTYPES,
        default="auto",
        help="weights dtype (auto: float32 on CPU; bfloat16 on a GPU that supports it, else float16)",
    )


def load_model_from_args(args: argparse.Namespace):
    """The model the flags name, on the device and in the dtype they ask for (defaults: `resolve_device_dtype`)."""
    from vstream.model import VStream

    return VStream.from_pretrained(args.model, dtype=args.dtype, device=args.device, vision_tower=args.vision_tower)


def generation_options_from_args(args: argparse.Namespace):
    """Decoding options from the flags."""
    from vstream.model import GenerationOptions

    return GenerationOptions(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p)


def memory_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The memory sizes given on the command line, to apply to the model's own (`model.memory_config()`); checked
    before the model is loaded, so a wrong flag fails at once."""
    if getattr(args, "memory_config", None) is not None:
        raise ConfigError(
            "--memory-config is not used with a model: the model's config sets the memory sizes; "
            "override single sizes with their own flags"
        )
    return given_memory_fields(args)
