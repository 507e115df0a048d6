"""The Flash-VStream model on Hugging Face transformers: config, modules, loading, answering, tiny models.

>>> from vstream.model import VStream
>>> vs = VStream.from_pretrained("IVGSZ/Flash-VStream-7b", dtype=torch.bfloat16, device="cuda")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vstream._lazy import lazy_exports

_EXPORTS = {
    "Answer": "vstream.model.assistant",
    "AnswerStream": "vstream.model.assistant",
    "Conversation": "vstream.model.prompts",
    "GenerationOptions": "vstream.model.generation",
    "VStream": "vstream.model.assistant",
    "VStreamConfig": "vstream.model.configuration_vstream",
    "VStreamLlamaForCausalLM": "vstream.model.modeling_vstream",
    "VisionTower": "vstream.model.vision",
    "describe_checkpoint": "vstream.model.summary",
    "make_tiny_model": "vstream.model.tiny",
}
__all__ = [
    "Answer",
    "AnswerStream",
    "Conversation",
    "GenerationOptions",
    "VStream",
    "VStreamConfig",
    "VStreamLlamaForCausalLM",
    "VisionTower",
    "describe_checkpoint",
    "make_tiny_model",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from vstream.model.assistant import Answer, AnswerStream, VStream
    from vstream.model.configuration_vstream import VStreamConfig
    from vstream.model.generation import GenerationOptions
    from vstream.model.modeling_vstream import VStreamLlamaForCausalLM
    from vstream.model.prompts import Conversation
    from vstream.model.summary import describe_checkpoint
    from vstream.model.tiny import make_tiny_model
    from vstream.model.vision import VisionTower
