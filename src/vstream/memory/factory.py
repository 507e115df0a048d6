"""Build a memory from its config, or load one from a saved state file."""

from __future__ import annotations

import os

import torch

from vstream.errors import StateFileError
from vstream.memory.attention import SemanticAttention
from vstream.memory.base import BaseMemory, read_state_file
from vstream.memory.baselines import SimilarityMemory, SlidingWindowMemory, UniformMemory
from vstream.memory.config import MemoryConfig
from vstream.memory.star_memory import WEIGHTS_PREFIX, STARMemory

_BASELINES = {
    "uniform": UniformMemory,
    "sliding": SlidingWindowMemory,
    "recent": SlidingWindowMemory,
    "drop": SimilarityMemory,
    "merge": SimilarityMemory,
}


def build_memory(
    config: MemoryConfig | None = None,
    attention: SemanticAttention | None = None,
    *,
    device: torch.device | str | None = None,
    store_dir: str | os.PathLike | None = None,
) -> BaseMemory:
    """A new, empty memory of the kind `config.kind` names (default: the released model's STAR memory).

    >>> memory = build_memory(MemoryConfig(kind="sliding", num_frames=4))
    >>> memory.update(torch.randn(6, 256, 1024), [0, 1, 2, 3, 4, 5])
    >>> [item.time_start for item in memory.readout().items]
    [2.0, 3.0, 4.0, 5.0]
    """
    config = config or MemoryConfig()
    if config.kind == "star":
        return STARMemory(config, attention, device=device, store_dir=store_dir)
    return _BASELINES[config.kind](config, device=device)


def load_memory(
    path: str | os.PathLike,
    attention: SemanticAttention | None = None,
    *,
    device: torch.device | str | None = None,
    store_dir: str | os.PathLike | None = None,
) -> BaseMemory:
    """Resume a memory saved with `memory.save(path)`: the same readouts, and the same results after more updates.

    Args:
        attention: the semantic-attention weights; default the ones saved in the file. Passing weights
            that differ from the saved ones is an error.
        store_dir: for `retrieval_source="exact"`, default the directory recorded in the file.
    """
    header, tensors = read_state_file(path)
    config = MemoryConfig.from_dict(header["config"])
    if header["kind"] != config.kind:
        raise StateFileError(f"{path}: header says kind {header['kind']!r} but its config says {config.kind!r}")
    if attention is None and config.uses("abstract"):
        attention = SemanticAttention.from_state_dict(tensors, prefix=WEIGHTS_PREFIX)
    if store_dir is None and config.uses("retrieved") and config.retrieval_source == "exact":
        store_dir = header["counters"]["store"].get("directory")
    memory = build_memory(config, attention, device=device, store_dir=store_dir)
    memory._load_state(path, header, tensors)
    return memory
