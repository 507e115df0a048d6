"""What differs between the transformers releases we support (4.50 and later, 5.x included), in one place."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import transformers
from torch import nn
from transformers.utils import logging as hf_logging

_VERSION = tuple(int(x) for x in transformers.__version__.split(".")[:2])


def dtype_kwargs(dtype: torch.dtype | None) -> dict[str, Any]:
    """`dtype=` for `from_pretrained` in transformers ≥ 4.56, `torch_dtype=` before."""
    if dtype is None:
        return {}
    return {"dtype": dtype} if _VERSION >= (4, 56) else {"torch_dtype": dtype}


def forward_keywords(model: nn.Module) -> tuple[str, dict[str, Any]]:
    """How `forward` takes the KV cache (`cache` in transformers ≥ 5.2x, else `past_key_values`), and the
    keywords that make it return only the last position's logits when it can. Look it up once per answer."""
    parameters = inspect.signature(model.forward).parameters
    cache = "cache" if "cache" in parameters else "past_key_values"
    return cache, ({"logits_to_keep": 1} if "logits_to_keep" in parameters else {})


def output_cache(output: Any) -> Any:
    """The KV cache a forward pass returned, whatever its name."""
    cache = output.get("cache") if hasattr(output, "get") else None
    return cache if cache is not None else output.get("past_key_values")


def clip_image_processor_class() -> type:
    """CLIP's image processor without torchvision: `CLIPImageProcessorPil` in transformers 5, else the plain one."""
    try:
        from transformers import CLIPImageProcessorPil

        return CLIPImageProcessorPil
    except ImportError:
        from transformers import CLIPImageProcessor

        return CLIPImageProcessor


@contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Show or hide transformers' progress bars ("Loading weights", "Writing model shards") for a while."""
    before = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if before else hf_logging.disable_progress_bar)()
