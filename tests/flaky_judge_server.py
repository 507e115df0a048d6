"""An OpenAI-compatible chat endpoint that misbehaves on purpose, for judge tests (a real HTTP server process).

    python tests/flaky_judge_server.py --mode flaky     # prints "READY <port>"

For every distinct prompt, `flaky` answers the 1st request with HTTP 500, the 2nd with text that is not a
verdict, and later ones with a verdict (`yes`/5 when the correct answer is "Yes.", else `no`/1).
`down` always answers 503. `noschema` refuses `response_format` (HTTP 400, as OpenAI does for models without
structured outputs) and otherwise answers with a verdict. GET /stats gives the number of requests per status.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(mode: str) -> None:
    seen: Counter = Counter()
    stats: Counter = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            with lock:
                self._send(200, dict(stats))

        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = request["messages"][-1]["content"]
            digest = hashlib.sha256(prompt.encode()).hexdigest()
            with lock:
                seen[digest] += 1
                count = seen[digest]
            if mode == "noschema" and "response_format" in request:
                with lock:
                    stats["refused_format"] += 1
                message = "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model."
                self._send(400, {"error": {"message": message, "type": "invalid_request_error"}})
                return
            if mode == "down" or (mode == "flaky" and count == 1):
                with lock:
                    stats["server_error"] += 1
                self._send(503 if mode == "down" else 500, {"error": {"message": "try again later"}})
                return
            if mode == "flaky" and count == 2:
                content = "Well, it depends on how you look at it."
                with lock:
                    stats["malformed"] += 1
            else:
                matches = "Correct answer: Yes." in prompt
                content = json.dumps({"pred": "yes" if matches else "no", "score": 5 if matches else 1})
                with lock:
                    stats["verdict"] += 1
            self._send(
                200,
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": request["model"],
                    "choices": [
                        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                    ],
                },
            )

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["flaky", "down", "noschema"], default="flaky")
    serve(parser.parse_args().mode)
