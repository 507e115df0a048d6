"""The synthetic world's questions as timed multiple choice: the same questions and answers, each with
distractors drawn from the answers of its own type elsewhere in the set, asked at its time (`at`).

A yes/no question keeps the options (yes, no); a number's distractors include its neighbours; an order question's
include the other object it names (else the answer would be the one option the question names, and a model that
only copies from its question would look as if it knew the order). Each question gets
up to `options` options; the right one's place
and the distractors are drawn from a generator seeded by the world's seed and the question's id, so a file is
a function of its annotations and seed. The file is the `test_qa.json` form (`question` with `(A) ...` lines,
`answer` the option index, `type`) plus `at`; `vstream eval predict --benchmark custom:NAME` runs it online.
"""

from __future__ import annotations

import string
from collections import defaultdict
from typing import Any

import numpy as np

from vstream.synth.questions import ORDER_QUESTION

YES_NO = ("yes", "no")
INSTRUCTION = "Answer with the option's letter from the given choices directly."


def choice_records(annotations: list[dict[str, Any]], seed: int, options: int = 4) -> list[dict[str, Any]]:
    """Multiple-choice records of VStream-QA `conversations` records (the synthetic world's annotations)."""
    pool: dict[str, set[str]] = defaultdict(set)
    for record in annotations:
        for turn in record["conversations"]:
            pool[turn["type"]].add(turn["answer"])
    text_answers = {a for answers in pool.values() for a in answers if a not in YES_NO and not a.isdigit()}
    out = []
    for record in annotations:
        for k, turn in enumerate(record["conversations"]):
            ident = f"{record['video_id']}_{k}"
            rng = np.random.default_rng([seed, *ident.encode()])
            if turn["answer"] in YES_NO:
                choices = list(YES_NO)
            else:
                named = [o for o in _named_objects(turn["question"]) if o != turn["answer"]][:1]
                others = sorted(
                    _distractors(turn["answer"], pool[turn["type"]], text_answers, options - 1) - set(named)
                )
                picked = rng.choice(len(others), size=min(options - 1 - len(named), len(others)), replace=False)
                choices = [*named, *(others[i] for i in picked)]
                if named:  # (other questions draw exactly as before: their files are unchanged)
                    rng.shuffle(choices)
                choices.insert(int(rng.integers(len(choices) + 1)), turn["answer"])
            lines = "\n".join(f"({string.ascii_uppercase[i]}) {text}" for i, text in enumerate(choices))
            out.append(
                {
                    "id": ident,
                    "video_id": record["video_id"],
                    "question": f"{turn['question']}\n{lines}\n{INSTRUCTION}",
                    "answer": choices.index(turn["answer"]),
                    "type": turn["type"],
                    "at": turn["end_time"],
                    **({"world": record["world"]} if "world" in record else {}),  # in the file's digest
                }
            )
    return out


def _named_objects(question: str) -> tuple[str, ...]:
    """The two objects an order question names (none for any other question)."""
    match = ORDER_QUESTION.fullmatch(question)
    return match.groups() if match else ()


def _distractors(answer: str, same_type: set[str], text_answers: set[str], wanted: int) -> set[str]:
    """Wrong options of the answer's own kind (numbers for a number, words for words): the other answers of the
    question's type; for a number, its neighbours too; for words of a type with too few others, every type's."""
    others = {other for other in same_type - {answer} if other.isdigit() == answer.isdigit()}
    if answer.isdigit():
        value = int(answer)
        others |= {str(n) for n in range(max(0, value - wanted), value + wanted + 1)} - {answer}
    elif len(others) < wanted:
        others |= text_answers - {answer}
    return others
