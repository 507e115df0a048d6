"""Streaming benchmarks as timed questions: small files in OVO-Bench's and StreamingBench's published shapes load
with the right options, answers, times, types and ids; forward probes become one yes/no question each; each file
is recognised by its fields; bad records are refused by name."""

from __future__ import annotations

import csv
import json

import pytest

from vstream.errors import AnnotationError
from vstream.eval.streaming_mcq import (
    check_streaming_mcq,
    detect_streaming_benchmark,
    load_ovo_bench,
    load_streamingbench,
)

# The shape of JoeLeelyf/OVO-Bench data/ovo_bench_new.json (contents made up): one record per question or task.
OVO = [
    {
        "id": 0,
        "task": "EPM",
        "video": "Ego4D/clips/ec4a3ba3-eb00.mp4",
        "realtime": 215,
        "question": "Who did I talk to when chopping egg plants?",
        "answer": "a person with blue shirt",
        "options": ["a person with brown shirt", "a person with green shirt", "a person with blue shirt"],
        "gt": 2,
    },
    {
        "id": 1319,
        "task": "OCR",
        "video": "AutoEvalMetaData/106.mp4",
        "realtime": 54.2,
        "question": "Which letter is on the sign?",
        "answer": "B. Q",
        "options": ["A. P", "B. Q", "C. R", "D. S"],
        "gt": 1,
    },
    {  # initials, not option letters (they do not run A, B, C, D): kept
        "id": 1326,
        "task": "OCR",
        "video": "AutoEvalMetaData/305.mp4",
        "realtime": 266.48,
        "question": "What is the name visible on the jacket?",
        "answer": "A. Wade",
        "options": ["A. Wade", "B. Tyler", "D. Carter", "C. Jensen"],
        "gt": 0,
    },
    {
        "id": 1558,
        "task": "REC",
        "video": "perception_test/video_4017.mp4",
        "activity": "breaking something",
        "start_times": [6, 20],
        "end_times": [17, 30],
        "test_info": [
            {"realtime": 5, "count": 0},
            {"realtime": 17, "count": 1},
            {"realtime": 19, "count": 1},
            {"realtime": 32.0, "count": 2},
        ],
    },
    {
        "id": 1516,
        "task": "SSR",
        "video": "COIN/xZecGPPhbHE.mp4",
        "tutorial": "PutOnHairExtensions",
        "all_steps": ["pull up the hair", "put on the hair extensions"],
        "start_time": [25, 31],
        "end_time": [30, 49],
        "test_info": [
            {"realtime": 27, "step": "pull up the hair", "type": 1},
            {"realtime": 29, "step": "put on the hair extensions", "type": 0},
            {"realtime": 33, "step": "put on the hair extensions", "type": 1},
            {"realtime": 33, "step": "pull up the hair", "type": 0},
        ],
    },
    {
        "id": 1468,
        "task": "CRR",
        "video": "MovieNet/tt0048028.mp4",
        "question": "The woman walks towards the black car; what does she do to it?",
        "answer": "She walks past the car.",
        "ask_time": 297,
        "clue_time": 308,
        "test_info": [
            {"realtime": 297, "type": 0},
            {"realtime": 302.5, "type": 0},
            {"realtime": 310, "type": 1},
        ],
    },
]

# The shape of THUNLP-MT/StreamingBench src/data/questions_real.json: entries per video, questions inside.
SB = [
    {
        "time": "[0:03:00 - 0:04:00]",
        "questions": [
            {
                "task_type": "Action Recognition",
                "question": "What is the paintbrush doing right now?",
                "time_stamp": "00:03:10",
                "answer": "C",
                "options": ["A. Painting the hair.", "B. Coloring the lips.", "C. Shading the nose.", "D. Resting."],
                "required_ability": "working memory",
            },
            {
                "task_type": "Counting",
                "question": "How many brushes are on the table?",
                "time_stamp": "0:04:00",
                "answer": "A",
                "options": ["(A) 1", "(B) 2", "(C) 3", "(D) 4"],
                "required_ability": "working memory",
            },
        ],
        "video_categories": "painting",
        "video_path": "./videos/sample_1_real.mp4",
    },
    {
        "time": "[0:00:00 - 0:00:30]",
        "questions": [
            {
                "task_type": "Causal Reasoning",
                "question": "Why does the bear fly?",
                "time_stamp": "00:24",
                "answer": "D",
                "options": ["A. Wind.", "B. A rope.", "C. Magic.", "D. A toy plane."],
            }
        ],
        "video_categories": "toys",
        "video_path": "./videos/sample_2_real.mp4",
    },
    {
        "time": "[0:00:00 - 0:01:00]",
        "questions": [
            {
                "task_type": "Object Recognition",
                "question": "What is on the canvas?",
                "time_stamp": "00:00:45",
                "answer": "B",
                "options": ["A. A dog.", "B. A face.", "C. A car.", "D. A tree."],
            }
        ],
        "video_categories": "painting",
        "video_path": "./videos/sample_1_real.mp4",
    },
]

# The columns of mjuicem/StreamingBench StreamingBench/Real_Time_Visual_Understanding.csv.
CSV_FIELDS = ["question_id", "task_type", "question", "time_stamp", "answer", "options", "frames_required"]
CSV_ROWS = [
    {
        "question_id": "Real-Time Visual Understanding_sample_1_1",
        "task_type": "Object Perception",
        "question": "What logos are visible?",
        "time_stamp": "00:00:04",
        "answer": "D",
        "options": str(["A. FIFA.", "B. UEFA.", "C. NBA.", "D. La Liga."]),
        "frames_required": "single",
    },
    {
        "question_id": "Real-Time Visual Understanding_sample_12_3",
        "task_type": "Counting",
        "question": "How many players are there?",
        "time_stamp": "01:02:03",
        "answer": "B",
        "options": str(["A. 3", "B. 4", "C. 5", "D. 6"]),
        "frames_required": "multiple",
    },
]


def write_json(tmp_path, records, name="annotations.json"):
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def write_csv(tmp_path, rows):
    path = tmp_path / "Real_Time_Visual_Understanding.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def by_id(questions):
    return {q.id: q for q in questions}


def test_ovo_backward_and_realtime_records_are_one_question_each_at_their_realtime(tmp_path):
    questions = by_id(load_ovo_bench(write_json(tmp_path, OVO)))
    epm = questions["0"]
    assert epm.options == ("a person with brown shirt", "a person with green shirt", "a person with blue shirt")
    assert epm.answer == 2 and epm.letter == "C" and epm.at == 215.0 and isinstance(epm.at, float)
    assert epm.types == ("EPM", "backward") and epm.stem == "Who did I talk to when chopping egg plants?"
    assert epm.video_id == "Ego4D/clips/ec4a3ba3-eb00"
    assert epm.extra["video"] == "Ego4D/clips/ec4a3ba3-eb00.mp4" and epm.extra["answer"] == "a person with blue shirt"

    ocr = questions["1319"]
    assert ocr.options == ("P", "Q", "R", "S") and ocr.answer == 1 and ocr.at == 54.2
    assert ocr.types == ("OCR", "realtime") and ocr.video_id == "AutoEvalMetaData/106"

    initials = questions["1326"]
    assert initials.options == ("A. Wade", "B. Tyler", "D. Carter", "C. Jensen") and initials.answer == 0


def test_ovo_forward_probes_become_one_yes_no_question_each(tmp_path):
    questions = load_ovo_bench(write_json(tmp_path, OVO))
    assert len(questions) == 3 + 4 + 4 + 3
    forward = [q for q in questions if q.types[1] == "forward"]
    assert all(q.options == ("Yes", "No") for q in forward)

    rec = [q for q in forward if q.types == ("REC", "forward")]
    assert [q.id for q in rec] == ["1558@5", "1558@17", "1558@19", "1558@32"]
    assert [q.at for q in rec] == [5.0, 17.0, 19.0, 32.0]
    # a repetition completed since the previous probe: counts 0, 1, 1, 2 against 0, 0, 1, 1 before
    assert [q.options[q.answer] for q in rec] == ["No", "Yes", "No", "Yes"]
    assert "breaking something" in rec[0].stem and "at least once" in rec[0].stem
    assert "more than 1 times" in rec[3].stem
    assert rec[1].extra["probe"] == {"realtime": 17, "count": 1} and rec[1].extra["probe_index"] == 1
    assert rec[1].extra["activity"] == "breaking something" and rec[1].video_id == "perception_test/video_4017"

    ssr = [q for q in forward if q.types == ("SSR", "forward")]
    assert [q.id for q in ssr] == ["1516@27", "1516@29", "1516@33#2", "1516@33#3"]  # two probes at 33 s
    assert [q.options[q.answer] for q in ssr] == ["Yes", "No", "Yes", "No"]
    assert '"put on the hair extensions"' in ssr[1].stem and ssr[1].extra["tutorial"] == "PutOnHairExtensions"

    crr = [q for q in forward if q.types == ("CRR", "forward")]
    assert [q.id for q in crr] == ["1468@297", "1468@302.5", "1468@310"]
    assert [q.at for q in crr] == [297.0, 302.5, 310.0]
    assert [q.options[q.answer] for q in crr] == ["No", "No", "Yes"]
    assert "The woman walks towards the black car" in crr[0].stem and crr[0].extra["clue_time"] == 308


def test_streamingbench_json_questions_are_timed_by_their_time_stamp(tmp_path):
    questions = load_streamingbench(write_json(tmp_path, SB))
    assert [q.id for q in questions] == ["sample_1_real_1", "sample_1_real_2", "sample_2_real_1", "sample_1_real_3"]
    first, second, third, fourth = questions
    assert first.at == 190.0 and second.at == 240.0 and third.at == 24.0 and fourth.at == 45.0
    assert first.options == ("Painting the hair.", "Coloring the lips.", "Shading the nose.", "Resting.")
    assert first.answer == 2 and first.types == ("Action Recognition",) and first.stem.endswith("right now?")
    assert second.options == ("1", "2", "3", "4") and second.answer == 0
    assert third.answer == 3 and third.options[3] == "A toy plane." and third.video_id == "sample_2_real"
    assert {q.video_id for q in questions} == {"sample_1_real", "sample_2_real"}
    assert first.extra["video_path"] == "./videos/sample_1_real.mp4" and first.extra["video_categories"] == "painting"
    assert first.extra["required_ability"] == "working memory" and "questions" not in first.extra


def test_streamingbench_csv_rows_load_with_the_json_files_video_names(tmp_path):
    questions = load_streamingbench(write_csv(tmp_path, CSV_ROWS))
    first, second = questions
    assert first.id == "Real-Time Visual Understanding_sample_1_1" and first.video_id == "sample_1_real"
    assert first.options == ("FIFA.", "UEFA.", "NBA.", "La Liga.") and first.answer == 3 and first.at == 4.0
    assert first.types == ("Object Perception",) and first.extra["frames_required"] == "single"
    assert second.video_id == "sample_12_real" and second.at == 3723.0 and second.answer == 1


def test_each_benchmark_is_recognised_and_a_plain_mcq_record_is_not(tmp_path):
    assert detect_streaming_benchmark(OVO) == "ovobench"
    assert detect_streaming_benchmark(OVO[3:]) == "ovobench"  # a file of forward records only
    assert detect_streaming_benchmark(SB) == "streamingbench"
    assert detect_streaming_benchmark(CSV_ROWS) == "streamingbench"
    assert detect_streaming_benchmark([{"video_id": "v", "question": "Q?\n(A) x\n(B) y", "answer": 0}]) is None
    assert detect_streaming_benchmark([]) is None

    with pytest.raises(AnnotationError, match="StreamingBench file, not OVO-Bench"):
        load_ovo_bench(write_json(tmp_path, SB))
    with pytest.raises(AnnotationError, match="not an annotation file of StreamingBench"):
        load_streamingbench(write_json(tmp_path, [{"video_id": "v", "question": "Q?\n(A) x\n(B) y", "answer": 0}]))


def bad(record_edit, records, index=0):
    records = json.loads(json.dumps(records))
    record_edit(records[index])
    return records


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.update(gt=3), r"record 0: gt 3 is not an option index 0\.\.2"),
        (lambda r: r.update(gt="C"), r"record 0: gt 'C' is not an option index"),
        (lambda r: r.pop("realtime"), r"record 0: no realtime"),
        (lambda r: r.update(realtime="00:03:35"), r"record 0: realtime '00:03:35' is not a number of seconds"),
        (lambda r: r.update(options=[]), r"record 0: no options"),
        (lambda r: r.update(task="XYZ"), r"record 0: task 'XYZ' is not one of"),
    ],
)
def test_bad_ovo_records_are_refused_by_name(tmp_path, edit, message):
    path = write_json(tmp_path, bad(edit, OVO))
    with pytest.raises(AnnotationError, match=message) as caught:
        load_ovo_bench(path)
    assert str(path) in str(caught.value)


def test_bad_ovo_probes_are_named_by_record_and_probe(tmp_path):
    records = bad(lambda r: r["test_info"][1].pop("realtime"), OVO, index=3)
    records = bad(lambda r: r["test_info"][2].update(type=2), records, index=4)
    with pytest.raises(AnnotationError, match="2 bad records") as caught:
        load_ovo_bench(write_json(tmp_path, records))
    assert "record 3 probe 1: no realtime" in str(caught.value)
    assert "record 4 probe 2: type 2 is not 0 or 1" in str(caught.value)
    good, problems, found = check_streaming_mcq(write_json(tmp_path, records))
    assert found == "ovobench" and len(problems) == 2 and len(good) == 3 + 3  # the other records still load


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda q: q.update(answer="E"), r"record 0 question 1: answer 'E' is not an option letter A\.\.D"),
        (lambda q: q.update(answer=2), r"record 0 question 1: answer 2 is not an option letter"),
        (lambda q: q.pop("time_stamp"), r"record 0 question 1: no time_stamp"),
        (lambda q: q.update(time_stamp="00:12450"), r"record 0 question 1: time_stamp '00:12450' is not HH:MM:SS"),
        (lambda q: q.update(time_stamp="00:61:00"), r"time_stamp '00:61:00' is not HH:MM:SS"),
        (lambda q: q.update(time_stamp=190), r"time_stamp 190 is not a string"),
        (lambda q: q.pop("options"), r"record 0 question 1: no options"),
    ],
)
def test_bad_streamingbench_questions_are_refused_by_name(tmp_path, edit, message):
    path = write_json(tmp_path, bad(lambda r: edit(r["questions"][1]), SB))
    with pytest.raises(AnnotationError, match=message) as caught:
        load_streamingbench(path)
    assert str(path) in str(caught.value)


def test_bad_csv_rows_are_refused_by_name(tmp_path):
    rows = [dict(CSV_ROWS[0]), {**CSV_ROWS[1], "time_stamp": "1:2:3:4", "answer": "B"}, {**CSV_ROWS[0], "options": ""}]
    with pytest.raises(AnnotationError, match="2 bad records") as caught:
        load_streamingbench(write_csv(tmp_path, rows))
    assert "record 1: time_stamp '1:2:3:4' is not HH:MM:SS" in str(caught.value)
    assert "record 2: no options" in str(caught.value)
