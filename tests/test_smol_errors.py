"""benchmarks/smol_errors.py: where each wrong answer comes from, read from the generator's scene log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from vstream.synth.files import read_plans, write_world
from vstream.synth.questions import ORDER_QUESTION, labels_before
from vstream.synth.world import COLOURS, SHAPES

ROOT = Path(__file__).resolve().parents[1]


def test_wrong_answers_are_traced_to_the_scene_they_name(tmp_path):
    world = write_world(tmp_path / "world", seed=20_261_204, streams=6, seconds=300)
    plans = {plan.stream_id: plan for plan in read_plans(world.root)}
    records, expected = [], {"earlier": {}, "order": {}, "ever": {}}
    counted = {}
    for entry in json.loads(world.annotations.read_text()):
        plan = plans[entry["video_id"]]
        for q in entry["conversations"]:
            at = float(q["end_time"])
            record = {"video_id": entry["video_id"], "question_type": q["type"], "question": q["question"]}
            record |= {"answer": q["answer"], "end_time": q["end_time"], "status": "ok", "prediction": q["answer"]}
            index = plan.scene_index(at)
            if q["type"] == "earlier" and index >= 3 and "2 back" not in expected["earlier"]:
                older = plan.scenes[index - 2].states[-1].label  # the scene before the previous one
                if older not in {s.label for s in (*plan.scenes[index].states, *plan.scenes[index - 1].states)}:
                    record["prediction"], expected["earlier"]["2 back"] = older, 1
            elif q["type"] == "earlier" and "current" not in expected["earlier"]:
                now = plan.scenes[index].state_at(at).label
                if now not in {s.label for s in plan.scenes[index - 1].states}:
                    record["prediction"], expected["earlier"]["current"] = now, 1
            elif q["type"] == "earlier" and "never shown" not in expected["earlier"]:
                shown = set(labels_before(plan, int(at)))
                record["prediction"] = next(f"{c} {s}" for c in COLOURS for s in SHAPES if f"{c} {s}" not in shown)
                expected["earlier"]["never shown"] = 1
            elif q["type"] == "order" and not expected["order"]:
                a, b = ORDER_QUESTION.fullmatch(q["question"]).groups()
                record["prediction"], expected["order"]["the other one"] = b if q["answer"] == a else a, 1
            elif q["type"] == "ever" and q["answer"] == "yes" and not expected["ever"]:
                record["prediction"], expected["ever"]["yes->no"] = "no", 1
            elif q["type"] == "count" and not counted:
                record["prediction"] = str(int(q["answer"]) + 1)
                counted[f"{q['answer']}->{record['prediction']}"] = 1
            records.append(record)
    records.append({**records[0], "status": "failed", "prediction": ""})  # a failed prediction is not counted
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert set(expected["earlier"]) == {"2 back", "current", "never shown"} and expected["order"] and expected["ever"]

    result = subprocess.run(
        [sys.executable, "benchmarks/smol_errors.py", "--world", str(world.root), "--predictions", str(predictions)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    for kind, wrong in expected.items():
        assert report[kind]["wrong"] == wrong
        asked = sum(r["question_type"] == kind for r in records[:-1])
        assert report[kind]["asked"] == asked and report[kind]["right"] == asked - sum(wrong.values())
    ((pair, _),) = counted.items()
    pairs = report["count"]["pairs"]
    assert pairs[pair] == 1 and sum(pairs.values()) == report["count"]["asked"]
    assert report["count"]["right"] == report["count"]["asked"] - 1
    assert report["now"]["right"] == report["now"]["asked"] and report["now"]["wrong"] == {}
    by_scene: dict[str, list[int]] = {}
    changed = [0, 0]
    for record in records[:-1]:
        if record["question_type"] == "earlier":
            plan = plans[record["video_id"]]
            index = plan.scene_index(float(record["end_time"]))
            right = record["prediction"] == record["answer"]
            cell = by_scene.setdefault(str(index + 1), [0, 0])
            cell[0], cell[1] = cell[0] + right, cell[1] + 1
            if len(plan.scenes[index - 1].states) > 1:
                changed = [changed[0] + right, changed[1] + 1]
    assert report["earlier"]["by_scene"] == by_scene and len(by_scene) >= 2
    assert sum(asked for _, asked in by_scene.values()) == report["earlier"]["asked"]
    assert report["earlier"]["previous_changed"] == changed
