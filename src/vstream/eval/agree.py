"""How far two judges agree on the same predictions: yes/no agreement, Cohen's kappa, the correlation of their
scores, and the questions they disagree on, so that a user can show how much a new judge moves the numbers.

    result = agreement("run.verdicts.gpt.jsonl", "run.verdicts.qwen.jsonl")
    print(result.agreement, result.kappa, result.disagreements[:5])

Verdicts are paired by prediction and by what was judged (the question, the reference and the prediction's text):
a prediction whose text changed between the two runs was not judged the same, and is counted apart.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from vstream.errors import ConfigError
from vstream.eval.records import read_jsonl

YES_NO = ("yes", "no")


@dataclass
class Agreement:
    """Agreement of judge A and judge B.

    Attributes:
        pairs: predictions both judged (an `ok` verdict each, of the same text); agreement: the share of them with
        the same yes/no; kappa: Cohen's kappa of the yes/no (None when it is undefined: one judge always said the
        same); score_correlation: Pearson's r of the 0-5 scores where both gave one (None with fewer than 2 or no
        spread); yes_rate_a/b: the accuracy each judge gives on the pairs; only_a/only_b: predictions only one
        judged; different_text: predictions the two judged in different versions.
    """

    judge_a: list[str]
    judge_b: list[str]
    pairs: int
    agreement: float | None
    kappa: float | None
    score_correlation: float | None
    yes_rate_a: float | None
    yes_rate_b: float | None
    only_a: int
    only_b: int
    different_text: int
    disagreements: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def agreement(
    a: str | os.PathLike, b: str | os.PathLike, *, judge_a: str | None = None, judge_b: str | None = None
) -> Agreement:
    """The agreement of the verdicts in files `a` and `b` (as `vstream eval judge` writes them; they may be one
    file holding both judges, told apart by `judge_a` and `judge_b`)."""
    left, right = _latest_ok(a, judge_a, "--judge-a"), _latest_ok(b, judge_b, "--judge-b")
    if not left or not right:
        empty = a if not left else b
        raise ConfigError(f"{empty}: no `ok` verdict in it: nothing to compare")
    pairs, different = [], 0
    for prediction, verdict in left.items():
        other = right.get(prediction)
        if other is None:
            continue
        if verdict.get("content") != other.get("content"):
            different += 1
            continue
        pairs.append((prediction, verdict, other))
    yes_a = [v["pred"] == "yes" for _, v, _ in pairs]
    yes_b = [w["pred"] == "yes" for _, _, w in pairs]
    scores = [(v.get("score"), w.get("score")) for _, v, w in pairs]
    scores = [(x, y) for x, y in scores if isinstance(x, (int, float)) and isinstance(y, (int, float))]
    disagreements = [
        {"prediction_key": key, "a": _said(v), "b": _said(w)} for key, v, w in pairs if v["pred"] != w["pred"]
    ]
    return Agreement(
        judge_a=sorted({str(v.get("judge")) for v in left.values()}),
        judge_b=sorted({str(v.get("judge")) for v in right.values()}),
        pairs=len(pairs),
        agreement=_mean([x == y for x, y in zip(yes_a, yes_b, strict=True)]),
        kappa=cohen_kappa(yes_a, yes_b),
        score_correlation=pearson([x for x, _ in scores], [y for _, y in scores]),
        yes_rate_a=_mean(yes_a),
        yes_rate_b=_mean(yes_b),
        only_a=len(left.keys() - right.keys()),
        only_b=len(right.keys() - left.keys()),
        different_text=different,
        disagreements=disagreements,
    )


def cohen_kappa(a: list[bool], b: list[bool]) -> float | None:
    """Cohen's kappa of two raters' yes/no on the same items; None where it is undefined (chance agreement 1)."""
    if not a:
        return None
    observed = _mean([x == y for x, y in zip(a, b, strict=True)])
    p_a, p_b = _mean(a), _mean(b)
    chance = p_a * p_b + (1 - p_a) * (1 - p_b)
    return None if chance >= 1 else (observed - chance) / (1 - chance)


def pearson(x: list[float], y: list[float]) -> float | None:
    """Pearson's correlation; None with fewer than two pairs or no spread in either."""
    if len(x) < 2:
        return None
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((p - mx) * (q - my) for p, q in zip(x, y, strict=True))
    sxx, syy = sum((p - mx) ** 2 for p in x), sum((q - my) ** 2 for q in y)
    return None if sxx == 0 or syy == 0 else sxy / math.sqrt(sxx * syy)


def _latest_ok(path: str | os.PathLike, judge: str | None, flag: str) -> dict[str, dict[str, Any]]:
    """The last `ok` verdict of each prediction in a verdicts file, of one judge."""
    records = [
        r for r in read_jsonl(path, must_exist=True) if r.get("status") == "ok" and r.get("pred") in ("yes", "no")
    ]
    judges = sorted({str(r.get("judge")) for r in records})
    if judge is None and len(judges) > 1:
        raise ConfigError(f"{path} holds verdicts of several judges ({', '.join(judges)}): name one with {flag}")
    if judge is not None and judge not in judges:
        raise ConfigError(f"{path}: no verdict of judge {judge!r} (it has {', '.join(judges) or 'none'})")
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        if (judge is None or record.get("judge") == judge) and "prediction_key" in record:
            latest[record["prediction_key"]] = record
    return latest


def _said(verdict: dict[str, Any]) -> dict[str, Any]:
    return {"pred": verdict["pred"], "score": verdict.get("score")}


def _mean(values: list[bool]) -> float | None:
    return sum(values) / len(values) if values else None
