"""The vision tower (STAR.md §4): CLIP preprocessing and encoding into per-frame patch features `(T, P, D)`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from transformers import CLIPVisionConfig, CLIPVisionModel

from vstream.errors import CheckpointError, ConfigError
from vstream.model.compat import clip_image_processor_class, dtype_kwargs, progress_bars
from vstream.model.configuration_vstream import SELECT_FEATURES

Frame = np.ndarray | Image.Image | Tensor
"""An RGB frame: `(H, W, 3)` uint8 array or tensor, or a PIL image."""


class VisionTower:
    """A CLIP vision model and its image processor, giving the hidden states of one layer per frame.

    Args:
        model: the CLIP vision model; processor: its image processor (resize, center crop, normalise).
        select_layer: which hidden state (-2: the penultimate layer, as the released model).
        select_feature: `patch` (drop the CLS token) or `cls_patch` (keep it).
    """

    def __init__(
        self, model: CLIPVisionModel, processor: Any, select_layer: int = -2, select_feature: str = "patch"
    ) -> None:
        if select_feature not in SELECT_FEATURES:
            raise ConfigError(
                f"mm_vision_select_feature must be one of {', '.join(SELECT_FEATURES)}; got {select_feature!r}"
            )
        layers = model.config.num_hidden_layers
        if not -(layers + 1) <= select_layer <= layers:
            raise ConfigError(f"mm_vision_select_layer={select_layer} is outside the vision tower's {layers} layers")
        self.model, self.processor = model.eval(), processor
        self.select_layer, self.select_feature = select_layer, select_feature

    @classmethod
    def load(
        cls,
        name_or_path: str | os.PathLike,
        *,
        select_layer: int = -2,
        select_feature: str = "patch",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        progress: bool = True,
    ) -> VisionTower:
        """Load a CLIP vision tower from a hub id or a local folder (`progress`: show transformers' progress bar)."""
        try:
            with progress_bars(progress):
                model = CLIPVisionModel.from_pretrained(str(name_or_path), **dtype_kwargs(dtype))
            processor = clip_image_processor_class().from_pretrained(str(name_or_path))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot load the vision tower {str(name_or_path)!r}: {exc}") from exc
        if device is not None:
            model = model.to(device)
        return cls(model, processor, select_layer, select_feature)

    @property
    def hidden_size(self) -> int:
        """D, the width of each patch feature."""
        return self.model.config.hidden_size

    @property
    def num_patches(self) -> int:
        """P, the tokens per frame (a square grid of patches, plus the CLS token with `cls_patch`)."""
        config: CLIPVisionConfig = self.model.config
        return (config.image_size // config.patch_size) ** 2 + (self.select_feature == "cls_patch")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def preprocess(self, frames: Sequence[Frame]) -> Tensor:
        """CLIP preprocessing (resize the shortest side, center crop, normalise): `(T, 3, S, S)` pixel values."""
        images = [_as_image_array(frame) for frame in frames]
        return self.processor(images=images, return_tensors="pt")["pixel_values"]

    @torch.no_grad()
    def encode(self, frames: Sequence[Frame] | Tensor, batch_size: int = 32) -> Tensor:
        """Patch features `(T, P, D)` of RGB frames, or of already preprocessed pixel values `(T, 3, S, S)`."""
        pixels = frames if isinstance(frames, Tensor) and frames.dim() == 4 and frames.shape[1] == 3 else None
        if pixels is None:
            pixels = self.preprocess(list(frames))
        outputs = []
        for start in range(0, len(pixels), batch_size):
            batch = pixels[start : start + batch_size].to(self.device, self.dtype)
            hidden = self.model(pixel_values=batch, output_hidden_states=True).hidden_states[self.select_layer]
            outputs.append(hidden[:, 1:] if self.select_feature == "patch" else hidden)
        return torch.cat(outputs)


def resolve_vision_tower(name: str | None, checkpoint_dir: Path | None, override: str | os.PathLike | None) -> str:
    """Where to load the vision tower from: `override`, else `mm_vision_tower` (a hub id, a local folder, or a
    folder relative to the checkpoint). A local path that does not exist, as in configs written on the
    authors' machines (`./ckpt/clip-vit-large-patch14`), falls back to the `openai/` hub id of the same name.
    """
    if override is not None:
        return str(override)
    if not name:
        raise ConfigError("the config has no mm_vision_tower: pass vision_tower=<hub id or folder of a CLIP model>")
    if Path(name).is_dir():
        return name
    if checkpoint_dir is not None and (checkpoint_dir / name).is_dir():
        return str(checkpoint_dir / name)
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_local and Path(name).name.startswith("clip-vit"):
        return f"openai/{Path(name).name}"
    return name


def _as_image_array(frame: Frame) -> np.ndarray | Image.Image:
    if isinstance(frame, Image.Image):
        return frame.convert("RGB")
    array = frame.detach().cpu().numpy() if isinstance(frame, Tensor) else np.asarray(frame)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ConfigError(f"a frame must be an (H, W, 3) RGB array or a PIL image; got shape {array.shape}")
    return array.astype(np.uint8, copy=False)
