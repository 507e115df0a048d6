"""Baseline memories for ablations: uniform sampling, sliding window, drop and merge compressors."""

from __future__ import annotations

import argparse
import itertools
import math

import numpy as np
import pytest
import torch

from vstream.cli.memory_args import add_memory_arguments, given_memory_fields
from vstream.errors import ConfigError
from vstream.memory import MemoryConfig, build_memory, offline_readout, pool, recent_config
from vstream.memory.config import apply_memory_changes

from conftest import random_stream, scene_stream, small_config


def frame_config(kind, **changes):
    return small_config(**{"kind": kind, "num_frames": 4, "frame_pool": 2, **changes})


def times_of(snapshot):
    return [item.time_start for item in snapshot.items]


def test_sliding_window_keeps_the_last_n_frames():
    config = frame_config("sliding")
    frames = random_stream(23, config)
    memory = build_memory(config)
    memory.update(frames[:10], np.arange(10))
    for t in range(10, 23):
        memory.update(frames[t], t)
    snapshot = memory.readout()
    assert times_of(snapshot) == [19, 20, 21, 22]
    assert torch.allclose(snapshot.tokens, pool(frames[19:], 2).flatten(0, 1))
    assert snapshot.token_counts() == {"sliding": 16}


@pytest.mark.parametrize("frames", [1, 3, 4, 7, 8])
def test_uniform_is_exact_while_the_stream_fits_its_sample(frames):
    config = frame_config("uniform")
    memory = build_memory(config)
    features = random_stream(frames, config)
    for t in range(frames):
        memory.update(features[t], float(t))
    expected = np.unique(np.round(np.linspace(0, frames - 1, min(4, frames))))
    assert times_of(memory.readout()) == expected.tolist()


@pytest.mark.parametrize("frames", [50, 333, 1000])
def test_uniform_stays_near_the_ideal_positions_on_long_streams(frames):
    config = frame_config("uniform", num_frames=8)
    memory = build_memory(config)
    features = random_stream(64, config)
    for t in range(frames):
        memory.update(features[t % 64], float(t))
    got = np.array(times_of(memory.readout()))
    ideal = np.round(np.linspace(0, frames - 1, 8))
    stride = memory.stride
    assert len(got) == 8 and np.all(np.diff(got) > 0)
    assert got[-1] == frames - 1 and got[0] == 0
    assert np.abs(got - ideal).max() <= stride / 2 + 1


@pytest.mark.parametrize("kind", ["drop", "merge"])
def test_similarity_compressors_keep_one_frame_per_scene(kind):
    lengths = [12, 30, 7, 20]
    config = frame_config(kind)
    frames, times, labels = scene_stream(lengths, config, noise=0.05)
    memory = build_memory(config)
    for t in range(len(times)):
        memory.update(frames[t], times[t])
    snapshot = memory.readout()
    scenes = [int(labels[int(item.time_start)]) for item in snapshot.items]
    assert scenes == [0, 1, 2, 3]
    if kind == "merge":  # each kept frame is the average of its whole scene
        assert [item.weight for item in snapshot.items] == [float(n) for n in lengths]
        bounds = np.cumsum([0, *lengths])
        assert [(i.time_start, i.time_end) for i in snapshot.items] == [
            (float(a), float(b - 1)) for a, b in itertools.pairwise(bounds)
        ]
        for item, scene in zip(snapshot.items, range(4), strict=True):
            expected = pool(frames[labels == scene], 2).mean(dim=0)
            assert torch.allclose(snapshot.tokens[item.token_start : item.token_end], expected, atol=1e-5)
    else:  # drop keeps real frames
        assert all(item.weight == 1.0 for item in snapshot.items)


@pytest.mark.parametrize("kind", ["uniform", "sliding", "drop", "merge"])
def test_offline_readout_of_a_baseline_is_its_streaming_readout(kind):
    config = frame_config(kind)
    frames = random_stream(30, config)
    memory = build_memory(config)
    memory.update(frames, np.arange(30))
    offline = offline_readout(frames, config=config)
    assert torch.equal(offline.tokens, memory.readout().tokens)
    assert offline.num_tokens == 16


def test_recent_memory_spends_the_token_budget_of_star():
    """`recent`: the newest N frames at the finest grid within STAR's budget, equal to it where squares allow."""
    released = MemoryConfig()
    for frames, side in [(1, 16), (2, 16), (4, 13), (10, 8)]:
        config = recent_config(released, frames)
        assert (config.kind, config.num_frames, config.frame_pool) == ("recent", frames, side)
        assert config.num_tokens <= released.num_tokens
        assert side == 16 or frames * (side + 1) ** 2 > released.num_tokens  # no finer grid fits
    smol_like = small_config(num_patches=64, abstract_slots=8, temporal_clusters=16, temporal_pool=2)
    smol_like = smol_like.replace(spatial_pool=8, retrieved_frames=1, abstract_pool=1)
    assert smol_like.num_tokens == 200
    assert recent_config(smol_like, 8).num_tokens == smol_like.num_tokens  # 8 frames of 5×5: the same budget
    assert recent_config(released, 4, frame_pool=16).num_tokens == 1024  # full resolution on request
    with pytest.raises(ConfigError, match="finer than"):
        released.replace(kind="recent", frame_pool=17)


def test_recent_memory_reads_out_the_newest_frames_pooled_to_a_side_that_need_not_divide_the_grid():
    config = recent_config(small_config(), 3, frame_pool=3)  # a side that does not divide the 8×8 grid
    side = math.isqrt(config.num_patches)
    assert side % config.frame_pool
    frames = random_stream(9, config)
    memory = build_memory(config)
    memory.update(frames, np.arange(9.0))
    snapshot = memory.readout()
    assert times_of(snapshot) == [6, 7, 8]
    grid = frames[6:].reshape(3, side, side, -1).permute(0, 3, 1, 2)
    expected = torch.nn.functional.adaptive_avg_pool2d(grid, config.frame_pool).permute(0, 2, 3, 1)
    assert torch.allclose(snapshot.tokens, expected.reshape(-1, frames.shape[-1]), atol=1e-6)
    assert snapshot.token_counts() == {"recent": config.num_tokens}


def test_memory_flags_name_the_recent_baseline():
    parser = argparse.ArgumentParser()
    add_memory_arguments(parser)
    args = parser.parse_args(["--memory", "recent", "--recent-frames", "4"])
    config = apply_memory_changes(MemoryConfig(), given_memory_fields(args))
    assert (config.kind, config.num_frames, config.num_tokens) == ("recent", 4, 676)
    args = parser.parse_args(["--memory", "recent", "--frame-pool", "16", "--recent-frames", "2"])
    assert apply_memory_changes(MemoryConfig(), given_memory_fields(args)).num_tokens == 512
    args = parser.parse_args(["--kind", "uniform", "--num-frames", "6"])
    assert apply_memory_changes(MemoryConfig(), given_memory_fields(args)).num_frames == 6
