"""Questions about a planned stream, each asked at a moment of the stream, with its answer in short canonical
words (scored by exact match), and its type, tied to the memory that should serve it.

| type | asks | answer | memory |
|---|---|---|---|
| now | what is on screen, asked 0-1 s after a change | `red circle` or `nothing` | spatial |
| beginning | what was on screen at the very start | `red circle` | temporal |
| earlier | what was on screen just before the current scene | `red circle` | temporal |
| order | which of two objects appeared first | one of the two | temporal |
| count | how many scenes so far (when at most 8) | `1` ... `8` | temporal |
| detail | the digit shown in the corner, asked long after | `0` ... `9` | retrieved |
| ever | did an object ever appear | `yes` / `no` | abstract, temporal |
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from vstream.synth.world import COLOURS, NOTHING, SHAPES, StreamPlan

QUESTION_TYPES = ("now", "beginning", "earlier", "order", "count", "detail", "ever")

CHANCE = {
    "now": 1 / (len(COLOURS) * len(SHAPES) + 1),
    "beginning": 1 / (len(COLOURS) * len(SHAPES)),
    "earlier": 1 / (len(COLOURS) * len(SHAPES)),
    "order": 1 / 2,
    "count": 1 / 8,
    "detail": 1 / 10,
    "ever": 1 / 2,
}
"""Accuracy of a guess that knows the question's form but not the stream (uniform over its possible answers)."""

MAX_COUNT = 8


@dataclass(frozen=True)
class Question:
    """A question asked at second `at` of a stream; `since` is where the evidence starts (VStream-QA's
    `start_time`)."""

    question: str
    answer: str
    type: str
    since: int
    at: int

    def to_conversation(self) -> dict:
        """The VStream-QA `conversations` entry."""
        return {
            "question": self.question,
            "answer": self.answer,
            "start_time": self.since,
            "end_time": self.at,
            "type": self.type,
        }


def make_questions(plan: StreamPlan, seed: int, per_type: int | None = None) -> list[Question]:
    """Questions about `plan`, in time order: `per_type` of each type where the stream allows it (default: one
    per five minutes of stream, at least one; `now` and `ever` twice that)."""
    rng = np.random.default_rng([seed, int(plan.stream_id.rsplit("-", 1)[1]), 7])
    count = per_type or max(1, plan.seconds // 300)
    makers = {
        "now": _now,
        "beginning": _beginning,
        "earlier": _earlier,
        "order": _order,
        "count": _count,
        "detail": _detail,
        "ever": _ever,
    }
    questions = []
    for kind, maker in makers.items():
        wanted = 2 * count if kind in ("now", "ever") else count
        for _ in range(wanted):
            question = maker(plan, rng)
            if question is not None:
                questions.append(question)
    return sorted(questions, key=lambda q: (q.at, QUESTION_TYPES.index(q.type)))


def labels_before(plan: StreamPlan, t: int) -> list[str]:
    """Every object label shown up to second `t` (inclusive), in order of first appearance."""
    seen: list[str] = []
    for scene in plan.scenes:
        for state in scene.states:
            if state.start <= t and state.label != NOTHING and state.label not in seen:
                seen.append(state.label)
    return seen


def _pick(rng: np.random.Generator, items: list):
    return items[int(rng.integers(len(items)))] if items else None


def _now(plan: StreamPlan, rng: np.random.Generator) -> Question | None:
    changes = [s.start for scene in plan.scenes for s in scene.states if s.start > 0]
    change = _pick(rng, changes)
    if change is None:
        return None
    at = min(change + int(rng.integers(0, 2)), plan.seconds - 1)
    answer = plan.scene_at(at).state_at(at).label
    return Question("What is on the screen now?", answer, "now", at, at)


def _beginning(plan: StreamPlan, rng: np.random.Generator) -> Question | None:
    earliest = plan.scenes[2].start if len(plan.scenes) > 2 else plan.scenes[-1].start
    at = int(rng.integers(earliest, plan.seconds))
    return Question("What was on the screen at the very beginning?", plan.scenes[0].object, "beginning", 0, at)


def _earlier(plan: StreamPlan, rng: np.random.Generator) -> Question | None:
    """Asked at least 5 s into a scene whose previous scene ended on an object."""
    options = [k for k in range(1, len(plan.scenes)) if plan.scenes[k - 1].states[-1].label != NOTHING]
    k = _pick(rng, options)
    if k is None:
        return None
    scene = plan.scenes[k]
    at = int(rng.integers(scene.start + 5, scene.end))
    answer = plan.scenes[k - 1].states[-1].label
    return Question("What was on the screen just before the current scene?", answer, "earlier", 0, at)


def _order(plan: StreamPlan, rng: np.random.Generator) -> Question | None:
    """Two objects each shown in one scene only (up to the asking time), in different scenes."""
    at = int(rng.integers(plan.scenes[min(2, len(plan.scenes) - 1)].start, plan.seconds))
    first_seen: dict[str, list[int]] = {}
    for index, scene in enumerate(plan.scenes):
        for state in scene.states:
            if state.start <= at and state.label != NOTHING:
                first_seen.setdefault(state.label, []).append(index)
    unique = [(scenes[0], label) for label, scenes in first_seen.items() if len(set(scenes)) == 1]
    if len(unique) < 2:
        return None
    a, b = (unique[i] for i in rng.choice(len(unique), 2, replace=False))
    if a[0] == b[0]:
        return None
    first = min(a, b)[1]
    x, y = a[1], b[1]
    return Question(f"Which appeared first, the {x} or the {y}?", first, "order", 0, at)


def _count(plan: StreamPlan, rng: np.random.Generator) -> Question | None:
    last = min(len(plan.scenes), MAX_COUNT)
    n = int(rng.integers(1, last + 1))
    scene = plan.scenes[n - 1]
    at = int(rng.integers(scene.start + 3, scene.end)) if scene.end - scene.start > 3 else scene.start
    return Question("How many scenes have there been so far?", str(n), "count", 0, at)


def _detail(plan: StreamPlan, rng: np.random.Generator) -> Question | None:
    scene = next(s for s in plan.scenes if s.digit is not None)
    earliest = scene.end + 20
    if earliest >= plan.seconds:
        return None
    at = int(rng.integers(earliest, plan.seconds))
    return Question("Which digit was shown in the corner earlier?", scene.digit, "detail", scene.start, at)


def _ever(plan: StreamPlan, rng: np.random.Generator) -> Question | None:
    at = int(rng.integers(plan.scenes[min(2, len(plan.scenes) - 1)].start, plan.seconds))
    shown = labels_before(plan, at)
    if rng.random() < 0.5:
        label, answer = _pick(rng, shown), "yes"
    else:
        ever_shown = set(labels_before(plan, plan.seconds))
        never = [f"{c} {s}" for c in COLOURS for s in SHAPES if f"{c} {s}" not in ever_shown]
        label, answer = _pick(rng, never), "no"
    if label is None:
        return None
    return Question(f"Did a {label} appear?", answer, "ever", 0, at)


def question_corpus() -> list[str]:
    """Every question form and answer word of the world, as text (what a tokenizer for it must know)."""
    objects = [f"{c} {s}" for c in COLOURS for s in SHAPES]
    lines = [
        "What is on the screen now?",
        "What was on the screen at the very beginning?",
        "What was on the screen just before the current scene?",
        "How many scenes have there been so far?",
        "Which digit was shown in the corner earlier?",
        *(
            f"Which appeared first, the {a} or the {b}?"
            for a, b in zip(objects, objects[1:] + objects[:1], strict=True)
        ),
        *(f"Did a {o} appear?" for o in objects),
        " ".join([*objects, NOTHING, "yes", "no", *(str(n) for n in range(10))]),
    ]
    return lines


_ORDER = re.compile(r"Which appeared first, the (\w+ \w+) or the (\w+ \w+)\?")
_EVER = re.compile(r"Did an? (\w+ \w+) appear\?")


def world_answer(plan: StreamPlan, question: str, at: float) -> str | None:
    """The world's own answer to one of its question forms asked at second `at` (None for any other question,
    or one the stream cannot answer yet): what `vstream ask` prints beside a model's answer on a synthetic source."""
    at = min(int(at), plan.seconds - 1)
    text = " ".join(question.split())
    scene = plan.scene_at(at)
    index = plan.scene_index(at)
    shown = labels_before(plan, at)
    if text == "What is on the screen now?":
        return scene.state_at(at).label
    if text == "What was on the screen at the very beginning?":
        return plan.scenes[0].object
    if text == "What was on the screen just before the current scene?":
        return plan.scenes[index - 1].states[-1].label if index > 0 else None
    if text == "How many scenes have there been so far?":
        return str(index + 1)
    if text == "Which digit was shown in the corner earlier?":
        digit_scene = next(s for s in plan.scenes if s.digit is not None)
        return digit_scene.digit if digit_scene.start <= at else None
    if match := _ORDER.fullmatch(text):
        first, second = match.groups()
        if first in shown and second in shown:
            return first if shown.index(first) < shown.index(second) else second
        return None
    if match := _EVER.fullmatch(text):
        return "yes" if match.group(1) in shown else "no"
    return None
