"""Time to first token and per-frame memory update against stream length, through the real engine.

    python benchmarks/stream_latency.py                                # tiny random model, 1 min to 3 h at 1 fps
    python benchmarks/stream_latency.py --model IVGSZ/Flash-VStream-7b --device cuda --dtype bfloat16

Streams random frame features of the model's size (as from its vision tower) at 1 fps, as fast as
possible, through a StreamSession (frame handler, memory, question handler). At each checkpoint (stream
minutes) it asks a question from the memory as it stands and prints one JSON line:
`stream_minutes`, `frames`, `ttft_s`, `total_s`, `ttft_followup_s` (a second question about the same memory,
whose prompt start and memory tokens are already in the LLM's KV cache), `update_ms_p50`/`_p95` (memory update
per frame, over the last window of frames), `memory_tokens`, `state_bytes`, `rss_mb`. All of them should stay
flat as the stream grows.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator

import psutil
import torch

from vstream.cli.model_args import DTYPES
from vstream.model import GenerationOptions, VStream
from vstream.stream import StreamSession
from vstream.stream.sources import StreamFrame, VideoSource


class RandomFeatures(VideoSource):
    """An endless stream of random frame features `(P, D)` at 1 fps."""

    def __init__(self, patches: int, dim: int, frames: int, device: str) -> None:
        self.name, self.patches, self.dim, self.count, self.device = "random-features", patches, dim, frames, device

    def frames(self) -> Iterator[StreamFrame]:
        gen = torch.Generator(device=self.device).manual_seed(0)
        for i in range(self.count):
            features = torch.randn(self.patches, self.dim, generator=gen, device=self.device)
            yield StreamFrame(time=float(i), features=features, index=i)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-random", help="checkpoint folder or Hub id (default: tiny-random)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=DTYPES, default="auto")
    parser.add_argument(
        "--minutes", type=float, nargs="+", default=[1, 10, 30, 60, 120, 180], help="stream lengths at which to ask"
    )
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args()
    model = VStream.from_pretrained(args.model, dtype=args.dtype, device=args.device)
    memory_config = model.memory_config()
    frames = int(max(args.minutes) * 60)
    source = RandomFeatures(memory_config.num_patches, memory_config.feature_dim, frames, args.device)
    session = StreamSession(model, source, speed=0, batch_size=1, max_pending=4)
    options = GenerationOptions(max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens)
    process = psutil.Process()
    began = time.monotonic()
    schedule = [(m * 60 - 1, f"What happened in the first {m:g} minutes?") for m in args.minutes]
    for timed, minutes in zip(session.ask_at(schedule, options=options), args.minutes, strict=True):
        followup = session.ask("And what happened last?", options=options)  # the same snapshot: a cached prefix
        recent = list(session.metrics.frames)[-500:]
        updates = sorted(r.update_s * 1e3 for r in recent)
        print(
            json.dumps(
                {
                    "stream_minutes": minutes,
                    "frames": timed.frames_seen,
                    "ttft_s": round(timed.answer.ttft_s, 4),
                    "total_s": round(timed.answer.total_s, 4),
                    "ttft_followup_s": round(followup.ttft_s, 4),
                    "update_ms_p50": round(updates[len(updates) // 2], 3),
                    "update_ms_p95": round(updates[int(len(updates) * 0.95)], 3),
                    "memory_tokens": timed.answer.memory_tokens,
                    "state_bytes": session.memory.state_bytes(),
                    "rss_mb": round(process.memory_info().rss / 2**20, 1),
                    "wall_s": round(time.monotonic() - began, 1),
                    "model": str(args.model),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
