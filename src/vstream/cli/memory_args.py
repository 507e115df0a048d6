"""`--memory-*` flags for every MemoryConfig field, so each command that builds a memory takes the same ones."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import json
from pathlib import Path
from typing import Any

from vstream.errors import ConfigError
from vstream.memory.config import MemoryConfig, apply_memory_changes

ALIASES = {"kind": ["--memory"], "num_frames": ["--recent-frames"]}
"""Other names of some flags: `--memory recent --recent-frames 4` reads as the baseline it asks for."""


def add_memory_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--memory-config FILE` and one `--<field>` flag per MemoryConfig field (e.g. `--temporal-clusters 16`)."""
    group = parser.add_argument_group("memory", "sizes of the video memory (defaults: the released Flash-VStream-7b)")
    group.add_argument(
        "--memory-config",
        type=Path,
        metavar="FILE",
        help="JSON file with MemoryConfig fields, or a checkpoint's config.json (STAR.md §4 names)",
    )
    docs = _field_docs()
    for field in dataclasses.fields(MemoryConfig):
        flags = ["--" + field.name.replace("_", "-"), *ALIASES.get(field.name, [])]
        doc = docs.get(field.name, "")
        if field.name == "memories":
            group.add_argument(*flags, nargs="+", default=None, metavar="NAME", help=doc)
        elif field.name in ("retrieval_candidates", "retrieval_recent"):
            group.add_argument(*flags, type=int, default=None, help=doc)
        else:
            group.add_argument(*flags, type=type(field.default), default=None, help=doc)


def memory_config_from_args(args: argparse.Namespace) -> MemoryConfig:
    """The MemoryConfig the flags describe: the config file (if any), then each flag given."""
    base: dict[str, Any] = {}
    if args.memory_config is not None:
        try:
            data = json.loads(Path(args.memory_config).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--memory-config {args.memory_config}: cannot read a JSON object ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"--memory-config {args.memory_config}: expected a JSON object")
        if "model_type" in data or "mm_hidden_size" in data:
            base = MemoryConfig.from_checkpoint_config(data).to_dict()
        else:
            base = data
    return apply_memory_changes(MemoryConfig.from_dict(base), given_memory_fields(args))


def given_memory_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The MemoryConfig fields whose flags were given on the command line."""
    names = {f.name for f in dataclasses.fields(MemoryConfig)}
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _field_docs() -> dict[str, str]:
    """The attribute docstrings of MemoryConfig, read from its source, as help texts (one source of truth)."""
    tree = ast.parse(inspect.getsource(MemoryConfig))
    docs: dict[str, str] = {}
    body = tree.body[0].body
    for node, following in itertools.pairwise(body):
        if isinstance(node, ast.AnnAssign) and isinstance(following, ast.Expr):
            value = following.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                docs[node.target.id] = " ".join(value.value.split()).replace("%", "%%")
    return docs
