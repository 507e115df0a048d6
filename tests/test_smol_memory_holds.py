"""benchmarks/smol_memory_holds.py: what the memory keeps of each answer, checked against the scene log."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from vstream.synth.files import write_world

ROOT = Path(__file__).resolve().parents[1]


def test_the_memory_holds_every_answer_when_nothing_is_merged_and_no_earlier_scene_when_all_is_one_centroid(
    tmp_path,
):
    world = write_world(tmp_path / "world", seed=20_261_203, streams=2, seconds=150)
    script = [sys.executable, "benchmarks/smol_memory_holds.py", "--world", str(world.root), "--model", "smol"]
    # 512 centroids for 150 frames: each frame is its own centroid, so every answer is held; one centroid spans
    # every cut, so no question about a past scene finds a centroid of its own
    result = subprocess.run([*script, "--temporal", "512x1", "1x1"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    every, one = (json.loads(line) for line in result.stdout.strip().splitlines())
    asked = Counter(
        q["type"]
        for entry in json.loads((world.root / "synth_conversations.json").read_text())
        for q in entry["conversations"]
        if q["type"] in ("beginning", "earlier", "order", "count") or (q["type"] == "ever" and q["answer"] == "yes")
    )
    assert every["temporal"] == "512x1" and one["temporal"] == "1x1" and every["streams"] == 2
    assert every["questions"] == one["questions"] == dict(asked) and asked["earlier"] > 0 and asked["beginning"] > 0
    assert set(every["held"].values()) == {100.0}
    assert one["held"]["earlier"] == one["held"]["earlier_next"] == one["held"]["beginning"] == 0.0
    assert one["held"]["order"] == 0.0
