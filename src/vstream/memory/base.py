"""BaseMemory: the interface every video memory shares, with input checks, locking and save/load.

A memory takes frame features as they stream in and, at any moment, gives a `MemorySnapshot`. All
state lives in buffers allocated at the first frame, so its size never grows with the stream.
"""

from __future__ import annotations

import json
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from vstream.errors import MemoryInputError, StateFileError
from vstream.memory.buffers import State, as_tensor, copy_into, nbytes
from vstream.memory.config import MemoryConfig
from vstream.memory.snapshot import MemoryPart, MemorySnapshot, assemble_snapshot
from vstream.memory.star import pool

FORMAT = "vstream-memory"
FORMAT_VERSION = 1
WEIGHTS = "weights."
HEADER_KEYS = {"format", "version", "kind", "config", "dtype", "frames_seen", "latest_time", "counters"}
FEATURE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

Timestamps = float | int | Sequence[float] | np.ndarray | Tensor


class BaseMemory(ABC):
    """A bounded memory of a video stream. Thread-safe: updates and readouts never see each other half-done.

    Subclasses implement `_allocate`, `_update`, `_parts`, `_state`, `_counters` and `_restore`. Updates and
    readouts hold one lock, so a reader waits at most for the update in progress (a few milliseconds).
    """

    kind: ClassVar[str]

    def __init__(self, config: MemoryConfig, *, device: torch.device | str | None = None) -> None:
        self.config = config
        self.device = torch.device(device) if device is not None else None
        self.dtype: torch.dtype | None = None
        self.frames_seen = 0
        self.latest_time: float | None = None
        self._lock = threading.RLock()

    # ----------------------------------------------------------------- public interface
    def update(self, features: Tensor, timestamps: Timestamps) -> None:
        """Add one frame `(P, D)` or a chunk `(n, P, D)` of frame features, with stream times in seconds.

        Bad input raises `MemoryInputError` and leaves the memory as it was.
        """
        with self._lock, torch.no_grad():
            features, times = check_frames(self.config, features, timestamps, not_before=self.latest_time)
            if self.dtype is not None:
                features = features.to(self.device, self.dtype)
            elif self.device is not None:
                features = features.to(self.device)
            if features.shape[0] == 0:
                return
            grid = to_store_grid(features, self.config)
            if self.dtype is None:
                self.dtype, self.device = features.dtype, features.device
                self._allocate()
            self._update(grid, times)
            self.frames_seen += len(times)
            self.latest_time = float(times[-1])

    def readout(self) -> MemorySnapshot:
        """The memory's tokens and their provenance, as of the last completed update."""
        with self._lock, torch.no_grad():
            parts = self._parts() if self.frames_seen else []
            return assemble_snapshot(
                parts,
                dtype=self.dtype or torch.float32,
                dim=self.config.feature_dim,
                device=self.device,
                frames_seen=self.frames_seen,
                latest_time=self.latest_time,
            )

    def state_bytes(self) -> int:
        """Bytes held in RAM/VRAM by the memory's state (buffers are allocated at the first frame)."""
        with self._lock:
            return nbytes(self._state()) if self.dtype else 0

    def save(self, path: str | os.PathLike) -> None:
        """Write the whole state to one `.safetensors` file (tensors + a JSON header); atomic."""
        path = Path(path)
        with self._lock:
            state = self._state() if self.dtype is not None else {}  # buffers exist from the first frame on
            tensors = {name: as_tensor(b) for name, b in (state | self._weights()).items()}
            header = {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "kind": self.kind,
                "config": self.config.to_dict(),
                "dtype": str(self.dtype).removeprefix("torch.") if self.dtype else None,
                "frames_seen": self.frames_seen,
                "latest_time": self.latest_time,
                "counters": self._counters(),
            }
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, tmp, metadata={FORMAT: json.dumps(header)})
        os.replace(tmp, path)

    def restore_from(self, path: str | os.PathLike) -> None:
        """Load a state written by `save` into this memory (same kind and config); see `load_memory`.

        Only `readout_order` may differ: it changes how the state is read out, not the state.
        """
        self._load_state(path, *read_state_file(path))

    def _load_state(self, path: str | os.PathLike, header: dict[str, Any], tensors: dict[str, Tensor]) -> None:
        saved = MemoryConfig.from_dict(header["config"]).replace(readout_order=self.config.readout_order)
        if header["kind"] != self.kind or saved != self.config:
            raise StateFileError(f"{path}: saved by a {header['kind']} memory with another config than this one")
        with self._lock:
            if self.frames_seen:
                raise StateFileError(
                    f"cannot restore {path} into a memory that has already seen frames; "
                    "restore into a new memory (or use load_memory)"
                )
            self._check_weights(path, {k: v for k, v in tensors.items() if k.startswith(WEIGHTS)})
            if header["dtype"] is not None:
                device = self.device
                self.dtype, self.device = FEATURE_DTYPES[header["dtype"]], device or torch.device("cpu")
                self._allocate()
                state = self._state()
                expected = {name: tuple(b.shape) for name, b in state.items()}
                found = {name: tuple(t.shape) for name, t in tensors.items() if not name.startswith(WEIGHTS)}
                if expected != found:
                    self.dtype, self.device = None, device  # still a new, empty memory
                    raise StateFileError(f"{path}: tensors {found} do not match this memory's {expected}")
                for name, buffer in state.items():
                    copy_into(buffer, tensors[name])
                self._restore(header["counters"])
            self.frames_seen = int(header["frames_seen"])
            self.latest_time = header["latest_time"]

    # ----------------------------------------------------------------- for subclasses
    @abstractmethod
    def _allocate(self) -> None:
        """Create every state buffer, in `self.dtype` on `self.device`."""

    @abstractmethod
    def _update(self, grid: Tensor, times: np.ndarray) -> None:
        """Take new frames pooled to `config.store_grid` (`(n, g², D)`, float32) and times `(n,)` float64."""

    @abstractmethod
    def _parts(self) -> list[MemoryPart]:
        """The memory's contribution to a readout, in readout order (only called once a frame was seen)."""

    @abstractmethod
    def _state(self) -> State:
        """Every state buffer, by name (tensors and numpy arrays)."""

    @abstractmethod
    def _counters(self) -> dict[str, Any]:
        """Every state scalar, JSON-able."""

    def _weights(self) -> dict[str, Tensor]:
        """Model weights the memory uses (saved beside the state, names starting with `weights.`)."""
        return {}

    def _check_weights(self, path: str | os.PathLike, saved: dict[str, Tensor]) -> None:
        """Refuse a state file written with other weights than this memory's (memories without weights: nothing)."""
        return None

    @abstractmethod
    def _restore(self, counters: dict[str, Any]) -> None:
        """Take back `_counters()`, after the buffers of `_state()` were refilled."""


def check_frames(
    config: MemoryConfig, features: Any, timestamps: Any, *, not_before: float | None = None
) -> tuple[Tensor, np.ndarray]:
    """Frame features as `(n, P, D)` and their times as float64 numpy `(n,)`, or a `MemoryInputError` that says why.

    Times must be finite, must not go backwards, and must not be earlier than `not_before` (the last frame seen).
    """
    if not isinstance(features, Tensor):
        raise MemoryInputError(
            f"features must be a torch.Tensor of shape (P, D) or (n, P, D), got {type(features).__name__}"
        )
    if features.dim() == 2:
        features = features.unsqueeze(0)
    if features.dim() != 3 or tuple(features.shape[1:]) != (config.num_patches, config.feature_dim):
        raise MemoryInputError(
            f"features have shape {tuple(features.shape)}; expected (P, D) or (n, P, D) with P = num_patches = "
            f"{config.num_patches} and D = feature_dim = {config.feature_dim}"
        )
    if features.dtype not in FEATURE_DTYPES.values():
        raise MemoryInputError(f"features have dtype {features.dtype}; use float32, float16 or bfloat16")
    if isinstance(timestamps, Tensor):
        timestamps = timestamps.detach().cpu().numpy()
    try:
        times = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise MemoryInputError(f"timestamps must be numbers in seconds, got {timestamps!r}") from exc
    count = features.shape[0]
    if times.size != count:
        raise MemoryInputError(f"got {count} frames but {times.size} timestamps")
    if not np.isfinite(times).all():
        raise MemoryInputError(f"timestamps must be finite, got {times.tolist()}")
    if (np.diff(times) < 0).any():
        raise MemoryInputError(f"timestamps go backwards within the chunk: {times.tolist()}")
    if count and not_before is not None and times[0] < not_before:
        raise MemoryInputError(
            f"timestamp {times[0]} s is earlier than the last frame's {not_before} s; stream time must not go backwards"
        )
    return features, times


def to_store_grid(features: Tensor, config: MemoryConfig) -> Tensor:
    """Frames pooled in float32 to the grid every memory derives from; refuses NaN and infinite values."""
    grid = pool(features.float(), config.store_grid)
    if not bool(torch.isfinite(grid.sum())):  # any NaN or inf makes the sum non-finite
        raise MemoryInputError("features contain NaN or infinite values; nothing was changed")
    return grid


def read_state_file(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Header and tensors of a saved memory state, with clear errors for anything else."""
    path = Path(path)
    if not path.is_file():
        raise StateFileError(f"{path}: no such memory state file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as exc:  # safetensors raises several unrelated types for a damaged file
        raise StateFileError(f"{path}: not a readable safetensors file ({exc})") from exc
    if FORMAT not in metadata:
        raise StateFileError(f"{path}: a safetensors file, but not a vstream memory state (no '{FORMAT}' header)")
    try:
        header = json.loads(metadata[FORMAT])
    except ValueError as exc:
        raise StateFileError(f"{path}: the '{FORMAT}' header is not JSON ({exc})") from exc
    if not isinstance(header, dict) or header.get("version") != FORMAT_VERSION:
        version = header.get("version") if isinstance(header, dict) else None
        raise StateFileError(f"{path}: memory state format version {version}; this vstream reads {FORMAT_VERSION}")
    missing = sorted(HEADER_KEYS - header.keys())
    if missing:
        raise StateFileError(f"{path}: the memory state header lacks {missing}")
    return header, tensors
