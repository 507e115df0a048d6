"""An OpenAI-compatible chat endpoint that misbehaves on purpose, for judge tests (a real HTTP server process).

    python tests/flaky_judge_server.py --mode flaky     # prints "READY <port>"

The good verdict is `yes`/5 when the prompt's correct answer is "Yes.", else `no`/1 (a fractional 4.8/1.5 in
`fraction` mode). Modes:

- `flaky`: for every distinct prompt, the 1st request gets HTTP 500, the 2nd a text that is not a verdict, later
  ones the verdict.
- `down`: always 503. `good`: always the verdict. `noschema`: refuses `response_format` (HTTP 400, as OpenAI does
  for models without structured outputs), otherwise the verdict. `echo`: a reply that repeats the prompt's example
  verdict and then gives its own. `fraction`: the verdict with a fractional score.
- A bad shape, on every request: `empty` (HTTP 200, empty body), `notjson` (an HTML page), `nochoices` (JSON with no
  `choices`), `emptychoices`, `nullcontent` (`message.content` null), `truncated` (JSON cut short), `ambiguous` (two
  different verdicts), `slow` (a reply after --slow seconds), `ratelimit` (429).
- `mixed`: refuses `response_format`; for every distinct prompt, the n-th request that is not refused gets the n-th
  of FAULTS, then an `echo` reply. Every bad reply carries a decoy verdict `no`/0 that a good one never gives.

--hold-refusals N keeps refused requests until N of them wait (or 5 s pass), so that N workers are all in
flight with `response_format` when the first refusal reaches them. --report-model NAME answers as that model
(with a system fingerprint). GET /stats gives the number of requests per kind.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = [
    "empty",
    "notjson",
    "nochoices",
    "emptychoices",
    "nullcontent",
    "truncated",
    "ambiguous",
    "slow",
    "500",
    "429",
]
DECOY = {"pred": "no", "score": 0}
EXAMPLE = {"pred": "yes", "score": 4}  # the example of vstream's own prompt


def serve(mode: str, slow: float, hold_refusals: int, report_model: str | None) -> None:
    seen: Counter = Counter()
    stats: Counter = Counter()
    lock = threading.Lock()
    held = threading.Condition(lock)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client gave up waiting (a timeout): nothing to answer
                pass

        def _count(self, kind: str) -> None:
            with lock:
                stats[kind] += 1

        def do_GET(self) -> None:
            with lock:
                body = json.dumps(dict(stats)).encode()
            self._send(200, body)

        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = request["messages"][-1]["content"]
            if mode in ("noschema", "mixed") and "response_format" in request:
                self._refuse()
                return
            digest = hashlib.sha256(prompt.encode()).hexdigest()
            with lock:
                seen[digest] += 1
                count = seen[digest]
            matches = "Correct answer: Yes." in prompt
            verdict = {"pred": "yes" if matches else "no", "score": 5 if matches else 1}
            kind = mode
            if mode == "flaky":
                kind = {1: "500", 2: "malformed"}.get(count, "good")
            elif mode == "mixed":
                kind = FAULTS[count - 1] if count <= len(FAULTS) else "echo"
            elif mode in ("noschema", "good"):
                kind = "good"
            elif mode == "down":
                kind = "503"
            elif mode == "fraction":
                verdict = {"pred": verdict["pred"], "score": 4.8 if matches else 1.5}
                kind = "good"
            self._count("server_error" if kind in ("500", "503") else kind if kind != "good" else "verdict")
            self._answer(kind, request, verdict)

        def _refuse(self) -> None:
            with held:
                stats["refused_format"] += 1
                deadline = time.monotonic() + 5
                while stats["refused_format"] < hold_refusals and time.monotonic() < deadline:
                    held.wait(0.05)
                held.notify_all()
            message = "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model."
            self._send(400, json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode())

        def _answer(self, kind: str, request: dict, verdict: dict) -> None:
            if kind in ("500", "503", "429"):
                self._send(int(kind), json.dumps({"error": {"message": "try again later"}}).encode())
                return
            if kind == "empty":
                self._send(200, b"")
                return
            if kind == "notjson":
                self._send(200, f"<html><body>Bad gateway {json.dumps(DECOY)}</body></html>".encode(), "text/html")
                return
            model = report_model or request["model"]
            completion = {"id": "x", "object": "chat.completion", "created": int(time.time()), "model": model}
            if report_model:
                completion["system_fingerprint"] = "fp_test"
            content = json.dumps(verdict)
            if kind == "malformed":
                content = "Well, it depends on how you look at it."
            elif kind == "echo":
                content = f"The format is {json.dumps(EXAMPLE)}. My verdict:\n```json\n{json.dumps(verdict)}\n```"
            elif kind == "ambiguous":
                content = f"{json.dumps({'pred': 'yes', 'score': 5})} or maybe {json.dumps(DECOY)}"
            elif kind == "slow":
                time.sleep(slow)
                content = json.dumps(DECOY)
            message = {"role": "assistant", "content": None if kind == "nullcontent" else content}
            choices = [{"index": 0, "finish_reason": "stop", "message": message}]
            if kind == "nochoices":
                completion |= DECOY
            elif kind != "emptychoices":
                completion["choices"] = choices
            else:
                completion["choices"] = []
            body = json.dumps(completion).encode()
            self._send(200, body[: len(body) // 2] if kind == "truncated" else body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    modes = ["flaky", "down", "good", "noschema", "echo", "fraction", *FAULTS[:-2], "ratelimit", "mixed"]
    parser.add_argument("--mode", choices=modes, default="flaky")
    parser.add_argument("--slow", type=float, default=2.0, help="seconds before a slow reply")
    parser.add_argument("--hold-refusals", type=int, default=0)
    parser.add_argument("--report-model")
    args = parser.parse_args()
    serve("429" if args.mode == "ratelimit" else args.mode, args.slow, args.hold_refusals, args.report_model)
