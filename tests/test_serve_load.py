"""benchmarks/serve_load.py runs against a real server and prints the JSON it promises (figures not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = {
    "sessions", "seconds", "fps_per_session_mean", "fps_per_session_min", "frames_dropped", "lag_s_max",
    "questions", "errors", "ttft_s_p50", "ttft_s_p99", "answer_s_p50", "answer_s_p99", "server_ttft_s_p50",
    "server_rss_mb",
}  # fmt: skip


def test_serve_load_prints_one_line_per_session_count(tiny_checkpoint, tmp_path):
    env = {**os.environ, "VSTREAM_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(ROOT / "benchmarks" / "serve_load.py"), "--model", str(tiny_checkpoint)]
    command += ["--sessions", "1,2", "--seconds", "4", "--ask-every", "1.5", "--max-new-tokens", "4"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    *rows, summary = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["sessions"] for row in rows] == [1, 2]
    for row in rows:
        assert row.keys() >= KEYS, sorted(KEYS - row.keys())
        assert row["errors"] == 0 and row["questions"] >= row["sessions"], row
        assert 0 < row["ttft_s_p50"] <= row["answer_s_p50"] and row["ttft_s_p50"] <= row["ttft_s_p99"]
        assert row["fps_per_session_min"] > 0 and row["server_rss_mb"] > 0 and row["seconds"] >= 4
    assert summary["max_sessions_keeping_up"] in (None, 1, 2) and summary["baseline_sessions"] == 1
