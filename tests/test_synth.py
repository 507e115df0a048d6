"""The synthetic world: deterministic from its seed, real H.264 files, annotations the harness reads, and every
answer true of its stream (checked here from the scene log, by code independent of the generator)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import av
import numpy as np
import pytest

from vstream.errors import ConfigError
from vstream.eval.datasets import load_annotations
from vstream.eval.questions import load_questions
from vstream.synth.files import CHOICES, WORLD_VERSION, read_plans, write_world
from vstream.synth.questions import CHANCE, QUESTION_TYPES, TRAINING_ONLY_TYPES, make_questions
from vstream.synth.render import render
from vstream.synth.world import plan_stream


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def truth(log: dict, question: str, at: float) -> str:
    """The answer to `question` at second `at`, read from a stream's scene log (plain data)."""
    states = [s for scene in log["scenes"] for s in scene["states"]]

    def label(state: dict) -> str:
        return f"{state['colour']} {state['shape']}" if state["colour"] else "nothing"

    shown = [label(s) for s in states if s["start"] <= at and s["colour"]]
    if question == "What is on the screen now?":
        return next(label(s) for s in states if s["start"] <= at < s["end"])
    if question == "What was on the screen at the very beginning?":
        return label(states[0])
    if question == "What was on the screen just before the current scene?":
        current = next(i for i, scene in enumerate(log["scenes"]) if scene["start"] <= at < scene["end"])
        return label(log["scenes"][current - 1]["states"][-1])
    if question == "How many scenes have there been so far?":
        return str(sum(scene["start"] <= at for scene in log["scenes"]))
    if question == "Which digit was shown in the corner earlier?":
        (scene,) = [scene for scene in log["scenes"] if scene["digit"] is not None]
        assert scene["end"] + 20 <= at  # asked long after the digit left the screen
        return scene["digit"]
    if match := re.fullmatch(r"Which appeared first, the (\w+ \w+) or the (\w+ \w+)\?", question):
        x, y = match.groups()
        assert x in shown and y in shown and x != y
        return x if shown.index(x) < shown.index(y) else y
    if match := re.fullmatch(r"Did a (\w+ \w+) appear\?", question):
        return "yes" if match.group(1) in shown else "no"
    if match := re.fullmatch(r"Which object opened scene (\d)\?", question):  # training only
        begun = [scene for scene in log["scenes"] if scene["start"] <= at]
        assert 1 <= int(match.group(1)) <= min(len(begun), 8)
        return label(begun[int(match.group(1)) - 1]["states"][0])
    raise AssertionError(f"unknown question {question!r}")


def test_the_same_seed_writes_the_same_world_and_another_seed_another(tmp_path):
    first = write_world(tmp_path / "a", seed=5, streams=2, seconds=120)
    again = write_world(tmp_path / "b", seed=5, streams=2, seconds=120)
    other = write_world(tmp_path / "c", seed=6, streams=2, seconds=120)
    for name in ("synth_conversations.json", "synth_choices.json", "synth_train.json", "scenes.jsonl", "world.json"):
        assert (first.root / name).read_bytes() == (again.root / name).read_bytes()
    assert (first.root / "scenes.jsonl").read_text() != (other.root / "scenes.jsonl").read_text()
    for video in sorted(first.videos.iterdir()):
        a, b = decoded(video), decoded(again.videos / video.name)
        assert len(a) == 120 and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_every_answer_is_true_of_its_stream_and_every_type_is_asked():
    asked = Counter()
    yes = Counter()
    for seconds, count in ((300, 150), (3600, 4), (100, 20)):
        for index in range(count):
            plan = plan_stream(11, index, seconds)
            log = json.loads(json.dumps(plan.to_dict()))  # the scene log, as plain data
            assert sum(s["end"] - s["start"] for s in log["scenes"]) == seconds
            for q in make_questions(plan, 11):
                assert 0 <= q.since <= q.at < seconds
                assert q.answer == truth(log, q.question, q.at), (plan.stream_id, q)
                asked[q.type] += 1
                yes[q.answer] += q.type == "ever"
    assert set(asked) == set(QUESTION_TYPES) == set(CHANCE)
    assert min(asked.values()) >= 100, asked
    assert 0.35 < yes["yes"] / asked["ever"] < 0.65  # "ever" is not answered by always saying yes


def test_training_conversations_ask_every_allowed_type_at_one_moment_and_are_true():
    from vstream.synth.files import training_records
    from vstream.synth.questions import moment_questions

    asked, firsts = Counter(), Counter()
    for index in range(60):
        plan = plan_stream(4, index, 240)
        log = json.loads(json.dumps(plan.to_dict()))
        conversations = moment_questions(plan, 4, moments=24)
        assert conversations == moment_questions(plan, 4, moments=24)  # deterministic from the seed
        for questions in conversations:
            asked_for_eval = [q.type for q in questions if q.type not in TRAINING_ONLY_TYPES]
            assert len({q.at for q in questions}) == 1 and len(set(asked_for_eval)) == len(asked_for_eval)
            assert len({q.question for q in questions}) == len(questions)  # scene questions about distinct scenes
            assert {"now", "beginning", "ever"} <= {q.type for q in questions} or questions[0].at < 20
            for q in questions:
                assert q.answer == truth(log, q.question, q.at), (plan.stream_id, q)
                asked[q.type] += 1
            firsts[questions[0].type] += 1
        records = training_records(plan.stream_id, conversations)
        assert len(records) == len(conversations)
        for record, questions in zip(records, conversations, strict=True):
            assert record["end_time"] == questions[0].at and record["types"] == [q.type for q in questions]
            assert record["conversations"][0]["value"] == f"<video>\n{questions[0].question}"
            assert [t["value"] for t in record["conversations"][1::2]] == [q.answer for q in questions]
    assert set(asked) == {*QUESTION_TYPES, *TRAINING_ONLY_TYPES} and min(asked.values()) >= 200, asked
    assert set(firsts) == {*QUESTION_TYPES, *TRAINING_ONLY_TYPES}  # each type is sometimes asked first
    assert asked["scene"] >= 60 * 24  # training-only scene questions in every conversation


def test_now_is_asked_right_after_a_change_and_detail_long_after_the_digit():
    for index in range(50):
        plan = plan_stream(2, index, 300)
        for q in make_questions(plan, 2):
            if q.type == "now":
                state = plan.scene_at(q.at).state_at(q.at)
                assert q.at - state.start <= 1  # only the newest frames show it: the spatial memory's job
            if q.type == "detail":
                digit_scene = next(s for s in plan.scenes if s.digit)
                assert q.at >= digit_scene.end + 20
                assert digit_scene.end - digit_scene.start > max(
                    s.end - s.start for s in plan.scenes if s is not digit_scene
                )  # the longest scene: its frames are the heaviest cluster


def test_written_videos_show_the_plan_and_the_annotations_pass_the_checker(tmp_path):
    world = write_world(tmp_path, seed=1, streams=2, seconds=150)
    annotations = load_annotations(world.annotations)
    assert not annotations.problems and len(annotations.items) == world.questions
    assert {item.question_type for item in annotations.items} <= set(QUESTION_TYPES)
    plans = list(read_plans(tmp_path))
    for plan in plans:
        frames = decoded(world.videos / f"{plan.stream_id}.mp4")
        assert len(frames) == plan.seconds
        for t in range(0, plan.seconds, 7):
            error = np.abs(frames[t].astype(int) - render(plan, t).astype(int)).mean()
            assert error < 4, (plan.stream_id, t, error)  # H.264 keeps the picture (and the small digit)
    check = subprocess.run(
        [sys.executable, "-m", "vstream", "data", "check", str(world.annotations), str(world.root / CHOICES)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0 and check.stdout.count(" 0 bad records") == 2, check.stdout + check.stderr
    # worlds of two versions ask the same questions of other videos: the version is in both files, so their
    # digests (which key every result) differ
    for name in (world.annotations, world.root / CHOICES):
        assert {record["world"] for record in json.loads(name.read_text())} == {WORLD_VERSION}
    # the same questions as timed multiple choice: the right option is the answer, distractors of the same type
    _, choices = load_questions(world.root / CHOICES, "custom:synth")
    assert len(choices.items) == world.questions
    answers = {(item.video_id, item.end_time, item.question): item for item in annotations.items}
    by_type: dict[str, set[str]] = {}
    for item in annotations.items:
        by_type.setdefault(item.question_type, set()).add(item.answer)
    for choice in choices.items:
        truth = answers[(choice.video_id, choice.at, choice.stem)]
        assert choice.options[choice.answer] == truth.answer and choice.types == (truth.question_type,)
        if truth.answer in ("yes", "no"):
            assert choice.options == ("yes", "no")
        else:  # distractors of its own kind: numbers for a number, the world's words for words
            assert len(set(choice.options)) == len(choice.options) == 4
            kinds = {option.isdigit() for option in choice.options}
            assert kinds == {truth.answer.isdigit()}
            named = set(re.findall(r"the (\w+ \w+)", choice.stem)) if truth.question_type == "order" else set()
            assert len(named) in (0, 2) and named <= set(choice.options)  # order: both objects it names
            if len(by_type[truth.question_type]) >= 4 and not truth.answer.isdigit():
                assert set(choice.options) <= by_type[truth.question_type] | named


def test_an_interrupted_world_resumes_without_rewriting_its_videos(tmp_path):
    write_world(tmp_path, seed=3, streams=1, seconds=100)
    video = tmp_path / "videos" / "synth-3-0000.mp4"
    written = video.stat().st_mtime_ns
    write_world(tmp_path, seed=3, streams=2, seconds=100)
    assert video.stat().st_mtime_ns == written
    assert len(json.loads((tmp_path / "synth_conversations.json").read_text())) == 2


def test_a_folder_holding_another_world_is_refused_and_left_intact(tmp_path):
    write_world(tmp_path, seed=3, streams=1, seconds=100)
    video = tmp_path / "videos" / "synth-3-0000.mp4"
    written, annotations = video.stat().st_mtime_ns, (tmp_path / "synth_conversations.json").read_text()
    for other in ({"seed": 4, "seconds": 100}, {"seed": 3, "seconds": 120}):
        with pytest.raises(ConfigError, match="already holds another world") as refused:
            write_world(tmp_path, streams=1, **other)
        assert "seed 3" in str(refused.value) and "seconds 100" in str(refused.value)
    with pytest.raises(ConfigError, match=r"version synth-v2.*not version synth-v1.*write version synth-v2 to go on"):
        write_world(tmp_path, seed=3, streams=1, seconds=100, version="synth-v1")  # same seed, other videos
    with pytest.raises(ConfigError, match="unknown synthetic world version 'synth-v9'"):
        write_world(tmp_path / "new", seed=3, streams=1, seconds=100, version="synth-v9")
    assert not (tmp_path / "new").exists()
    assert video.stat().st_mtime_ns == written
    assert (tmp_path / "synth_conversations.json").read_text() == annotations


def test_every_cut_changes_the_object_and_the_background():
    """So that a cut can be told from a colour change on the screen alone (benchmarks/smol_seen_ceiling.py)."""
    cuts = 0
    for seed, seconds in ((0, 60), (1, 300), (2, 3600), (7, 240)):
        for index in range(40 if seconds < 3600 else 4):
            scenes = plan_stream(seed, index, seconds).scenes
            for before, after in pairwise(scenes):
                assert after.background != before.background, (seed, index, after.start)
                assert after.object != before.object, (seed, index, after.start)
                cuts += 1
    assert cuts > 400


def test_the_older_world_plans_the_same_streams_but_may_cut_to_the_same_background():
    """`synth-v1` (what the shipped model was trained on) stays reproducible: the same objects, times and digits,
    and backgrounds drawn afresh at each cut, so that some cuts keep theirs."""
    kept = cuts = 0
    for index in range(40):
        old, new = (plan_stream(5, index, 300, version) for version in ("synth-v1", "synth-v2"))
        assert [replace(s, background="") for s in old.scenes] == [replace(s, background="") for s in new.scenes]
        kept += sum(a.background == b.background for a, b in pairwise(old.scenes))
        cuts += len(old.scenes) - 1
    assert 0.1 < kept / cuts < 0.4  # a quarter, as four backgrounds drawn independently give
    with pytest.raises(ConfigError, match="expected one of synth-v1, synth-v2"):
        plan_stream(5, 0, 300, "v2")


def test_the_command_writes_a_world_and_refuses_bad_arguments(tmp_path):
    def synth(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "vstream", "data", "synth", "--out", str(tmp_path / "w"), *args]
        return subprocess.run(command, capture_output=True, text=True)

    done = synth("--seed", "4", "--streams", "2", "--first", "100", "--minutes", "2")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert sorted(p.name for p in (tmp_path / "w" / "videos").iterdir()) == ["synth-4-0100.mp4", "synth-4-0101.mp4"]
    assert summary["questions"] == len(load_annotations(summary["annotations"]).items)
    for bad in (["--streams", "0"], ["--size", "30"], ["--world-version", "3"]):
        refused = synth(*bad)
        assert refused.returncode == 2 and refused.stderr.strip().count("\n") == 0, refused.stderr


@pytest.mark.parametrize("spec", ["synthetic:12", "synthetic:12:3"])
def test_the_synthetic_source_plays_a_stream_of_the_world(spec):
    from vstream.stream.sources import open_source

    seed = int(spec.split(":")[2]) if spec.count(":") == 2 else 0
    plan = plan_stream(seed, 0, 12)
    source = open_source(spec)
    try:
        frames = list(source.frames())
    finally:
        source.close()
    assert [f.time for f in frames] == [float(t) for t in range(12)]
    for frame in frames:
        assert np.abs(frame.image.astype(int) - render(plan, frame.time).astype(int)).mean() < 4


def test_a_wrong_synthetic_source_name_is_one_clear_error():
    from vstream.errors import SourceError
    from vstream.stream.sources import open_source

    for spec in ("synthetic:soon", "synthetic:2", "synthetic:10:1:2"):
        with pytest.raises(SourceError, match="synthetic"):
            open_source(spec)


def test_the_world_answers_its_own_questions_as_the_generator_asked_them():
    from vstream.synth.questions import world_answer

    for index in range(40):
        plan = plan_stream(9, index, 300)
        for q in make_questions(plan, 9):
            assert world_answer(plan, q.question, q.at) == q.answer, (plan.stream_id, q)
    plan = plan_stream(9, 0, 300)
    assert world_answer(plan, "What is the meaning of this?", 10) is None


def test_ask_on_a_synthetic_stream_prints_the_true_answer_beside_the_models(tmp_path):
    import os

    from vstream.stream.synthetic import synthetic_plan

    env = {**os.environ, "VSTREAM_CACHE": str(tmp_path)}
    command = [sys.executable, "-m", "vstream", "ask", "synthetic:100:4", "--model", "tiny-random"]
    command += ["--max-new-tokens", "2", "--at", "50", "What is on the screen now?", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.strip().splitlines()
    plan = synthetic_plan("synthetic:100:4")
    assert json.loads(line)["truth"] == plan.scene_at(50).state_at(50).label


def answer_from_transcript(text: str, question: str) -> str:
    """The answer to `question` read from a transcript alone (plain string handling, not the generator's code)."""
    assert text.endswith(" .")
    scenes = []
    for part in text[: -len(" .")].split(" . "):
        words = part.split()
        digit = words.pop() if words[-1].isdigit() else None
        scenes.append((" ".join(words).split(" , "), digit))
    labels = [label for states, _ in scenes for label in states if label != "nothing"]
    if question == "What is on the screen now?":
        return scenes[-1][0][-1]
    if question == "What was on the screen at the very beginning?":
        return scenes[0][0][0]
    if question == "What was on the screen just before the current scene?":
        return scenes[-2][0][-1]
    if question == "How many scenes have there been so far?":
        return str(len(scenes))
    if question == "Which digit was shown in the corner earlier?":
        return next(digit for _, digit in scenes if digit is not None)
    if match := re.fullmatch(r"Which appeared first, the (\w+ \w+) or the (\w+ \w+)\?", question):
        x, y = match.groups()
        return x if labels.index(x) < labels.index(y) else y
    if match := re.fullmatch(r"Did a (\w+ \w+) appear\?", question):
        return "yes" if match.group(1) in labels else "no"
    if match := re.fullmatch(r"Which object opened scene (\d)\?", question):
        return scenes[int(match.group(1)) - 1][0][0]
    raise AssertionError(f"unknown question {question!r}")


def test_a_transcript_holds_the_answer_to_every_question_asked_at_its_moment():
    """What the smol language model first learns from: the stream in words up to a moment, where every answer of
    that moment can be read (and nothing after it is shown)."""
    from vstream.synth.questions import moment_questions
    from vstream.synth.transcript import transcript

    asked = Counter()
    for index in range(40):
        plan = plan_stream(9, index, 300)
        for questions in moment_questions(plan, 9, moments=12):
            for q in questions:
                text = transcript(plan, q.at)
                assert answer_from_transcript(text, q.question) == q.answer, (plan.stream_id, q, text)
                assert text.count(" .") == plan.scene_index(q.at) + 1  # no scene after the moment
                asked[q.type] += 1
    assert set(asked) == {*QUESTION_TYPES, *TRAINING_ONLY_TYPES}, asked
