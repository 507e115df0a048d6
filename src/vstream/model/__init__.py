"""The Flash-VStream model on Hugging Face transformers: config, modules, processor, engine, loading, tiny models.

>>> from vstream.model import VStream
>>> vs = VStream.from_pretrained("IVGSZ/Flash-VStream-7b", dtype=torch.bfloat16, device="cuda")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vstream._lazy import lazy_exports

_EXPORTS = {
    "Answer": "vstream.model.answer",
    "AnswerStream": "vstream.model.answer",
    "Conversation": "vstream.model.prompts",
    "Engine": "vstream.model.engine",
    "GenerationOptions": "vstream.model.generation",
    "VStream": "vstream.model.assistant",
    "VStreamConfig": "vstream.model.configuration_vstream",
    "VStreamLlamaForCausalLM": "vstream.model.modeling_vstream",
    "VStreamProcessor": "vstream.model.processing_vstream",
    "VisionTower": "vstream.model.vision",
    "describe_checkpoint": "vstream.model.summary",
    "make_tiny_model": "vstream.model.tiny",
    "resolve_device_dtype": "vstream.model.loading",
}
__all__ = [
    "Answer",
    "AnswerStream",
    "Conversation",
    "Engine",
    "GenerationOptions",
    "VStream",
    "VStreamConfig",
    "VStreamLlamaForCausalLM",
    "VStreamProcessor",
    "VisionTower",
    "describe_checkpoint",
    "make_tiny_model",
    "resolve_device_dtype",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from vstream.model.answer import Answer, AnswerStream
    from vstream.model.assistant import VStream
    from vstream.model.configuration_vstream import VStreamConfig
    from vstream.model.engine import Engine
    from vstream.model.generation import GenerationOptions
    from vstream.model.loading import resolve_device_dtype
    from vstream.model.modeling_vstream import VStreamLlamaForCausalLM
    from vstream.model.processing_vstream import VStreamProcessor
    from vstream.model.prompts import Conversation
    from vstream.model.summary import describe_checkpoint
    from vstream.model.tiny import make_tiny_model
    from vstream.model.vision import VisionTower
