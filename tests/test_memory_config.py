"""MemoryConfig: defaults of the released model, derived sizes, and clear errors for bad values."""

from __future__ import annotations

import pytest

from vstream.errors import ConfigError
from vstream.memory import MemoryConfig


def test_defaults_are_the_released_model_with_681_tokens():
    config = MemoryConfig()
    assert config.token_layout() == {"abstract": 25, "temporal": 400, "retrieved": 192, "spatial": 64}
    assert config.num_tokens == 681
    assert config.candidate_capacity == 75  # 2·N_t nearest to a centroid + N_t recent
    assert MemoryConfig(retrieval_candidates=10, retrieval_recent=0).candidate_capacity == 10
    assert config.store_grid == 8


def test_switching_memories_off_changes_the_layout_and_keeps_readout_order():
    config = MemoryConfig(memories=("spatial", "abstract"))
    assert config.memories == ("abstract", "spatial")
    assert config.token_layout() == {"abstract": 25, "spatial": 64}
    assert config.entry_delay == 1
    assert MemoryConfig(memories=("temporal", "abstract")).entry_delay == 0


def test_store_grid_lets_every_pool_derive_from_it():
    config = MemoryConfig(spatial_pool=4, temporal_pool=8, abstract_pool=2)
    assert config.store_grid == 8
    assert MemoryConfig(num_patches=576, spatial_pool=8, temporal_pool=3).store_grid == 24  # 24×24 grid (336 px)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"spatial_pool": 3}, "spatial_pool=3 does not divide the 16×16 patch grid; use one of [1, 2, 4, 8, 16]"),
        ({"abstract_slots": 0}, "abstract_slots must be an integer >= 1, got 0"),
        ({"temporal_clusters": 2.5}, "temporal_clusters must be an integer >= 1, got 2.5"),
        ({"num_patches": 200}, "num_patches=200 is not a square"),
        ({"kind": "lstm"}, "kind must be one of star, recent, uniform, sliding, drop, merge; got 'lstm'"),
        ({"memories": ("retrieved", "spatial")}, "the retrieved memory needs the temporal memory"),
        ({"memories": ()}, "memories is empty"),
        ({"memories": ("spatial", "visual")}, "memories must be one of abstract, temporal, retrieved, spatial"),
        ({"abstract_update_ratio": 0.0}, "abstract_update_ratio must be in (0, 1], got 0.0"),
        ({"retrieval_source": "faiss"}, "retrieval_source must be one of candidates, buffer, exact"),
        ({"retrieval_candidates": 2}, "retrieval_candidates must be an integer >= 3, got 2"),
        ({"retrieval_recent": -1}, "retrieval_recent must be an integer >= 0, got -1"),
        ({"readout_order": "trained"}, "readout_order must be one of time, released; got 'trained'"),
        ({"kind": "uniform", "num_frames": 0}, "num_frames must be an integer >= 1, got 0"),
    ],
)
def test_bad_values_raise_a_clear_error(changes, message):
    with pytest.raises(ConfigError) as info:
        MemoryConfig(**changes)
    assert message in str(info.value)


def test_dict_round_trip_and_unknown_fields():
    config = MemoryConfig(temporal_clusters=16, memories=("temporal", "spatial"))
    assert MemoryConfig.from_dict(config.to_dict()) == config
    assert MemoryConfig().readout_order == "time"
    released = MemoryConfig(readout_order="released")
    assert MemoryConfig.from_dict(released.to_dict()) == released
    older = {k: v for k, v in released.to_dict().items() if k != "readout_order"}  # written before the field
    assert MemoryConfig.from_dict(older) == MemoryConfig()
    with pytest.raises(ConfigError, match=r"unknown memory config fields: \['temporal_length'\]"):
        MemoryConfig.from_dict({"temporal_length": 3})


def test_from_checkpoint_config_maps_the_released_field_names():
    released = {
        "model_type": "vstream",
        "mm_hidden_size": 1024,
        "compress_size": 4,
        "compress_long_memory_size": 2,
        "compress_Turing_memory_size": 1,
        "video_long_memory_length": 16,
        "video_Turing_memory_length": 12,
        "video_current_memory_length": 2,
        "compress_Turing_update_ratio": 0.3,
        "compress_Turing_hidden_dim": 64,
    }
    config = MemoryConfig.from_checkpoint_config(released, retrieved_frames=5)
    assert (config.spatial_pool, config.temporal_pool, config.abstract_pool) == (4, 2, 1)
    assert (config.temporal_clusters, config.abstract_slots, config.spatial_frames) == (16, 12, 2)
    assert (config.abstract_update_ratio, config.abstract_hidden_dim, config.retrieved_frames) == (0.3, 64, 5)
    assert config.num_tokens == 12 + 16 * 4 + 5 * 16 + 2 * 16
