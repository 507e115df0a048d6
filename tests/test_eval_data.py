"""`vstream data cut` and `vstream extract-features`: real files, resumable, sharded."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open

from vstream.eval.cut import cut_clips
from vstream.eval.datasets import ClipSpec
from vstream.eval.extract import extract_features
from vstream.features import load_features
from vstream.stream.sources import FileSource

from conftest import encode_video, grey_level


def test_cut_ego4d_clips_by_seconds_and_resume(tmp_path):
    source = tmp_path / "raw"
    source.mkdir()
    encode_video(source / "raw_ego.mp4", frames=30, fps=3)  # 10 s; frame i is grey level i
    clips = [
        ClipSpec("clip_a", "raw_ego", start_time=2.0, end_time=5.0),
        ClipSpec("clip_b", "raw_ego.mp4", start_time=6.0, end_time=9.0),
        ClipSpec("clip_c", "missing_video", start_time=0.0, end_time=1.0),
        ClipSpec("clip_d", "raw_ego", start_time=7.0, end_time=15.0),  # the source ends at 10 s
    ]
    out = tmp_path / "clips"
    counts = cut_clips(clips, source, out)
    assert counts["cut"] == 3 and len(counts["failed"]) == 1 and "missing_video" in counts["failed"][0]
    assert counts["short"] == ["clip_d: the source ends at 10.00 s, before the clip's end at 15 s"]
    frames = list(FileSource(out / "clip_a.mp4", fps=None).frames())
    assert len(frames) == 9 and frames[0].time == 0.0 and grey_level(frames[0].image) == 6
    assert grey_level(frames[-1].image) == 14
    (out / ".clip_b.mp4.part.mp4").write_bytes(b"interrupted")  # a half-written clip from an earlier crash
    (out / "clip_b.mp4").unlink()
    again = cut_clips(clips, source, out)
    assert again["already_cut"] == 2 and again["cut"] == 1 and again["short"] == []
    assert grey_level(next(FileSource(out / "clip_b.mp4", fps=None).frames()).image) == 18


def test_cut_movienet_clips_by_shots(tmp_path):
    movie = tmp_path / "keyframes" / "tt0001"
    movie.mkdir(parents=True)
    for shot in range(1, 11):
        for k in range(3):
            Image.fromarray(np.full((8, 8, 3), shot * 10, np.uint8)).save(movie / f"shot_{shot:04d}_img_{k}.jpg")
    clips = [
        ClipSpec("tt0001_clip", "tt0001", start_shot=3, end_shot=5),
        ClipSpec("tt0001_end", "tt0001", start_shot=9, end_shot=12),  # the movie's last shot is 10
    ]
    counts = cut_clips(clips, tmp_path / "keyframes", tmp_path / "clips")
    names = sorted(p.name for p in (tmp_path / "clips" / "tt0001_clip").iterdir())
    assert counts["cut"] == 2 and len(names) == 9 and names[0] == "shot_0003_img_0.jpg"
    assert counts["short"] == ["tt0001_end: 2 of 4 shots have no keyframes (first: 11)"]
    assert cut_clips(clips, tmp_path / "keyframes", tmp_path / "clips")["already_cut"] == 2


def fake_encoder(frames):
    """Features from pixels without a model: (n, 4, 2), the mean grey level everywhere."""
    return torch.stack([torch.full((4, 2), float(np.asarray(f).mean())) for f in frames])


def test_extract_features_sharded_resumable_and_with_times(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a", "b", "c"):
        encode_video(videos / f"{name}.mp4", frames=12, fps=3)  # 4 s
    folder = videos / "d"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f"img_{i}.png")
    (videos / "e.mp4").write_text("not a video")
    out = tmp_path / "features"
    shards = [extract_features([videos], out, fake_encoder, batch_size=2, num_chunks=2, chunk_idx=i) for i in (0, 1)]
    assert sum(s["inputs"] for s in shards) == 5 and sum(s["extracted"] for s in shards) == 4
    (failure,) = [message for s in shards for message in s["failed"]]
    assert failure.count("e.mp4") == 1 and "not a video FFmpeg can read" in failure
    assert sorted(p.name for p in out.iterdir()) == ["a.safetensors", "b.safetensors", "c.safetensors", "d.safetensors"]
    features = load_features(out / "a.safetensors")
    assert features.shape == (4, 4, 2)  # 1 fps
    assert [round(float(f[0, 0]) / 8) for f in features] == [0, 3, 6, 9]
    with safe_open(str(out / "a.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["times"]) == [0.0, 1.0, 2.0, 3.0]
    assert load_features(out / "d.safetensors").shape == (3, 4, 2)
    again = extract_features([videos], out, fake_encoder)
    assert again["already_done"] == 4 and again["extracted"] == 0
