"""Can vstream-smol's reader learn `earlier` or `count` in its step budget when it sees the world perfectly?

    python benchmarks/smol_ideal_reader.py --kind earlier --steps 4200     # 6 min here, one JSON line per check
    python benchmarks/smol_ideal_reader.py --kind earlier --steps 12600    # three times the steps, 17 min

The shipped model's memory holds the scene before the current one for 99 % of the five-minute `earlier` questions,
yet it answers half of them. This separates the reader from what it reads: every frame's features are its
attributes exactly (background, colour and shape one-hot, plus a little noise), clustered by the same temporal
memory (16 weighted k-means centroids in time order, one token each) with the newest frame as the spatial memory.
A reader shaped like smol's language model (the projector, a 4-layer LLaMA of width 128 with 8 heads, a linear
read-out of the answer over the world's labels) learns the one question type from a new stream at every sample,
so it can never learn its training streams by heart, in batches of 4 with smol's learning rate and schedule. Its
share of 400 other streams answered right is what this reader learns in that many steps from perfect perception:
a trained model with the same reader and budget, whose eyes are not perfect and which learns other types beside,
should not be expected to do better.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from torch import Tensor, nn
from transformers import LlamaConfig, LlamaModel

from vstream.memory import MemoryConfig, offline_readout
from vstream.synth.questions import MAX_COUNT, make_questions
from vstream.synth.world import COLOURS, NOTHING, SHAPES, WORLD_VERSIONS, plan_stream
from vstream.train.vision_pretrain import ATTRIBUTES

GROUPS = tuple(ATTRIBUTES[name] for name in ("background", "colour", "shape"))
"""The attributes a frame is seen as, each a one-hot group (colour and shape have `none`: nothing on screen)."""
FEATURES = [value for group in GROUPS for value in group]
LABELS = [NOTHING, *(f"{c} {s}" for c in COLOURS for s in SHAPES), *(str(n) for n in range(1, MAX_COUNT + 1))]


def frame_features(background: str, colour: str | None, shape: str | None, noise: float, rng) -> np.ndarray:
    """A frame seen perfectly: its background, colour and shape one-hot, plus Gaussian noise."""
    v = np.zeros(len(FEATURES), np.float32)
    offset = 0
    for group, value in zip(GROUPS, (background, colour or "none", shape or "none"), strict=True):
        v[offset + group.index(value)] = 1
        offset += len(group)
    return v + rng.normal(0, noise, v.shape).astype(np.float32)


def ideal_memory() -> MemoryConfig:
    """smol's temporal memory (16 centroids in time order) and spatial memory (the newest frame), one token a frame."""
    return MemoryConfig(
        num_patches=1,
        feature_dim=len(FEATURES),
        temporal_clusters=16,
        temporal_pool=1,
        spatial_frames=1,
        spatial_pool=1,
        memories=("temporal", "spatial"),
        abstract_slots=1,
        retrieved_frames=1,
    )


def sample(kind: str, rng: np.random.Generator, memory: MemoryConfig, minutes: float, noise: float, version: str):
    """One question of `kind` (drawn as the held-out worlds draw it) about a new stream: the memory tokens `(n, F)`
    at its moment and the answer's index."""
    while True:
        plan = plan_stream(int(rng.integers(1 << 30)), 0, round(minutes * 60), version)
        asked = [q for q in make_questions(plan, int(rng.integers(1 << 30)), per_type=1) if q.type == kind]
        if asked:
            question = asked[0]
            break
    frames = []
    for t in range(question.at + 1):
        scene = plan.scene_at(t)
        state = scene.state_at(t)
        frames.append(frame_features(scene.background, state.colour, state.shape, noise, rng))
    tokens = offline_readout(torch.from_numpy(np.stack(frames))[:, None, :], None, memory).tokens
    return tokens, LABELS.index(question.answer)


class Reader(nn.Module):
    """smol's projector and language model, with a linear read-out of one answer after a learned question."""

    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(len(FEATURES), width), nn.GELU(), nn.Linear(width, width))
        self.question = nn.Parameter(torch.randn(3, width) * 0.02)
        config = LlamaConfig(
            hidden_size=width,
            intermediate_size=4 * width,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            vocab_size=8,
            max_position_embeddings=64,
            rms_norm_eps=1e-6,
        )
        self.llm = LlamaModel(config)
        self.answer = nn.Linear(width, len(LABELS))

    def forward(self, memories: list[Tensor]) -> Tensor:
        """Answer logits for a batch of memories (left-padded, each followed by the question)."""
        n = max(m.shape[0] for m in memories)
        width = self.question.shape[1]
        embeds = torch.zeros(len(memories), n + len(self.question), width)
        mask = torch.zeros(len(memories), n + len(self.question), dtype=torch.long)
        for i, m in enumerate(memories):
            embeds[i, n - m.shape[0] : n] = self.project(m)
            embeds[i, n:] = self.question
            mask[i, n - m.shape[0] :] = 1
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        hidden = self.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).last_hidden_state
        return self.answer(hidden[:, -1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("earlier", "count", "now", "beginning"), default="earlier")
    parser.add_argument("--steps", type=int, default=4200, help="optimizer steps (smol's language stage: 4,200)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--noise", type=float, default=0.1, help="std of the noise on each feature")
    parser.add_argument("--minutes", type=float, default=4.0, help="stream length (smol trains on 4 minutes)")
    parser.add_argument("--world-version", choices=WORLD_VERSIONS, default=WORLD_VERSIONS[-1])
    parser.add_argument("--checks", type=int, default=6, help="evaluations during training")
    parser.add_argument("--held-out", type=int, default=400, help="questions evaluated at each check")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    memory = ideal_memory()

    def draw(rng: np.random.Generator):
        return sample(args.kind, rng, memory, args.minutes, args.noise, args.world_version)

    model = Reader(args.width, args.layers, args.heads)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    warmup = max(1, round(0.03 * args.steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(i, args.steps) / args.steps)),
    )
    rng, held_rng = np.random.default_rng(args.seed), np.random.default_rng(1_000_000 + args.seed)
    held_out = [draw(held_rng) for _ in range(args.held_out)]
    start, losses = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        batch = [draw(rng) for _ in range(args.batch)]
        loss = nn.functional.cross_entropy(model([m for m, _ in batch]), torch.tensor([a for _, a in batch]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % max(1, args.steps // args.checks) == 0 or step == args.steps:
            model.eval()
            with torch.no_grad():
                right = sum(int(model([m]).argmax(-1)) == a for m, a in held_out)
            model.train()
            line = {
                "kind": args.kind,
                "step": step,
                "steps": args.steps,
                "samples": step * args.batch,
                "loss": round(float(np.mean(losses[-200:])), 3),
                "held_out": round(right / len(held_out), 3),
                "world": args.world_version,
                "seconds": round(time.perf_counter() - start),
            }
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
