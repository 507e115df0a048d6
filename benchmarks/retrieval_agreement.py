"""How often the bounded retrieval store returns the same key frames as an exhaustive search.

    python benchmarks/retrieval_agreement.py                       # released sizes, 1000 frames per stream
    python benchmarks/retrieval_agreement.py --frames 3000 --retrieval-candidates 100

Streams the same synthetic features into two STAR memories that differ only in `retrieval_source`
(`candidates`, bounded in RAM, against `exact`, every past frame on disk) and compares their retrieved
frames at evenly spaced moments. Prints one JSON object per kind of stream:

- `scenes`: cuts between distinct scenes of 10 to 100 frames, with noise inside each scene;
- `drift`: a slow random walk (continuous camera motion, no cuts);
- `random`: independent frames (the hardest case: nothing to cluster).

Keys: `stream`, `frames`, `checkpoints`, `same_set` (share of moments where both return the same frames)
and `same_frame` (share of individual retrieved frames that agree), `candidate_capacity`.
"""

from __future__ import annotations

import argparse
import json
import tempfile

import numpy as np
import torch

from vstream.cli.memory_args import add_memory_arguments, memory_config_from_args
from vstream.memory import MemoryConfig, SemanticAttention, build_memory


def stream(kind: str, frames: int, config: MemoryConfig, seed: int) -> torch.Tensor:
    """`(frames, P, D)` synthetic features of one kind."""
    gen = torch.Generator().manual_seed(seed)
    shape = (config.num_patches, config.feature_dim)
    if kind == "random":
        return torch.randn(frames, *shape, generator=gen)
    if kind == "drift":
        steps = 0.1 * torch.randn(frames, *shape, generator=gen)
        return torch.randn(*shape, generator=gen) + steps.cumsum(dim=0)
    rng = np.random.default_rng(seed)
    out, total = [], 0
    while total < frames:
        length = int(rng.integers(10, 101))
        base = torch.randn(*shape, generator=gen)
        out.append(base + 0.3 * torch.randn(length, *shape, generator=gen))
        total += length
    return torch.cat(out)[:frames]


def compare(kind: str, args: argparse.Namespace) -> dict:
    config = memory_config_from_args(args).replace(retrieval_source="candidates")
    attention = SemanticAttention.random(config.feature_dim, config.abstract_hidden_dim)
    features = stream(kind, args.frames, config, args.seed)
    every = max(args.frames // args.checkpoints, 1)
    same_set = same_frame = moments = picked = 0
    with tempfile.TemporaryDirectory() as store:
        bounded = build_memory(config, attention)
        exact = build_memory(config.replace(retrieval_source="exact"), attention, store_dir=store)
        for t, frame in enumerate(features):
            bounded.update(frame, float(t))
            exact.update(frame, float(t))
            if (t + 1) % every:
                continue
            a = [i.time_start for i in bounded.readout().items_of("retrieved")]
            b = [i.time_start for i in exact.readout().items_of("retrieved")]
            moments += 1
            same_set += a == b
            same_frame += len(set(a) & set(b))
            picked += len(b)
    return {
        "stream": kind,
        "frames": args.frames,
        "checkpoints": moments,
        "same_set": round(same_set / moments, 3),
        "same_frame": round(same_frame / max(picked, 1), 3),
        "candidate_capacity": config.candidate_capacity,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--checkpoints", type=int, default=50, help="moments at which the two are compared")
    parser.add_argument("--streams", nargs="+", default=["scenes", "drift", "random"])
    parser.add_argument("--seed", type=int, default=0)
    add_memory_arguments(parser)
    args = parser.parse_args()
    for kind in args.streams:
        print(json.dumps(compare(kind, args)), flush=True)


if __name__ == "__main__":
    main()
