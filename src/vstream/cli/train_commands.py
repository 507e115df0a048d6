"""`vstream train` and `vstream merge-lora`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config", help="the run's YAML file, or a preset: stage1, stage2, stage2_lora, tiny_cpu (see vstream.train)"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="fields to change, e.g. learning_rate=1e-4 data.fps=2"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    parser.add_argument("--check", action="store_true", help="check the config and the data, then stop")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed


def cmd_train(args: argparse.Namespace) -> int:
    from vstream.train import build_trainer, load_train_config, train

    config = load_train_config(args.config, args.overrides)
    if args.check:
        trainer = build_trainer(config)
        print(json.dumps({"samples": len(trainer.train_dataset), "output_dir": config.output_dir}))
        return 0
    print(json.dumps({"checkpoint": str(train(config, resume=args.resume))}))
    return 0


def add_merge_lora_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("adapter", type=Path, help="a LoRA checkpoint saved by `vstream train` (adapter_config.json)")
    parser.add_argument("--output", type=Path, required=True, help="where the merged checkpoint goes")
    parser.add_argument("--base", default=None, help="the base checkpoint (default: the one the adapter names)")


def cmd_merge_lora(args: argparse.Namespace) -> int:
    from vstream.model.loading import merge_lora

    print(json.dumps({"checkpoint": str(merge_lora(args.adapter, args.output, base=args.base))}))
    return 0
