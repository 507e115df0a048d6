"""What vstream-smol answers when it is wrong, read against the scene log of a synthetic world.

    python benchmarks/smol_errors.py --world heldout200 --predictions smol200.jsonl    # one JSON object

`--predictions` is the output of `vstream eval predict --benchmark synth` on that world's questions. For each wrong
answer the scene log tells where it comes from:

- earlier: the scene its object was last shown in, counted back from the current scene: `current`, `1 back` (the
  right scene, but the object in another state than its last), `2 back`, `3 back`... (`first` where the first
  scene is further back than 2), or `never shown` before the question;
- order: `the other one` (of the two objects asked about) or `outside the question`;
- count: every (true count, answer) pair, and the mean of answer minus truth;
- ever: the answers given to `yes` and to `no` questions.

For `earlier` it also splits every question (right or wrong) by the current scene's number (`by_scene`, right and
asked) and by whether the scene before it changed before it ended (`previous_changed`, `previous_unchanged`).

A wrong `earlier` that names an older scene means the language model finds past scenes in its memory but not the
one just before the present; one that names the current scene means it does not tell them apart.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

from vstream.synth.files import read_plans
from vstream.synth.questions import ORDER_QUESTION
from vstream.synth.world import StreamPlan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, required=True, help="the `vstream data synth` folder asked about")
    parser.add_argument("--predictions", type=Path, required=True, help="`vstream eval predict` output on it")
    args = parser.parse_args()
    plans = {plan.stream_id: plan for plan in read_plans(args.world)}
    records = [json.loads(line) for line in args.predictions.read_text().splitlines() if line.strip()]
    print(json.dumps(wrong_answers(plans, [r for r in records if r.get("status", "ok") == "ok"])))


def wrong_answers(plans: dict[str, StreamPlan], records: list[dict]) -> dict:
    """Per question type, how many were asked and right, and where the wrong answers come from (the docstring)."""
    asked: Counter[str] = Counter()
    right: Counter[str] = Counter()
    wrong: dict[str, Counter[str]] = defaultdict(Counter)
    counts: Counter[str] = Counter()
    errors: list[int] = []
    by_scene: dict[int, list[int]] = defaultdict(lambda: [0, 0])  # [right, asked]
    by_previous: dict[str, list[int]] = {"previous_changed": [0, 0], "previous_unchanged": [0, 0]}
    for record in records:
        kind, answer, prediction = record["question_type"], record["answer"], record["prediction"].strip()
        asked[kind] += 1
        if kind == "earlier":
            plan = plans[record["video_id"]]
            current = plan.scene_index(float(record["end_time"]))
            changed = len(plan.scenes[current - 1].states) > 1  # colour changed, or the object left, before the cut
            for cell in (by_scene[current + 1], by_previous["previous_changed" if changed else "previous_unchanged"]):
                cell[0] += prediction == answer
                cell[1] += 1
        if kind == "count":
            counts[f"{answer}->{prediction}"] += 1
            if prediction.isdigit():
                errors.append(int(prediction) - int(answer))
        if prediction == answer:
            right[kind] += 1
            continue
        plan, at = plans[record["video_id"]], float(record["end_time"])
        if kind == "earlier":
            wrong[kind][_scenes_back(plan, at, prediction)] += 1
        elif kind == "order":
            named = ORDER_QUESTION.fullmatch(record["question"]).groups()
            wrong[kind]["the other one" if prediction in named else "outside the question"] += 1
        elif kind == "ever":
            wrong[kind][f"{answer}->{prediction}"] += 1
    result = {
        kind: {"asked": asked[kind], "right": right[kind], "wrong": dict(wrong[kind].most_common())}
        for kind in sorted(asked)
    }
    if "earlier" in result:
        result["earlier"]["by_scene"] = {str(number): by_scene[number] for number in sorted(by_scene)}
        result["earlier"] |= by_previous
    if "count" in result:
        result["count"]["pairs"] = dict(sorted(counts.items()))
        result["count"]["mean_error"] = round(sum(errors) / len(errors), 2) if errors else None
    return result


def _scenes_back(plan: StreamPlan, at: float, label: str) -> str:
    """Where `label` was last shown before second `at`, in scenes counted back from the current one."""
    current = plan.scene_index(at)
    for back in range(current + 1):
        scene = plan.scenes[current - back]
        if any(state.label == label and state.start <= at for state in scene.states):
            if back == 0:
                return "current"
            return "first" if back > 2 and back == current else f"{back} back"
    return "never shown"


if __name__ == "__main__":
    main()
