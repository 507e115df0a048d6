"""A judge with open weights, served on this machine for the length of one run, whose identity is its weights.

`vstream eval judge preds.jsonl --judge-model qwen2.5-7b-instruct-q4_k_m.gguf` starts llama.cpp's server (through
`xllamacpp`, on the CPU) on a free localhost port; `--judge-model Qwen/Qwen2.5-7B-Instruct` (a Hub id, with
`--judge-revision COMMIT`) or a local checkpoint folder starts vLLM's OpenAI-compatible server instead (a GPU and
`pip install vllm`). Either judges with the verdict format forced by JSON schema and is stopped at the end,
whatever happens. Every verdict names the judge: `FILE@sha256:DIGEST` for a GGUF file, `OWNER/REPO@COMMIT` for a
Hub model, `FOLDER@sha256:DIGEST` (its weight, config and tokenizer files) for a folder: a judge that cannot be
retired, since anyone with the same weights gets the same judge.

    with local_judge("judge.gguf") as judge:
        run_judge(predictions, verdicts, JudgeConfig(base_url=judge.base_url, model=judge.model))
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vstream.errors import ConfigError, VStreamError
from vstream.model.fingerprint import file_digest

log = logging.getLogger(__name__)

STARTUP_S = 180.0
VLLM_STARTUP_S = 900.0
"""vLLM loads and compiles a 7B model in minutes."""
WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass(frozen=True)
class LocalJudge:
    """A running local judge: where it answers, and its name (the weights and their digest or commit)."""

    base_url: str
    model: str
    path: Path


@dataclass(frozen=True)
class JudgeWeights:
    """What `--judge-model` names, resolved: the weights on disk, the server that serves them, and their name."""

    path: Path
    server: str  # "llama.cpp" or "vllm"
    identity: str


def judge_identity(path: str | os.PathLike) -> str:
    """`FILE@sha256:DIGEST` (16 hex digits) of a judge's weights file, or of a checkpoint folder's files."""
    path = Path(path)
    if path.is_dir():
        return f"{path.name}@sha256:{folder_digest(path)[:16]}"
    return f"{path.name}@sha256:{file_digest(path)[:16]}"


def folder_digest(folder: Path) -> str:
    """A sha256 of a checkpoint folder's files that make its answers: weights, config, tokenizer, template."""
    import hashlib

    names = sorted(
        f.name
        for f in folder.iterdir()
        if f.is_file() and (f.suffix in WEIGHT_SUFFIXES or f.suffix in (".json", ".model", ".txt", ".jinja"))
    )
    if not any(Path(name).suffix in WEIGHT_SUFFIXES for name in names):
        raise ConfigError(f"--judge-model {folder}: no weight files (.safetensors or .bin) in the folder")
    digest = hashlib.sha256()
    for name in names:
        digest.update(f"{name}|{file_digest(folder / name)}\n".encode())
    return digest.hexdigest()


def resolve_judge_model(spec: str, revision: str | None = None) -> JudgeWeights:
    """The weights a `--judge-model` names: a GGUF file (llama.cpp), `OWNER/REPO/FILE.gguf` on the Hub
    (llama.cpp), a checkpoint folder (vLLM) or `OWNER/REPO` on the Hub at `revision` (vLLM)."""
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ConfigError(f"--judge-model {spec}: a GGUF file is needed (llama.cpp serves it)")
        return JudgeWeights(path, "llama.cpp", judge_identity(path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"--judge-model {spec}: a checkpoint folder needs its config.json (vLLM serves it)")
        return JudgeWeights(path, "vllm", judge_identity(path))
    parts = spec.split("/")
    if path.is_absolute() or spec.startswith(".") or len(parts) < 2:
        raise ConfigError(
            f"--judge-model {spec}: no such file (give a .gguf file, OWNER/REPO/FILE.gguf on the Hub, a checkpoint "
            "folder, or OWNER/REPO on the Hub for vLLM)"
        )
    repo = "/".join(parts[:2])
    try:
        if spec.endswith(".gguf") and len(parts) >= 3:
            from huggingface_hub import hf_hub_download

            local = Path(hf_hub_download(repo, "/".join(parts[2:]), revision=revision))
            return JudgeWeights(local, "llama.cpp", judge_identity(local))
        if len(parts) == 2:
            from huggingface_hub import snapshot_download

            local = Path(snapshot_download(repo, revision=revision))
            return JudgeWeights(local, "vllm", f"{repo}@{local.name}")  # the snapshot folder is its commit
    except Exception as exc:  # offline, unknown repo, file or revision: one clear line
        raise ConfigError(f"--judge-model {spec}: cannot get it from the Hub ({exc})") from exc
    raise ConfigError(f"--judge-model {spec}: not a .gguf file in a Hub repo, nor a Hub repo (OWNER/REPO)")


@contextmanager
def local_judge(
    spec: str, *, threads: int | None = None, parallel: int = 4, revision: str | None = None
) -> Iterator[LocalJudge]:
    """Serve the judge `spec` names on a free localhost port while the block runs, then stop it."""
    _require_server(spec)
    weights = resolve_judge_model(spec, revision)
    port = _free_port()
    if weights.server == "llama.cpp":
        threads = threads or max(1, (os.cpu_count() or 2))
        command = [sys.executable, "-m", "vstream.eval.llama_server", str(weights.path), str(port)]
        command += ["--threads", str(threads), "--parallel", str(parallel)]
        startup = STARTUP_S
    else:
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(weights.path)]
        command += ["--served-model-name", weights.identity, "--host", "127.0.0.1", "--port", str(port)]
        startup = VLLM_STARTUP_S
    log_file = Path(tempfile.mkstemp(prefix="vstream-judge-", suffix=".log")[1])
    with open(log_file, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(process, port, log_file, startup)
        log.info("judge %s served by %s on port %d", weights.identity, weights.server, port)
        yield LocalJudge(f"http://127.0.0.1:{port}/v1", weights.identity, weights.path)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log_file.unlink(missing_ok=True)


def _require_server(spec: str) -> None:
    """Refuse, before any download, when the server the judge needs is not installed (one line with the fix)."""
    gguf = spec.endswith(".gguf")
    module, fix = ("xllamacpp", "pip install xllamacpp") if gguf else ("vllm", "pip install vllm (on a GPU machine)")
    if importlib.util.find_spec(module) is None:
        what = "a GGUF judge needs llama.cpp" if gguf else "a Hugging Face judge model is served by vLLM"
        raise ConfigError(f"--judge-model {spec}: {what}: {fix}")


def _wait_healthy(process: subprocess.Popen, port: int, log_file: Path, startup: float) -> None:
    deadline = time.monotonic() + startup
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_file.read_text(errors="replace")[-2000:]
            raise VStreamError(f"the local judge server exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
                if reply.status == 200 and json.loads(reply.read() or b"{}").get("status", "ok") == "ok":
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.2)
    raise VStreamError(f"the local judge server did not answer /health in {startup:g} s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
