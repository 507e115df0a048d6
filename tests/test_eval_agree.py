"""`vstream eval agree`: two judges' verdicts on the same predictions, with known disagreements."""

from __future__ import annotations

import json

import pytest

from vstream.__main__ import main
from vstream.errors import ConfigError
from vstream.eval.agree import agreement, cohen_kappa, pearson
from vstream.eval.judge import run_rule
from vstream.eval.records import content_key

# (answer, prediction): exact match says yes for p1, p2, p3, p7, p10 and no for p4, p5, p6, p8
ROWS = {
    "p1": ("red circle", "Red circle."),
    "p2": ("3", "three"),
    "p3": ("yes", "Yes"),
    "p4": ("blue square", "green square"),
    "p5": ("no", "yes"),
    "p6": ("7", "1"),
    "p7": ("a dog", "dog"),
    "p8": ("white", "black"),
    "p10": ("cat", "cat"),
}
B_SAYS = {"p1": "yes", "p2": "no", "p3": "yes", "p4": "no", "p5": "yes", "p6": "no", "p7": "yes", "p10": "no"}


def predictions(path, rows=ROWS):
    with open(path, "w") as out:
        for key, (answer, text) in rows.items():
            record = {"key": key, "id": key, "question": f"q {key}?", "answer": answer, "prediction": text}
            out.write(json.dumps({**record, "status": "ok"}) + "\n")
    return path


def llm_verdicts(path, says, scores=None, judge="local-judge", changed=(), extra=()):
    """Verdicts shaped as `eval judge` writes them; `changed`: judged another text of those predictions."""
    with open(path, "a") as out:
        for key, pred in says.items():
            answer, text = ROWS[key]
            text = text + " (older answer)" if key in changed else text
            content = content_key({"question": f"q {key}?", "answer": answer, "prediction": text})
            score = (scores or {}).get(key, 4 if pred == "yes" else 1)
            record = {"key": f"v-{key}", "prediction_key": key, "content": content, "judge": judge, "status": "ok"}
            out.write(json.dumps({**record, "pred": pred, "score": score}) + "\n")
        for record in extra:
            out.write(json.dumps(record) + "\n")
    return path


def test_agreement_of_a_rule_and_a_judge_with_known_disagreements(tmp_path):
    preds = predictions(tmp_path / "run.jsonl")
    rule = tmp_path / "rule.verdicts.jsonl"
    assert run_rule(preds, rule)["matched"] == 5
    failed = {"prediction_key": "p8", "status": "error", "judge": "local-judge", "reason": "timeout"}
    judge = llm_verdicts(
        tmp_path / "judge.verdicts.jsonl",
        B_SAYS,
        changed=("p10",),
        extra=[failed],
    )
    result = agreement(rule, judge)
    # pairs p1..p7 (p8: only the rule has a verdict; p10: the judge saw another text)
    assert (result.pairs, result.only_a, result.only_b, result.different_text) == (7, 1, 0, 1)
    assert result.agreement == pytest.approx(5 / 7)  # p2 and p5 differ
    assert result.kappa == pytest.approx(10 / 24)  # A and B each say yes 4 times in 7
    assert result.score_correlation is None  # a rule gives no 0-5 score
    assert sorted(d["prediction_key"] for d in result.disagreements) == ["p2", "p5"]
    assert result.judge_b == ["local-judge"] and result.judge_a[0].startswith("rule:")


def test_score_correlation_and_one_file_holding_two_judges(tmp_path, capsys):
    both = tmp_path / "run.verdicts.jsonl"
    says = {k: v for k, v in B_SAYS.items() if k != "p10"}
    llm_verdicts(both, says, {k: i % 6 for i, k in enumerate(says)}, judge="judge-a")
    llm_verdicts(both, says, {k: (i % 6) // 2 for i, k in enumerate(says)}, judge="judge-b")
    with pytest.raises(ConfigError, match=r"several judges .*--judge-a"):
        agreement(both, both)
    result = agreement(both, both, judge_a="judge-a", judge_b="judge-b")
    assert result.pairs == 7 and result.agreement == 1.0 and result.kappa == 1.0
    scores = [i % 6 for i in range(7)]
    assert result.score_correlation == pytest.approx(pearson(scores, [s // 2 for s in scores]))
    assert 0.9 < result.score_correlation < 1.0

    assert main(["eval", "agree", str(both), str(both), "--judge-a", "judge-a", "--judge-b", "judge-b"]) == 0
    out = capsys.readouterr().out
    assert "predictions judged by both: 7" in out and "yes/no agreement: 100.0 %" in out
    assert main(["eval", "agree", str(both), str(both), "--judge-a", "judge-a", "--judge-b", "nobody"]) == 2
    assert "no verdict of judge 'nobody'" in capsys.readouterr().err


def test_kappa_and_correlation_where_they_are_undefined():
    assert cohen_kappa([True, True], [True, True]) is None  # both always yes: chance agreement is 1
    assert cohen_kappa([True, False, True, False], [False, True, False, True]) == pytest.approx(-1.0)
    assert pearson([1, 2], [3, 3]) is None and pearson([1], [2]) is None
