"""Multiple-choice predictions: each question answered two ways, both scored by rule, no judge.

- **generate**: the question, its options as `(A) ...` lines and the benchmark's instruction (or
  `DEFAULT_INSTRUCTION`); the generated text is read by `read_choice`, which never defaults to an option: an answer
  that names none, or two, is `unreadable` and counts as wrong.
- **loglik**: the model's log-likelihood of each option's text as the reply to the bare question
  (`VStream.score_answers`); the most likely option is its choice. Nothing to parse.

Offline benchmarks answer from the memory of the whole video; online ones (OVO-Bench, StreamingBench, or
`--mode online`) from the memory as it stood at each question's time `at`, built from the frames up to then only.
Records carry both results, the right letter and the question's types, so a report needs no other file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vstream.errors import AnnotationError
from vstream.eval.choice import read_choice
from vstream.eval.mcq import LETTERS, MCQuestion
from vstream.eval.records import record_key
from vstream.eval.video_input import DEFAULT_FPS, clip_features, past_the_end, stream_source
from vstream.memory import MemorySnapshot

if TYPE_CHECKING:
    from vstream.model import VStream

METHODS = ("generate", "loglik")
"""How a multiple-choice question is answered: generate a letter and read it, or score each option's likelihood."""
DEFAULT_INSTRUCTION = "Answer with the option's letter from the given choices directly."
"""The instruction after the options when the benchmark's file gives none."""


def mcq_prompt(question: MCQuestion) -> str:
    """The text asked for the `generate` method: stem, options as `(A) ...` lines, instruction."""
    return f"{question.stem}\n{question.options_text()}\n{question.instruction or DEFAULT_INSTRUCTION}"


def mcq_key(benchmark: str, question: MCQuestion, settings_key: str) -> str:
    """Question (id and content: an edited question or option is asked again), time, and the run's settings."""
    return record_key(
        benchmark=benchmark,
        id=question.id,
        video=question.video_id,
        stem=question.stem,
        options=list(question.options),
        instruction=question.instruction,
        at=question.at,
        settings=settings_key,
    )


def answer_mcq_video(
    model: VStream, source: Path, questions: list[MCQuestion], config: Any
) -> Iterator[dict[str, Any]]:
    """One record per question about one video, from the whole video (offline) or at each question's time
    (`config`: the run's `PredictConfig`)."""
    methods = config.choice_methods or METHODS
    if config.mode == "offline":
        features, times = clip_features(model, source, config.fps, None, None)
        snapshot = model.clip_snapshot(features.to(model.device), times, config.memory)
        for question in questions:
            yield answer_mcq(model, snapshot, question, methods, config)
        return
    from vstream.stream import StreamSession

    untimed = [q.id for q in questions if q.at is None]
    if untimed:
        raise AnnotationError(f"online questions need a time to be asked at; {len(untimed)} have none: {untimed[:3]}")
    stream = stream_source(source, config.fps, None, None)
    session = StreamSession(model, stream, speed=0.0, memory_config=config.memory)
    by_time: dict[float, list[MCQuestion]] = {}
    for question in questions:
        by_time.setdefault(float(question.at), []).append(question)
    step = 1.0 / (stream.fps or DEFAULT_FPS)
    try:
        for at, snapshot in session.snapshots_at(list(by_time)):
            for question in by_time[at]:
                record = answer_mcq(model, snapshot, question, methods, config)
                record["asked_at"] = at
                ended = session.frame_handler.end_reason is not None
                warning = past_the_end(at, snapshot.latest_time, step) if ended else None
                yield record | ({"warning": warning} if warning else {})
    finally:
        session.close()


def mcq_record(question: MCQuestion) -> dict[str, Any]:
    """The fields of a question's record, before it is answered (`status: ok`; an error record replaces it)."""
    return {
        "_item": question,
        "status": "ok",
        "format": "multiple_choice",
        "id": question.id,
        "video_id": question.video_id,
        "question": question.stem,
        "options": list(question.options),
        "answer": question.letter,
        "question_type": "/".join(question.types) or None,
        "types": list(question.types),
        "at": question.at,
    }


def answer_mcq(
    model: VStream, snapshot: MemorySnapshot, question: MCQuestion, methods: Sequence[str], config: Any
) -> dict[str, Any]:
    """The record of one question answered from `snapshot` by each of `methods`."""
    record = {**mcq_record(question), "latest_frame_time": snapshot.latest_time, "frames_seen": snapshot.frames_seen}
    if "generate" in methods:
        answer = model.answer(snapshot, mcq_prompt(question), options=config.options)
        choice = read_choice(answer.text, question.options)
        record.update(
            prediction=answer.text,
            choice=choice.letter,
            choice_rule=choice.rule,
            correct=choice.letter == question.letter,
            ttft_s=round(answer.ttft_s, 4),
            total_s=round(answer.total_s, 4),
        )
    if "loglik" in methods:
        scores = model.score_answers(snapshot, question.stem, question.options)
        best = max(range(len(scores)), key=lambda i: scores[i].logprob)
        best_mean = max(range(len(scores)), key=lambda i: scores[i].mean)
        record.update(
            loglik=[round(s.logprob, 4) for s in scores],
            loglik_tokens=[s.tokens for s in scores],
            loglik_choice=LETTERS[best],
            loglik_correct=best == question.answer,
            loglik_norm_choice=LETTERS[best_mean],
            loglik_norm_correct=best_mean == question.answer,
        )
    return record
