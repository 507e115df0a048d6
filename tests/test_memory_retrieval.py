"""Retrieved memory (STAR.md §3.4): real frames nearest to the heaviest centroids, from a bounded store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vstream.memory import build_memory, pool
from vstream.memory.star import log_spaced_recent

from conftest import attention_for, scene_stream, small_config

LENGTHS = [30, 50, 20, 45, 25]


def stream_into(memory, frames, times, chunk=1):
    for start in range(0, len(times), chunk):
        memory.update(frames[start : start + chunk], times[start : start + chunk])
    return memory.readout()


def exact_nearest_times(snapshot, frames, times, config):
    """Brute force over every frame that left the spatial memory: the nearest frame to each heaviest centroid."""
    entered = len(times) - config.spatial_frames
    keys = pool(frames[:entered], config.temporal_pool).flatten(1)
    temporal = snapshot.items_of("temporal")
    ranked = sorted(temporal, key=lambda item: (-item.weight, item.time_mean))[: config.retrieved_frames]
    picked = []
    for item in ranked:
        centroid = snapshot.tokens[item.token_start : item.token_end].flatten()
        order = torch.argsort(((keys - centroid) ** 2).sum(dim=1)).tolist()
        picked.append(next(i for i in order if i not in picked))
    return sorted(float(times[i]) for i in picked)


@pytest.mark.parametrize("chunk", [1, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_retrieved_frames_are_real_frames_nearest_to_the_heaviest_centroids(chunk, seed):
    config = small_config(temporal_clusters=5, retrieved_frames=2)
    frames, times, labels = scene_stream(LENGTHS, config, noise=0.2, seed=seed)
    memory = build_memory(config, attention_for(config))
    snapshot = stream_into(memory, frames, times, chunk)
    retrieved = snapshot.items_of("retrieved")
    got = [item.time_start for item in retrieved]
    assert got == sorted(got)  # oldest first
    assert got == exact_nearest_times(snapshot, frames, times, config)
    assert sorted({int(labels[int(t)]) for t in got}) == [1, 3]  # the two longest scenes
    for item in retrieved:  # the tokens are that frame in full detail
        expected = pool(frames[int(item.time_start)], config.spatial_pool)
        assert torch.allclose(snapshot.tokens[item.token_start : item.token_end], expected, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_bounded_candidate_store_agrees_with_the_exact_search(tmp_path, seed):
    config = small_config(temporal_clusters=5, retrieved_frames=3)
    frames, times, _ = scene_stream(LENGTHS, config, noise=0.3, seed=seed)
    bounded = stream_into(build_memory(config, attention_for(config)), frames, times)
    exact_config = config.replace(retrieval_source="exact")
    exact = stream_into(build_memory(exact_config, attention_for(config), store_dir=tmp_path), frames, times)
    assert [i.time_start for i in bounded.items_of("retrieved")] == [i.time_start for i in exact.items_of("retrieved")]
    assert torch.equal(bounded.tokens, exact.tokens)


def test_candidate_store_is_capped():
    config = small_config(temporal_clusters=4, retrieval_candidates=6, retrieval_recent=3)
    frames, times, _ = scene_stream([40, 40, 40, 40, 40], config, noise=0.5)
    memory = build_memory(config, attention_for(config))
    for t in range(len(times)):
        memory.update(frames[t], times[t])
        assert memory.store.valid.sum() <= 9
    assert memory.store.valid.sum() >= 6


def drift_stream(frames: int, config, seed: int = 0) -> torch.Tensor:
    """A slow random walk: continuous camera motion without cuts."""
    gen = torch.Generator().manual_seed(seed)
    steps = 0.1 * torch.randn(frames, config.num_patches, config.feature_dim, generator=gen)
    return torch.randn(config.num_patches, config.feature_dim, generator=gen) + steps.cumsum(dim=0)


def retrieved_distance(snapshot, frames, config) -> float:
    """Summed distance from each heaviest centroid to the nearest retrieved frame."""
    ranked = sorted(snapshot.items_of("temporal"), key=lambda item: (-item.weight, item.time_mean))
    centroids = torch.stack([snapshot.tokens[i.token_start : i.token_end].flatten() for i in ranked])
    keys = pool(frames[[int(i.time_start) for i in snapshot.items_of("retrieved")]], config.temporal_pool)
    return float(torch.cdist(centroids[: config.retrieved_frames], keys.flatten(1)).min(dim=1).values.sum())


def test_recent_sample_keeps_retrieval_near_exact_when_clusters_drift(tmp_path):
    config = small_config(num_patches=64, feature_dim=64, temporal_clusters=25, retrieved_frames=3)
    frames = drift_stream(600, config)
    times = np.arange(600, dtype=float)
    exact = stream_into(
        build_memory(config.replace(retrieval_source="exact"), attention_for(config), store_dir=tmp_path), frames, times
    )
    with_recent = stream_into(build_memory(config, attention_for(config)), frames, times)
    without = stream_into(build_memory(config.replace(retrieval_recent=0), attention_for(config)), frames, times)
    best = retrieved_distance(exact, frames, config)
    assert retrieved_distance(with_recent, frames, config) < 1.05 * best
    assert retrieved_distance(without, frames, config) > 1.1 * best  # what the recent sample is for


def test_log_spaced_recent_sample():
    index = np.arange(100)
    keep = log_spaced_recent(index, newest=99, budget=100, per_level=4)
    kept = index[keep].tolist()
    assert kept[-4:] == [96, 97, 98, 99]  # the newest per_level frames, all of them
    ages = 99 - np.array(kept)
    gaps = np.diff(kept)
    assert all(gap <= max(age // 4, 1) * 2 for gap, age in zip(gaps, ages[1:], strict=True))  # sparser with age
    assert len(kept) < 30
    assert index[log_spaced_recent(index, 99, budget=5)].tolist() == kept[-5:]  # the budget keeps the newest
    later = log_spaced_recent(index, newest=150, budget=100, per_level=4)
    assert set(index[later]) <= set(kept)  # a frame once dropped is never wanted again


def test_buffer_source_only_sees_the_latest_frames():
    config = small_config(temporal_clusters=5, retrieval_source="buffer", retrieval_buffer=30)
    frames, times, _ = scene_stream(LENGTHS, config, noise=0.2)
    snapshot = stream_into(build_memory(config, attention_for(config)), frames, times)
    entered = len(times) - 1
    assert all(entered - 30 <= item.time_start < entered for item in snapshot.items_of("retrieved"))


def test_exact_store_keeps_frames_on_disk_not_in_ram(tmp_path):
    config = small_config(retrieval_source="exact")
    memory = build_memory(config, attention_for(config), store_dir=tmp_path)
    frames, times, _ = scene_stream([50, 50], config)
    memory.update(frames[:10], times[:10])
    ram, disk = memory.state_bytes(), sum(p.stat().st_size for p in tmp_path.iterdir())
    memory.update(frames[10:], times[10:])
    assert memory.state_bytes() == ram
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) == disk * 11  # 99 frames entered instead of 9
    assert len(memory.readout().items_of("retrieved")) == config.retrieved_frames
