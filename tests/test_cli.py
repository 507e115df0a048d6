"""The `vstream` command, run as a user runs it: a real process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from vstream import __version__
from vstream.__main__ import main


def vstream(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vstream", *args], capture_output=True, text=True, timeout=120)


def test_version_and_help():
    assert vstream("--version").stdout.strip() == f"vstream {__version__}"
    result = vstream("--help")
    assert result.returncode == 0 and "memory" in result.stdout


@pytest.mark.skipif(shutil.which("vstream") is None, reason="the console script is not installed on PATH")
def test_console_script_is_installed():
    result = subprocess.run(["vstream", "--version"], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == f"vstream {__version__}"


def test_memory_layout_with_flags_and_checkpoint_config(tmp_path):
    layout = json.loads(vstream("memory", "--json").stdout)
    assert layout["num_tokens"] == 681 and layout["token_layout"]["temporal"] == 400
    small = json.loads(
        vstream("memory", "--temporal-clusters", "8", "--memories", "temporal", "spatial", "--json").stdout
    )
    assert small["token_layout"] == {"temporal": 128, "spatial": 64}
    checkpoint = tmp_path / "config.json"
    checkpoint.write_text(json.dumps({"model_type": "vstream", "video_long_memory_length": 10, "compress_size": 4}))
    from_checkpoint = json.loads(vstream("memory", "--memory-config", str(checkpoint), "--json").stdout)
    assert from_checkpoint["token_layout"] == {"abstract": 25, "temporal": 160, "retrieved": 48, "spatial": 16}


def test_bad_values_give_one_line_errors_without_traceback(tmp_path):
    result = vstream("memory", "--spatial-pool", "3")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "vstream memory: error: spatial_pool=3 does not divide the 16×16 patch grid; use one of [1, 2, 4, 8, 16]"
    )
    missing = vstream("memory", "--memory-config", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr and "nope.json" in missing.stderr


def test_make_tiny_model_then_inspect_it(tmp_path, capsys):
    made = vstream("make-tiny-model", str(tmp_path / "tiny"), "--seed", "3")
    assert made.returncode == 0 and made.stdout.strip() == str(tmp_path / "tiny")
    assert (tmp_path / "tiny" / "config.json").is_file() and (tmp_path / "tiny" / "vision_tower").is_dir()
    assert main(["inspect", str(tmp_path / "tiny")]) == 0  # in this process: the command is the same function
    shown = capsys.readouterr().out
    assert "VStreamLlamaForCausalLM" in shown
    assert "abstract 4 + temporal 16 + retrieved 48 + spatial 16 = 84" in shown
    assert main(["inspect", str(tmp_path / "nowhere")]) == 2
    assert "no such checkpoint folder" in capsys.readouterr().err


def test_ask_writes_nothing_to_stderr_for_a_model_that_loads_in_a_blink(tmp_path):
    env = {**os.environ, "VSTREAM_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}  # tiny model built anew
    command = [sys.executable, "-m", "vstream", "ask", "--model", "tiny-random", "--max-new-tokens", "4"]
    for _ in range(2):  # building the tiny model, then loading it
        result = subprocess.run([*command, "--at", "2", "What?"], capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0 and result.stdout.startswith("[00:02] What?")
        assert result.stderr == ""  # no "Loading weights" or "Writing model shards" progress bars


def test_a_memory_config_file_with_a_model_is_refused_before_the_model_loads(tmp_path, capsys):
    checkpoint = str(tmp_path / "no-such-checkpoint")
    assert main(["ask", "--model", checkpoint, "--memory-config", "m.json", "--at", "1", "What?"]) == 2
    err = capsys.readouterr().err
    assert "--memory-config is not used with a model" in err  # not the missing checkpoint: checked first
