"""The real-time engine: both handlers running at once, drops, pause/stop, resume, metrics, errors."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from vstream.errors import GenerationError, SessionError, SourceError
from vstream.features import save_features
from vstream.model import GenerationOptions
from vstream.stream import StreamSession
from vstream.stream.sources import StreamFrame, VideoSource

from conftest import SHARED_DATA, encode_video

SHORT = GenerationOptions(max_new_tokens=4, min_new_tokens=4)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """12 seconds at 5 fps."""
    return encode_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=60, fps=5, size=(64, 48))


def test_ask_at_answers_at_each_time_from_the_frames_up_to_then(tiny_model, clip):
    session = StreamSession(tiny_model, clip, speed=0)
    answers = list(session.ask_at([(7.5, "Later?"), (2, "Early?"), (5, "Middle?")], options=SHORT))
    assert [a.time for a in answers] == [2, 5, 7.5] and [a.answer.question for a in answers] == [
        "Early?",
        "Middle?",
        "Later?",
    ]
    assert [a.answer.latest_frame_time for a in answers] == [2.0, 5.0, 7.0]
    assert [a.frames_seen for a in answers] == [3, 6, 8] and all(a.frames_dropped == 0 for a in answers)
    assert session.frame_handler.end_reason == "stopped" and not session.frame_handler.running


@pytest.mark.skipif(not (SHARED_DATA / "example.mp4").is_file(), reason="../shared/data is not here")
def test_ask_at_on_the_real_clip_sees_only_the_past(tiny_model):
    session = StreamSession(tiny_model, SHARED_DATA / "example.mp4", speed=0)
    for timed in session.ask_at([(4.5, "What?"), (30, "And?")], options=SHORT):
        assert timed.answer.latest_frame_time <= timed.time
        assert timed.answer.latest_frame_time > timed.time - 1.1  # at 1 fps, the newest frame is at most 1 s old
        snapshot = session.frame_handler.latest.snapshot
        assert max(item.time_end for item in snapshot.items) <= timed.time


def test_questions_asked_while_frames_stream_all_succeed(tiny_model, clip):
    session = StreamSession(tiny_model, clip, speed=4).start()
    assert session.frame_handler.wait_position(1.0, timeout=30)
    answers, errors = [], []

    def asker(n: int) -> None:
        try:
            for _ in range(3):
                answers.append(session.ask(f"Question {n}?", options=SHORT))
        except Exception as exc:  # collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=asker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and len(answers) == 12 and all(a.new_tokens == 4 for a in answers)
    assert session.metrics.questions_answered == 12
    assert session.wait(60) and session.status()["frames_in_memory"] == 12  # 12 s at 1 fps
    session.close()


def test_a_slow_encoder_drops_frames_instead_of_blocking(tiny_model, clip):
    def slow_encoder(frames):
        time.sleep(0.4)
        return tiny_model.encode_frames(frames)

    began = time.monotonic()
    session = StreamSession(tiny_model, clip, fps=5, speed=3, encoder=slow_encoder, batch_size=2, max_pending=2).start()
    assert session.frame_handler.wait_position(2.0, timeout=30)
    asked = time.monotonic()
    answer = session.ask("Still there?", options=SHORT)
    assert time.monotonic() - asked < 0.4  # a question never waits for the encoder
    assert answer.ttft_s < 0.4
    assert session.frame_handler.wait_position(11.8, timeout=30)
    read_all = time.monotonic() - began
    assert read_all < 12 / 3 + 2.0  # the source kept its pace: 12 s of video at 3x
    session.wait(30)
    status = session.status()
    assert status["frames_dropped"] > 0 and status["frames_read"] == 60
    assert status["frames_encoded"] + status["frames_dropped"] == 60
    assert status["end_reason"] == "end of stream"


def test_pause_resume_and_stop(tiny_model, clip):
    session = StreamSession(tiny_model, clip, speed=2).start()
    assert session.frame_handler.wait_position(1.0, timeout=30)
    session.pause()
    time.sleep(0.3)
    held = session.position
    time.sleep(1.0)
    assert session.position == held and session.status()["state"] == "paused"
    session.resume()
    assert session.frame_handler.wait_position(held + 1.0, timeout=10)
    session.stop()
    assert not session.frame_handler.running and session.status()["end_reason"] == "stopped"
    assert session.ask("After the stop?", options=SHORT).frames_seen > 0  # the memory is still there
    session.close()
    with pytest.raises(SessionError, match="closed"):
        session.ask("Closed?")


def test_a_stream_saved_and_resumed_continues_where_it_stopped(tiny_model, clip, tmp_path):
    first = StreamSession(tiny_model, clip, speed=0)
    list(first.ask_at([(4, "Up to 4 s?")], options=SHORT))
    first.save(tmp_path / "state.safetensors")
    resumed = StreamSession(tiny_model, clip, speed=0, resume_from=tmp_path / "state.safetensors")
    (timed,) = resumed.ask_at([(9, "Up to 9 s?")], options=SHORT)
    assert timed.frames_seen == 10 and timed.answer.latest_frame_time == 9.0
    times = [item.time_start for item in resumed.memory.readout().items_of("spatial")]
    assert times == [9.0]


def test_feature_files_stream_without_an_encoder(tiny_model, tmp_path):
    save_features(tmp_path / "clip.safetensors", tiny_model.encode_frames([np.zeros((40, 40, 3), np.uint8)] * 6))

    def no_encoder(frames):
        raise AssertionError("features need no encoding")

    session = StreamSession(tiny_model, tmp_path / "clip.safetensors", speed=0, encoder=no_encoder).start()
    assert session.wait(30) and session.status()["frames_in_memory"] == 6


class FailingSource(VideoSource):
    """Two good frames, then the connection breaks."""

    name = "flaky://camera"

    def frames(self):
        for i in range(2):
            yield StreamFrame(time=float(i), image=np.zeros((40, 40, 3), np.uint8), index=i)
        raise SourceError("flaky://camera: connection lost")


def test_a_source_error_ends_the_stream_with_a_reason(tiny_model, tmp_path):
    session = StreamSession(tiny_model, FailingSource(), speed=0).start()
    assert session.wait(30)
    status = session.status()
    assert status["state"] == "ended" and status["end_reason"] == "source error: flaky://camera: connection lost"
    assert session.ask("What was there?", options=SHORT).frames_seen == 2  # what was computed stays
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x13" * 4000)
    with pytest.raises(SourceError, match=r"broken\.mp4: not a video FFmpeg can read"):
        StreamSession(tiny_model, tmp_path / "broken.mp4")


def test_a_question_before_any_frame(tiny_model, clip):
    session = StreamSession(tiny_model, clip)
    with pytest.raises(GenerationError, match="nothing has streamed yet"):
        session.ask("Anything?")


def test_metrics_per_frame_and_per_question(tiny_model, clip):
    session = StreamSession(tiny_model, clip, speed=0)
    list(session.ask_at([(3, "Now?")], options=SHORT, stop_after=False))
    assert session.wait(30)
    status = session.status()
    for key in (
        "frame_read_s_p50",
        "frame_encode_s_p50",
        "frame_update_s_p50",
        "frame_lag_s_p50",
        "question_snapshot_age_s_p50",
        "question_ttft_s_p50",
        "question_total_s_p50",
    ):
        assert status[key] >= 0, key
    assert status["frames_encoded"] == 12 and status["questions_answered"] == 1
    record = session.metrics.frames[-1]
    assert record.time == pytest.approx(11.0) and record.encode_s > 0 and record.update_s > 0
    assert torch.is_tensor(session.memory.readout().tokens)


def test_ask_at_refuses_a_stream_already_past_its_first_question(tiny_model, clip):
    session = StreamSession(tiny_model, clip, speed=0).start()
    assert session.frame_handler.wait_position(3.0, timeout=30)
    with pytest.raises(SessionError, match="past the first question"):
        list(session.ask_at([(1.0, "Too late?")], options=SHORT))
    session.close()


def test_prefill_keeps_the_newest_memory_in_the_llm_so_a_question_prefills_only_itself(tiny_model, clip):
    session = StreamSession(tiny_model, clip, speed=4, prefill=True).start()
    assert session.wait(60)
    final = session.frame_handler.latest.snapshot
    deadline = time.monotonic() + 20
    while not tiny_model.engine.holds_prefix(final) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tiny_model.engine.holds_prefix(final) and 1 <= session.warmer.prefilled <= 12
    lengths: list[int] = []
    hook = tiny_model.llm.register_forward_pre_hook(
        lambda module, args, kwargs: (
            lengths.append(kwargs["inputs_embeds"].shape[1]) if kwargs.get("inputs_embeds") is not None else None
        ),
        with_kwargs=True,
    )
    try:
        answer = session.ask("What is there?", options=SHORT)
    finally:
        hook.remove()
        session.close()
    ids = tiny_model.processor.prompt_ids("What is there?")
    assert lengths == [len(ids.after)]  # the memory was already in the LLM: only the question was prefilled
    assert answer.prompt_tokens == len(ids.before) + final.num_tokens + len(ids.after)
    assert session.warmer._thread is not None and not session.warmer._thread.is_alive()


def test_ask_at_while_playing_hands_out_each_answer_before_later_questions_come(tiny_model, clip):
    session = StreamSession(tiny_model, clip, speed=1)
    began, received = time.monotonic(), []
    for timed in session.ask_at([(0.5, "Early?"), (4.0, "Later?")], options=SHORT):
        received.append((timed.time, time.monotonic() - began))
    session.close()
    assert [t for t, _ in received] == [0.5, 4.0]
    assert received[0][1] < 2.5 and received[1][1] > 3.9  # not held back until the last question was asked


def test_the_state_says_ended_only_once_every_frame_read_is_in_the_memory(tiny_model, tmp_path):
    clip = encode_video(tmp_path / "short.mp4", frames=3, fps=1)  # read in a blink, encoded when we say so
    go = threading.Event()

    def held_encoder(frames):
        assert go.wait(30)
        return tiny_model.encode_frames(frames)

    session = StreamSession(tiny_model, clip, speed=0, encoder=held_encoder).start()
    try:
        deadline = time.monotonic() + 30
        while session.frame_handler.end_reason is None:  # the source has ended; no frame is in the memory yet
            assert time.monotonic() < deadline
            time.sleep(0.01)
        status = session.status()
        assert status["state"] == "playing" and status["frames_in_memory"] == 0
        go.set()
        assert session.wait(30)
        status = session.status()
        assert status["state"] == "ended" and status["frames_in_memory"] == 3
    finally:
        go.set()
        session.close()


class JitterySource(VideoSource):
    """A file whose frames come after random delays (a busy disk, a busy machine)."""

    def __init__(self, inner: VideoSource, seed: int) -> None:
        self.inner, self.name, self.rng = inner, inner.name, np.random.default_rng(seed)

    def frames(self):
        for frame in self.inner.frames():
            time.sleep(self.rng.uniform(0, 0.01))
            yield frame


def test_on_the_simulated_clock_the_memory_is_a_function_of_the_frames_alone(tiny_model, clip):
    from vstream.stream.sources import open_source

    def run(seed: int):
        rng = np.random.default_rng(seed + 100)

        def slow_encoder(frames):
            time.sleep(rng.uniform(0, 0.03))
            return tiny_model.encode_frames(frames)

        source = JitterySource(open_source(clip, fps=5), seed)
        session = StreamSession(tiny_model, source, speed=0, encoder=slow_encoder, batch_size=4, max_pending=6)
        answers = [t.answer.text for t in session.ask_at([(3.1, "Early?"), (11.5, "Late?")], options=SHORT)]
        return answers, session.memory.readout()

    (first, memory), (second, again) = run(0), run(1)
    assert first == second
    assert [(i.memory, i.time_start, i.time_end) for i in memory.items] == [
        (i.memory, i.time_start, i.time_end) for i in again.items
    ]
    assert torch.equal(memory.tokens, again.tokens)
