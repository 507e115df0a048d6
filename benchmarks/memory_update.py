"""Per-frame update cost, readout cost and state size of a video memory as the stream grows.

    python benchmarks/memory_update.py                                  # N = 100, 1000, 10000; float32; CPU
    python benchmarks/memory_update.py --frames 5000 --dtype bfloat16 --device cuda
    python benchmarks/memory_update.py --frames 1000 --kind merge --num-frames 10

Feeds N frames of random features of the released model's size (256 patches × 1024) one at a time,
with timestamps at 1 fps, and prints one JSON object per N with the keys `frames`, `dtype`,
`update_ms_p50`, `update_ms_p99`, `readout_ms_p50`, `state_bytes`, `peak_rss_mb` (and a few more).
Each N runs in a process of its own, so `peak_rss_mb` is that run's alone.

Goal on a 2-core CPU in float32 with the released sizes: `update_ms_p50` under 5 ms, and `state_bytes`
and `peak_rss_mb` flat as N grows.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from vstream.cli.memory_args import add_memory_arguments, memory_config_from_args
from vstream.memory import SemanticAttention, build_memory

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def run(frames: int, args: argparse.Namespace) -> dict:
    """Stream `frames` random frames into a fresh memory and measure it."""
    config = memory_config_from_args(args)
    attention = None
    if config.kind == "star":
        attention = SemanticAttention.random(config.feature_dim, config.abstract_hidden_dim)
    memory = build_memory(config, attention, device=args.device, store_dir=args.store_dir)
    dtype, device = DTYPES[args.dtype], torch.device(args.device)
    readout_every = max(frames // args.readouts, 1)
    update_s, readout_s = [], []
    gen = torch.Generator(device=device).manual_seed(0)
    for index in range(frames):
        # one frame at a time, outside the timed region (large batches would fragment the heap and blur RSS)
        frame = torch.randn(config.num_patches, config.feature_dim, generator=gen, device=device).to(dtype)
        _sync(device)
        began = time.perf_counter()
        memory.update(frame, float(index))
        _sync(device)
        update_s.append(time.perf_counter() - began)
        if (index + 1) % readout_every == 0:
            began = time.perf_counter()
            memory.readout()
            _sync(device)
            readout_s.append(time.perf_counter() - began)
    update_ms = np.array(update_s) * 1e3
    snapshot = memory.readout()
    return {
        "frames": frames,
        "dtype": args.dtype,
        "device": str(device),
        "kind": config.kind,
        "update_ms_p50": round(float(np.percentile(update_ms, 50)), 3),
        "update_ms_p99": round(float(np.percentile(update_ms, 99)), 3),
        "update_ms_mean": round(float(update_ms.mean()), 3),
        "readout_ms_p50": round(float(np.percentile(np.array(readout_s) * 1e3, 50)), 3),
        "state_bytes": memory.state_bytes(),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "tokens": snapshot.num_tokens,
        "torch_threads": torch.get_num_threads(),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 1000, 10000], help="stream lengths N")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--readouts", type=int, default=50, help="readouts timed per run (spread over the stream)")
    parser.add_argument("--store-dir", default=None, help="directory for --retrieval-source exact")
    parser.add_argument("--in-process", action="store_true", help="run every N in this process (no fresh RSS)")
    add_memory_arguments(parser)
    args = parser.parse_args()
    for frames in args.frames:
        if args.in_process or len(args.frames) == 1:
            print(json.dumps(run(frames, args)), flush=True)
            continue
        child = [sys.executable, __file__, *_without_frames(sys.argv[1:]), "--frames", str(frames)]
        subprocess.run(child, check=True)


def _without_frames(argv: list[str]) -> list[str]:
    """Command-line arguments minus `--frames ...` (the child gets one N)."""
    out, skipping = [], False
    for arg in argv:
        if arg == "--frames":
            skipping = True
            continue
        if skipping and not arg.startswith("--"):
            continue
        skipping = False
        out.append(arg)
    return out


if __name__ == "__main__":
    main()
