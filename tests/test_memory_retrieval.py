"""Retrieved memory (STAR.md §3.4): real frames nearest to the heaviest centroids, from a bounded store."""

from __future__ import annotations

import pytest
import torch

from vstream.memory import build_memory, pool

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


def test_candidate_store_is_capped_and_keeps_each_clusters_nearest():
    config = small_config(temporal_clusters=4, retrieval_candidates=6)
    frames, times, _ = scene_stream([40, 40, 40, 40, 40], config, noise=0.5)
    memory = build_memory(config, attention_for(config))
    for t in range(len(times)):
        memory.update(frames[t], times[t])
        assert memory.store.valid.sum() <= 6
    assert memory.store.valid.sum() == 6


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
