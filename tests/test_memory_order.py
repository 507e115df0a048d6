"""Order inside the memories (STAR.md §3, `readout_order`) and ties in retrieval (STAR.md §3.4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vstream.memory import MemoryConfig, SemanticAttention, build_memory, offline_readout, pool
from vstream.memory.base import to_store_grid
from vstream.memory.kmeans import weighted_kmeans
from vstream.memory.star import heaviest_clusters, pick_distinct_nearest

from conftest import attention_for, random_stream, scene_stream, small_config

LENGTHS = [30, 50, 20, 45, 25]


def provenance(item) -> tuple:
    return (item.time_start, item.time_end, item.time_mean, item.weight)


def tokens_of(snapshot, item) -> torch.Tensor:
    return snapshot.tokens[item.token_start : item.token_end]


def stream(config, frames, times, chunk=1, **kwargs):
    memory = build_memory(config, attention_for(config), **kwargs)
    for start in range(0, len(times), chunk):
        memory.update(frames[start : start + chunk], times[start : start + chunk])
    return memory


def ranked_nearest_times(snapshot, frames, times, config) -> list[float]:
    """Brute force, in the released order: for each heaviest centroid (heavier first; ties: earlier mean time, then
    earlier in the readout), the nearest frame not taken by a heavier one, among the frames that left the spatial
    memory."""
    entered = len(times) - config.spatial_frames
    keys = pool(to_store_grid(frames[:entered], config), config.temporal_pool).flatten(1)
    temporal = snapshot.items_of("temporal")
    ranked = sorted(range(len(temporal)), key=lambda i: (-temporal[i].weight, temporal[i].time_mean, i))
    picked: list[int] = []
    for index in ranked[: config.retrieved_frames]:
        centroid = tokens_of(snapshot, temporal[index]).flatten()
        order = torch.argsort(((keys - centroid) ** 2).sum(dim=1), stable=True).tolist()
        picked.append(next(i for i in order if i not in picked))
    return [float(times[i]) for i in picked]


def assert_same_apart_from_order(released, by_time):
    """Abstract and spatial unchanged; temporal and retrieved the same items (with their tokens), rearranged."""
    for name in ("abstract", "spatial"):
        assert released.items_of(name) == by_time.items_of(name)
        for a, b in zip(released.items_of(name), by_time.items_of(name), strict=True):
            assert torch.equal(tokens_of(released, a), tokens_of(by_time, b))
    for name, key in (("temporal", lambda item: item.time_mean), ("retrieved", lambda item: item.time_start)):
        items = sorted(released.items_of(name), key=key)
        assert [provenance(i) for i in items] == [provenance(i) for i in by_time.items_of(name)]
        for a, b in zip(items, by_time.items_of(name), strict=True):
            assert torch.equal(tokens_of(released, a), tokens_of(by_time, b))
    assert released.token_counts() == by_time.token_counts()


@pytest.mark.parametrize("chunk", [1, 4])
def test_streaming_released_order_is_the_centroid_rows_and_heaviest_first(chunk):
    config = small_config(temporal_clusters=5, retrieved_frames=3, readout_order="released")
    frames, times, _ = scene_stream(LENGTHS, config, noise=0.2)
    memory = stream(config, frames, times, chunk)
    snapshot = memory.readout()
    k = memory.num_clusters
    temporal = snapshot.items_of("temporal")
    # the centroid buffer's rows, in row order, each with its own provenance
    assert [i.weight for i in temporal] == memory.weights[:k].tolist()
    assert [i.time_mean for i in temporal] == memory.time_mean[:k].tolist()
    assert [i.time_start for i in temporal] == memory.time_min[:k].tolist()
    assert [i.time_end for i in temporal] == memory.time_max[:k].tolist()
    rows = torch.stack([tokens_of(snapshot, i) for i in temporal])
    assert torch.equal(rows, memory.centroids[:k].reshape(k, config.temporal_pool**2, config.feature_dim))
    assert [i.time_mean for i in temporal] != sorted(i.time_mean for i in temporal)  # not by time, here
    # retrieved: heaviest cluster first, each the real frame nearest to its centroid
    got = [i.time_start for i in snapshot.items_of("retrieved")]
    assert got == ranked_nearest_times(snapshot, frames, times, config)
    assert got != sorted(got)
    for item in snapshot.items_of("retrieved"):
        assert torch.equal(tokens_of(snapshot, item), pool(frames[int(item.time_start)], config.spatial_pool))
    by_time = stream(config.replace(readout_order="time"), frames, times, chunk).readout()
    assert_same_apart_from_order(snapshot, by_time)


@pytest.mark.parametrize("clip", [120, 300])  # Ward start on the Gram matrix, k-means++ on the features
def test_offline_released_order_is_the_clusterings_own_and_heaviest_first(clip):
    config = small_config(temporal_clusters=5, retrieved_frames=3, readout_order="released")
    frames, times, _ = scene_stream([clip // 5, clip // 3, clip // 6, clip // 4, clip - 28 * clip // 30], config, 0.3)
    attention = attention_for(config)
    snapshot = offline_readout(frames, times, config, attention)
    keys = pool(to_store_grid(frames[:-1], config), config.temporal_pool).flatten(1)
    result = weighted_kmeans(
        keys, np.ones(len(keys)), 5, max_iters=config.kmeans_max_iters, tol=config.kmeans_tol, seed=config.seed
    )
    temporal = snapshot.items_of("temporal")
    assert [i.weight for i in temporal] == result.weights.tolist()  # the k-means result's cluster order
    expected = result.centroids(keys).reshape(5, config.temporal_pool**2, config.feature_dim)
    assert torch.equal(torch.stack([tokens_of(snapshot, i) for i in temporal]), expected)
    for item, members in zip(temporal, range(5), strict=True):
        member_times = times[:-1][result.assignment == members]
        assert (item.time_start, item.time_end) == (member_times.min(), member_times.max())
        assert item.time_mean == pytest.approx(member_times.mean())
    got = [i.time_start for i in snapshot.items_of("retrieved")]
    assert got == ranked_nearest_times(snapshot, frames, times, config)
    by_time = offline_readout(frames, times, config.replace(readout_order="time"), attention)
    assert_same_apart_from_order(snapshot, by_time)


@pytest.mark.parametrize("order", ["time", "released"])
@pytest.mark.parametrize("source", ["candidates", "buffer", "exact"])
@pytest.mark.parametrize("frames", [2, 3, 4, 6])
def test_a_clip_of_at_most_n_t_frames_retrieves_its_earliest_frames(tmp_path, order, source, frames):
    """Every centroid weighs 1 (one frame each): the ties go to the earlier time, so the earliest N_r frames."""
    config = small_config(temporal_clusters=5, retrieved_frames=3, readout_order=order, retrieval_source=source)
    clip = random_stream(frames, config, seed=frames)
    times = 3.0 + 0.5 * np.arange(frames)
    expected = times[: min(frames - 1, 3)].tolist()  # the last frame is the spatial memory
    store = {"store_dir": tmp_path / "frames"} if source == "exact" else {}
    for chunk in (1, frames):
        memory = stream(config, clip, times, chunk, **store)
        snapshot = memory.readout()
        assert {i.weight for i in snapshot.items_of("temporal")} == {1.0}
        assert [i.time_start for i in snapshot.items_of("retrieved")] == expected, f"chunk {chunk}"
        if source == "exact":
            (tmp_path / "frames").rename(tmp_path / f"used-{chunk}")
    offline = offline_readout(clip, times, config, attention_for(config))
    assert [i.time_start for i in offline.items_of("retrieved")] == expected


@pytest.mark.parametrize("order", ["time", "released"])
def test_released_sizes_short_clip_retrieves_its_earliest_frames(order):
    config = MemoryConfig(readout_order=order)
    clip = torch.randn(26, 256, 1024, generator=torch.Generator().manual_seed(0))  # 25 frames enter: N_t
    times = np.arange(26.0)
    memory = build_memory(config, SemanticAttention.random())
    memory.update(clip, times)
    offline = offline_readout(clip, times, config, SemanticAttention.random())
    for snapshot in (memory.readout(), offline):
        assert [i.time_start for i in snapshot.items_of("retrieved")] == [0.0, 1.0, 2.0]
        assert [i.time_mean for i in snapshot.items_of("temporal")] == times[:25].tolist()  # both orders: by time


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("frames", [4, 6])
def test_identical_frames_tie_in_distance_and_the_earlier_one_is_retrieved(dtype, frames):
    config = small_config(temporal_clusters=5, retrieved_frames=3)
    clip = random_stream(1, config, seed=frames).to(dtype).repeat(frames, 1, 1)  # a still shot, frame for frame
    times = np.arange(float(frames))
    for seed in range(5):
        attention = attention_for(config, seed=seed)
        memory = build_memory(config, attention)
        for t in range(frames):
            memory.update(clip[t], times[t])
        for snapshot in (memory.readout(), offline_readout(clip, times, config, attention)):
            assert [i.time_start for i in snapshot.items_of("retrieved")] == [0.0, 1.0, 2.0]


def test_ties_in_weight_and_in_distance_are_explicit():
    weights = np.ones(5)
    assert heaviest_clusters(weights, np.array([4.0, 3.0, 2.0, 1.0, 0.0]), 3).tolist() == [4, 3, 2]
    assert heaviest_clusters(weights, np.zeros(5), 3).tolist() == [0, 1, 2]  # same time too: the lower index
    distances = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 5.0]])  # frames 1 and 2 tie for cluster 0
    times = np.array([9.0, 4.0, 2.0])
    assert pick_distinct_nearest(distances, earlier=times).tolist() == [2, 1]  # the earlier of the tied frames
    assert pick_distinct_nearest(distances).tolist() == [1, 0]  # default: the earlier row


def test_state_saved_in_one_order_reads_out_in_the_other(tmp_path):
    config = small_config(temporal_clusters=5)
    frames, times, _ = scene_stream(LENGTHS, config, noise=0.2)
    stream(config, frames, times).save(tmp_path / "state.safetensors")
    released = build_memory(config.replace(readout_order="released"), attention_for(config))
    released.restore_from(tmp_path / "state.safetensors")
    direct = stream(config.replace(readout_order="released"), frames, times)
    assert torch.equal(released.readout().tokens, direct.readout().tokens)
    assert released.readout().items == direct.readout().items


@pytest.mark.parametrize("rows, dim", [(3, 64), (5, 64), (37, 1024)])
def test_the_retrieval_distance_ties_equal_frames_bit_for_bit_and_agrees_with_the_matrix_product(rows, dim):
    """Equal keys must tie exactly (the earlier frame then wins), whatever the backend's matrix product rounds: on a
    CPU with AMX, a product of 3 equal rows of 64 by 3 centers gave the middle row another last bit."""
    from vstream.memory.star import squared_distances, tied_squared_distances

    generator = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        for _ in range(5):
            key, centers = (torch.randn(n, dim, generator=generator).to(dtype).float() for n in (1, 3))
            keys = torch.cat([key.repeat(rows, 1), torch.randn(4, dim, generator=generator)])
            tied = tied_squared_distances(keys, centers)
            assert tied.shape == (rows + 4, 3) and bool((tied[:rows] == tied[0]).all())
            torch.testing.assert_close(tied, squared_distances(keys, centers), rtol=1e-5, atol=1e-3)
    assert tied_squared_distances(keys[:0], centers).shape == (0, 3)
