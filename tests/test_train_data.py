"""Training data: LLaVA records validated with positions, samples from features, videos and images, the length rule,
and `vstream data check` on training files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vstream.__main__ import main
from vstream.errors import TrainingDataError
from vstream.features import save_features
from vstream.model.processing_vstream import IGNORE_INDEX, VStreamProcessor
from vstream.stream.sources import open_source
from vstream.train.data import TrainingDataset, collate_samples
from vstream.train.media import MediaRoots
from vstream.train.records import load_training_records, validate_records

from conftest import encode_video, random_frames

QUESTION, ANSWER = "What is it?", "A cat."


def record(media: str, *turns: tuple[str, str], key: str = "video", placeholder: str = "<image>") -> dict:
    """A LLaVA record with the placeholder before the first question."""
    turns = turns or ((QUESTION, ANSWER),)
    conversations = []
    for i, (question, answer) in enumerate(turns):
        value = f"{placeholder}\n{question}" if i == 0 else question
        conversations += [{"from": "human", "value": value}, {"from": "gpt", "value": answer}]
    return {"id": media, key: media, "conversations": conversations}


def write(path: Path, records: list) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        path.write_text(json.dumps(records))
    return path


def shape_of(model) -> tuple[int, int]:
    return model.memory_config().num_patches, model.config.mm_hidden_size


def features(model, frames: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(frames, *shape_of(model), generator=torch.Generator().manual_seed(seed))


def dataset(model, records, processor=None, **options) -> TrainingDataset:
    patches, width = shape_of(model)
    options.setdefault("encoder", model.encode_frames)
    return TrainingDataset(
        records,
        processor or model.processor,
        model.memory_config(),
        mm_hidden_size=width,
        num_patches=patches,
        **options,
    )


def learned(ids, tokenizer) -> str:
    """The text of the tokens that carry a label."""
    pairs = zip(ids.before + ids.after, ids.labels_before + ids.labels_after, strict=True)
    return tokenizer.decode([token for token, label in pairs if label != IGNORE_INDEX])


def test_a_feature_file_gives_its_features_times_and_the_processors_ids(tmp_path, tiny_model):
    clip = features(tiny_model, 3)
    save_features(tmp_path / "f" / "a.safetensors", clip, {"fps": "2", "times": json.dumps([0.0, 0.5, 1.5])})
    turns = [(QUESTION, ANSWER), ("And then?", "It sleeps.")]
    file = write(tmp_path / "train.json", [record("a.mp4", *turns)])  # found as a.safetensors under the features
    records = load_training_records([file], MediaRoots(features=tmp_path / "f"))
    (item,) = records.items
    assert item.kind == "features" and item.turns == tuple(turns)  # the placeholder and its newline are gone
    sample = dataset(tiny_model, records)[0]
    assert torch.equal(sample.features, clip) and sample.features.dtype == torch.float32
    assert sample.times == [0.0, 0.5, 1.5]
    assert sample.ids == tiny_model.processor.sample_ids(turns)
    assert learned(sample.ids, tiny_model.tokenizer) == "A cat.</s> It sleeps.</s>"  # the answers, nothing else
    assert sample.position == f"{file} record 0"
    assert collate_samples([sample]) == {"samples": [sample]}


def test_npy_and_released_files_play_at_1_fps_and_a_half_fps_file_keeps_its_times(tmp_path, tiny_model):
    np.save(tmp_path / "n.npy", features(tiny_model, 3).numpy())
    save_features(tmp_path / "r.safetensors", features(tiny_model, 2))  # released: no metadata
    save_features(tmp_path / "h.safetensors", features(tiny_model, 3), {"fps": "0.5"})
    save_features(tmp_path / "i.safetensors", features(tiny_model, 1)[0])  # an image's (P, D)
    names = ["n.npy", "r.safetensors", "h.safetensors", "i.safetensors"]
    file = write(tmp_path / "train.json", [record(name) for name in names])
    records = load_training_records([file], MediaRoots(features=tmp_path), feature_shape=shape_of(tiny_model))
    samples = list(dataset(tiny_model, records, fps=1.0))
    assert [s.times for s in samples] == [[0.0, 1.0, 2.0], [0.0, 1.0], [0.0, 2.0, 4.0], [0.0]]
    assert samples[3].features.shape == (1, *shape_of(tiny_model))


def test_videos_image_folders_and_images_are_encoded_in_batches(tmp_path, tiny_model):
    folder = tmp_path / "v" / "shots"
    folder.mkdir(parents=True)
    encode_video(tmp_path / "v" / "clip.mp4", frames=20, fps=10)  # 2 s
    for i, frame in enumerate(random_frames(3)):
        Image.fromarray(frame).save(folder / f"{i}.png")
    (tmp_path / "img").mkdir()
    Image.fromarray(random_frames(1, seed=5)[0]).save(tmp_path / "img" / "photo.jpg")
    file = write(
        tmp_path / "train.json",
        [record("clip.mp4"), record("shots"), record("photo.jpg", key="image")],
    )
    records = load_training_records([file], MediaRoots(videos=tmp_path / "v", images=tmp_path / "img"))
    assert [r.kind for r in records.items] == ["video", "video", "image"]
    video, shots, photo = dataset(tiny_model, records, fps=2.0, batch_size=3)
    assert video.times == [0.0, 0.5, 1.0, 1.5] and shots.times == [0.0, 0.5, 1.0] and photo.times == [0.0]
    frames = [f.image for f in open_source(tmp_path / "v" / "clip.mp4", 2.0).frames()]
    assert torch.allclose(video.features, tiny_model.encode_frames(frames).float(), atol=1e-5)  # 2 batches of 3 + 1
    assert photo.features.shape == (1, *shape_of(tiny_model))
    with pytest.raises(TrainingDataError, match=r"record 0: .*clip.mp4: a raw video, and no vision tower"):
        dataset(tiny_model, records, encoder=None)[0]


def test_bad_records_are_listed_with_position_and_reason(tmp_path, tiny_model):
    save_features(tmp_path / "good.safetensors", features(tiny_model, 2))
    save_features(tmp_path / "narrow.safetensors", torch.zeros(2, 16, 8))
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    two = record("good.safetensors")
    two["conversations"][1]["value"] += " <video>"
    late = record("good.safetensors", (QUESTION, ANSWER), ("More?", "Yes."), placeholder="")
    late["conversations"][2]["value"] = "<image>\nMore?"
    records = [
        record("good.safetensors"),
        record("missing.safetensors"),
        record("narrow.safetensors"),
        {"image": "good.safetensors", "conversations": [{"from": "human", "value": "<image>\nHi"}]},
        two,
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
        {"video": "good.safetensors", "conversations": [{"from": "gpt", "value": "<image>"}, {"from": "human"}]},
        record("good.safetensors", (QUESTION, "  ")),
        record("good.safetensors", placeholder=""),
        late,
        record("broken.safetensors"),
    ]
    file = write(tmp_path / "train.json", records)
    found = load_training_records([file], MediaRoots(features=tmp_path), strict=False)
    assert [r.position for r in found.items] == [f"{file} record 0"]
    reasons = {int(p.position.rsplit(" ", 1)[1]): p.reason for p in found.problems}
    assert sorted(reasons) == list(range(1, 11))
    assert "'missing.safetensors' not found" in reasons[1]
    assert "shape (2, 16, 8); expected (T, 16, 32)" in reasons[2]
    assert "no assistant turn" in reasons[3]
    assert "2 placeholders" in reasons[4]
    assert "text-only records are not supported" in reasons[5]
    assert "roles out of order" in reasons[6]
    assert "turn 1: empty value" in reasons[7]
    assert "0 placeholders" in reasons[8]
    assert "must be in the first question" in reasons[9]
    assert "not a readable features file" in reasons[10]
    with pytest.raises(TrainingDataError, match=r"10 bad records: .*train.json record 1: "):
        load_training_records([file], MediaRoots(features=tmp_path))
    model_shape = validate_records(records[:1], "x", MediaRoots(features=tmp_path), feature_shape=(16, 64))
    assert "expected (T, 16, 64) (the model's)" in model_shape.problems[0].reason


def test_the_length_rule_truncates_drops_and_counts(tmp_path, tiny_model):
    plain = VStreamProcessor(tiny_model.tokenizer, "plain")  # stage 1: [BOS] <memory> answer "\n"
    save_features(tmp_path / "a.safetensors", features(tiny_model, 2))
    long_answer = "The cat sleeps on the mat all day long."
    file = write(
        tmp_path / "train.json", [record("a.safetensors", ("", "Cat.")), record("a.safetensors", ("", long_answer))]
    )
    records = load_training_records([file], MediaRoots(features=tmp_path))
    memory = tiny_model.memory_config().num_tokens
    short, long = (plain.sample_ids(r.turns) for r in records.items)
    limit = 1 + memory + len(short.after) + 2  # the short one fits, the long one is cut to its first tokens
    data = dataset(tiny_model, records, plain, model_max_length=limit)
    assert len(data) == 2 and data.dropped == []
    assert data.truncated == [
        f"{file} record 1: {1 + memory + len(long.after)} tokens ({memory} of memory) > model_max_length {limit}; "
        f"its last {1 + memory + len(long.after) - limit} tokens cut"
    ]
    cut = data[1].ids
    assert cut.after == long.after[: limit - 1 - memory] and cut.labels_after == long.labels_after[: len(cut.after)]
    assert data.lengths == [1 + memory + len(short.after), limit]
    assert data[0].ids == short

    data = dataset(tiny_model, records, plain, model_max_length=1 + memory)  # no answer token fits
    assert len(data) == 0 and len(data.dropped) == 2 and "no answer token is left" in data.dropped[0]
    data = dataset(tiny_model, records, plain, model_max_length=limit, too_long="drop")
    assert len(data) == 1 and data.truncated == [] and "too_long='drop'" in data.dropped[0]


def test_isolated_turns_are_cut_to_fit_by_whole_turns(tmp_path, tiny_model):
    save_features(tmp_path / "a.safetensors", features(tiny_model, 2))
    turns = [("What is it?", "A cat."), ("Where is it?", "On the mat."), ("Is it asleep?", "Yes.")]
    file = write(tmp_path / "train.json", [record("a.safetensors", *turns)])
    records = load_training_records([file], MediaRoots(features=tmp_path))
    whole = tiny_model.processor.sample_ids(turns, isolated=True)
    memory = tiny_model.memory_config().num_tokens
    limit = len(whole.before) + memory + whole.turns[0] + whole.turns[1] - 1  # the second turn misses one token
    data = dataset(tiny_model, records, model_max_length=limit, isolated_turns=True)
    cut = data[0].ids
    assert cut.turns == whole.turns[:1] and cut.after == whole.after[: whole.turns[0]]
    assert cut.labels_after == whole.labels_after[: whole.turns[0]]
    assert data.truncated[0].endswith(f"its last {whole.turns[1] + whole.turns[2]} tokens cut")
    assert data.lengths == [len(whole.before) + memory + whole.turns[0]]
    data = dataset(
        tiny_model, records, model_max_length=len(whole.before) + memory + whole.turns[0] - 1, isolated_turns=True
    )  # not even the first turn fits
    assert len(data) == 0 and "no answer token is left" in data.dropped[0]
    assert dataset(tiny_model, records, isolated_turns=True)[0].ids == whole


def test_video_placeholder_user_roles_and_jsonl_are_accepted(tmp_path, tiny_model):
    save_features(tmp_path / "a.safetensors", features(tiny_model, 2))
    line = {
        "video": str(tmp_path / "a.safetensors"),  # an absolute path is used as it is
        "conversations": [{"from": "user", "value": f"{QUESTION}\n<video>"}, {"from": "assistant", "value": ANSWER}],
    }
    file = write(tmp_path / "train.jsonl", [line, record("a.safetensors", placeholder="<video>")])
    records = load_training_records([file], MediaRoots(features=tmp_path))
    assert [r.turns for r in records.items] == [((QUESTION, ANSWER),)] * 2
    assert dataset(tiny_model, records)[0].ids == tiny_model.processor.sample_ids([(QUESTION, ANSWER)])


def test_a_conversation_the_processor_refuses_is_listed(tmp_path, tiny_model):
    save_features(tmp_path / "a.safetensors", features(tiny_model, 1))
    file = write(tmp_path / "train.json", [record("a.safetensors", ("", ANSWER))])  # "<image>\n": no question
    records = load_training_records([file], MediaRoots(features=tmp_path))
    with pytest.raises(TrainingDataError, match=r"1 bad records: .*record 0: the question is empty"):
        dataset(tiny_model, records)  # vicuna_v1 shows the question
    assert len(dataset(tiny_model, records, VStreamProcessor(tiny_model.tokenizer, "plain"))) == 1


def test_data_check_knows_training_files_and_benchmark_annotations(tmp_path, capsys, tiny_model):
    save_features(tmp_path / "f" / "a.safetensors", features(tiny_model, 2))
    good = write(tmp_path / "good.json", [record("a.safetensors"), record("a.mp4")])
    bad = write(tmp_path / "bad.jsonl", [record("a.safetensors"), record("gone.mp4"), {"conversations": []}])
    assert main(["data", "check", str(good)]) == 0
    assert capsys.readouterr().out == f"{good}: 2 training records (llava), 0 bad records\n"

    assert main(["data", "check", str(bad)]) == 1  # without roots: the structure only
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{bad}: 2 training records (llava), 1 bad records",
        f"  {bad} record 2: no image or video: text-only records are not supported",
    ]
    assert main(["data", "check", str(good), str(bad), "--features", str(tmp_path / "f")]) == 1
    out = capsys.readouterr().out
    assert f"{good}: 2 training records (llava), 0 bad records" in out  # a.mp4 is found as a.safetensors
    assert f"{bad}: 1 training records (llava), 2 bad records" in out
    assert f"  {bad} record 1: video 'gone.mp4' not found" in out

    vstream_qa = [{"video_id": "v", "conversations": [{"question": "Q?", "answer": "A.", "end_time": 3}]}]
    qa = write(tmp_path / "rvs_ego_conversations.json", vstream_qa)
    assert main(["data", "check", str(qa)]) == 0
    assert capsys.readouterr().out == f"{qa}: 1 questions (conversations), 0 bad records\n"
    assert main(["data", "check", str(tmp_path / "none.json")]) == 2
    assert "no such annotation file" in capsys.readouterr().err


def test_an_online_record_sees_the_stream_up_to_its_end_time_only(tmp_path, tiny_model):
    clip = features(tiny_model, 10)
    save_features(tmp_path / "f" / "s.safetensors", clip)  # 1 fps: times 0..9
    asked = {**record("s.mp4"), "end_time": 4}
    too_early = {**record("s.mp4"), "end_time": 4, "id": "early"}
    file = write(tmp_path / "train.json", [asked])
    sample = dataset(tiny_model, load_training_records([file], MediaRoots(features=tmp_path / "f")))[0]
    assert sample.times == [0.0, 1.0, 2.0, 3.0, 4.0] and torch.equal(sample.features, clip[:5])
    save_features(
        tmp_path / "g" / "s.safetensors", clip, {"fps": "1", "times": json.dumps([float(t + 5) for t in range(10)])}
    )
    late = dataset(
        tiny_model,
        load_training_records([write(tmp_path / "t2.json", [too_early])], MediaRoots(features=tmp_path / "g")),
    )
    with pytest.raises(TrainingDataError, match=r"end_time 4\.0 is before the first frame"):
        late[0]
    bad = [
        {**record("s.mp4"), "end_time": -1},
        {**record("s.mp4"), "end_time": "soon"},
        {**record("cat.png", key="image"), "end_time": 3},
    ]
    checked = validate_records(bad, "bad.json", MediaRoots(features=tmp_path / "f", images=tmp_path))
    reasons = [problem.reason for problem in checked.problems]
    assert len(reasons) == 3 and "end_time must be a number of seconds >= 0" in reasons[0]
    assert "end_time must be" in reasons[1] and "end_time is for videos" in reasons[2]


class _Niceness(torch.utils.data.Dataset):
    """Each item: the niceness of the process that read it, after `yield_to_training(5)`."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        from vstream.train.data import yield_to_training

        yield_to_training(5)
        return os.nice(0)


@pytest.mark.skipif(not hasattr(os, "nice"), reason="niceness is Unix")
def test_a_data_worker_yields_the_cpu_to_the_training_step_once_and_the_training_process_never():
    """`dataloader_nice`: a DataLoader worker lowers its own priority once (not once per sample); the training
    process reading a sample itself keeps its priority."""
    own = os.nice(0)
    assert _Niceness()[0] == own  # in the training process: unchanged
    loader = torch.utils.data.DataLoader(_Niceness(), batch_size=None, num_workers=1)
    assert list(loader) == [min(own + 5, 19)] * 4
    assert os.nice(0) == own
