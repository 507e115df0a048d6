"""Annotations in every distributed format, validated record by record; clip metadata."""

from __future__ import annotations

import json

import pytest

from vstream.eval.datasets import AnnotationError, load_annotations, load_clip_metadata

from conftest import SHARED_DATA

VSTREAM_QA = SHARED_DATA / "vstream-qa"


@pytest.mark.skipif(not VSTREAM_QA.is_dir(), reason="../shared/data is not here")
@pytest.mark.parametrize(("name", "questions", "videos"), [("rvs_ego", 1465, 10), ("rvs_movie", 1905, 22)])
def test_the_real_online_annotations_load_completely(name, questions, videos):
    annotations = load_annotations(VSTREAM_QA / f"{name}_conversations.json")
    assert len(annotations.items) == questions and not annotations.problems
    assert len({item.video_id for item in annotations.items}) == videos
    assert len({item.id for item in annotations.items}) == questions
    assert all(item.end_time is not None and item.end_time >= item.start_time for item in annotations.items)
    assert {item.question_type for item in annotations.items} == {"yes/no", "open-ended"}


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not name.endswith(".jsonl") else "\n".join(json.dumps(d) for d in data))
    return path


def test_flat_question_lists_as_json_and_jsonl(tmp_path):
    records = [
        {
            "id": "q1",
            "video_id": "v1",
            "question": "Who?",
            "answer": "A cook.",
            "start_time": 0,
            "end_time": 30,
            "type": "Action Description",
        },
        {"id": "q2", "video_id": "v1", "question": "Did it rain?", "answer": "No.", "start_time": 10, "end_time": 60},
    ]
    for name in ("questions.json", "questions.jsonl"):
        items = load_annotations(write(tmp_path, name, records)).items
        assert [i.id for i in items] == ["q1", "q2"] and items[1].end_time == 60.0
        assert [i.question_type for i in items] == ["Action Description", "yes/no"]


def test_classic_test_qa_files(tmp_path):
    records = [
        {
            "id": 7,
            "video_name": "v_abc",
            "question": "what is the man doing",
            "answer": "dancing",
            "answer_type": "action",
            "duration": 112.5,
        }
    ]
    (item,) = load_annotations(write(tmp_path, "test_qa.json", {"data": records})).items
    assert (item.id, item.video_id, item.question_type, item.duration) == ("7", "v_abc", "action", 112.5)
    assert item.end_time is None


def test_bad_records_are_reported_by_position_and_reason(tmp_path):
    videos = [
        {
            "video_id": "v1",
            "duration": 100,
            "conversations": [
                {"question": "Fine?", "answer": "Yes.", "start_time": 0, "end_time": 10},
                {"question": "", "answer": "No.", "start_time": 0, "end_time": 10},
                {"question": "Backwards?", "answer": "No.", "start_time": 50, "end_time": 20},
                {"question": "Too late?", "answer": "No.", "start_time": 0, "end_time": 500},
                {"question": "Time?", "answer": "No.", "start_time": 0, "end_time": "soon"},
            ],
        },
        {"duration": 10, "conversations": []},
        {"video_id": "v3", "conversations": "none"},
    ]
    path = write(tmp_path, "conv.json", videos)
    result = load_annotations(path, strict=False)
    assert len(result.items) == 1
    assert [str(p) for p in result.problems] == [
        "videos[0].conversations[1]: 'question' is missing or empty",
        "videos[0].conversations[2]: ends (20.0) before it starts (50.0)",
        "videos[0].conversations[3]: end_time 500.0 is past the video's duration 100.0",
        "videos[0].conversations[4]: 'end_time' must be a number of seconds >= 0, got 'soon'",
        "videos[1]: 'video_id' is missing or empty",
        "videos[2]: 'conversations' is missing or not a list",
    ]
    with pytest.raises(AnnotationError, match="6 bad records"):
        load_annotations(path)
    duplicates = write(tmp_path, "dup.json", [{"id": "a", "video_id": "v", "question": "Q?", "answer": "A."}] * 2)
    with pytest.raises(AnnotationError, match="question 'a': duplicate id"):
        load_annotations(duplicates)
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(AnnotationError, match="not valid JSON"):
        load_annotations(tmp_path / "broken.json")


def test_clip_metadata_by_seconds_and_by_shots(tmp_path):
    path = write(
        tmp_path,
        "clips.json",
        [
            {"video_id": "ego_1", "original_video": "raw_ego", "start_time": 60, "end_time": 120},
            {"video_id": "movie_1", "original_video": "tt0001", "start_shot": 3, "end_shot": 9},
            {"video_id": "bad", "original_video": "tt0002", "start_shot": 9, "end_shot": 3},
        ],
    )
    result = load_clip_metadata(path, strict=False)
    assert [c.video_id for c in result.items] == ["ego_1", "movie_1"]
    assert result.items[1].start_shot == 3 and [str(p) for p in result.problems] == [
        "record 2: ends (3) before it starts (9)"
    ]
