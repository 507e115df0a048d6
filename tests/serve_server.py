"""`vstream serve` as a real process on a free localhost port, for tests (as vLLM's `RemoteOpenAIServer`), and an
app served by uvicorn from a thread of the test process (to give it a model or a verdict made in the test).

with RemoteServer(["--model", str(tiny_checkpoint)]) as server:
    httpx.get(server.url("/health"))
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2 as httpx

from conftest import free_port

STARTUP_S = 120.0


class RemoteServer:
    """Starts `python -m vstream serve ARGS --port P`, waits until `/health` answers, and stops it on exit.

    Args:
        args: the command's arguments after `serve` (`--model` among them).
        env: extra environment variables.
        log: file that gets the server's output (default: a temporary file, shown when startup fails).
    """

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None, log: Path | None = None) -> None:
        self.port = free_port()
        self.args = [sys.executable, "-m", "vstream", "serve", *args, "--host", "127.0.0.1", "--port", str(self.port)]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log_path = log
        self.process: subprocess.Popen | None = None

    def url(self, path: str = "") -> str:
        """The server's address followed by `path`."""
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> RemoteServer:
        if self.log_path is None:
            import tempfile

            self.log_path = Path(tempfile.mkstemp(prefix="vstream-serve-", suffix=".log")[1])
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vstream serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url("/health"), timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"vstream serve did not answer /health in {STARTUP_S:g} s:\n{self.output()}")

    def output(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if getattr(self, "_log", None) is not None:
            self._log.close()


class InProcessServer:
    """uvicorn serving an app on a free localhost port from a thread of this process."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> InProcessServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
