"""The STAR memory of Flash-VStream and its baselines: bounded state, streaming updates, consistent readouts.

>>> from vstream.memory import MemoryConfig, SemanticAttention, build_memory
>>> memory = build_memory(MemoryConfig(), SemanticAttention.random())
>>> memory.update(torch.randn(8, 256, 1024), timestamps=range(8))  # frames (n, P, D) at 1 fps
>>> memory.readout().token_counts()
{'abstract': 7, 'temporal': 112, 'retrieved': 192, 'spatial': 64}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vstream._lazy import lazy_exports

_EXPORTS = {
    "MEMORY_NAMES": "vstream.memory.config",
    "MemoryConfig": "vstream.memory.config",
    "BaseMemory": "vstream.memory.base",
    "MemoryItem": "vstream.memory.snapshot",
    "MemorySnapshot": "vstream.memory.snapshot",
    "SemanticAttention": "vstream.memory.attention",
    "build_memory": "vstream.memory.factory",
    "load_memory": "vstream.memory.factory",
    "offline_readout": "vstream.memory.offline",
    "pool": "vstream.memory.star",
    "recent_config": "vstream.memory.config",
}
__all__ = [
    "MEMORY_NAMES",
    "BaseMemory",
    "MemoryConfig",
    "MemoryItem",
    "MemorySnapshot",
    "SemanticAttention",
    "build_memory",
    "load_memory",
    "offline_readout",
    "pool",
    "recent_config",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from vstream.memory.attention import SemanticAttention
    from vstream.memory.base import BaseMemory
    from vstream.memory.config import MEMORY_NAMES, MemoryConfig, recent_config
    from vstream.memory.factory import build_memory, load_memory
    from vstream.memory.offline import offline_readout
    from vstream.memory.snapshot import MemoryItem, MemorySnapshot
    from vstream.memory.star import pool
