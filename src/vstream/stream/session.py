"""StreamSession: one stream, its memory and both handlers; the Python API the commands, server and evaluation share.

with StreamSession(model, "rtsp://camera/stream", speed=1) as session:   # starts playing in the background
    time.sleep(30)
    print(session.ask("What has happened so far?").text)
    session.save("state.safetensors")                                    # resume later with resume_from=

# questions at given stream times, each seeing only the frames up to then:
for timed in StreamSession(model, "clip.mp4", speed=0).ask_at([(10, "Who came in?"), (60, "What now?")]):
    print(timed.time, timed.answer.text)
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from vstream.errors import SessionError
from vstream.memory import BaseMemory, MemoryConfig, MemorySnapshot, load_memory
from vstream.model.answer import Answer, AnswerStream
from vstream.model.assistant import VStream
from vstream.model.generation import GenerationOptions
from vstream.model.prompts import Conversation
from vstream.stream.frame_handler import FrameHandler
from vstream.stream.metrics import Metrics
from vstream.stream.prefill import PrefixWarmer
from vstream.stream.question_handler import QuestionHandler
from vstream.stream.sources import AUTO, FileSource, VideoSource, open_source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimedAnswer:
    """An answer to a question asked at stream time `time`, with the stream's counters at that moment."""

    time: float
    answer: Answer
    frames_seen: int
    frames_dropped: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON record `vstream ask --json` prints."""
        a = self.answer
        return {
            "time": self.time,
            "question": a.question,
            "answer": a.text,
            "latest_frame_time": a.latest_frame_time,
            "frames_seen": self.frames_seen,
            "frames_dropped": self.frames_dropped,
            "ttft_s": round(a.ttft_s, 4),
            "total_s": round(a.total_s, 4),
            "prompt_tokens": a.prompt_tokens,
            "memory_tokens": a.memory_tokens,
            "new_tokens": a.new_tokens,
            "stop_reason": a.stop_reason,
        }


class StreamSession:
    """A video source played into a memory by a frame handler, with a question handler answering from it.

    Args:
        model: the loaded model (its vision tower encodes, its LLM answers).
        source: a `VideoSource` or anything `open_source` takes (file, URL, /dev/videoN, folder, .safetensors).
        fps: frames per second taken from the source (None: every frame); `"auto"`: 1, or a feature file's
            own times.
        speed: 1 real time, 2 twice as fast, 0 as fast as possible (files only; nothing is dropped).
        memory: the memory to write (default: a new one of `memory_config`).
        memory_config: the memory's sizes (default: the model's, `model.memory_config()`).
        resume_from: a memory state saved by `save`; a file source continues after its last frame.
        encoder: replaces the model's vision tower (frames -> features), e.g. to measure or to test.
        batch_size, max_pending: see `FrameHandler`.
        autostart: start playing at once (default: on `start()`, on entering `with`, or in `ask_at`).
        prefill: prefill each new snapshot's memory into the LLM in the background, so that a question prefills
            only its own tokens (lower time to first token; costs LLM time at every memory update).
    """

    def __init__(
        self,
        model: VStream,
        source: VideoSource | str | os.PathLike,
        *,
        fps: float | str | None = AUTO,
        speed: float = 1.0,
        memory: BaseMemory | None = None,
        memory_config: MemoryConfig | None = None,
        resume_from: str | os.PathLike | None = None,
        encoder: Any = None,
        batch_size: int = 8,
        max_pending: int = 8,
        autostart: bool = False,
        prefill: bool = False,
    ) -> None:
        if speed < 0:
            raise SessionError(f"speed must be >= 0 (0: as fast as possible), got {speed}")
        self.model = model
        if resume_from is not None:
            memory = load_memory(resume_from, model.semantic_attention())
        self.memory = memory or model.new_memory(memory_config)
        self.source = source if isinstance(source, VideoSource) else open_source(source, fps)
        offset = 0.0
        if resume_from is not None and self.memory.latest_time is not None:
            if isinstance(self.source, FileSource):  # a file continues after the last frame in the memory
                self.source.start = self.memory.latest_time + 1e-3
            else:  # anything else restarts at 0: its times continue after the memory's
                offset = self.memory.latest_time + 1.0 / (getattr(self.source, "fps", None) or 1.0)
        self.metrics = Metrics()
        self.frame_handler = FrameHandler(
            self.source,
            self.memory,
            encoder or model.encode_frames,
            speed=speed,
            batch_size=batch_size,
            max_pending=max_pending,
            metrics=self.metrics,
            time_offset=offset,
        )
        self.question_handler = QuestionHandler(model, self.frame_handler, self.metrics)
        self.warmer = PrefixWarmer(model, self.frame_handler) if prefill else None
        self._closed = False
        if autostart:
            self.start()

    # ----------------------------------------------------------------- control
    def start(self) -> StreamSession:
        """Start playing the source into the memory (in the background)."""
        self._check_open()
        self.frame_handler.start()
        if self.warmer is not None:
            self.warmer.start()
        return self

    def pause(self) -> None:
        """Pause the stream (a file waits; a live stream's frames are skipped)."""
        self.frame_handler.pause()

    def resume(self) -> None:
        """Resume after `pause`."""
        self.frame_handler.resume()

    def stop(self) -> None:
        """Stop the stream; the memory and its last snapshot stay available for questions."""
        self.frame_handler.stop()
        if self.warmer is not None:
            self.warmer.stop()

    def close(self) -> None:
        """Stop and refuse further use."""
        self.stop()
        self._closed = True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the source has ended and every frame read is in the memory."""
        return self.frame_handler.wait(timeout)

    def __enter__(self) -> StreamSession:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- questions
    def ask(
        self, question: str, *, conversation: Conversation | None = None, options: GenerationOptions | None = None
    ) -> Answer:
        """Answer from the latest snapshot (never waits for the encoder)."""
        self._check_open()
        return self.question_handler.ask(question, conversation=conversation, options=options)

    def stream(
        self, question: str, *, conversation: Conversation | None = None, options: GenerationOptions | None = None
    ) -> AnswerStream:
        """Answer from the latest snapshot, piece by piece."""
        self._check_open()
        return self.question_handler.stream(question, conversation=conversation, options=options)

    def ask_at(
        self,
        schedule: Sequence[tuple[float, str]],
        *,
        options: GenerationOptions | None = None,
        stop_after: bool = True,
    ) -> Iterator[TimedAnswer]:
        """Ask each question when the stream reaches its time, from the frames up to then; answers in time order.

        At speed 0 the source waits at each question time until the memory holds every frame up to it. At
        other speeds questions are asked as the stream plays, each in its own thread, so a slow answer does
        not delay the next question.
        """
        self._check_open()
        schedule = sorted(schedule, key=lambda item: item[0])
        if not schedule:
            return
        for at, question in schedule:
            if not at >= 0:  # also refuses NaN
                raise SessionError(
                    f"a question's time is seconds of stream >= 0 (0: the first frame); {question!r} has {at}"
                )
        held = self.frame_handler.speed <= 0 and not self.source.live
        if held:
            self.frame_handler.hold_at(schedule[0][0])
            if self.position is not None and self.position > schedule[0][0]:
                raise SessionError(
                    f"the stream is already at {self.position:.2f} s, past the first question's "
                    f"{schedule[0][0]} s: call ask_at before start() to see only earlier frames"
                )
        self.start()
        if held:
            for t, question in schedule:
                self._hold_until(t)
                yield self._timed(t, question, options)
        else:
            yield from self._ask_playing(schedule, options)
        if stop_after:
            self.stop()  # before letting later frames in: the memory ends at the last question
        self.frame_handler.hold_at(float("inf"))

    def snapshots_at(self, times: Sequence[float]) -> Iterator[tuple[float, MemorySnapshot]]:
        """The memory as it stood when the stream reached each time (sorted), from the frames up to it only: for
        evaluations that ask something other than a generated answer (e.g. option likelihoods). A file played at
        speed 0 (the simulated clock) only; the stream stops after the last time."""
        times = sorted(times)
        if self.frame_handler.speed > 0 or self.source.live:
            raise SessionError("snapshots_at needs a file played at speed 0 (the simulated clock)")
        if any(not t >= 0 for t in times):
            raise SessionError(f"times are seconds of stream >= 0; got {times}")
        if not times:
            return
        if self.position is not None:
            raise SessionError("snapshots_at must be called before the stream starts, to see only earlier frames")
        self.frame_handler.hold_at(times[0])
        self.start()
        for t in times:
            self._hold_until(t)
            latest = self.frame_handler.latest
            if latest is None:
                raise SessionError(f"no frame up to {t} s: the memory is empty")
            yield t, latest.snapshot
        self.stop()
        self.frame_handler.hold_at(float("inf"))

    def _hold_until(self, t: float) -> None:
        """Let frames in up to stream time `t` and wait until they are all in the memory."""
        self.frame_handler.hold_at(t)
        self.frame_handler.wait_held()

    def _ask_playing(
        self, schedule: list[tuple[float, str]], options: GenerationOptions | None
    ) -> Iterator[TimedAnswer]:
        results: list[TimedAnswer | BaseException | None] = [None] * len(schedule)
        done = [threading.Event() for _ in schedule]

        def run(i: int, t: float, question: str) -> None:
            try:
                results[i] = self._timed(t, question, options)
            except BaseException as exc:  # handed to the caller below, in order
                results[i] = exc
            finally:
                done[i].set()

        handed = 0  # answers are handed out in time order, each as soon as it and those before it are done

        def ready(upto: int, wait: bool) -> Iterator[TimedAnswer]:
            nonlocal handed
            while handed < upto and (wait or done[handed].is_set()):
                done[handed].wait()
                result, handed = results[handed], handed + 1
                if isinstance(result, BaseException):
                    raise result
                yield result

        for i, (t, question) in enumerate(schedule):
            while not self.frame_handler.wait_position(t, timeout=0.1):  # meanwhile, earlier answers go out
                yield from ready(i, wait=False)
            threading.Thread(target=run, args=(i, t, question), daemon=True, name=f"vstream-question-{i}").start()
        yield from ready(len(schedule), wait=True)

    def _timed(self, t: float, question: str, options: GenerationOptions | None) -> TimedAnswer:
        answer = self.question_handler.ask(question, options=options)
        return TimedAnswer(t, answer, answer.frames_seen, self.metrics.frames_dropped)

    # ----------------------------------------------------------------- state
    @property
    def position(self) -> float | None:
        """Stream time of the newest frame read from the source."""
        return self.frame_handler.position

    def status(self) -> dict[str, Any]:
        """Where the stream is: position, frames in memory, drops, state, why it ended, and the metrics.

        The state is `ended` once the source has ended and every frame read is in the memory (a question then sees
        the whole stream); until then it is `playing` (or `paused`).
        """
        latest = self.frame_handler.latest
        handler = self.frame_handler
        if self._closed:
            state = "closed"
        elif handler.end_reason and (handler.wait(0) or not handler.running):  # not while frames still go in
            state = "ended"
        elif self.frame_handler.paused:
            state = "paused"
        else:
            state = "playing" if self.frame_handler.running else "idle"
        return {
            "source": self.source.name,
            "state": state,
            "position": self.position,
            "frames_in_memory": latest.snapshot.frames_seen if latest else 0,
            "latest_frame_time": latest.snapshot.latest_time if latest else None,
            "end_reason": self.frame_handler.end_reason,
            **self._prefix_status(),
            **self.metrics.summary(),
        }

    def _prefix_status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.model.engine.cache_stats()
        if status and self.warmer is not None:
            status["snapshots_prefilled"] = self.warmer.prefilled
        return status

    def save(self, path: str | os.PathLike) -> None:
        """Save the memory state; `StreamSession(..., resume_from=path)` continues from it."""
        self.memory.save(path)

    def _check_open(self) -> None:
        if self._closed:
            raise SessionError("this stream session is closed")
