"""Temporal memory (STAR.md §3.2): carried weights, recovered scenes, determinism, degenerate streams."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vstream.memory import build_memory, pool

from conftest import attention_for, random_stream, scene_stream, small_config


def temporal_items(memory):
    return memory.readout().items_of("temporal")


@pytest.mark.parametrize("chunk", [1, 7])
def test_weights_sum_to_the_frames_seen(chunk):
    config = small_config()
    memory = build_memory(config, attention_for(config))
    frames = random_stream(300, config)
    for start in range(0, 300, chunk):
        memory.update(frames[start : start + chunk], np.arange(start, min(start + chunk, 300)))
        snapshot = memory.readout()
        temporal = sum(item.weight for item in snapshot.items_of("temporal"))
        spatial = len(snapshot.items_of("spatial"))
        assert temporal + spatial == snapshot.frames_seen == min(start + chunk, 300)


@pytest.mark.parametrize("chunk", [1, 5])
def test_centroids_recover_scenes_and_weights_match_their_lengths(chunk):
    lengths = [30, 50, 20, 40]
    config = small_config(temporal_clusters=4)
    frames, times, labels = scene_stream(lengths, config)
    memory = build_memory(config, attention_for(config))
    for start in range(0, len(times), chunk):
        memory.update(frames[start : start + chunk], times[start : start + chunk])
    items = temporal_items(memory)  # in time order
    assert [item.weight for item in items] == [30, 50, 20, 39]  # the last frame is the spatial memory
    assert [(item.time_start, item.time_end) for item in items] == [(0, 29), (30, 79), (80, 99), (100, 138)]
    snapshot = memory.readout()
    for item, scene in zip(items, range(4), strict=True):  # each centroid is the mean of its scene's frames
        members = frames[(labels == scene) & (times < 139)]
        expected = pool(members, config.temporal_pool).mean(dim=0)
        tokens = snapshot.tokens[item.token_start : item.token_end]
        assert torch.allclose(tokens, expected, atol=1e-4)
        assert item.time_mean == pytest.approx(float(times[(labels == scene) & (times < 139)].mean()))


def test_same_seed_same_result_and_different_seed_still_valid():
    config = small_config()
    frames = random_stream(400, config, seed=5)
    runs = []
    for _ in range(2):
        memory = build_memory(config, attention_for(config))
        for t in range(0, 400, 3):
            memory.update(frames[t : t + 3], np.arange(t, min(t + 3, 400)))
        runs.append(memory.readout())
    assert torch.equal(runs[0].tokens, runs[1].tokens)
    assert runs[0].items == runs[1].items


@pytest.mark.parametrize("kind", ["constant", "duplicates"])
def test_constant_or_duplicate_frames_give_no_nan(kind):
    config = small_config()
    memory = build_memory(config, attention_for(config))
    if kind == "constant":
        frames = torch.ones(200, config.num_patches, config.feature_dim)
    else:
        frames = random_stream(4, config).repeat_interleave(50, dim=0)
    for t in range(200):
        memory.update(frames[t], float(t))
    snapshot = memory.readout()
    assert torch.isfinite(snapshot.tokens).all()
    assert sum(item.weight for item in snapshot.items_of("temporal")) == 199
    assert snapshot.num_tokens == config.num_tokens


def test_long_stream_keeps_centroids_consistent_with_cached_products():
    """Cached Gram products are carried across thousands of updates; refreshes keep them exact."""
    config = small_config(temporal_clusters=6)
    frames, times, labels = scene_stream([700, 900, 600], config, noise=0.3)
    memory = build_memory(config, attention_for(config))
    for t in range(len(times)):
        memory.update(frames[t], times[t])
    k = memory.num_clusters
    centroids = memory.centroids[:k].double()
    assert np.allclose(memory.gram[:k, :k], (centroids @ centroids.T).numpy(), rtol=1e-5, atol=1e-3)
    covered = {int(labels[int(item.time_mean)]) for item in temporal_items(memory)}
    assert covered == {0, 1, 2}  # every scene keeps at least one centroid
