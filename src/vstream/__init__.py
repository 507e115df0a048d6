"""vstream: Flash-VStream, a video-language model with a bounded STAR memory for live video streams.

>>> import vstream
>>> memory = vstream.build_memory(vstream.MemoryConfig(), vstream.SemanticAttention.random())
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from vstream._lazy import lazy_exports

__version__ = "0.1.0"

# DeepSpeed, which transformers imports whenever it is installed, tells stdout that a machine without a GPU has
# none; that line would land in the middle of vstream's own output (answers, JSON lines). Only it is held back.
logging.getLogger("DeepSpeed").addFilter(lambda record: "Setting accelerator to CPU" not in record.getMessage())

_EXPORTS = {
    "ConfigError": "vstream.errors",
    "MemoryInputError": "vstream.errors",
    "StateFileError": "vstream.errors",
    "VStreamError": "vstream.errors",
    "MemoryConfig": "vstream.memory.config",
    "MemoryItem": "vstream.memory.snapshot",
    "MemorySnapshot": "vstream.memory.snapshot",
    "SemanticAttention": "vstream.memory.attention",
    "build_memory": "vstream.memory.factory",
    "load_memory": "vstream.memory.factory",
    "offline_readout": "vstream.memory.offline",
}
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
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from vstream.errors import ConfigError, MemoryInputError, StateFileError, VStreamError
    from vstream.memory.attention import SemanticAttention
    from vstream.memory.config import MemoryConfig
    from vstream.memory.factory import build_memory, load_memory
    from vstream.memory.offline import offline_readout
    from vstream.memory.snapshot import MemoryItem, MemorySnapshot
