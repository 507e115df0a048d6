"""Many sessions at once on one `vstream serve`: do streams keep up and do answers stay quick as sessions grow.

    python benchmarks/serve_load.py                                      # tiny random model, N = 1, 2, 4, 8, 16
    python benchmarks/serve_load.py --sessions 1,4 --seconds 10 --ask-every 2
    python benchmarks/serve_load.py --model smol --device cuda --sessions 1,2,4,8,16,32 --seconds 60

Starts `python -m vstream serve` as a subprocess on a free localhost port (nothing else is reached). For each N
it opens N sessions on generated streams (`synthetic:SECONDS:SEED`, a different seed each) played in real time
at 1 fps, waits for each to hold its first frame, then for `--seconds` asks every session a question every
`--ask-every` seconds (one thread per session, starts staggered, answers read as Server-Sent Events), reads each
session's counters and the server's resident memory, deletes the sessions and prints one JSON line:
`sessions`, `seconds`, `fps_per_session_mean`/`_min` (frames that reached the memory per wall second: 1.0 is
keeping up), `frames_dropped`, `lag_s_max`, `questions`, `errors`, `ttft_s_p50`/`_p99` (request to first token,
as the client sees it), `answer_s_p50`/`_p99` (request to the end of the answer), `server_ttft_s_p50` (the
server's own `ttft_s`), `server_rss_mb`. A last line gives `max_sessions_keeping_up`: the largest N whose TTFT
p50 stayed within 2x of the first N's and whose every session kept up (>= 0.9 frames/s).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx2 as httpx
import psutil

STARTUP_S = 180.0
KEEP_UP_FPS = 0.9
SLOWDOWN = 2.0
QUESTIONS = ("What is on the screen now?", "What happened in the last few seconds?", "Which objects are visible?")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(args: argparse.Namespace, max_sessions: int, log: Path) -> tuple[subprocess.Popen, str]:
    """`vstream serve` on a free localhost port; returns the process and its base URL once /health answers."""
    port = free_port()
    command = [sys.executable, "-m", "vstream", "serve", "--model", args.model, "--host", "127.0.0.1"]
    command += ["--port", str(port), "--max-sessions", str(max_sessions), "--max-new-tokens", str(args.max_new_tokens)]
    if args.device:
        command += ["--device", args.device]
    with log.open("w") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"vstream serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2, trust_env=False).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"vstream serve did not answer /health in {STARTUP_S:g} s:\n{log.read_text()[-3000:]}")


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (nearest rank) of `values`, None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))], 4)


def ask(client: httpx.Client, sid: str, question: str) -> dict:
    """One question over SSE: client-side times to the first token and to the end, and the server's `done`."""
    began, first, done = time.monotonic(), None, None
    body = {"question": question, "stream": True}
    with client.stream("POST", f"/v1/sessions/{sid}/questions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.read().decode()[:200]}")
        event = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line[len("event:") :].strip()
            elif line.startswith("data:"):
                if event == "token" and first is None:
                    first = time.monotonic() - began
                elif event == "done":
                    done = json.loads(line[len("data:") :])
                elif event == "error":
                    raise RuntimeError(line)
    if done is None:
        raise RuntimeError("the answer stream ended without a done event")
    total = time.monotonic() - began
    return {"ttft_s": first if first is not None else total, "answer_s": total, "server_ttft_s": done["ttft_s"]}


def asker(url: str, sid: str, index: int, count: int, every: float, stop: threading.Event, out: list, errors: list):
    """Ask `sid` a question every `every` seconds until `stop`; the first one staggered by its place in the batch."""
    with httpx.Client(base_url=url, timeout=120, trust_env=False) as client:
        next_at = time.monotonic() + every * index / count
        asked = 0
        while not stop.wait(max(0.0, next_at - time.monotonic())):
            try:
                out.append(ask(client, sid, QUESTIONS[asked % len(QUESTIONS)]))
            except (RuntimeError, httpx.HTTPError) as exc:
                errors.append(str(exc))
            asked += 1
            next_at += every
            while next_at < time.monotonic():  # an answer slower than the period: skip the missed turns
                next_at += every


def rss_mb(pid: int) -> float:
    """Resident memory of the server and any process it started, MiB."""
    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):  # it ended meanwhile
            total += child.memory_info().rss
    return round(total / 2**20, 1)


def run_level(url: str, pid: int, n: int, args: argparse.Namespace) -> dict:
    """N sessions for `args.seconds`; their counters, the answer times and the server's memory."""
    clip = math.ceil(args.seconds) + 30  # longer than the run: every stream is still playing at the end
    with httpx.Client(base_url=url, timeout=120, trust_env=False) as api:
        sids = []
        try:
            for i in range(n):
                body = {"source": f"synthetic:{clip}:{i}", "fps": 1, "speed": 1, "name": f"load-{n}-{i}"}
                response = api.post("/v1/sessions", json=body)
                if response.status_code != 201:
                    raise SystemExit(f"POST /v1/sessions: {response.status_code} {response.text[:300]}")
                sids.append(response.json()["id"])
            deadline = time.monotonic() + 120
            for sid in sids:
                while api.get(f"/v1/sessions/{sid}").json()["frames_in_memory"] < 1:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"session {sid} got no frame in 120 s")
                    time.sleep(0.05)
            before = {sid: api.get(f"/v1/sessions/{sid}").json() for sid in sids}
            began = time.monotonic()
            stop, answers, errors = threading.Event(), [], []
            threads = [
                threading.Thread(target=asker, args=(url, sid, i, n, args.ask_every, stop, answers, errors))
                for i, sid in enumerate(sids)
            ]
            for thread in threads:
                thread.start()
            stop.wait(args.seconds)  # the measured window itself, not a wait for a condition
            after = {sid: api.get(f"/v1/sessions/{sid}").json() for sid in sids}
            elapsed = time.monotonic() - began
            stop.set()
            for thread in threads:
                thread.join(120)
            rss = rss_mb(pid)
        finally:
            for sid in sids:
                api.delete(f"/v1/sessions/{sid}")
    fps = [(after[s]["frames_in_memory"] - before[s]["frames_in_memory"]) / elapsed for s in sids]
    lags = [after[s]["lag_s"] for s in sids if after[s]["lag_s"] is not None]
    return {
        "sessions": n,
        "seconds": round(elapsed, 2),
        "fps_per_session_mean": round(sum(fps) / n, 3),
        "fps_per_session_min": round(min(fps), 3),
        "frames_dropped": sum(after[s]["frames_dropped"] - before[s]["frames_dropped"] for s in sids),
        "lag_s_max": round(max(lags), 4) if lags else None,
        "questions": len(answers),
        "errors": len(errors),
        "ttft_s_p50": percentile([a["ttft_s"] for a in answers], 50),
        "ttft_s_p99": percentile([a["ttft_s"] for a in answers], 99),
        "answer_s_p50": percentile([a["answer_s"] for a in answers], 50),
        "answer_s_p99": percentile([a["answer_s"] for a in answers], 99),
        "server_ttft_s_p50": percentile([a["server_ttft_s"] for a in answers], 50),
        "server_rss_mb": rss,
        "model": args.model,
        **({"first_error": errors[0][:300]} if errors else {}),
    }


def keeps_up(row: dict, baseline: dict) -> bool:
    return (
        row["fps_per_session_min"] >= KEEP_UP_FPS
        and row["ttft_s_p50"] is not None
        and baseline["ttft_s_p50"] is not None
        and row["ttft_s_p50"] <= SLOWDOWN * baseline["ttft_s_p50"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", default="1,2,4,8,16", help="comma-separated session counts (default: 1,2,4,8,16)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per session count")
    parser.add_argument("--ask-every", type=float, default=5.0, help="seconds between a session's questions")
    parser.add_argument("--model", default="tiny-random", help="checkpoint folder, Hub id, smol or tiny-random")
    parser.add_argument("--device", default=None, help="the server's --device (default: its own)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args()
    try:
        counts = [int(part) for part in args.sessions.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--sessions takes comma-separated integers, got {args.sessions!r}")
    if not counts or min(counts) < 1 or len(counts) > 16 or max(counts) > 256:
        parser.error("--sessions: 1 to 16 counts, each in 1..256")
    if not 1 <= args.seconds <= 3600 or not 0.5 <= args.ask_every <= 3600:
        parser.error("--seconds must be in 1..3600 and --ask-every in 0.5..3600")

    log = Path(tempfile.mkstemp(prefix="vstream-serve-load-", suffix=".log")[1])
    process, url = start_server(args, max(counts), log)
    rows = []
    try:
        for n in counts:
            row = run_level(url, process.pid, n, args)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    passing = [row["sessions"] for row in rows if keeps_up(row, rows[0])]
    summary = {
        "max_sessions_keeping_up": max(passing) if passing else None,
        "baseline_sessions": rows[0]["sessions"],
        "criterion": f"ttft_s_p50 <= {SLOWDOWN:g}x the baseline's and fps_per_session_min >= {KEEP_UP_FPS:g}",
        "server_log": str(log),
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
