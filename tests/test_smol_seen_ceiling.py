"""benchmarks/smol_seen_ceiling.py: `earlier` and `count` answered from the screen alone, without scene marks."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from vstream.synth.files import write_world
from vstream.synth.questions import moment_questions
from vstream.synth.world import Scene, State, StreamPlan, plan_stream

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "smol_seen_ceiling.py"
_spec = importlib.util.spec_from_file_location("smol_seen_ceiling", SCRIPT)
ceiling_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ceiling_script)
seen_answer, seen_scenes = ceiling_script.seen_answer, ceiling_script.seen_scenes


def _scene(start: int, end: int, background: str, *states: tuple[int, str | None, str | None]) -> Scene:
    bounds = [s[0] for s in states[1:]] + [end]
    shown = tuple(State(a, b, c, s) for (a, c, s), b in zip(states, bounds, strict=True))
    return Scene(start, end, background, shown, False, (0.5, 0.5), (0.0, 0.0))


def test_a_cut_to_the_same_shape_on_the_same_background_is_read_as_a_colour_change():
    plan = StreamPlan(
        "hand-0000",
        100,
        (
            _scene(0, 20, "black", (0, "red", "circle")),
            _scene(20, 40, "black", (20, "blue", "circle")),  # looks like the red circle turning blue
            _scene(40, 70, "grey", (40, "green", "square"), (50, "yellow", "square"), (62, None, None)),
            _scene(70, 100, "grey", (70, "red", "triangle")),
        ),
    )
    assert seen_scenes(plan, 99) == [
        ["black red circle", "black blue circle"],
        ["grey green square", "grey yellow square", "grey nothing"],
        ["grey red triangle"],
    ]
    assert seen_answer(plan, "count", 99) == "3"  # the truth is 4
    assert seen_answer(plan, "count", 55) == "2"  # the truth is 3
    assert seen_answer(plan, "earlier", 30) is None  # the truth is the red circle
    assert seen_answer(plan, "earlier", 55) == "blue circle"  # right: the merged scene ends on it
    assert seen_scenes(plan, 45) == [["black red circle", "black blue circle"], ["grey green square"]]


def test_in_this_world_the_screen_alone_answers_every_earlier_and_count_question():
    """Every cut changes the background, so nothing the world asks is hidden from the screen: checked against the
    scene log's own answers over many generated streams."""
    asked = Counter()
    for index in range(60):
        plan = plan_stream(31, index, 300)
        for questions in moment_questions(plan, 31, moments=6):
            for q in (q for q in questions if q.type in ("earlier", "count")):
                assert seen_answer(plan, q.type, q.at) == q.answer, (plan.stream_id, q)
                asked[q.type] += 1
    assert asked["earlier"] > 100 and asked["count"] > 100


def test_the_script_prints_the_ceiling_of_a_written_world(tmp_path):
    world = write_world(tmp_path / "world", seed=20_261_205, streams=4, seconds=300)
    asked = Counter(q["type"] for entry in json.loads(world.annotations.read_text()) for q in entry["conversations"])
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--world", str(world.root)],
        capture_output=True,
        text=True,
        check=True,
    )
    ceiling = json.loads(result.stdout)
    assert set(ceiling) == {"earlier", "count"}
    for kind, cell in ceiling.items():
        assert cell["asked"] == asked[kind] > 0
        assert 0 <= cell["right"] <= cell["asked"]
        assert cell["accuracy"] == round(cell["right"] / cell["asked"], 4)
