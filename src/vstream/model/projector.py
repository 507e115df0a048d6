"""The multimodal projector (STAR.md §4): memory tokens of width D to LLM embeddings of width H.

Module names follow the released checkpoint: `mm_projector.0`, `mm_projector.2`, ... for MLPs.
"""

from __future__ import annotations

import re

from torch import nn

from vstream.errors import ConfigError

PROJECTOR_TYPES = "linear, identity, mlp<N>x_gelu (e.g. mlp2x_gelu)"


def mlp_depth(kind: str) -> int | None:
    """N for `mlp<N>x_gelu`, None for other types."""
    match = re.fullmatch(r"mlp(\d+)x_gelu", kind)
    return int(match.group(1)) if match else None


def check_projector_type(kind: str, in_dim: int, out_dim: int) -> None:
    """Raise a ConfigError naming the allowed values for an unknown or impossible projector type."""
    depth = mlp_depth(kind) if isinstance(kind, str) else None
    if kind not in ("linear", "identity") and (depth is None or depth < 1):
        raise ConfigError(f"mm_projector_type must be one of {PROJECTOR_TYPES}; got {kind!r}")
    if kind == "identity" and in_dim != out_dim:
        raise ConfigError(f"mm_projector_type 'identity' needs mm_hidden_size ({in_dim}) == hidden_size ({out_dim})")


def build_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """`linear`: Linear(D, H); `identity`; `mlp<N>x_gelu`: Linear(D, H) then N−1 × (GELU, Linear(H, H))."""
    check_projector_type(kind, in_dim, out_dim)
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "identity":
        return nn.Identity()
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    for _ in range(mlp_depth(kind) - 1):
        layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
    return nn.Sequential(*layers)
