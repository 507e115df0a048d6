"""MemoryConfig: every count and size of the STAR memory (STAR.md §3) and of its baselines, checked when built."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vstream.errors import ConfigError

MEMORY_NAMES = ("abstract", "temporal", "retrieved", "spatial")
"""The four STAR memories, in readout order."""

KINDS = ("star", "recent", "uniform", "sliding", "drop", "merge")
"""`star` is Flash-VStream's memory; the others are baselines behind the same interface (`recent`: no memory at all,
only the newest frames, at the same token budget as STAR; see `recent_config`)."""

RETRIEVAL_SOURCES = ("candidates", "buffer", "exact")

READOUT_ORDERS = ("time", "released")
"""Order inside the temporal and retrieved memories (STAR.md §3): by time, or as the released model was trained."""

# Released-checkpoint field (config.json of IVGSZ/Flash-VStream-7b) -> MemoryConfig field (STAR.md §4).
CHECKPOINT_FIELDS = {
    "mm_hidden_size": "feature_dim",
    "compress_size": "spatial_pool",
    "compress_long_memory_size": "temporal_pool",
    "compress_Turing_memory_size": "abstract_pool",
    "video_long_memory_length": "temporal_clusters",
    "video_Turing_memory_length": "abstract_slots",
    "video_current_memory_length": "spatial_frames",
    "compress_Turing_update_ratio": "abstract_update_ratio",
    "compress_Turing_hidden_dim": "abstract_hidden_dim",
}


@dataclass(frozen=True)
class MemoryConfig:
    """Sizes of the video memory. Defaults are those of the released Flash-VStream-7b (681 tokens).

    STAR.md names in brackets. A memory is switched off by leaving it out of `memories`, never by a zero count.

    >>> MemoryConfig().num_tokens
    681
    >>> MemoryConfig(memories=("temporal", "spatial")).token_layout()
    {'temporal': 400, 'spatial': 64}
    """

    kind: str = "star"
    """Which memory: `star`, or a baseline: `recent`, `uniform`, `sliding`, `drop`, `merge`."""
    num_patches: int = 256
    """Patch tokens per frame from the vision tower [P]; must be a square (a √P×√P grid)."""
    feature_dim: int = 1024
    """Width of a patch feature [D] (the vision tower's hidden size, `mm_hidden_size`)."""

    abstract_slots: int = 25
    """Abstract-memory slots [N_a]; also the chunk length of its update."""
    abstract_pool: int = 1
    """Side of each abstract slot's token grid [s_a]."""
    abstract_update_ratio: float = 0.2
    """Share of a slot replaced by each chunk [λ], in (0, 1]."""
    abstract_hidden_dim: int = 32
    """Width of the q/k projections of the semantic attention [d]."""

    temporal_clusters: int = 25
    """Temporal centroids [N_t]."""
    temporal_pool: int = 4
    """Side of each centroid's token grid [s_t]."""
    kmeans_max_iters: int = 10
    """Lloyd iterations per k-means run, at most."""
    kmeans_tol: float = 1e-4
    """Lloyd stops when the summed centroid movement is below this."""

    retrieved_frames: int = 3
    """Key frames retrieved for the heaviest temporal clusters [N_r]."""
    retrieval_source: str = "candidates"
    """Where key frames are searched: `candidates` (bounded store over the whole stream), `buffer` (the latest
    `retrieval_buffer` frames) or `exact` (every past frame, on disk)."""
    retrieval_candidates: int | None = None
    """Candidate store: frames kept because they are nearest to a centroid (each cluster in turn); default 2·N_t."""
    retrieval_recent: int | None = None
    """Candidate store: recent frames kept on a log-spaced schedule (dense for the newest, sparser with age), so
    that a cluster that is still growing finds its nearest frame; default N_t; 0 switches it off."""
    retrieval_buffer: int = 300
    """Frames searched by `retrieval_source="buffer"` [N_buff]."""

    spatial_frames: int = 1
    """Newest frames kept in full detail [N_s]."""
    spatial_pool: int = 8
    """Side of the token grid of spatial and retrieved frames [s_s]."""

    memories: tuple[str, ...] = MEMORY_NAMES
    """Which STAR memories are on (ablations); `retrieved` needs `temporal`."""
    readout_order: str = "time"
    """Order inside the temporal and retrieved memories: `time` (centroids by weighted mean time, retrieved frames
    oldest first) or `released` (as the released model was trained: centroids in the clustering's own order,
    retrieved frames heaviest cluster first)."""

    num_frames: int = 10
    """Baselines only: frames kept (`recent`, `uniform`, `sliding`, `drop`, `merge`)."""
    frame_pool: int = 8
    """Baselines only: side of each kept frame's token grid (`recent`: any side up to √P; the others: a divisor of
    √P)."""

    seed: int = 0
    """Seed of the k-means++ initialisation (used when a k-means run has many points)."""

    def __post_init__(self) -> None:
        _check_choice("kind", self.kind, KINDS)
        _check_int("num_patches", self.num_patches, minimum=1)
        _check_int("feature_dim", self.feature_dim, minimum=1)
        side = math.isqrt(self.num_patches)
        if side * side != self.num_patches:
            raise ConfigError(f"num_patches={self.num_patches} is not a square; the patches must form a √P×√P grid")
        memories = tuple(self.memories) if not isinstance(self.memories, str) else (self.memories,)
        for name in memories:
            _check_choice("memories", name, MEMORY_NAMES)
        if len(set(memories)) != len(memories):
            raise ConfigError(f"memories lists a memory twice: {list(memories)}")
        object.__setattr__(self, "memories", tuple(n for n in MEMORY_NAMES if n in memories))
        _check_choice("readout_order", self.readout_order, READOUT_ORDERS)
        if self.kind == "star":
            self._check_star(side)
        else:
            _check_int("num_frames", self.num_frames, minimum=1)
            if self.kind == "recent":
                _check_int("frame_pool", self.frame_pool, minimum=1)
                if self.frame_pool > side:
                    raise ConfigError(f"frame_pool={self.frame_pool} is finer than the {side}×{side} patch grid")
            else:
                _check_pool("frame_pool", self.frame_pool, side)

    def _check_star(self, side: int) -> None:
        if not self.memories:
            raise ConfigError("memories is empty: switch on at least one of " + ", ".join(MEMORY_NAMES))
        if "retrieved" in self.memories and "temporal" not in self.memories:
            raise ConfigError("the retrieved memory needs the temporal memory (it retrieves frames for its clusters)")
        for name in (
            "abstract_slots",
            "abstract_hidden_dim",
            "temporal_clusters",
            "retrieved_frames",
            "spatial_frames",
            "kmeans_max_iters",
            "retrieval_buffer",
        ):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("abstract_pool", "temporal_pool", "spatial_pool"):
            _check_pool(name, getattr(self, name), side)
        ratio = self.abstract_update_ratio
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0.0 < ratio <= 1.0:
            raise ConfigError(f"abstract_update_ratio must be in (0, 1], got {ratio!r}")
        if not isinstance(self.kmeans_tol, (int, float)) or not self.kmeans_tol >= 0:
            raise ConfigError(f"kmeans_tol must be a number >= 0, got {self.kmeans_tol!r}")
        _check_choice("retrieval_source", self.retrieval_source, RETRIEVAL_SOURCES)
        if self.retrieval_candidates is not None:
            _check_int("retrieval_candidates", self.retrieval_candidates, minimum=self.retrieved_frames)
        if self.retrieval_recent is not None:
            _check_int("retrieval_recent", self.retrieval_recent, minimum=0)
        _check_int("seed", self.seed, minimum=0)

    # ----------------------------------------------------------------- derived sizes
    @property
    def store_grid(self) -> int:
        """Grid side at which frames are kept until they enter the long-term memories.

        Every pooled size used later divides it, so each is derived from it exactly (pooling composes).
        """
        if self.kind != "star":
            return self.frame_pool
        return math.lcm(self.abstract_pool, self.temporal_pool, self.spatial_pool)

    @property
    def nearest_candidates(self) -> int:
        """Frames the candidate store keeps for being nearest to a centroid."""
        if self.retrieval_candidates is not None:
            return self.retrieval_candidates
        return max(2 * self.temporal_clusters, self.retrieved_frames)

    @property
    def recent_candidates(self) -> int:
        """Frames the candidate store keeps for being recent."""
        return self.temporal_clusters if self.retrieval_recent is None else self.retrieval_recent

    @property
    def candidate_capacity(self) -> int:
        """Frames the bounded candidate store holds at most."""
        return self.nearest_candidates + self.recent_candidates

    def uses(self, memory: str) -> bool:
        """Whether a STAR memory is switched on (always False for baselines)."""
        return self.kind == "star" and memory in self.memories

    @property
    def entry_delay(self) -> int:
        """How many newest frames stay in the spatial FIFO before entering the long-term memories."""
        return self.spatial_frames if self.uses("spatial") else 0

    def token_layout(self) -> dict[str, int]:
        """Tokens per memory once the memory is full, in readout order."""
        if self.kind != "star":
            return {self.kind: self.num_frames * self.frame_pool**2}
        sizes = {
            "abstract": self.abstract_slots * self.abstract_pool**2,
            "temporal": self.temporal_clusters * self.temporal_pool**2,
            "retrieved": self.retrieved_frames * self.spatial_pool**2,
            "spatial": self.spatial_frames * self.spatial_pool**2,
        }
        return {name: sizes[name] for name in self.memories}

    @property
    def num_tokens(self) -> int:
        """Tokens of a full memory's readout (681 with the defaults); fewer early in a stream."""
        return sum(self.token_layout().values())

    # ----------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the fields."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["memories"] = list(self.memories)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemoryConfig:
        """Build from a dict such as `to_dict()` wrote; unknown keys are an error, not ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown memory config fields: {unknown}; known fields: {sorted(names)}")
        values = dict(data)
        if "memories" in values:
            values["memories"] = tuple(values["memories"])
        return cls(**values)

    @classmethod
    def from_checkpoint_config(cls, config: Mapping[str, Any], **overrides: Any) -> MemoryConfig:
        """Memory sizes from a released-style `config.json` (STAR.md §4 field names), then `overrides`."""
        values = {ours: config[theirs] for theirs, ours in CHECKPOINT_FIELDS.items() if config.get(theirs) is not None}
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> MemoryConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def recent_config(star: MemoryConfig, frames: int, frame_pool: int | None = None) -> MemoryConfig:
    """The `recent` baseline for a STAR config: the newest `frames` frames, each at the finest square grid whose
    tokens, over all the frames, stay within STAR's token budget (full resolution when it fits).

    A budget is not always a sum of equal squares: 4 frames against the released 681 tokens get 13×13 each, 676
    tokens; one frame gets full resolution, 256. `frame_pool` sets the grid instead (e.g. full resolution, over
    the budget: then say so beside the result).

    >>> recent_config(MemoryConfig(), 4).num_tokens, MemoryConfig().num_tokens
    (676, 681)
    """
    _check_int("frames", frames, minimum=1)
    side = math.isqrt(star.num_patches)
    if frame_pool is None:
        frame_pool = min(side, math.isqrt(star.num_tokens // frames))
        if frame_pool < 1:
            raise ConfigError(f"{frames} frames do not fit STAR's {star.num_tokens} tokens even at one token a frame")
    return star.replace(kind="recent", num_frames=frames, frame_pool=frame_pool)


def apply_memory_changes(base: MemoryConfig, changes: Mapping[str, Any]) -> MemoryConfig:
    """`base` (e.g. a model's own sizes) with some fields changed, as a command's flags or a request name them;
    `kind="recent"` takes STAR's token budget from `base` (`recent_config`: `num_frames` frames, default 4, at the
    finest grid within it, unless `frame_pool` is given)."""
    names = {f.name for f in dataclasses.fields(MemoryConfig)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ConfigError(f"unknown memory config fields: {unknown}; known fields: {sorted(names)}")
    if changes.get("kind") != "recent" or base.kind != "star":
        return base.replace(**changes)
    sizes = {k: v for k, v in changes.items() if k not in ("kind", "num_frames", "frame_pool")}
    return recent_config(base.replace(**sizes), changes.get("num_frames", 4), changes.get("frame_pool"))


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _check_pool(name: str, value: Any, side: int) -> None:
    _check_int(name, value, minimum=1)
    if side % value:
        divisors = [d for d in range(1, side + 1) if side % d == 0]
        raise ConfigError(f"{name}={value} does not divide the {side}×{side} patch grid; use one of {divisors}")
