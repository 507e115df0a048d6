"""State buffers of the memories: torch tensors on the features' device, numpy arrays for small bookkeeping."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

State = dict[str, "Tensor | np.ndarray"]
"""A memory's state, by name: feature-sized buffers are tensors, per-frame and per-cluster scalars numpy arrays."""


def copy_into(buffer: Tensor | np.ndarray, value: Tensor) -> None:
    """Copy a loaded tensor into a state buffer, torch or numpy, checking the shape."""
    if tuple(buffer.shape) != tuple(value.shape):
        raise ValueError(f"shape {tuple(value.shape)} does not fit a buffer of shape {tuple(buffer.shape)}")
    if isinstance(buffer, np.ndarray):
        buffer[...] = value.cpu().numpy()
    else:
        buffer.copy_(value)


def as_tensor(buffer: Tensor | np.ndarray) -> Tensor:
    """A CPU tensor with the buffer's values, for saving."""
    if isinstance(buffer, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(buffer)).clone()
    return buffer.detach().contiguous().cpu().clone()


def nbytes(state: State) -> int:
    """Bytes held by the buffers of a state."""
    return sum(b.nbytes if isinstance(b, np.ndarray) else b.numel() * b.element_size() for b in state.values())


def shift_rows_left(buffer: Tensor | np.ndarray, start: int, stop: int) -> None:
    """Move rows `start+1 .. stop` of a buffer to `start .. stop-1` (closing the gap left by row `start`)."""
    source = buffer[start + 1 : stop + 1]
    buffer[start:stop] = source.clone() if isinstance(source, Tensor) else source.copy()
