"""How often the bounded retrieval store returns the same key frames as an exhaustive search.

    python benchmarks/retrieval_agreement.py                       # released sizes, 1000 frames per stream
    python benchmarks/retrieval_agreement.py --frames 3000 --retrieval-candidates 100

Streams the same synthetic features into two STAR memories that differ only in `retrieval_source`
(`candidates`, bounded in RAM, against `exact`, every past frame on disk) and compares their retrieved
frames at evenly spaced moments. Prints one JSON object per kind of stream:

- `scenes`: cuts between distinct scenes of 10 to 100 frames, with noise inside each scene;
- `drift`: a slow random walk (continuous camera motion, no cuts);
- `random`: independent frames (the hardest case: nothing to cluster).

Keys: `stream`, `frames`, `checkpoints`, `same_set` (share of moments where both return the same frames),
`same_frame` (share of individual retrieved frames that agree), `distance_ratio` (mean over moments of the
summed distance from each heaviest centroid to its nearest retrieved frame, bounded over exact: 1.0 means
as near as the exhaustive search), `candidate_capacity`.
"""

from __future__ import annotations

import argparse
import json
import tempfile

import numpy as np
import torch

from vstream.cli.memory_args import add_memory_arguments, memory_config_from_args
from vstream.memory import MemoryConfig, SemanticAttention, build_memory, pool


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
    features = stream(kind, args.frames, config, args.stream_seed)
    every = max(args.frames // args.checkpoints, 1)
    same_set = same_frame = moments = picked = 0
    ratios = []
    with tempfile.TemporaryDirectory() as store:
        bounded = build_memory(config, attention)
        exact = build_memory(config.replace(retrieval_source="exact"), attention, store_dir=store)
        for t, frame in enumerate(features):
            bounded.update(frame, float(t))
            exact.update(frame, float(t))
            if (t + 1) % every:
                continue
            ours, best = bounded.readout(), exact.readout()
            a = [i.time_start for i in ours.items_of("retrieved")]
            b = [i.time_start for i in best.items_of("retrieved")]
            moments += 1
            same_set += a == b
            same_frame += len(set(a) & set(b))
            picked += len(b)
            ratios.append(_distance(ours, a, features, config) / max(_distance(best, b, features, config), 1e-12))
    return {
        "stream": kind,
        "frames": args.frames,
        "checkpoints": moments,
        "same_set": round(same_set / moments, 3),
        "same_frame": round(same_frame / max(picked, 1), 3),
        "distance_ratio": round(float(np.mean(ratios)), 4),
        "candidate_capacity": config.candidate_capacity,
    }


def _distance(snapshot, times: list[float], features: torch.Tensor, config: MemoryConfig) -> float:
    """Summed distance from each heaviest centroid to the nearest of the retrieved frames (in key space)."""
    temporal = sorted(snapshot.items_of("temporal"), key=lambda item: (-item.weight, item.time_mean))
    centroids = torch.stack([snapshot.tokens[i.token_start : i.token_end].flatten() for i in temporal])
    keys = pool(features[[int(t) for t in times]], config.temporal_pool).flatten(1)
    top = centroids[: config.retrieved_frames].float()
    return float(torch.cdist(top, keys.float()).min(dim=1).values.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--checkpoints", type=int, default=50, help="moments at which the two are compared")
    parser.add_argument("--streams", nargs="+", default=["scenes", "drift", "random"])
    parser.add_argument("--stream-seed", type=int, default=0, help="seed of the synthetic streams")
    add_memory_arguments(parser)
    args = parser.parse_args()
    for kind in args.streams:
        print(json.dumps(compare(kind, args)), flush=True)


if __name__ == "__main__":
    main()
