"""Multiple-choice benchmarks: the five real samples load with every option found and every answer on the right
letter; files of another benchmark or open-ended ones are refused; answers are read strictly, never defaulting."""

from __future__ import annotations

import json
import re

import pytest

from vstream.errors import AnnotationError, ConfigError
from vstream.eval.choice import read_choice
from vstream.eval.datasets import load_annotations
from vstream.eval.mcq import check_mcq, detect_mcq_benchmark, load_mcq, split_options
from vstream.eval.questions import load_questions

from conftest import SHARED_DATA

MCQ = SHARED_DATA / "mcq"
SAMPLES = {
    "egoschema": "egoschema_test_qa_sample.json",
    "lvbench": "lvbench_test_qa_sample.json",
    "mlvu": "mlvu_test_qa_sample.json",
    "mvbench": "mvbench_test_qa_sample.json",
    "videomme": "videomme_test_qa_sample.json",
}
OPTION_LINE = re.compile(r"^\s*(\(([A-H])\)|([A-H])\.)\s")


@pytest.mark.parametrize("benchmark", SAMPLES)
def test_each_real_sample_loads_with_every_option_and_the_answer_on_its_letter(benchmark):
    path = MCQ / SAMPLES[benchmark]
    records = json.loads(path.read_text())
    questions = load_mcq(path, benchmark)
    assert len(questions) == len(records)
    for record, question in zip(records, questions, strict=True):
        lines = [line for line in record["question"].split("\n") if OPTION_LINE.match(line)]  # counted independently
        assert len(question.options) == len(lines) >= 2, record["question"]
        right = lines[record["answer"]]
        assert question.letter == "ABCDEFGH"[record["answer"]] and right.strip().endswith(
            question.options[record["answer"]]
        )
        assert question.letter in right[:4]
        assert question.stem and not OPTION_LINE.match(question.stem) and "Options:" not in question.stem
        assert question.video_id == record["video_id"]


def test_the_option_styles_and_instructions_are_told_apart():
    ego = load_mcq(MCQ / SAMPLES["egoschema"], "egoschema")[0]
    assert ego.stem.startswith("Taking into account all the actions performed by c")
    assert ego.options[3] == "C is cleaning dishes." and ego.letter == "D" and len(ego.options) == 5
    assert ego.instruction.startswith("Select the best answer") and ego.instruction.endswith(
        "Only give the best option."
    )

    mme = load_mcq(MCQ / SAMPLES["videomme"], "videomme")[0]  # "A. ..." lines
    assert mme.options[3] == "Highway realignment." and mme.letter == "D" and mme.types == ("Action Reasoning",)

    mlvu = load_mcq(MCQ / SAMPLES["mlvu"], "mlvu")[0]  # an "Options:" block
    assert mlvu.options == ("RoadAccidents", "Shooting", "Shoplifting", "Assault") and mlvu.letter == "C"
    assert mlvu.types == ("anomaly_reco",)

    mv = load_mcq(MCQ / SAMPLES["mvbench"], "mvbench")[0]  # "Question: ...\nOptions:\n(A) ..."
    assert (
        mv.stem == "What is the action performed by the person in the video?" and mv.options[2] == "Piling something up"
    )

    lv = load_mcq(MCQ / SAMPLES["lvbench"], "lvbench")[0]  # a list of question types
    assert lv.types == ("key information retrieval",) and lv.extra["time_reference"] == "00:15-00:19"


def test_split_options_needs_options_in_order():
    assert split_options("Is it?\n(A) yes\n(C) no") == ("Is it?", ("yes",), "(C) no")
    assert split_options("What now?") == ("What now?", (), "")
    assert split_options("Pick one:\nA. red\nB. blue\nAnswer with the letter.") == (
        "Pick one:",
        ("red", "blue"),
        "Answer with the letter.",
    )


@pytest.mark.parametrize("benchmark", SAMPLES)
def test_a_file_is_recognised_and_refused_under_another_name(benchmark):
    path = MCQ / SAMPLES[benchmark]
    assert detect_mcq_benchmark(json.loads(path.read_text())) == benchmark
    other = next(name for name in SAMPLES if name != benchmark)
    with pytest.raises(AnnotationError, match=f"use --benchmark {benchmark}"):
        load_mcq(path, other)
    assert len(load_mcq(path, "custom")) == len(json.loads(path.read_text()))


def test_an_open_ended_file_is_not_multiple_choice_and_a_multiple_choice_file_not_open_ended(tmp_path):
    open_ended = tmp_path / "test_qa.json"
    open_ended.write_text(json.dumps([{"id": "1", "video_id": "v", "question": "What is it?", "answer": "a dog"}]))
    with pytest.raises(AnnotationError, match="not a multiple-choice file"):
        load_mcq(open_ended, "mvbench")
    assert load_annotations(open_ended).items[0].answer == "a dog"
    with pytest.raises(AnnotationError, match=r"multiple-choice file \(MVBench; .*--benchmark mvbench"):
        load_annotations(MCQ / SAMPLES["mvbench"])  # before: read as open-ended questions whose answers were "2"


def test_bad_records_are_all_listed(tmp_path):
    records = json.loads((MCQ / SAMPLES["mvbench"]).read_text())[:4]
    records[1]["answer"] = 7
    records[2]["question"] = "Question: What happens?\nOptions:\n(B) only a B"
    del records[3]["video_id"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(records))
    questions, problems, found = check_mcq(path)
    assert found == "mvbench" and len(questions) == 1
    assert [p.position for p in problems] == ["record 1", "record 2", "record 3"]
    assert "answer 7 is not an option index 0..2" in problems[0].reason
    assert "no options found" in problems[1].reason and "no video_id" in problems[2].reason
    with pytest.raises(AnnotationError, match="3 bad records"):
        load_mcq(path, "mvbench")


def test_next_qa_multiple_choice_from_its_csv(tmp_path):
    path = tmp_path / "val.csv"
    path.write_text(
        "video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"
        "4010069381,1000,640,480,why did the boy fall,2,6,CW,he ran,he slept,he slipped,he sat,he sang\n"
    )
    (question,) = load_mcq(path, "nextmc")
    assert question.options[2] == "he slipped" and question.letter == "C" and question.types == ("CW",)
    assert question.id == "4010069381_6"


def test_data_check_names_a_multiple_choice_file(capsys):
    from vstream.__main__ import main

    assert main(["data", "check", str(MCQ / SAMPLES["videomme"])]) == 0
    assert "36 multiple-choice questions (Video-MME), 0 bad records" in capsys.readouterr().out


def test_data_check_names_streaming_and_unknown_multiple_choice_files(tmp_path, capsys):
    from vstream.__main__ import main

    mine = [{"id": "a", "video_id": "v", "question": "Q?\n(A) x\n(B) y", "answer": 1}]
    (tmp_path / "mine.json").write_text(json.dumps(mine))
    ovo = [
        {"id": 1, "task": "OCR", "video": "a/b.mp4", "realtime": 3, "question": "Q?", "options": ["x", "y"], "gt": 0}
    ]
    (tmp_path / "ovo.json").write_text(json.dumps(ovo))
    assert main(["data", "check", str(tmp_path / "mine.json"), str(tmp_path / "ovo.json")]) == 0
    shown = capsys.readouterr().out
    assert "1 multiple-choice questions (no known benchmark), 0 bad records" in shown
    assert "1 timed multiple-choice questions (OVO-Bench), 0 bad records" in shown
    with pytest.raises(AnnotationError, match=r"multiple-choice file \(no known benchmark; .* --benchmark custom`"):
        load_annotations(tmp_path / "mine.json")


OPTIONS = ("A person opens the door.", "A dog barks.", "Nothing happens.", "None of the above")
ANSWERS = [
    ("B", "B"),
    ("(B)", "B"),
    ("B.", "B"),
    ("[C]", "C"),
    (" b ", None),  # lower case alone is not read as a letter
    ("B. A dog barks.", "B"),
    ("(C) Nothing happens", "C"),
    ("D) None of the above", "D"),
    ("The answer is C.", "C"),
    ("Answer: (B)", "B"),
    ("The correct option is D", "D"),
    ("Best option: A", "A"),
    ("I choose B because the dog is loud.", "B"),
    ("The answer is B, not A.", "B"),
    ("A dog barks.", "B"),  # the option's own text
    ("I think a dog barks at the door", "B"),  # contains exactly one option
    ("A person opens the door.", "A"),
    ("A person walks in.", None),  # "A" is a word here, and no option is named
    ("Answer: A person walks in.", None),
    ("none of the above", "D"),
    ("(A) or (B)", None),  # two letters
    ("The answer is A or the answer is B", None),
    ("E", None),  # not among four options
    ("The answer is F.", None),
    ("I am not sure.", None),
    ("", None),
    (None, None),
]


@pytest.mark.parametrize(("answer", "letter"), ANSWERS)
def test_answers_are_read_strictly(answer, letter):
    assert read_choice(answer, OPTIONS).letter == letter


def test_unreadable_answers_say_why():
    assert read_choice("E", OPTIONS).rule == "E is not an option"
    assert read_choice("(A) or (B)", OPTIONS).rule == "two letters"
    assert read_choice("I am not sure.", OPTIONS).rule == "no option named"


def test_questions_load_by_benchmark_name_and_custom_files_under_their_own(tmp_path):
    name, questions = load_questions(MCQ / SAMPLES["videomme"], "videomme")
    assert name == "videomme" and questions.format == "multiple_choice" and len(questions.items) == 36
    assert questions.digest and questions.source.endswith(SAMPLES["videomme"])
    name, questions = load_questions(MCQ / SAMPLES["mlvu"], "custom")  # any supported file, under its own name
    assert name == "custom:mlvu_test_qa_sample" and questions.items[0].options
    assert load_questions(MCQ / SAMPLES["mlvu"], "custom:mine")[0] == "custom:mine"
    with pytest.raises(AnnotationError, match="Video-MME file, not MVBench"):
        load_questions(MCQ / SAMPLES["videomme"], "mvbench")
    with pytest.raises(AnnotationError, match=r"not .*OVO-Bench"):
        load_questions(MCQ / SAMPLES["mvbench"], "ovobench")
    with pytest.raises(ConfigError, match="custom:NAME"):
        load_questions(MCQ / SAMPLES["mvbench"], "mvbenhc")
    open_ended = [{"video_id": "v", "conversations": [{"question": "Q?", "answer": "a", "end_time": 3}]}]
    (tmp_path / "mine.json").write_text(json.dumps(open_ended))
    name, questions = load_questions(tmp_path / "mine.json", "custom")
    assert name == "custom:mine" and questions.items[0].answer == "a"


def test_a_file_with_a_bad_record_stops_unless_its_good_records_are_asked_for(tmp_path):
    records = [
        {"id": "a", "video_id": "v", "question": "Q?\n(A) x\n(B) y", "answer": 1},
        {"id": "b", "video_id": "v", "question": "Q?\n(A) x\n(B) y", "answer": 5},
    ]
    (tmp_path / "two.json").write_text(json.dumps(records))
    with pytest.raises(AnnotationError, match="record 1: answer 5 is not an option index"):
        load_questions(tmp_path / "two.json", "custom")
    _, questions = load_questions(tmp_path / "two.json", "custom", strict=False)
    assert [q.id for q in questions.items] == ["a"] and len(questions.problems) == 1
