"""The `vstream` command: one table of subcommands, each a plain function of the parsed arguments."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence

from vstream import __version__
from vstream.cli.memory_args import add_memory_arguments, memory_config_from_args
from vstream.errors import VStreamError


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


def _memory_parser(parser: argparse.ArgumentParser) -> None:
    add_memory_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print what a checkpoint is: architecture, parameters per part, dtype, memory sizes and token count."""
    from vstream.model.summary import describe_checkpoint, format_description

    info = describe_checkpoint(args.model, vision_tower=args.vision_tower)
    print(json.dumps(info) if args.json else format_description(info))
    return 0


def _inspect_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="checkpoint folder or Hugging Face Hub id (e.g. IVGSZ/Flash-VStream-7b)")
    parser.add_argument("--vision-tower", help="CLIP vision tower to use instead of the config's mm_vision_tower")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_make_tiny_model(args: argparse.Namespace) -> int:
    """Write a tiny random checkpoint in the released layout (for tests and CPU trials; its answers are nonsense)."""
    from vstream.model.tiny import make_tiny_model

    folder = make_tiny_model(args.folder, seed=args.seed, weights=args.weights, shard_size=args.shard_size)
    print(folder)
    return 0


def _tiny_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="where to write the checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--weights", choices=["safetensors", "bin"], default="safetensors")
    parser.add_argument("--shard-size", default=None, help="shard the weights, e.g. 100KB")


def _lazy(module: str, name: str) -> Callable:
    """A command or parser builder from a module imported only when that command runs (keeps --help fast)."""

    def call(*args: object) -> object:
        import importlib

        return getattr(importlib.import_module(module), name)(*args)

    return call


EVAL = "vstream.cli.eval_commands"
STREAM = "vstream.cli.stream_commands"

COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None], str]] = {
    "ask": (
        _lazy(STREAM, "cmd_ask"),
        _lazy(STREAM, "add_ask_arguments"),
        "ask questions at given stream times, each seeing only the frames up to then",
    ),
    "chat": (
        _lazy(STREAM, "cmd_chat"),
        _lazy(STREAM, "add_chat_arguments"),
        "play a stream and answer questions typed while it plays",
    ),
    "eval": (
        _lazy(EVAL, "cmd_eval"),
        _lazy(EVAL, "add_eval_arguments"),
        "benchmarks: predict, judge (LLM judge over an OpenAI-compatible API), report, merge shards",
    ),
    "data": (
        _lazy(EVAL, "cmd_data"),
        _lazy(EVAL, "add_data_arguments"),
        "benchmark data: check annotation files, cut source videos into clips",
    ),
    "extract-features": (
        _lazy(EVAL, "cmd_extract"),
        _lazy(EVAL, "add_extract_arguments"),
        "encode videos or image folders into feature files (1 fps, batched, sharded, resumable)",
    ),
    "memory": (cmd_memory, _memory_parser, "show a memory configuration and how many tokens each memory gives"),
    "inspect": (cmd_inspect, _inspect_parser, "show what a checkpoint is (architecture, parameters, memory, tokens)"),
    "make-tiny-model": (cmd_make_tiny_model, _tiny_parser, "write a tiny random checkpoint (answers are nonsense)"),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `vstream` command."""
    parser = argparse.ArgumentParser(
        prog="vstream",
        description="Flash-VStream: answer questions about video streams of any length from a bounded memory.",
    )
    parser.add_argument("--version", action="version", version=f"vstream {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, add_arguments, help_text) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `vstream` command; returns the exit status (errors print one line, no traceback)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    logging.basicConfig(
        level=os.environ.get("VSTREAM_LOG", "WARNING").upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return COMMANDS[args.command][0](args)
    except VStreamError as exc:
        print(f"vstream {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vstream {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
