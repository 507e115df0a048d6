"""VStreamConfig: the released checkpoint's `config.json` (model_type "vstream"): LLaMA plus multimodal fields."""

from __future__ import annotations

from typing import Any

from transformers import LlamaConfig

from vstream.errors import ConfigError
from vstream.memory.config import MemoryConfig
from vstream.model.projector import check_projector_type

SELECT_FEATURES = ("patch", "cls_patch")

RELEASED_VISION_TOWER = "openai/clip-vit-large-patch14"

MULTIMODAL_DEFAULTS: dict[str, Any] = {
    "mm_vision_tower": None,  # the released config names RELEASED_VISION_TOWER; no default, so none is guessed
    "mm_hidden_size": 1024,
    "mm_projector_type": "mlp2x_gelu",
    "mm_vision_select_layer": -2,
    "mm_vision_select_feature": "patch",
    "mm_use_im_start_end": False,
    "mm_use_im_patch_token": False,
    "compress_type": "mean",
    "compress_size": 8,
    "compress_long_memory_size": 4,
    "compress_Turing_memory_size": 1,
    "compress_Turing_update_ratio": 0.2,
    "compress_Turing_hidden_dim": 32,
    "video_max_frames": 26,
    "video_long_memory_length": 25,
    "video_Turing_memory_length": 25,
    "video_short_memory_length": 10,
    "video_current_memory_length": 1,
    "video_sample_type": "weighted_kmeans",
}
"""The multimodal fields of the released Flash-VStream-7b config (STAR.md §4), with its values (but the tower's)."""

RETRIEVED_FIELD = "video_retrieved_memory_length"
"""Our own field for N_r, fixed to 3 in the released model (absent from its config)."""


class VStreamConfig(LlamaConfig):
    """Config of a Flash-VStream model: a LlamaConfig plus the fields in `MULTIMODAL_DEFAULTS` and N_r.

    Field names are the released checkpoint's, so its `config.json` loads unmodified; `memory_config()`
    translates them to STAR.md's terms.
    """

    model_type = "vstream"

    def __init__(self, **kwargs: Any) -> None:
        for name, default in MULTIMODAL_DEFAULTS.items():
            setattr(self, name, kwargs.pop(name, default))
        setattr(self, RETRIEVED_FIELD, kwargs.pop(RETRIEVED_FIELD, 3))
        super().__init__(**kwargs)
        self.check()

    def check(self) -> None:
        """Raise a ConfigError for values the model cannot be built with."""
        check_projector_type(self.mm_projector_type, self.mm_hidden_size, self.hidden_size)
        if self.mm_vision_select_feature not in SELECT_FEATURES:
            raise ConfigError(
                f"mm_vision_select_feature must be one of {', '.join(SELECT_FEATURES)}; "
                f"got {self.mm_vision_select_feature!r}"
            )
        if self.mm_use_im_start_end or self.mm_use_im_patch_token:
            raise ConfigError(
                "mm_use_im_start_end / mm_use_im_patch_token are not supported (the released model uses neither)"
            )
        if self.compress_type not in (None, "mean"):
            raise ConfigError(f"compress_type must be 'mean' (average pooling); got {self.compress_type!r}")
        for name in ("mm_hidden_size", "compress_Turing_hidden_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")

    def memory_config(self, num_patches: int = 256, **overrides: Any) -> MemoryConfig:
        """The STAR memory sizes this model was trained with, for frames of `num_patches` patches."""
        values = {"num_patches": num_patches, "retrieved_frames": getattr(self, RETRIEVED_FIELD)}
        values.update(overrides)
        return MemoryConfig.from_checkpoint_config(self.to_dict(), **values)
