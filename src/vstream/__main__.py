"""The `vstream` command: one table of subcommands, each a plain function of the parsed arguments."""

from __future__ import annotations

import argparse
import json
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


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None], str]] = {
    "memory": (cmd_memory, _memory_parser, "show a memory configuration and how many tokens each memory gives"),
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
    try:
        return COMMANDS[args.command][0](args)
    except VStreamError as exc:
        print(f"vstream {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
