"""vstream: Flash-VStream, a video-language model with a bounded STAR memory for live video streams."""

from __future__ import annotations

__version__ = "0.1.0"

from vstream.errors import ConfigError, MemoryInputError, StateFileError, VStreamError
from vstream.memory import (
    MemoryConfig,
    MemoryItem,
    MemorySnapshot,
    SemanticAttention,
    build_memory,
    load_memory,
    offline_readout,
)

__all__ = [
    "ConfigError",
    "MemoryConfig",
    "MemoryInputError",
    "MemoryItem",
    "MemorySnapshot",
    "SemanticAttention",
    "StateFileError",
    "VStreamError",
    "__version__",
    "build_memory",
    "load_memory",
    "offline_readout",
]
