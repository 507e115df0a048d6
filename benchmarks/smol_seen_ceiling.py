"""How much of `earlier` and `count` a synthetic world allows from what is seen alone.

    python benchmarks/smol_seen_ceiling.py --world heldout200    # one JSON object

A memory holds what the screen showed, a background and an object, but no scene marks: a cut is seen only as a
change. This benchmark answers each `earlier` and `count` question of a world as a reader would who sees every
state up to the question, in order, without a miss, and puts a cut wherever the background or the object's shape
changes, or an object follows an empty screen (an object that changes colour or leaves stays in its scene). Its
accuracy is the ceiling of a model that reads its memory perfectly and has no other cue. In the world of version
synth-v2 every cut changes the background, so that reader is always right (100 %): the script then checks that
a world asks nothing the screen does not show. In synth-v1 a cut could keep the background and the shape and look
like a colour change, and the ceiling was 92.5 % (`earlier`) and 77.5 % (`count`) on 200 held-out streams.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vstream.synth.files import ANNOTATIONS, read_plans
from vstream.synth.world import NOTHING, State, StreamPlan

SEEN_TYPES = ("earlier", "count")


def seen_scenes(plan: StreamPlan, at: int) -> list[list[str]]:
    """The scenes up to second `at` as a reader of the screen alone splits them: each a list of `background label`
    states, oldest first."""
    scenes: list[list[str]] = []
    last: tuple[str, State] | None = None
    for scene in plan.scenes:
        for state in scene.states:
            if state.start > at:
                return scenes
            if last is None or _looks_like_a_cut(last, (scene.background, state)):
                scenes.append([])
            scenes[-1].append(f"{scene.background} {state.label}")
            last = (scene.background, state)
    return scenes


def _looks_like_a_cut(before: tuple[str, State], after: tuple[str, State]) -> bool:
    (background, state), (next_background, next_state) = before, after
    if next_state.label == NOTHING:
        return False  # the object left
    if state.label == NOTHING:
        return True  # only a cut brings an object back
    return background != next_background or state.shape != next_state.shape


def seen_answer(plan: StreamPlan, kind: str, at: int) -> str | None:
    """The answer to the `earlier` or `count` question asked at second `at`, read from the screen alone (None where
    that reader sees no scene before the current one)."""
    scenes = seen_scenes(plan, at)
    if kind == "count":
        return str(len(scenes))
    if kind == "earlier":
        return scenes[-2][-1].split(" ", 1)[1] if len(scenes) > 1 else None
    raise ValueError(f"{kind!r}: the screen-alone reader answers {SEEN_TYPES}")


def seen_ceiling(world: Path) -> dict:
    """Per type of `SEEN_TYPES`: questions asked, answered right by the screen-alone reader, and the share."""
    plans = {plan.stream_id: plan for plan in read_plans(world)}
    tally = {kind: [0, 0] for kind in SEEN_TYPES}  # [right, asked]
    for entry in json.loads((world / ANNOTATIONS).read_text()):
        for q in entry["conversations"]:
            if q["type"] in tally:
                answer = seen_answer(plans[entry["video_id"]], q["type"], int(q["end_time"]))
                tally[q["type"]][0] += answer == q["answer"]
                tally[q["type"]][1] += 1
    return {
        kind: {"asked": asked, "right": right, "accuracy": round(right / asked, 4) if asked else None}
        for kind, (right, asked) in tally.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, required=True, help="a `vstream data synth` folder")
    print(json.dumps(seen_ceiling(parser.parse_args().world)))


if __name__ == "__main__":
    main()
