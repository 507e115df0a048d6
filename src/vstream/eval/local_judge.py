"""A judge with open weights, served on this machine for the length of one run, whose identity is its file.

`vstream eval judge preds.jsonl --judge-model qwen2.5-7b-instruct-q4_k_m.gguf` starts llama.cpp's server (through
`xllamacpp`) on a free localhost port, judges with the verdict format forced by JSON schema, and stops the server
at the end, whatever happens. Every verdict names the judge as `FILE@sha256:DIGEST`: a judge that cannot be
retired, since anyone with the same file gets the same judge.

    with local_judge("judge.gguf") as judge:
        run_judge(predictions, verdicts, JudgeConfig(base_url=judge.base_url, model=judge.model))
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class LocalJudge:
    """A running local judge: where it answers, and its name (the file and its sha256)."""

    base_url: str
    model: str
    path: Path


def judge_identity(path: str | os.PathLike) -> str:
    """`FILE@sha256:DIGEST` (16 hex digits) of a judge's weights file."""
    path = Path(path)
    return f"{path.name}@sha256:{file_digest(path)[:16]}"


def resolve_judge_model(spec: str) -> Path:
    """The GGUF file a `--judge-model` names: a path, or `OWNER/REPO/FILE.gguf` on the Hugging Face Hub."""
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ConfigError(f"--judge-model {spec}: a GGUF file is needed (llama.cpp serves it)")
        return path
    parts = spec.split("/")
    if len(parts) >= 3 and spec.endswith(".gguf") and not path.is_absolute():
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download("/".join(parts[:2]), "/".join(parts[2:])))
        except Exception as exc:  # offline, unknown repo or file: one clear line
            raise ConfigError(f"--judge-model {spec}: cannot download it from the Hub ({exc})") from exc
    raise ConfigError(
        f"--judge-model {spec}: no such file (give a .gguf file, or OWNER/REPO/FILE.gguf on the Hub; for a judge "
        "served by vLLM, start `vllm serve MODEL --revision COMMIT` and pass --base-url and --model)"
    )


@contextmanager
def local_judge(spec: str, *, threads: int | None = None, parallel: int = 4) -> Iterator[LocalJudge]:
    """Serve the judge `spec` names on a free localhost port while the block runs, then stop it."""
    try:
        import xllamacpp  # noqa: F401 - only to fail early with the fix
    except ImportError as exc:
        raise ConfigError("--judge-model needs xllamacpp: pip install xllamacpp") from exc
    path = resolve_judge_model(spec)
    identity = judge_identity(path)
    port = _free_port()
    threads = threads or max(1, (os.cpu_count() or 2))
    log_file = Path(tempfile.mkstemp(prefix="vstream-judge-", suffix=".log")[1])
    command = [sys.executable, "-m", "vstream.eval.llama_server", str(path), str(port), "--threads", str(threads)]
    command += ["--parallel", str(parallel)]
    with open(log_file, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(process, port, log_file)
        log.info("judge %s serving on port %d", identity, port)
        yield LocalJudge(f"http://127.0.0.1:{port}/v1", identity, path)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log_file.unlink(missing_ok=True)


def _wait_healthy(process: subprocess.Popen, port: int, log_file: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
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
    raise VStreamError(f"the local judge server did not answer /health in {STARTUP_S:g} s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
