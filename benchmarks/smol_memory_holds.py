"""Does vstream-smol's memory hold what each question needs when it is asked? (The ceiling of any reader of it.)

    python benchmarks/smol_memory_holds.py --world held200 --model smol        # one JSON line per temporal size
    python benchmarks/smol_memory_holds.py --world held200 --model smol --temporal 16x2 32x1 64x1

The held-out streams of a `vstream data synth` folder are played into the model's memory (streaming, as `vstream eval
predict` plays them online; the model's vision tower encodes the videos unless the folder has `features/`), and at
each question's moment the temporal centroids' time ranges are compared with the scene log. A centroid is *pure*
when its frames all lie in one scene (its earliest and latest frame do); the answer is *held* when:

- beginning: a pure centroid lies in the first scene;
- earlier: a pure centroid lies in the previous scene and reaches its last state (`next` also asks that it be the
  latest centroid before those of the current scene, so that the time order alone points at it);
- order: each of the two objects has a pure centroid that shows it;
- count: every centroid is pure and every scene so far has one (the current one may be in the spatial frame only);
- ever (questions answered `yes`): a centroid lies in one state that shows the object (a `no` needs nothing kept).

A type whose answers are held far more often than the model gives them is limited by the language model's reading,
not by what the memory keeps. `--temporal NxS` replaces the temporal memory's size (N centroids of S×S tokens).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import torch

from vstream.features import read_feature_clip
from vstream.memory import MemoryItem
from vstream.model import VStream
from vstream.model.smol import temporal_memory_sizes
from vstream.stream.clips import encode_clip
from vstream.synth.files import ANNOTATIONS, read_plans
from vstream.synth.questions import ORDER_QUESTION
from vstream.synth.world import StreamPlan

TYPES = ("beginning", "earlier", "order", "count", "ever")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, required=True, help="a `vstream data synth` folder")
    parser.add_argument("--model", default="smol", help="whose vision tower and memory (default: the shipped smol)")
    parser.add_argument("--temporal", nargs="*", default=[], help="temporal sizes NxS to try (default: the model's)")
    parser.add_argument("--streams", type=int, default=0, help="the first N streams only (0: all)")
    args = parser.parse_args()
    start = time.perf_counter()
    vs = VStream.from_pretrained(args.model, dtype=torch.float32)
    base = vs.memory_config()
    parsed = [temporal_memory_sizes(size) for size in args.temporal]
    sizes = [(p["video_long_memory_length"], p["compress_long_memory_size"]) for p in parsed] or [
        (base.temporal_clusters, base.temporal_pool)
    ]
    plans = {plan.stream_id: plan for plan in read_plans(args.world)}
    entries = json.loads((args.world / ANNOTATIONS).read_text())
    entries = entries[: args.streams] if args.streams else entries
    held = {size: defaultdict(list) for size in sizes}
    for entry in entries:
        plan = plans[entry["video_id"]]
        features, times = _features(vs, args.world, entry)
        questions = sorted(
            (q for q in entry["conversations"] if q["type"] in TYPES), key=lambda q: float(q["end_time"])
        )
        for clusters, side in sizes:
            config = base.replace(temporal_clusters=clusters, temporal_pool=side)
            memory, seen = vs.new_memory(config), 0
            for question in questions:
                upto = sum(t <= float(question["end_time"]) + 1e-6 for t in times)
                if upto > seen:
                    memory.update(features[seen:upto], timestamps=times[seen:upto])
                    seen = upto
                centroids = memory.readout().items_of("temporal")
                for name, value in holds(plan, question, centroids).items():
                    held[(clusters, side)][name].append(value)
    for (clusters, side), values in held.items():
        result = {
            "temporal": f"{clusters}x{side}",
            "streams": len(entries),
            "questions": {name: len(v) for name, v in values.items() if "_" not in name},
            "held": {name: round(100 * sum(v) / len(v), 1) for name, v in sorted(values.items())},
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(json.dumps(result), flush=True)


def holds(plan: StreamPlan, question: dict, centroids: list[MemoryItem]) -> dict[str, bool]:
    """Whether the centroids hold what `question` (a `conversations` entry of the synthetic world) needs, by the rules
    of this script's docstring; `earlier` also gives `earlier_next`."""
    at = float(question["end_time"])
    index = plan.scene_index(at)
    scene_of = [_scene_of(plan, item) for item in centroids]
    kind = question["type"]
    if kind == "beginning":
        return {kind: 0 in scene_of}
    if kind == "earlier":
        last = plan.scenes[index - 1].states[-1]
        keeps = [s == index - 1 and item.time_end >= last.start for item, s in zip(centroids, scene_of, strict=True)]
        before = [k for k, s in zip(keeps, scene_of, strict=True) if s != index]
        return {kind: any(keeps), "earlier_next": bool(before) and before[-1]}
    if kind == "count":
        pure = [s for s in scene_of if s is not None]
        return {kind: len(pure) == len(scene_of) and set(pure) | {index} == set(range(index + 1))}
    if kind == "order":
        match = ORDER_QUESTION.fullmatch(question["question"])
        return {kind: bool(match) and all(_shown_alone(plan, centroids, label) for label in match.groups())}
    if question["answer"] != "yes":
        return {}
    label = question["question"].removeprefix("Did a ").removeprefix("Did an ").removesuffix(" appear?")
    return {kind: _shown_alone(plan, centroids, label)}


def _scene_of(plan: StreamPlan, item: MemoryItem) -> int | None:
    """The scene all of a centroid's frames lie in, or None when they span a cut."""
    first, last = plan.scene_index(item.time_start), plan.scene_index(item.time_end)
    return first if first == last else None


def _shown_alone(plan: StreamPlan, centroids: list[MemoryItem], label: str) -> bool:
    """Whether a centroid's frames all lie in one state that shows `label`."""
    states = [state for scene in plan.scenes for state in scene.states if state.label == label]
    return any(s.start <= item.time_start and item.time_end < s.end for item in centroids for s in states)


def _features(vs: VStream, world: Path, entry: dict) -> tuple[torch.Tensor, list[float]]:
    """A stream's frame features at 1 fps and their times: stored ones, else the tower's encoding of its video."""
    stored = world / "features" / f"{entry['video_id']}.safetensors"
    if stored.is_file():
        clip = read_feature_clip(stored)
        return clip.features.float(), list(clip.times)
    with torch.no_grad():
        features, times = encode_clip(world / entry["video_path"], vs.encode_frames, 1.0, 64)
    return features.float(), list(times)


if __name__ == "__main__":
    main()
