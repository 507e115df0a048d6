"""The `vstream` command: one table of subcommands, each a plain function of the parsed arguments."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from vstream import __version__
from vstream.errors import VStreamError


def _lazy(module: str, name: str) -> Callable:
    """A command or parser builder from a module imported only when that command runs (keeps --help fast)."""

    def call(*args: object) -> object:
        import importlib

        return getattr(importlib.import_module(module), name)(*args)

    return call


EVAL = "vstream.cli.eval_commands"
STREAM = "vstream.cli.stream_commands"
MODEL = "vstream.cli.model_commands"
TRAIN = "vstream.cli.train_commands"
SERVE = "vstream.cli.serve_commands"

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
    "serve": (
        _lazy(SERVE, "cmd_serve"),
        _lazy(SERVE, "add_serve_arguments"),
        "serve the HTTP API (sessions, questions over SSE, OpenAI-compatible chat) and the web page",
    ),
    "eval": (
        _lazy(EVAL, "cmd_eval"),
        _lazy(EVAL, "add_eval_arguments"),
        "benchmarks: predict, judge (LLM judge over an OpenAI-compatible API), report, merge shards",
    ),
    "data": (
        _lazy(EVAL, "cmd_data"),
        _lazy(EVAL, "add_data_arguments"),
        "data: check benchmark annotations and training files, cut source videos into clips",
    ),
    "extract-features": (
        _lazy(EVAL, "cmd_extract"),
        _lazy(EVAL, "add_extract_arguments"),
        "encode videos or image folders into feature files (1 fps, batched, sharded, resumable)",
    ),
    "memory": (
        _lazy(MODEL, "cmd_memory"),
        _lazy(MODEL, "add_memory_command_arguments"),
        "show a memory configuration and how many tokens each memory gives",
    ),
    "inspect": (
        _lazy(MODEL, "cmd_inspect"),
        _lazy(MODEL, "add_inspect_arguments"),
        "show what a checkpoint is (architecture, parameters, memory, tokens)",
    ),
    "train": (
        _lazy(TRAIN, "cmd_train"),
        _lazy(TRAIN, "add_train_arguments"),
        "train Flash-VStream (stage 1 or 2, full or LoRA) from one YAML run file",
    ),
    "merge-lora": (
        _lazy(TRAIN, "cmd_merge_lora"),
        _lazy(TRAIN, "add_merge_lora_arguments"),
        "fold a LoRA adapter saved by `vstream train` into a full checkpoint",
    ),
    "build-smol": (
        _lazy(TRAIN, "cmd_build_smol"),
        _lazy(TRAIN, "add_build_smol_arguments"),
        "build vstream-smol from nothing on a CPU: synthetic world, vision tower, training, held-out accuracy",
    ),
    "make-tiny-model": (
        _lazy(MODEL, "cmd_make_tiny_model"),
        _lazy(MODEL, "add_tiny_arguments"),
        "write a tiny random checkpoint (answers are nonsense)",
    ),
    "init-checkpoint": (
        _lazy(MODEL, "cmd_init_checkpoint"),
        _lazy(MODEL, "add_init_checkpoint_arguments"),
        "make the stage-1 starting checkpoint: a LLaMA LLM, a CLIP tower, a new projector and attention",
    ),
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
