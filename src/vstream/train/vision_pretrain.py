"""Teach a small CLIP-architecture vision tower to see the synthetic world (the smol model's eyes).

The released model's CLIP tower was trained on the web; a small one trained here must learn the world's
attributes before any language training can use them. It learns to tell, from its patch features, each frame's
object colour and shape and background (read from the features pooled to 2×2 and to 1×1, the grids of the
temporal and abstract memories) and the corner digit (read from the corner patch at full detail, the grid of
the spatial and retrieved memories). Labels come from the world's own plan, never from a model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from transformers import CLIPVisionModel

from vstream.synth.render import render
from vstream.synth.world import BACKGROUNDS, COLOURS, DIGITS, SHAPES, WORLD_VERSION, plan_stream

log = logging.getLogger(__name__)

ATTRIBUTES = {
    "colour": ("none", *COLOURS),
    "shape": ("none", *SHAPES),
    "background": tuple(BACKGROUNDS),
    "digit": ("none", *DIGITS),
}


def frame_batch(seed: int, count: int, size: int, version: str = WORLD_VERSION) -> tuple[np.ndarray, dict[str, Tensor]]:
    """`count` frames of random streams and moments of world `seed` (of `version`), `(N, size, size, 3)` uint8,
    and their labels."""
    rng = np.random.default_rng(seed)
    images = np.empty((count, size, size, 3), np.uint8)
    labels = {name: torch.empty(count, dtype=torch.long) for name in ATTRIBUTES}
    for i in range(count):
        plan = plan_stream(int(rng.integers(1 << 30)), 0, 300, version)
        t = int(rng.integers(plan.seconds))
        images[i] = render(plan, t, size)
        scene = plan.scene_at(t)
        state = scene.state_at(t)
        values = {
            "colour": state.colour or "none",
            "shape": state.shape or "none",
            "background": scene.background,
            "digit": scene.digit or "none",
        }
        for name, value in values.items():
            labels[name][i] = ATTRIBUTES[name].index(value)
    return images, labels


class AttributeHeads(nn.Module):
    """Linear read-outs of the attributes from pooled patch features (see the module docstring)."""

    def __init__(self, dim: int, grid: int) -> None:
        super().__init__()
        self.grid = grid
        coarse = ("colour", "shape", "background")
        self.by_2x2 = nn.ModuleDict({n: nn.Linear(4 * dim, len(ATTRIBUTES[n])) for n in coarse})
        self.by_1x1 = nn.ModuleDict({n: nn.Linear(dim, len(ATTRIBUTES[n])) for n in coarse})
        self.digit = nn.Linear(dim, len(ATTRIBUTES["digit"]))

    def forward(self, patches: Tensor) -> dict[str, Tensor]:
        """Logits per (attribute, grid) from patch features `(B, g², D)`."""
        b, _, d = patches.shape
        grid = patches.transpose(1, 2).reshape(b, d, self.grid, self.grid)
        pooled2 = nn.functional.adaptive_avg_pool2d(grid, 2).flatten(2).transpose(1, 2).reshape(b, 4 * d)
        pooled1 = patches.mean(dim=1)
        out = {f"{n}@2x2": head(pooled2) for n, head in self.by_2x2.items()}
        out |= {f"{n}@1x1": head(pooled1) for n, head in self.by_1x1.items()}
        out["digit@full"] = self.digit(patches[:, 0])
        return out


@dataclass
class PretrainResult:
    """Held-out accuracy per read-out, steps run and seconds taken."""

    accuracy: dict[str, float]
    steps: int
    seconds: float


def pretrain_vision_tower(
    model: CLIPVisionModel,
    image_mean: tuple[float, ...],
    image_std: tuple[float, ...],
    *,
    select_layer: int = -2,
    seconds: float = 180.0,
    max_steps: int = 100_000,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    seed: int = 0,
    target: float = 0.97,
    version: str = WORLD_VERSION,
) -> PretrainResult:
    """Train `model` on frames of world `version` until `seconds` pass or every held-out read-out reaches `target`
    (checked every 100 steps); the heads are thrown away, the tower keeps what it learned."""
    size = model.config.image_size
    grid = size // model.config.patch_size
    heads = AttributeHeads(model.config.hidden_size, grid)
    params = [*model.parameters(), *heads.parameters()]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.01)
    mean = torch.tensor(image_mean).view(1, 3, 1, 1)
    std = torch.tensor(image_std).view(1, 3, 1, 1)
    noise = torch.Generator().manual_seed(seed)

    def patches(images: np.ndarray, augment: bool) -> Tensor:
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        if augment:  # the codec's small errors
            x = (x + 3.0 * torch.randn(x.shape, generator=noise)).clamp(0, 255)
        x = (x / 255.0 - mean) / std
        hidden = model(pixel_values=x, output_hidden_states=True).hidden_states[select_layer]
        return hidden[:, 1:]  # the patch tokens, as the tower gives them

    test_images, test_labels = frame_batch(seed + 1_000_003, 1024, size, version)
    start, step, accuracy = time.perf_counter(), 0, {}
    model.train()
    while step < max_steps and time.perf_counter() - start < seconds:
        images, labels = frame_batch(seed * 1_000_000 + step, batch_size, size, version)
        logits = heads(patches(images, augment=True))
        loss = sum(nn.functional.cross_entropy(v, labels[k.split("@")[0]]) for k, v in logits.items())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % 100 == 0:
            accuracy = _evaluate(heads, patches, test_images, test_labels)
            log.info("vision pretraining step %d: loss %.3f, %s", step, float(loss.detach()), accuracy)
            if min(accuracy.values()) >= target:
                break
    model.eval()
    accuracy = _evaluate(heads, patches, test_images, test_labels)
    return PretrainResult(accuracy, step, time.perf_counter() - start)


def _evaluate(heads: AttributeHeads, patches, images: np.ndarray, labels: dict[str, Tensor]) -> dict[str, float]:
    with torch.no_grad():
        logits = heads(torch.cat([patches(images[i : i + 256], augment=False) for i in range(0, len(images), 256)]))
    return {k: round(float((v.argmax(-1) == labels[k.split("@")[0]]).float().mean()), 4) for k, v in logits.items()}
