"""Can vstream-smol's language model learn one question type from its memory when taught that type alone?

    vstream build-smol --out smol-build
    python benchmarks/smol_read_alone.py --build smol-build --kind count --steps 750     # one JSON line

The build's reading step (`vstream.train.read_pretrain`) teaches the digit (`detail`) this way, single questions
on each sample's memory with the transcripts rehearsed, and finds it. This benchmark runs the same step for another
type, from the build's reading checkpoint (`BUILD/read`, where the language training starts), on the build's own
training conversations and features, and prints the share of its held-out single questions answered exactly
(teacher-forced, greedy per token) with the loss every 50 steps. A type that stays near where the full build
leaves it, even taught alone, is limited by what this language model can read from the memory in that many steps,
not by sharing the steps with the other types. The checkpoint it trains is written under `--out` and not used.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from vstream.synth.files import TRAINING
from vstream.synth.questions import QUESTION_TYPES
from vstream.train.read_pretrain import pretrain_reading


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, required=True, help="a `vstream build-smol` folder")
    parser.add_argument("--kind", choices=QUESTION_TYPES, default="count", help="the question type taught alone")
    parser.add_argument("--steps", type=int, default=750, help="steps of 4 single questions")
    parser.add_argument("--start", type=Path, default=None, help="checkpoint to start from (default BUILD/read)")
    parser.add_argument("--out", type=Path, default=None, help="where its checkpoint goes (default: a temp dir)")
    args = parser.parse_args()
    start = time.perf_counter()
    world = args.build / "data" / "train"
    with tempfile.TemporaryDirectory() as scratch:
        result = pretrain_reading(
            args.start or args.build / "read",
            args.out or Path(scratch) / "read",
            world / TRAINING,
            world / "features",
            kind=args.kind,
            steps=args.steps,
            seed=json.loads((args.build / "build.json").read_text())["settings"]["seed"],
        )
    print(
        json.dumps(
            {
                "kind": args.kind,
                "steps": result.steps,
                "held_out": result.held_out,
                "held_out_accuracy": result.held_out_accuracy,
                "loss_every_50": result.loss_every_50,
                "transcripts_after": result.transcript_accuracy,
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
