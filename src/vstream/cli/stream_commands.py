"""`vstream ask` and `vstream chat`: questions about a playing stream, from the command line."""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from vstream.cli.model_args import (
    add_model_arguments,
    generation_options_from_args,
    load_model_from_args,
    memory_flags,
)
from vstream.errors import ConfigError, VStreamError
from vstream.memory.config import apply_memory_changes

CHAT_HELP = "commands: /status, /pause, /resume, /save PATH, /quit (an empty line shows the position)"
KEEP_TURNS = 4
"""Chat turns kept in the prompt (older ones are dropped so the prompt stays bounded)."""


def add_ask_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        nargs="?",
        default="synthetic",
        help="video file, URL, /dev/videoN, image folder, .safetensors features, or 'synthetic[:S[:SEED]]' "
        "(a generated test clip; the default)",
    )
    parser.add_argument(
        "--at",
        nargs=2,
        action="append",
        metavar=("SECONDS", "QUESTION"),
        required=True,
        help="ask QUESTION when the stream reaches SECONDS (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per answer")
    add_model_arguments(parser, speed=0.0)


def cmd_ask(args: argparse.Namespace) -> int:
    """Ask each question when the stream reaches its time, seeing only the frames up to then."""
    schedule = []
    for seconds, question in args.at:
        try:
            schedule.append((float(seconds), question))
        except ValueError:
            raise ConfigError(f"--at takes SECONDS then QUESTION; {seconds!r} is not a number of seconds") from None
    from vstream.stream.synthetic import synthetic_plan
    from vstream.synth.questions import world_answer

    plan = synthetic_plan(args.source)  # a synthetic stream knows its answers: shown beside the model's
    session = _session(args)
    try:  # not `with session`, which would start playing before ask_at holds the stream at the first question
        for timed in session.ask_at(schedule, options=generation_options_from_args(args)):
            truth = world_answer(plan, timed.answer.question, timed.time) if plan is not None else None
            if args.json:
                print(json.dumps({**timed.to_dict(), **({"truth": truth} if truth is not None else {})}), flush=True)
            else:
                a = timed.answer
                said = f"  (the stream's true answer: {truth})\n" if truth is not None else ""
                print(
                    f"[{_clock(timed.time)}] {a.question}\n  {a.text}\n{said}  (memory up to "
                    f"{_clock(a.latest_frame_time)}, {timed.frames_seen} frames, {timed.frames_dropped} dropped; "
                    f"first token {a.ttft_s:.2f} s, total {a.total_s:.2f} s)",
                    flush=True,
                )
    finally:
        session.close()
    return 0


def add_chat_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        nargs="?",
        default="synthetic",
        help="video file, URL, /dev/videoN, image folder, .safetensors features, or 'synthetic[:S[:SEED]]'",
    )
    parser.add_argument(
        "--prefill",
        action="store_true",
        help="keep the newest memory prefilled in the LLM, so a question only prefills itself "
        "(lower time to first token; the LLM works at every memory update)",
    )
    add_model_arguments(parser, speed=1.0)


def cmd_chat(args: argparse.Namespace, stdin: TextIO | None = None) -> int:
    """Play the stream in the background and answer questions typed at any time."""
    from vstream.cli.chat_input import ChatInput

    session = _session(args)
    options = generation_options_from_args(args)
    conversation = session.model.processor.conversation()
    typed = ChatInput(lambda: f"[{_position(session)}] > ", lambda: _status_line(session), stdin)
    print(
        f"playing {session.source.name} at {'full speed' if args.speed == 0 else f'{args.speed:g}x'}; "
        f"ask anything. {CHAT_HELP}",
        flush=True,
    )
    with typed, session:  # the terminal is held before the stream starts and given back after it stops
        while True:
            line = typed.read()
            if line is None or line.strip() in ("/quit", "/exit"):
                break
            text = line.strip()
            if not text:
                continue
            try:
                if text.startswith("/"):
                    _chat_command(session, text)
                    continue
                conversation.turns = conversation.turns[-KEEP_TURNS:]
                _answer(session, text, conversation, options)
            except VStreamError as exc:
                print(f"error: {exc}", flush=True)
        status = session.status()
    print(
        f"\nstopped at {_clock(status['position'])}: {status['frames_in_memory']} frames in memory, "
        f"{status['frames_dropped']} dropped",
        flush=True,
    )
    return 0


def _answer(session, text: str, conversation, options) -> None:
    """Print the answer as it is decoded; Ctrl-C stops it and returns to the prompt."""
    try:  # a Ctrl-C before the first piece also stops only the answer
        stream = session.stream(text, conversation=conversation, options=options)
        for piece in stream:
            print(piece, end="", flush=True)
    except KeyboardInterrupt:
        print("\n  (answer stopped)", flush=True)
        return
    a = stream.answer
    print(f"\n  (about the stream up to {_clock(a.latest_frame_time)}; first token {a.ttft_s:.2f} s)", flush=True)


def _chat_command(session, text: str) -> None:
    command, _, rest = text.partition(" ")
    if command == "/status":
        print(json.dumps(session.status(), indent=1), flush=True)
    elif command == "/pause":
        session.pause()
        print("paused", flush=True)
    elif command == "/resume":
        session.resume()
        print("playing", flush=True)
    elif command == "/save" and rest.strip():
        session.save(rest.strip())
        print(f"memory saved to {rest.strip()}", flush=True)
    else:
        print(CHAT_HELP, flush=True)


def _session(args: argparse.Namespace):
    from vstream.stream import StreamSession

    flags = memory_flags(args)
    model = load_model_from_args(args)
    return StreamSession(
        model,
        args.source,
        fps="auto" if args.fps is None else args.fps,
        speed=args.speed,
        memory_config=apply_memory_changes(model.memory_config(), flags),
        prefill=getattr(args, "prefill", False),
    )


def _position(session) -> str:
    status = session.status()
    state = {"playing": ">", "paused": "||", "ended": "end"}.get(status["state"], status["state"])
    return f"{_clock(status['position'])} {state} | {status['frames_in_memory']} frames"


def _status_line(session) -> str:
    """The bottom line of the chat on a terminal: where the stream is and how the engine keeps up."""
    status = session.status()
    parts = [
        session.source.name,
        f"{_clock(status['position'])} {status['state']}",
        f"{status['frames_in_memory']} frames in memory",
        f"{status['frames_dropped']} dropped",
    ]
    if status.get("end_reason"):
        parts.append(str(status["end_reason"]))
    return " | ".join(parts) + "   (/status /pause /resume /save PATH /quit)"


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
