"""`vstream ask` and `vstream chat` as a user runs them: real processes, real videos, the tiny random model."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import encode_video


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The environment of the commands: a cache folder of the tests' own (the tiny model is built there once)."""
    return {**os.environ, "VSTREAM_CACHE": str(tmp_path_factory.mktemp("cache")), "HF_HUB_OFFLINE": "1"}


def vstream(env, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vstream", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_ask_json_answers_at_the_requested_times(env, tmp_path):
    clip = encode_video(tmp_path / "clip.mp4", frames=30, fps=3)  # 10 s
    result = vstream(
        env,
        "ask",
        str(clip),
        "--model",
        "tiny-random",
        "--at",
        "6.5",
        "Later?",
        "--at",
        "0",
        "What now?",
        "--json",
        "--max-new-tokens",
        "4",
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["time"] for r in records] == [0.0, 6.5] and [r["question"] for r in records] == ["What now?", "Later?"]
    for record in records:
        assert {
            "time",
            "question",
            "answer",
            "latest_frame_time",
            "frames_seen",
            "frames_dropped",
            "ttft_s",
            "total_s",
        } <= record.keys()
        assert record["time"] - 1 < record["latest_frame_time"] <= record["time"]
        assert record["frames_dropped"] == 0 and record["ttft_s"] <= record["total_s"]
    assert [r["frames_seen"] for r in records] == [1, 7]


def test_ask_on_a_generated_clip_by_default(env):
    result = vstream(env, "ask", "--model", "tiny-random", "--at", "3", "What is happening?", "--max-new-tokens", "4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[00:03] What is happening?") and "memory up to 00:03" in result.stdout


@pytest.mark.parametrize(
    ("source", "at", "message"),
    [
        ("/nonexistent/video.mp4", "1", "/nonexistent/video.mp4: no such file"),
        ("notes.mp4", "1", "notes.mp4: not a video FFmpeg can read"),
        ("synthetic:4", "soon", "--at takes SECONDS then QUESTION"),
        ("synthetic:2", "1", "synthetic:2: expected synthetic[:SECONDS[:SEED]] with at least 3 seconds"),
        ("synthetic:4", "-5", "a question's time is seconds of stream >= 0"),
    ],
)
def test_ask_errors_are_one_line(env, tmp_path, source, at, message):
    (tmp_path / "notes.mp4").write_text("not a video")
    if source == "notes.mp4":
        source = str(tmp_path / source)
    result = vstream(env, "ask", source, "--model", "tiny-random", "--at", at, "What?")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("vstream ask: error: ") and message in last


def test_chat_answers_typed_questions_while_the_stream_plays(env, tmp_path):
    clip = encode_video(tmp_path / "clip.mp4", frames=30, fps=2)  # 15 s
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vstream",
            "chat",
            str(clip),
            "--model",
            "tiny-random",
            "--max-new-tokens",
            "4",
            "--prefill",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    header = read_until(process.stdout, r"\] > ")
    assert header.startswith("playing") and "/quit" in header
    while not re.search(r"\| [1-9]\d* frames\] > $", header):  # empty lines until a frame is in the memory
        process.stdin.write("\n")
        process.stdin.flush()
        header = read_until(process.stdout, r"\] > $")
    out, err = process.communicate("What is happening?\n/status\nAnd now?\n/quit\n", timeout=120)
    assert process.returncode == 0, err
    assert out.count("(about the stream up to 00:0") == 2 and '"state": "playing"' in out
    status = json.loads(out[out.index("{") : out.index("}") + 1])
    assert status["snapshots_prefilled"] >= 1 and status["prefix_cache_misses"] + status["prefix_cache_hits"] == 1
    assert "stopped at" in out and "Traceback" not in err


def read_until(pipe, pattern: str, timeout: float = 60) -> str:
    """What a process writes to `pipe` until it matches `pattern` (read unbuffered: a prompt has no newline)."""
    text, deadline = "", time.monotonic() + timeout
    while not re.search(pattern, text):
        assert time.monotonic() < deadline, f"no {pattern!r} in {text!r}"
        if select.select([pipe], [], [], 0.2)[0]:
            chunk = os.read(pipe.fileno(), 4096).decode()
            assert chunk, f"the process closed its output after {text!r}"
            text += chunk
    return text


class Terminal:
    """`vstream chat` in a real pseudo-terminal, its screen rendered by a VT100 emulator (pexpect + pyte)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        import pexpect
        import pyte

        class Screen(pyte.Screen):
            def write_process_input(screen, data: str) -> None:  # answers cursor-position requests, as xterm does
                self.child.send(data)

        self.pexpect = pexpect
        self.screen = Screen(160, 24)
        self.stream = pyte.ByteStream(self.screen)
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "vstream", *args],
            env={**env, "TERM": "xterm"},
            dimensions=(24, 160),
            preexec_fn=_default_sigint,
        )

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match:
        """Read the terminal until its screen shows `pattern`; the match."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.text())
            if match:
                return match
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} never appeared; the screen:\n{self.text()}")
            with contextlib.suppress(self.pexpect.TIMEOUT):
                self.stream.feed(self.child.read_nonblocking(65536, timeout=0.2))


def _default_sigint() -> None:
    """Ctrl-C interrupts the program, as in a user's terminal, even when the tests run as a background job (which
    starts with SIGINT ignored, and a program keeps that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_chat_in_a_terminal_shows_the_position_moving_while_the_user_types(env, tmp_path):
    clip = encode_video(tmp_path / "clip.mp4", frames=40, fps=2)  # 20 s, played in real time
    term = Terminal(["chat", str(clip), "--model", "tiny-random", "--max-new-tokens", "4"], env)
    try:
        term.wait_for("ask anything")
        prompt = term.wait_for(r"\[00:(\d\d) > \| \d+ frames\] >")  # drawn by prompt_toolkit
        term.child.send("What is ha")  # half a question typed, nothing sent: the position still moves
        bar = term.wait_for(r"clip\.mp4 \| 00:(\d\d) playing \| \d+ frames in memory \| 0 dropped")
        first = int(bar.group(1))
        moved = term.wait_for(rf"\[00:(?!{first:02d})(\d\d) > \| \d+ frames\] > What is ha", timeout=10)
        assert int(moved.group(1)) > first >= int(prompt.group(1))
        term.wait_for(rf"clip\.mp4 \| 00:{int(moved.group(1)):02d} playing")  # the status bar follows
        term.child.sendline("ppening?")
        term.wait_for(r"\(about the stream up to 00:\d\d; first token \d+\.\d\d s\)\n\[")  # and the next prompt
        term.child.sendcontrol("d")  # end of input: the chat stops cleanly
        term.wait_for(r"stopped at 00:\d\d: \d+ frames in memory, 0 dropped")
        term.child.expect(term.pexpect.EOF, timeout=30)
    finally:
        term.child.close(force=True)
    assert term.child.exitstatus == 0 and "Traceback" not in term.text()


def test_chat_in_a_terminal_prints_stream_warnings_above_the_prompt_not_through_it(env):
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("live_server.py")), "--seconds", "30", "--drop-after", "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{server.stdout.readline().split()[1]}/live.ts"
    term = Terminal(["chat", url, "--model", "tiny-random", "--max-new-tokens", "4"], env)
    try:
        term.wait_for(r"\[\d\d:\d\d > \| \d+ frames\] >")
        term.child.send("Who is th")  # typing while the connection drops and comes back
        term.wait_for("reconnecting")
        term.wait_for(r"\[\d\d:\d\d > \| \d+ frames\] > Who is th")  # the prompt and the typing are redrawn intact
        lines = term.text().splitlines()
        (warning,) = [line for line in lines if "reconnecting" in line]
        assert warning.startswith(tuple("0123456789")) and "] >" not in warning  # a whole log line, on its own
        prompt_row = next(i for i, line in enumerate(lines) if "] > Who is th" in line)
        assert prompt_row > lines.index(warning) and lines[prompt_row].startswith("[")
        term.child.sendline("is?")
        term.wait_for(r"\(about the stream up to \d\d:\d\d; first token [^\n]*\n\[")  # and the next prompt
        term.child.sendcontrol("d")
        term.child.expect(term.pexpect.EOF, timeout=30)
    finally:
        term.child.close(force=True)
        server.terminate()
        server.wait(10)


FULL_MEMORY = r"\[00:02 end \| 3 frames\] >"
"""The prompt once a 3 s clip played at speed 0 is all in the memory (at 1 fps: 3 frames; "end" alone is not enough:
the source ends before its last frames are encoded)."""


def test_chat_in_a_terminal_ctrl_c_stops_an_answer_and_the_chat_goes_on(env, tmp_path):
    clip = encode_video(tmp_path / "clip.mp4", frames=6, fps=2)  # 3 s, played at once: the memory is then fixed
    args = ["chat", str(clip), "--model", "tiny-random", "--max-new-tokens", "20000", "--speed", "0"]
    term = Terminal(args, env)
    try:
        term.wait_for(FULL_MEMORY)
        term.child.sendline("Tell me everything.")  # 20,000 tokens: far longer than the test waits
        term.wait_for(r"Tell me everything\.\n\S")  # the answer has begun to stream in
        term.child.sendintr()
        term.wait_for(r"\(answer stopped\)\n" + FULL_MEMORY)  # back at the prompt, the session still up
        term.child.sendline("/status")
        term.wait_for(r'"state": "ended"')
        term.wait_for(r"\n\}\n" + FULL_MEMORY)  # the next prompt reads the terminal: Ctrl-D goes to it
        term.child.sendcontrol("d")
        term.child.expect(term.pexpect.EOF, timeout=30)
    finally:
        term.child.close(force=True)
    assert term.child.exitstatus == 0 and "Traceback" not in term.text()


def test_chat_in_a_terminal_keeps_a_ctrl_d_typed_while_an_answer_prints(env, tmp_path):
    clip = encode_video(tmp_path / "clip.mp4", frames=6, fps=2)
    args = ["chat", str(clip), "--model", "tiny-random", "--max-new-tokens", "300", "--speed", "0"]
    term = Terminal(args, env)
    try:
        term.wait_for(FULL_MEMORY)
        term.child.sendline("Tell me more.")
        term.wait_for(r"Tell me more\.\n\S")  # no prompt reads the terminal now: the answer prints
        term.child.sendcontrol("d")  # typed ahead: it ends the chat at the next prompt
        term.wait_for(r"\(about the stream up to 00:02; first token")  # the answer is whole
        term.wait_for(r"stopped at 00:02: 3 frames in memory, 0 dropped")
        term.child.expect(term.pexpect.EOF, timeout=30)
    finally:
        term.child.close(force=True)
    assert term.child.exitstatus == 0 and "Traceback" not in term.text()
