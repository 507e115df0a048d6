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

TRAINING_ONLY_TYPES = ("scene",)
"""Question types of the training conversations only (`scene_questions`), never asked at evaluation."""
SCENE_QUESTION = re.compile(r"Which object opened scene (\d)\?")
"""A training-only question: the object that opened scene N (counted from 1, at most MAX_COUNT) of the stream so
far. Never asked at evaluation; it teaches the language model to tell the scenes of its memory apart and number
them, which `count` (the current scene's number) and `earlier` (the scene numbered one less) are made of."""
SCENE_QUESTIONS = 2
"""Training-only scene questions added to each training conversation (`moment_questions`)."""


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
    return ask("now", plan, min(change + int(rng.integers(0, 2)), plan.seconds - 1), rng)


def _beginning(plan: StreamPlan, rng: np.random.Generator) -> Question | None:
    earliest = plan.scenes[2].start if len(plan.scenes) > 2 else plan.scenes[-1].start
    return ask("beginning", plan, int(rng.integers(earliest, plan.seconds)), rng)


def _earlier(plan: StreamPlan, rng: np.random.Generator) -> Question | None:
    """Asked at least 5 s into a scene whose previous scene ended on an object."""
    options = [k for k in range(1, len(plan.scenes)) if plan.scenes[k - 1].states[-1].label != NOTHING]
    k = _pick(rng, options)
    if k is None:
        return None
    scene = plan.scenes[k]
    return ask("earlier", plan, int(rng.integers(scene.start + 5, scene.end)), rng)


def _order(plan: StreamPlan, rng: np.random.Generator) -> Question | None:
    return ask("order", plan, int(rng.integers(plan.scenes[min(2, len(plan.scenes) - 1)].start, plan.seconds)), rng)


def _count(plan: StreamPlan, rng: np.random.Generator) -> Question | None:
    last = min(len(plan.scenes), MAX_COUNT)
    scene = plan.scenes[int(rng.integers(1, last + 1)) - 1]
    at = int(rng.integers(scene.start + 3, scene.end)) if scene.end - scene.start > 3 else scene.start
    return ask("count", plan, at, rng)


def _detail(plan: StreamPlan, rng: np.random.Generator) -> Question | None:
    scene = next(s for s in plan.scenes if s.digit is not None)
    if scene.end + 20 >= plan.seconds:
        return None
    return ask("detail", plan, int(rng.integers(scene.end + 20, plan.seconds)), rng)


def _ever(plan: StreamPlan, rng: np.random.Generator) -> Question | None:
    return ask("ever", plan, int(rng.integers(plan.scenes[min(2, len(plan.scenes) - 1)].start, plan.seconds)), rng)


def ask(kind: str, plan: StreamPlan, at: int, rng: np.random.Generator) -> Question | None:
    """The question of type `kind` asked at second `at`, with its answer; None where the stream does not allow it
    then (`earlier` needs 5 s of a scene after one that ended on an object, `count` 3 s of one of the first 8
    scenes, `detail` 20 s past the digit's scene, `order` two objects of different scenes; `ever` draws the object
    from `rng`, shown or never shown with equal chance)."""
    index = plan.scene_index(at)
    scene = plan.scenes[index]
    if kind == "now":
        return Question("What is on the screen now?", scene.state_at(at).label, kind, at, at)
    if kind == "beginning":
        return Question("What was on the screen at the very beginning?", plan.scenes[0].object, kind, 0, at)
    if kind == "earlier":
        before = plan.scenes[index - 1].states[-1].label if index > 0 else NOTHING
        if before == NOTHING or at < scene.start + 5:
            return None
        return Question("What was on the screen just before the current scene?", before, kind, 0, at)
    if kind == "count":
        if index >= MAX_COUNT or (at < scene.start + 3 and scene.end - scene.start > 3):
            return None
        return Question("How many scenes have there been so far?", str(index + 1), kind, 0, at)
    if kind == "detail":
        digit_scene = next(s for s in plan.scenes if s.digit is not None)
        if at < digit_scene.end + 20:
            return None
        return Question("Which digit was shown in the corner earlier?", digit_scene.digit, kind, digit_scene.start, at)
    if kind == "order":
        return _order_at(plan, at, rng)
    if kind == "ever":
        return _ever_at(plan, at, rng)
    raise ValueError(f"unknown question type {kind!r}")


def _order_at(plan: StreamPlan, at: int, rng: np.random.Generator) -> Question | None:
    """Two objects each shown in one scene only (up to the asking time), in different scenes."""
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
    return Question(f"Which appeared first, the {a[1]} or the {b[1]}?", min(a, b)[1], "order", 0, at)


def _ever_at(plan: StreamPlan, at: int, rng: np.random.Generator) -> Question | None:
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


def moment_questions(plan: StreamPlan, seed: int, moments: int) -> list[list[Question]]:
    """Training conversations: at `moments` moments of the stream (half just after a change of the screen, half
    anywhere), every question type the stream allows then, in random order. Asking all of them about one memory
    makes a sample of several answers for the price of one memory readout."""
    rng = np.random.default_rng([seed, int(plan.stream_id.rsplit("-", 1)[1]), 11])
    changes = [s.start for scene in plan.scenes for s in scene.states if s.start > 0]
    conversations = []
    for k in range(moments):
        if k % 2 == 0 and changes:
            at = min(_pick(rng, changes) + int(rng.integers(0, 2)), plan.seconds - 1)
        else:
            at = int(rng.integers(0, plan.seconds))
        kinds = [QUESTION_TYPES[i] for i in rng.permutation(len(QUESTION_TYPES))]
        asked = [q for q in (ask(kind, plan, at, rng) for kind in kinds) if q is not None]
        for question in scene_questions(plan, at, rng, SCENE_QUESTIONS):
            asked.insert(int(rng.integers(len(asked) + 1)), question)
        conversations.append(asked)
    return conversations


def scene_questions(plan: StreamPlan, at: int, rng: np.random.Generator, count: int) -> list[Question]:
    """Up to `count` training-only `scene` questions asked at second `at` (`SCENE_QUESTION`), about distinct
    scenes so far among the first MAX_COUNT, drawn with `rng`."""
    shown = min(plan.scene_index(at) + 1, MAX_COUNT)
    numbers = rng.choice(shown, min(count, shown), replace=False) + 1
    return [
        Question(f"Which object opened scene {n}?", plan.scenes[n - 1].object, "scene", plan.scenes[n - 1].start, at)
        for n in numbers.tolist()
    ]


def question_corpus() -> list[str]:
    """Every question form and answer word of the world, as text (what a tokenizer for it must know)."""
    objects = [f"{c} {s}" for c in COLOURS for s in SHAPES]
    lines = [
        "What is on the screen now?",
        "What was on the screen at the very beginning?",
        "What was on the screen just before the current scene?",
        "How many scenes have there been so far?",
        "Which digit was shown in the corner earlier?",
        "Which object opened scene 1?",
        *(
            f"Which appeared first, the {a} or the {b}?"
            for a, b in zip(objects, objects[1:] + objects[:1], strict=True)
        ),
        *(f"Did a {o} appear?" for o in objects),
        " ".join([*objects, NOTHING, "yes", "no", *(str(n) for n in range(10))]),
    ]
    return lines


ORDER_QUESTION = re.compile(r"Which appeared first, the (\w+ \w+) or the (\w+ \w+)\?")
"""An order question; its groups are the two objects it names."""
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
    if match := ORDER_QUESTION.fullmatch(text):
        first, second = match.groups()
        if first in shown and second in shown:
            return first if shown.index(first) < shown.index(second) else second
        return None
    if match := SCENE_QUESTION.fullmatch(text):
        n = int(match.group(1))
        return plan.scenes[n - 1].object if 1 <= n <= min(index + 1, MAX_COUNT) else None
    if match := _EVER.fullmatch(text):
        return "yes" if match.group(1) in shown else "no"
    return None
