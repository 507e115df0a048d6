"""The benchmark scripts run and print the JSON they promise (their figures are not asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"frames", "dtype", "update_ms_p50", "update_ms_p99", "readout_ms_p50", "state_bytes", "peak_rss_mb"}


def run(script: str, *args: str) -> list[dict]:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_memory_update_prints_one_json_line_per_stream_length():
    rows = run("memory_update.py", "--frames", "30", "60", "--readouts", "3", "--dtype", "bfloat16")
    assert [row["frames"] for row in rows] == [30, 60]
    for row in rows:
        assert row.keys() >= KEYS and row["dtype"] == "bfloat16" and row["tokens"] == 681
    assert rows[0]["state_bytes"] == rows[1]["state_bytes"] > 0


def test_memory_update_takes_memory_flags():
    (row,) = run("memory_update.py", "--frames", "20", "--kind", "merge", "--num-frames", "4", "--readouts", "2")
    assert row["kind"] == "merge" and row["tokens"] == 4 * 64


def test_retrieval_agreement_reports_each_stream_kind():
    small = ["--num-patches", "64", "--feature-dim", "16", "--temporal-pool", "2", "--spatial-pool", "4"]
    rows = run("retrieval_agreement.py", "--frames", "120", "--checkpoints", "4", *small)
    assert [row["stream"] for row in rows] == ["scenes", "drift", "random"]
    for row in rows:
        assert row["checkpoints"] == 4 and 0.0 <= row["same_frame"] <= 1.0 and row["candidate_capacity"] == 75


def test_stream_latency_reports_each_stream_length(tmp_path):
    import os

    env = {**os.environ, "VSTREAM_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "stream_latency.py"),
            "--minutes",
            "0.5",
            "1",
            "--max-new-tokens",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        env=env,
    )
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["frames"] for row in rows] == [30, 60]
    assert rows[0]["state_bytes"] == rows[1]["state_bytes"] and rows[1]["memory_tokens"] == 84
    assert all(row["ttft_followup_s"] > 0 and row["ttft_s"] > 0 for row in rows)
    assert all(row["ttft_s"] > 0 and row["update_ms_p50"] > 0 for row in rows)
