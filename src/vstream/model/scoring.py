"""How likely the model finds each candidate answer: multiple-choice scoring that needs no parsing of text.

Each candidate is scored as the answer of one conversation turn (`VStreamProcessor.sample_ids`): the sum of the
log-probabilities of its tokens, up to and including the template's end mark, so that "red" and "red circle"
are told apart. The candidate with the highest sum is the model's choice; the mean per token is given too (a
length-normalised score, as in lm-evaluation-harness's `acc_norm`).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from vstream.errors import GenerationError
from vstream.memory import MemorySnapshot
from vstream.model.processing_vstream import IGNORE_INDEX, VStreamProcessor


@dataclass(frozen=True)
class AnswerScore:
    """One candidate's log-likelihood: `logprob` summed over its `tokens` tokens."""

    answer: str
    logprob: float
    tokens: int

    @property
    def mean(self) -> float:
        """Log-probability per token."""
        return self.logprob / self.tokens


def score_answers(
    llm: nn.Module,
    processor: VStreamProcessor,
    snapshot: MemorySnapshot,
    question: str,
    answers: Sequence[str],
    lock: AbstractContextManager | None = None,
) -> list[AnswerScore]:
    """The log-likelihood of each of `answers` as the reply to `question` about `snapshot`, in their order."""
    if not answers or any(not isinstance(a, str) or not a.strip() for a in answers):
        raise GenerationError(f"every candidate answer must be a non-empty text, got {list(answers)!r}")
    scores = []
    for answer in answers:
        ids = processor.sample_ids([(question, answer)])
        with torch.no_grad():
            inputs = processor.build(llm, snapshot, ids)
            with lock or nullcontext():
                logits = llm(inputs_embeds=inputs.inputs_embeds).logits
        targets = inputs.labels[0, 1:]
        scored = targets != IGNORE_INDEX
        logprobs = torch.log_softmax(logits[0, :-1].float(), dim=-1)
        picked = logprobs[scored].gather(1, targets[scored].unsqueeze(1))
        scores.append(AnswerScore(answer, float(picked.sum()), int(scored.sum())))
    return scores
