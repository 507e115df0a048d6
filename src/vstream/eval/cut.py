"""`vstream data cut`: cut source videos into the benchmark's clips, as its metadata says; resumable.

Ego4D-style clips are cut by seconds (`start_time`, `end_time`) and re-encoded to H.264 MP4; MovieNet-style
clips are ranges of keyframe shots (`start_shot`, `end_shot`), whose images are copied into a folder per
clip. Each clip is written under a temporary name and renamed when complete, so a rerun skips finished
clips and redoes an interrupted one. A clip that comes out shorter than asked (the source ends first) is kept,
with a warning and its name in the counts: questions about its end would see less than the annotations think.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from tqdm import tqdm

from vstream.errors import SourceError
from vstream.eval.datasets import ClipSpec
from vstream.stream.sources import FileSource

log = logging.getLogger(__name__)
SHOT = re.compile(r"shot_(\d+)")


def cut_clips(clips: list[ClipSpec], source_dir: Path, output_dir: Path) -> dict[str, Any]:
    """Cut every clip not already cut; returns counts (failures are listed, not fatal)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, Any] = {"clips": len(clips), "cut": 0, "already_cut": 0, "failed": [], "short": []}
    for clip in tqdm(clips, desc="cut", unit="clip"):
        target = output_dir / (clip.video_id if clip.start_shot is not None else f"{clip.video_id}.mp4")
        if target.exists():
            counts["already_cut"] += 1
            continue
        try:
            if clip.start_shot is not None:
                short = _copy_shots(clip, source_dir, target)
            else:
                short = _cut_seconds(clip, source_dir, target)
            counts["cut"] += 1
            if short:
                log.warning("%s: %s", clip.video_id, short)
                counts["short"].append(f"{clip.video_id}: {short}")
        except (SourceError, OSError, av.FFmpegError) as exc:
            log.warning("%s: %s", clip.video_id, exc)
            counts["failed"].append(f"{clip.video_id}: {exc}")
    return counts


def _cut_seconds(clip: ClipSpec, source_dir: Path, target: Path) -> str | None:
    """Cut the clip; says how much shorter than asked it came out, if it did."""
    source = _find(source_dir, clip.original_video)
    tmp = target.with_name(f".{target.name}.part.mp4")
    frames = FileSource(source, fps=None, start=clip.start_time).frames()
    with av.open(str(source)) as probe:
        rate = probe.streams.video[0].average_rate or Fraction(25)
    written, last = 0, clip.start_time
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.pix_fmt = "yuv420p"
        millisecond = Fraction(1, 1000)
        stream.codec_context.time_base = stream.time_base = millisecond
        for frame in frames:
            if frame.time >= clip.end_time:
                break
            height, width = frame.image.shape[:2]
            if written == 0:
                stream.width, stream.height = width - width % 2, height - height % 2
            image = av.VideoFrame.from_ndarray(frame.image[: stream.height, : stream.width], format="rgb24")
            image.pts, image.time_base = round((frame.time - clip.start_time) * 1000), millisecond
            for packet in stream.encode(image):
                container.mux(packet)
            written, last = written + 1, frame.time
        frames.close()
        for packet in stream.encode():
            container.mux(packet)
    if not written:
        tmp.unlink(missing_ok=True)
        raise SourceError(f"{source}: no frames between {clip.start_time} s and {clip.end_time} s")
    os.replace(tmp, target)
    ends = last + 1.0 / float(rate)
    if ends < clip.end_time - 1.0 / float(rate) - 1e-3:
        return f"the source ends at {ends:.2f} s, before the clip's end at {clip.end_time:g} s"
    return None


def _copy_shots(clip: ClipSpec, source_dir: Path, target: Path) -> str | None:
    """Copy the clip's keyframes; says which shots were not there, if any."""
    folder = source_dir / clip.original_video
    if not folder.is_dir():
        raise SourceError(f"{folder}: no such keyframe folder")
    chosen = [
        p
        for p in sorted(folder.iterdir())
        if (m := SHOT.search(p.name)) and clip.start_shot <= int(m.group(1)) <= clip.end_shot
    ]
    if not chosen:
        raise SourceError(f"{folder}: no keyframes of shots {clip.start_shot} to {clip.end_shot}")
    tmp = target.with_name(f".{target.name}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for path in chosen:
        try:
            os.link(path, tmp / path.name)
        except OSError:
            shutil.copy2(path, tmp / path.name)
    os.replace(tmp, target)
    found = {int(SHOT.search(p.name).group(1)) for p in chosen}
    absent = [shot for shot in range(clip.start_shot, clip.end_shot + 1) if shot not in found]
    if absent:
        return f"{len(absent)} of {clip.end_shot - clip.start_shot + 1} shots have no keyframes (first: {absent[0]})"
    return None


def _find(source_dir: Path, name: str) -> Path:
    path = source_dir / name
    if path.is_file():
        return path
    for candidate in sorted(source_dir.glob(f"{name}.*")):
        if candidate.is_file():
            return candidate
    raise SourceError(f"no source video {name!r} in {source_dir}")
