"""The paper's memory ablations (Tables 4-6), in kind, on vstream-smol: which memory each question type needs.

    vstream build-smol --out smol-build                       # the world, the taught vision tower, the features
    python benchmarks/star_ablation.py --build smol-build     # every variant, 15 minutes of training each

Each variant trains the same starting checkpoint (`BUILD/text`: its vision tower taught, its language model taught
the world's questions on transcripts; `BUILD/init` for a build without that step) with the build's recipe: the
step that teaches it to read the corner digit (the build's stages, with the variant's memory; where the build had
one), then the language training on the same data with the build's settings and seed, for the same wall-clock time
(steps are calibrated per variant: a smaller memory takes more, shorter steps) or, with `--steps`, for the same
number of steps, with one memory removed or replaced by a baseline at about the same token budget, and is evaluated
online on held-out streams of another seed (in the build's world version) with that same memory. With `--steps`
set to the build's language steps, `full` is the build's model again, bit for bit. One JSON line per variant:
accuracy per question type, chance, tokens, steps, seconds, the world version and the sha256 of the weights.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import shutil
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

from vstream.eval.datasets import load_annotations
from vstream.eval.judge import run_rule, verdict_paths
from vstream.eval.predict import PredictConfig, run_predict
from vstream.eval.report import build_report
from vstream.model import GenerationOptions, VStream
from vstream.model.fingerprint import file_digest
from vstream.synth.files import TRAINING, write_world
from vstream.synth.questions import CHANCE
from vstream.train.config import load_train_config
from vstream.train.read_pretrain import pretrain_reading
from vstream.train.smol import build_world_version, language_start
from vstream.train.trainer import build_trainer, train

VARIANTS = {
    "full": {},
    "no_spatial": {"memories": ["abstract", "temporal", "retrieved"]},
    "no_temporal": {"memories": ["abstract", "spatial"]},  # the retrieved memory needs the temporal one
    "no_retrieved": {"memories": ["abstract", "temporal", "spatial"]},
    "no_abstract": {"memories": ["temporal", "retrieved", "spatial"]},
    "recent_frames": {"kind": "sliding", "num_frames": 12, "frame_pool": 4},  # 192 tokens
    "uniform_frames": {"kind": "uniform", "num_frames": 12, "frame_pool": 4},
    "running_average": {"kind": "merge", "num_frames": 3, "frame_pool": 8},
    "abstract_average": {},  # the full memory; its abstract slots updated by plain averaging (see `averaged_init`)
}
"""Memory changes of each variant (MemoryConfig fields); the full STAR memory of smol is 200 tokens."""
PER_RUN = ("max_steps=", "save_steps=", "model=", "output_dir=", "data.", "memory=", "seed=")
"""Build settings each variant sets for itself; the build's other overrides (batch, learning rate...) are kept."""


class StopAfter(TrainerCallback):
    """Ends training once `seconds` of steps have passed."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = seconds, None

    def on_step_end(self, args, state, control, **kwargs):
        self.start = self.start or time.perf_counter()
        if time.perf_counter() - self.start > self.seconds:
            control.should_training_stop = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", type=Path, required=True, help="a `vstream build-smol` folder")
    parser.add_argument("--out", type=Path, default=None, help="default: BUILD/ablation")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seconds", type=float, default=900.0, help="training time per variant")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="language steps per variant instead of a time (the same samples for each)",
    )
    parser.add_argument("--heldout", type=int, default=200, help="held-out streams")
    parser.add_argument("--heldout-minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=None, help="training seed (default: the build's)")
    parser.add_argument(
        "--read-steps",
        type=int,
        default=None,
        help="steps of the reading step, in one stage (default: the build's, stage by stage; 0: none)",
    )
    args = parser.parse_args()
    out = args.out or args.build / "ablation"
    record = json.loads((args.build / "build.json").read_text())
    settings = record["settings"]
    args.seed = settings["seed"] if args.seed is None else args.seed
    args.read_stages = read_stages(record.get("read", {})) if args.read_steps is None else [args.read_steps]
    args.build_overrides = [o for o in settings.get("overrides", []) if not o.startswith(PER_RUN)]
    world = build_world_version(record)
    seconds = round(args.heldout_minutes * 60)
    heldout = write_world(out / "heldout", settings["seed"] + 1, args.heldout, seconds, version=world)
    questions = load_annotations(heldout.annotations)
    for name in args.variants.split(","):
        with contextlib.redirect_stdout(sys.stderr):  # the Trainer's log lines: stdout is for the JSON lines only
            result = run_variant(name, VARIANTS[name], args, out, questions, heldout.videos)
        print(json.dumps({**result, "world": world}), flush=True)


def run_variant(name, memory, args, out, questions, videos) -> dict:
    """Train one variant for the time budget, then answer the held-out questions with its memory."""
    folder = out / name
    shutil.rmtree(folder / "checkpoint", ignore_errors=True)
    start = language_start(args.build)
    init = averaged_init(start, folder / "init") if name == "abstract_average" else start
    records, features = args.build / "data" / "train" / TRAINING, args.build / "data" / "train" / "features"
    read = {}
    if sum(args.read_stages):  # the build's reading step, stage by stage as it ran, from the variant's memory
        variant_memory = VStream.from_pretrained(init).memory_config().replace(**memory)
        shutil.rmtree(folder / "read", ignore_errors=True)
        done = 0
        for steps in args.read_stages:
            taught = pretrain_reading(
                init if done == 0 else folder / "read",
                folder / "read",
                records,
                features,
                steps=steps,
                seed=args.seed,
                memory=variant_memory,
                first_step=done,
            )
            done += taught.steps
        read = {"steps": done, "held_out_accuracy": taught.held_out_accuracy}
        init = folder / "read"
    overrides = [
        *args.build_overrides,
        f"model={init}",
        f"output_dir={folder / 'checkpoint'}",
        f"data.files=[{records}]",
        f"data.features={features}",
        f"memory={json.dumps(memory)}",
        f"seed={args.seed}",
    ]
    steps = args.steps or max(int(args.seconds / calibrate(overrides, folder)), 1)
    config = load_train_config("smol", [*overrides, f"max_steps={steps}", f"save_steps={steps}"])
    start = time.perf_counter()
    checkpoint = train(config, callbacks=[] if args.steps else [StopAfter(args.seconds)])
    trained_s = time.perf_counter() - start
    vs = VStream.from_pretrained(checkpoint)
    memory_config = vs.memory_config().replace(**memory)
    predictions = folder / "heldout.predictions.jsonl"
    predictions.unlink(missing_ok=True)
    config = PredictConfig(
        "synth", predictions, videos=videos, memory=memory_config, options=GenerationOptions(max_new_tokens=6)
    )
    run_predict(vs, questions, config, f"smol-{name}")
    verdicts = verdict_paths(predictions)
    verdicts.unlink(missing_ok=True)
    run_rule(predictions, verdicts)
    (row,) = build_report([predictions], [verdicts])["rows"]
    return {
        "variant": name,
        "memory": memory,
        "tokens": memory_config.num_tokens,
        "read": read,
        "steps": steps,
        "train_s": round(trained_s, 1),
        "accuracy": row.get("accuracy"),
        "by_type": {t: c.get("accuracy") for t, c in sorted(row["by_type"].items())},
        "chance": {t: round(100 * c, 1) for t, c in CHANCE.items()},
        "weights_sha256": file_digest(checkpoint / "model.safetensors"),
    }


def read_stages(read: dict) -> list[int]:
    """The steps of each stage of a build's reading step (one stage, or more where it went on; none without one)."""
    return [stage["steps"] for stage in read.get("stages", [])] or [read.get("steps", 0)]


def averaged_init(init: Path, out: Path) -> Path:
    """A copy of the untrained checkpoint whose memory attention's query projection is zero: every score is then
    equal, so each abstract update is a plain average, `A ← (1-λ)A + λ·mean(chunk)` (the attention stays frozen
    in the smol recipe, so it stays an average through training and evaluation)."""
    shutil.rmtree(out, ignore_errors=True)
    vs = VStream.from_pretrained(init)
    vs.llm.model.attention_model.q_proj.weight.data.zero_()
    vs.llm.model.attention_model.q_proj.bias.data.zero_()
    vs.save_pretrained(out)
    return out


def calibrate(overrides: list[str], folder: Path) -> float:
    """Seconds per optimizer step of this variant (the median of a few steps after the first)."""
    config = load_train_config("smol", [*overrides, "max_steps=4", "save_steps=1000", f"output_dir={folder}/calib"])
    trainer = build_trainer(config)
    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            times.append(time.perf_counter())

    trainer.add_callback(Timer())
    trainer.train()
    shutil.rmtree(folder / "calib", ignore_errors=True)
    gaps = sorted(b - a for a, b in itertools.pairwise(times[1:]))
    return gaps[len(gaps) // 2] if gaps else 1.0


if __name__ == "__main__":
    main()
