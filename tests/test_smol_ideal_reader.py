"""benchmarks/smol_ideal_reader.py: smol's reader taught one question type from perfectly seen frames."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from vstream.synth.world import BACKGROUNDS, COLOURS, NOTHING, SHAPES

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "smol_ideal_reader.py"
_spec = importlib.util.spec_from_file_location("smol_ideal_reader", SCRIPT)
ideal = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ideal)


def test_a_frame_is_seen_as_its_background_colour_and_shape():
    rng = np.random.default_rng(0)
    shown = ideal.frame_features("navy", "purple", "triangle", 0.0, rng)
    empty = ideal.frame_features("grey", None, None, 0.0, rng)
    assert shown.sum() == empty.sum() == 3
    names = ideal.FEATURES
    assert [names[i] for i in np.flatnonzero(shown)] == ["navy", "purple", "triangle"]
    assert [names[i] for i in np.flatnonzero(empty)] == ["grey", "none", "none"]
    assert len(names) == len(BACKGROUNDS) + len(COLOURS) + len(SHAPES) + 2


def test_an_earlier_sample_is_a_bounded_memory_and_an_object():
    memory = ideal.ideal_memory()
    rng = np.random.default_rng(3)
    for _ in range(5):
        tokens, answer = ideal.sample("earlier", rng, memory, 4.0, 0.1, "synth-v2")
        assert tokens.shape[1] == len(ideal.FEATURES) and 2 <= tokens.shape[0] <= 17
        assert ideal.LABELS[answer] not in (NOTHING, *map(str, range(10)))  # the scene before ended on an object


def test_the_script_trains_and_reports_each_check():
    command = [sys.executable, str(SCRIPT), "--kind", "count", "--steps", "4", "--checks", "2", "--held-out", "6"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True).stdout
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["step"] for line in lines] == [2, 4]
    assert all(line["kind"] == "count" and 0 <= line["held_out"] <= 1 and line["loss"] > 0 for line in lines)
