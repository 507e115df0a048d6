"""Seconds a step of the smol language stage takes, with the data pipeline as the preset sets it or changed.

    python benchmarks/smol_step_time.py --build smol-build   # the preset: 1 worker, nice 19
    python benchmarks/smol_step_time.py --build smol-build dataloader_nice=0   # the worker at normal priority
    python benchmarks/smol_step_time.py --build smol-build dataloader_workers=0   # the memory read in the step

Trains `--steps` steps of `vstream train smol` from a `vstream build-smol` folder's reading checkpoint on its world
(into a temporary folder) and prints one JSON line: `ms_per_step` over the steps (the data set's preparation before
them not counted) and the overrides. Numbers of ours are in the smol preset and the README.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from vstream.synth.files import TRAINING
from vstream.train.config import load_train_config
from vstream.train.smol import READ_FOLDER
from vstream.train.trainer import build_trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", type=Path, required=True, help="a `vstream build-smol` folder")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("overrides", nargs="*", help="`key=value` changes to the smol preset")
    args = parser.parse_args()
    world = args.build / "data" / "train"
    with tempfile.TemporaryDirectory() as out:
        config = load_train_config(
            "smol",
            [
                f"model={args.build / READ_FOLDER}",
                f"output_dir={out}",
                f"data.files=[{world / TRAINING}]",
                f"data.features={world / 'features'}",
                f"max_steps={args.steps}",
                f"save_steps={args.steps * 10}",
                f"logging_steps={args.steps * 10}",
                *args.overrides,
            ],
        )
        trainer = build_trainer(config)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    print(json.dumps({"ms_per_step": round(1000 * seconds / args.steps, 1), "overrides": args.overrides}))


if __name__ == "__main__":
    main()
