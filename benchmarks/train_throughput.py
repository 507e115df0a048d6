"""Training speed and memory: samples and tokens a second, seconds per optimizer step, peak memory.

    python benchmarks/train_throughput.py                                   # tiny random model, CPU, stage 1 and 2
    python benchmarks/train_throughput.py --model IVGSZ/Flash-VStream-7b --stages 2 --precision bf16 \\
        --gradient-checkpointing --deepspeed zero2 --batch 4                # released size, one GPU

Writes a set of random feature files of the model's size (`--frames` frames of P×D each, a question and an answer
of about `--answer-words` words) and trains `--steps` optimizer steps through `vstream.train` (the same code as
`vstream train`), then prints one JSON line per stage: `samples_per_s`, `tokens_per_s`, `step_s_p50` (steps after
the first two), `peak_rss_mb`, `peak_gpu_mb`. With `--estimate`, it adds the hours the paper's recipe (790K
stage-1 and 763K stage-2 samples, one epoch each) would take on `--gpus` GPUs at the measured rate.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from transformers import TrainerCallback

from vstream.features import save_features
from vstream.model.summary import describe_checkpoint
from vstream.train import load_train_config
from vstream.train.trainer import build_trainer

PAPER_SAMPLES = {1: 558_000 + 232_000, 2: 665_000 + 98_000}
"""Samples in one epoch of each stage (PAPER_RESULTS.md §6)."""


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._began = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._began = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._began)


def write_data(root: Path, count: int, frames: int, patches: int, dim: int, words: int) -> Path:
    """Random feature files and LLaVA-format records about them."""
    rng = np.random.default_rng(0)
    (root / "features").mkdir(parents=True)
    answer = " ".join(["the person walks to the kitchen and opens the door"] * (words // 10 + 1)).split()[:words]
    records = []
    for i in range(count):
        save_features(
            root / "features" / f"{i}.safetensors",
            torch.from_numpy(rng.normal(size=(frames, patches, dim)).astype(np.float16)),
        )
        turns = [{"from": "human", "value": "<video>\nWhat happens?"}, {"from": "gpt", "value": " ".join(answer)}]
        records.append({"video": f"{i}.safetensors", "conversations": turns})
    (root / "train.json").write_text(json.dumps(records))
    return root / "train.json"


def measure(args: argparse.Namespace, stage: int, root: Path, patches: int, dim: int) -> dict:
    run = {
        "stage": stage,
        "model": args.model,
        "output_dir": str(root / f"out{stage}"),
        "data": {"files": [str(root / "train.json")], "features": str(root / "features")},
        "global_batch_size": args.batch,
        "per_device_batch_size": args.batch,
        "learning_rate": 1.0e-5,
        "max_steps": args.steps,
        "precision": args.precision,
        "gradient_checkpointing": args.gradient_checkpointing,
        "deepspeed": args.deepspeed,
        "save_steps": 10**9,
        "report_to": "none",
        "device": args.device,
    }
    if args.lora:
        run["lora"] = {"r": 64, "alpha": 128}
    (root / f"run{stage}.yaml").write_text(yaml.safe_dump(run))
    trainer = build_trainer(load_train_config(root / f"run{stage}.yaml"))
    timer = StepTimer()
    trainer.add_callback(timer)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - began
    steady = timer.times[2:] or timer.times
    samples = args.steps * args.batch
    history = [entry for entry in trainer.state.log_history if "tokens_per_second" in entry]
    result = {
        "model": args.model,
        "stage": stage,
        "lora": args.lora,
        "precision": args.precision,
        "gradient_checkpointing": args.gradient_checkpointing,
        "deepspeed": args.deepspeed,
        "device": "cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu",
        "batch": args.batch,
        "frames": args.frames,
        "steps": args.steps,
        "samples_per_s": round(args.batch / statistics.median(steady), 3),
        "tokens_per_s": round(statistics.median(e["tokens_per_second"] for e in history[2:] or history), 1),
        "step_s_p50": round(statistics.median(steady), 4),
        "wall_s": round(elapsed, 2),
        "samples": samples,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None,
    }
    if args.estimate:
        rate = result["samples_per_s"] * args.gpus
        result["estimate_hours_on_gpus"] = round(PAPER_SAMPLES[stage] / rate / 3600, 1)
        result["gpus"] = args.gpus
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-random")
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=4, help="samples per step (one process, no accumulation)")
    parser.add_argument("--frames", type=int, default=60, help="frames per sample (1 fps: a one-minute video)")
    parser.add_argument("--answer-words", type=int, default=40)
    parser.add_argument("--precision", choices=["bf16", "fp16", "fp32"], default="fp32")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--deepspeed", default=None, help="zero0 ... zero3_offload (with the deepspeed launcher)")
    parser.add_argument("--lora", action="store_true", help="stage 2 with LoRA")
    parser.add_argument("--device", default=None, help="cpu to stay on the CPU where there is a GPU")
    parser.add_argument("--estimate", action="store_true", help="hours of the paper's recipe at the measured rate")
    parser.add_argument("--gpus", type=int, default=8)
    args = parser.parse_args()
    memory = describe_checkpoint(args.model)["memory"]  # reads no weights
    patches, dim = memory["num_patches"], memory["feature_dim"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_data(root, max(args.batch * 4, 16), args.frames, patches, dim, args.answer_words)
        for stage in args.stages:
            print(json.dumps(measure(args, stage, root, patches, dim)), flush=True)


if __name__ == "__main__":
    main()
