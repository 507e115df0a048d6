"""The q/k projections of the abstract memory's semantic attention (STAR.md §3.3), as plain tensors."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from vstream.errors import ConfigError

_NAMES = ("q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias")


class Projections(Protocol):
    """What the abstract memory's update needs of its attention: q and k of a batch of tokens, and their width.
    `SemanticAttention` (tensors, for streaming and inference) and the model's `attention_model` (module calls,
    for training, where a sharded engine gathers the weights only inside a module's call) both provide it."""

    @property
    def hidden_dim(self) -> int: ...

    def query(self, x: Tensor) -> Tensor: ...

    def key(self, x: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class SemanticAttention:
    """q_proj and k_proj (Linear D→d, with bias) of the checkpoint's `attention_model`.

    Only these two projections drive the memory update. Tensors may require grad (training runs the
    offline path through them); the memory itself never changes them.

    Args:
        q_weight: `(d, D)`; q_bias: `(d,)`; k_weight: `(d, D)`; k_bias: `(d,)`.
    """

    q_weight: Tensor
    q_bias: Tensor
    k_weight: Tensor
    k_bias: Tensor

    def __post_init__(self) -> None:
        d, dim = self.q_weight.shape
        expected = {"q_bias": (d,), "k_weight": (d, dim), "k_bias": (d,)}
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ConfigError(
                    f"semantic attention {name} has shape {tuple(getattr(self, name).shape)}, "
                    f"expected {shape} to match q_weight {(d, dim)}"
                )

    @property
    def hidden_dim(self) -> int:
        """d, the width of the projections."""
        return self.q_weight.shape[0]

    @property
    def feature_dim(self) -> int:
        """D, the width of the features they project."""
        return self.q_weight.shape[1]

    def query(self, x: Tensor) -> Tensor:
        """q_proj(x) in the dtype of x; `x: (..., D)` -> `(..., d)`."""
        return nn.functional.linear(x, self.q_weight.to(x), self.q_bias.to(x))

    def key(self, x: Tensor) -> Tensor:
        """k_proj(x) in the dtype of x; `x: (..., D)` -> `(..., d)`."""
        return nn.functional.linear(x, self.k_weight.to(x), self.k_bias.to(x))

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors under the checkpoint's names (`q_proj.weight`, ...), detached."""
        tensors = (self.q_weight, self.q_bias, self.k_weight, self.k_bias)
        return {name: t.detach() for name, t in zip(_NAMES, tensors, strict=True)}

    def fingerprint(self) -> str:
        """sha256 of the weights' values (fp32), to tell whether two sets of weights are the same."""
        digest = hashlib.sha256()
        for tensor in self.state_dict().values():
            digest.update(tensor.to("cpu", torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor], prefix: str = "") -> SemanticAttention:
        """From checkpoint tensors, e.g. `prefix="model.attention_model."` on a released state dict."""
        missing = [prefix + n for n in _NAMES if prefix + n not in state]
        if missing:
            raise ConfigError(f"semantic attention weights missing from the state dict: {missing}")
        return cls(*(state[prefix + n] for n in _NAMES))

    @classmethod
    def from_module(cls, module: nn.Module) -> SemanticAttention:
        """From a module with `q_proj` and `k_proj` Linear layers (the model's `attention_model`)."""
        return cls(module.q_proj.weight, module.q_proj.bias, module.k_proj.weight, module.k_proj.bias)

    @classmethod
    def random(cls, feature_dim: int = 1024, hidden_dim: int = 32, seed: int = 0) -> SemanticAttention:
        """Random projections initialised like nn.Linear, reproducible from `seed`; for tests and benchmarks."""
        gen = torch.Generator().manual_seed(seed)
        bound = 1.0 / math.sqrt(feature_dim)

        def uniform(*shape: int) -> Tensor:
            return (torch.rand(*shape, generator=gen) * 2 - 1) * bound

        return cls(
            uniform(hidden_dim, feature_dim), uniform(hidden_dim), uniform(hidden_dim, feature_dim), uniform(hidden_dim)
        )
