"""`vstream memory`, `inspect`, `make-tiny-model` and `init-checkpoint`: what a memory or a checkpoint is, a tiny
checkpoint, and the starting checkpoint of stage-1 training."""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path
from typing import Any

from vstream.cli.memory_args import add_memory_arguments, memory_config_from_args
from vstream.errors import ConfigError


def add_memory_command_arguments(parser: argparse.ArgumentParser) -> None:
    add_memory_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_memory(args: argparse.Namespace) -> int:
    """Print the memory configuration and its token layout (tokens per memory, total)."""
    config = memory_config_from_args(args)
    layout = {"config": config.to_dict(), "token_layout": config.token_layout(), "num_tokens": config.num_tokens}
    if args.json:
        print(json.dumps(layout))
    else:
        for name, tokens in layout["token_layout"].items():
            print(f"{name:>10}  {tokens:5d} tokens")
        print(f"{'total':>10}  {config.num_tokens:5d} tokens")
    return 0


def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="checkpoint folder or Hugging Face Hub id (e.g. IVGSZ/Flash-VStream-7b)")
    parser.add_argument("--vision-tower", help="CLIP vision tower to use instead of the config's mm_vision_tower")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print what a checkpoint is: architecture, parameters per part, dtype, memory sizes and token count."""
    from vstream.model.summary import describe_checkpoint, format_description

    info = describe_checkpoint(args.model, vision_tower=args.vision_tower)
    print(json.dumps(info) if args.json else format_description(info))
    return 0


def add_tiny_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="where to write the checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--weights", choices=["safetensors", "bin"], default="safetensors")
    parser.add_argument("--shard-size", default=None, help="shard the weights, e.g. 100KB")


def cmd_make_tiny_model(args: argparse.Namespace) -> int:
    """Write a tiny random checkpoint in the released layout (for tests and CPU trials; its answers are nonsense)."""
    from vstream.model.tiny import make_tiny_model

    print(make_tiny_model(args.folder, seed=args.seed, weights=args.weights, shard_size=args.shard_size))
    return 0


def add_init_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--llm", required=True, help="a LLaMA-architecture LLM: folder or Hub id (lmsys/vicuna-7b-v1.5)"
    )
    parser.add_argument(
        "--vision-tower", required=True, help="a CLIP model: folder (copied beside) or Hub id (kept as a name)"
    )
    parser.add_argument("--output", type=Path, required=True, help="where to write the checkpoint")
    parser.add_argument("--projector", default="mlp2x_gelu", help="projector type: mlp2x_gelu, linear, mlpNx_gelu")
    parser.add_argument("--seed", type=int, default=0, help="seed of the new projector and attention weights")
    parser.add_argument(
        "--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"], help="auto: the LLM's own"
    )
    parser.add_argument(
        "--memory",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a memory size to change from the released ones, e.g. spatial_pool=4 (MemoryConfig names; repeatable)",
    )
    parser.add_argument("--force", action="store_true", help="replace the output folder if it holds a checkpoint")


def cmd_init_checkpoint(args: argparse.Namespace) -> int:
    """Write the stage-1 starting checkpoint: the LLM's weights, a CLIP tower, a new projector and attention."""
    from vstream.model.init_checkpoint import init_checkpoint

    folder = init_checkpoint(
        args.llm,
        args.vision_tower,
        args.output,
        projector_type=args.projector,
        seed=args.seed,
        dtype=args.dtype,
        memory=parse_fields(args.memory, "--memory"),
        force=args.force,
    )
    print(folder)
    return 0


def parse_fields(items: list[str], flag: str) -> dict[str, Any]:
    """`NAME=VALUE` items as a dict; values are Python literals (numbers), else kept as text."""
    fields: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{flag} {item!r}: expected NAME=VALUE, e.g. spatial_pool=4")
        try:
            fields[name.strip()] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            fields[name.strip()] = text.strip()
    return fields
