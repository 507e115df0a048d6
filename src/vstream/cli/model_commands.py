"""`vstream memory`, `inspect` and `make-tiny-model`: what a memory or a checkpoint is, and a tiny checkpoint."""

from __future__ import annotations

import argparse
import json

from vstream.cli.memory_args import add_memory_arguments, memory_config_from_args


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
