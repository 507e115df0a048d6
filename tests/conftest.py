"""Shared fixtures: small memory configs and synthetic feature streams with known structure."""

from __future__ import annotations

import os
import socket
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from vstream.memory import MemoryConfig, SemanticAttention

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the Hub; a download attempt fails at once


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on localhost that nothing uses now (TCP, or UDP with `socket.SOCK_DGRAM`)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SMALL = dict(
    num_patches=64,
    feature_dim=16,
    abstract_slots=5,
    abstract_hidden_dim=8,
    temporal_clusters=4,
    temporal_pool=2,
    retrieved_frames=2,
    spatial_frames=1,
    spatial_pool=4,
)
"""A memory small enough for thousands of frames per second in tests: an 8×8 grid of 16-wide patches."""

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked `gpu` where no CUDA device is present."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def small_config(**changes) -> MemoryConfig:
    """The SMALL memory config with some fields changed."""
    return MemoryConfig(**{**SMALL, **changes})


def attention_for(config: MemoryConfig, seed: int = 0) -> SemanticAttention:
    """Random semantic-attention weights of the right sizes for `config`."""
    return SemanticAttention.random(config.feature_dim, config.abstract_hidden_dim, seed=seed)


def random_stream(frames: int, config: MemoryConfig, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """`(frames, P, D)` independent random frame features."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(frames, config.num_patches, config.feature_dim, generator=gen).to(dtype)


def scene_stream(lengths: list[int], config: MemoryConfig, noise: float = 0.05, seed: int = 0):
    """A stream of distinct scenes: every frame of scene i is scene i's base frame plus small noise.

    Returns:
        features `(T, P, D)`, times `(T,)` (1 fps from 0) and the scene label of every frame.
    """
    gen = torch.Generator().manual_seed(seed)
    shape = (config.num_patches, config.feature_dim)
    bases = [3.0 * torch.randn(shape, generator=gen) for _ in lengths]
    frames = [base + noise * torch.randn((n, *shape), generator=gen) for base, n in zip(bases, lengths, strict=True)]
    labels = np.concatenate([np.full(n, i) for i, n in enumerate(lengths)])
    return torch.cat(frames), np.arange(len(labels), dtype=np.float64), labels


@pytest.fixture
def small() -> MemoryConfig:
    return small_config()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random checkpoint in the released layout, written once per test session (do not modify it)."""
    from vstream.model.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "checkpoint")


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    """The tiny checkpoint, loaded the way a user loads a model."""
    from vstream.model import VStream

    return VStream.from_pretrained(tiny_checkpoint)


def random_frames(count: int, seed: int = 0, size: tuple[int, int] = (48, 64)) -> list[np.ndarray]:
    """RGB uint8 frames of random noise."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(count)]


def encode_video(
    path: Path,
    times: list[float] | None = None,
    *,
    frames: int = 20,
    fps: int = 10,
    size: tuple[int, int] = (64, 48),
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
) -> Path:
    """Encode a real video with PyAV: frame i is a flat grey of level 8·i (tests tell up to 32 frames apart).

    Args:
        times: presentation time of each frame in seconds (variable frame rate, offsets); default i / fps.
    """
    import av

    times = times if times is not None else [i / fps for i in range(frames)]
    width, height = size
    millisecond = Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.time_base = stream.time_base = millisecond
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 8 * i % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), millisecond
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def grey_level(image: np.ndarray) -> int:
    """Which test frame an image is (inverse of `encode_video`'s grey levels)."""
    return round(float(image.mean()) / 8)


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
