"""`synthetic[:SECONDS[:SEED]]`: a stream of the synthetic world (`vstream.synth`), written once as an H.264 file
and reused, for demos and first runs."""

from __future__ import annotations

from pathlib import Path

from vstream.errors import SourceError
from vstream.paths import cache_dir
from vstream.synth.files import write_video
from vstream.synth.world import WORLD_VERSION, StreamPlan, plan_stream

DEFAULT_SECONDS = 10


def parse_synthetic(text: str) -> tuple[int, int]:
    """(seconds, seed) of a `synthetic[:SECONDS[:SEED]]` source name."""
    parts = text.split(":")[1:]
    try:
        seconds = round(float(parts[0])) if parts and parts[0] else DEFAULT_SECONDS
        seed = int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise SourceError(
            f"{text}: expected synthetic[:SECONDS[:SEED]], e.g. synthetic:120 or synthetic:600:7"
        ) from None
    if seconds < 3 or len(parts) > 2:
        raise SourceError(f"{text}: expected synthetic[:SECONDS[:SEED]] with at least 3 seconds")
    return seconds, seed


def synthetic_clip(seconds: int = DEFAULT_SECONDS, seed: int = 0) -> Path:
    """The file of stream 0 of world `seed`, `seconds` long, at 1 fps (the same frames as `vstream data synth`;
    cached under the world's version, so a clip of an older world is never played as this one)."""
    plan = plan_stream(seed, 0, seconds)
    path = cache_dir() / "synthetic" / WORLD_VERSION / f"{plan.stream_id}-{seconds}s.mp4"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(plan, path)
    return path


def synthetic_plan(source: str) -> StreamPlan | None:
    """The plan of a `synthetic[:SECONDS[:SEED]]` source (None for any other source): what its stream shows."""
    text = str(source)
    if text != "synthetic" and not text.startswith("synthetic:"):
        return None
    seconds, seed = parse_synthetic(text)
    return plan_stream(seed, 0, seconds)
