"""Answering from a memory snapshot: the exact prompt, the splice at `<image>`, streaming, timings, turns."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vstream.errors import FeatureFileError, GenerationError
from vstream.features import load_features, save_features
from vstream.model import Conversation, GenerationOptions, VStream
from vstream.model.processing_vstream import PromptIds
from vstream.model.prompts import TEMPLATES

from conftest import random_frames

SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions."
)
FIXED = GenerationOptions(max_new_tokens=12, min_new_tokens=12)


def prompt_inputs(model, snapshot, question, conversation=None):
    """The embeddings and ids of a question's whole prompt, as the processor builds them."""
    ids = model.processor.prompt_ids(question, conversation)
    with torch.no_grad():
        return model.processor.build(model.llm, snapshot, ids).inputs_embeds, ids


def split_tokenize(tokenizer, prompt):
    """Each side of `<image>` tokenized alone, the BOS kept only at the very start (as the released training)."""
    before, after = prompt.split("<image>")
    return PromptIds(tokenizer(before).input_ids, tokenizer(after).input_ids[1:])


@pytest.fixture(scope="module")
def snapshot(tiny_model):
    memory = tiny_model.new_memory()
    memory.update(tiny_model.encode_frames(random_frames(12)), np.arange(12, dtype=float))
    return memory.readout()


def test_the_prompt_is_exactly_vicuna_v1():
    conversation = Conversation(TEMPLATES["vicuna_v1"])
    assert conversation.prompt("What is he holding?") == f"{SYSTEM} USER: <image>\nWhat is he holding? ASSISTANT:"
    conversation.add("What is he holding?", "A cup.")
    assert conversation.prompt("What color?") == (
        f"{SYSTEM} USER: <image>\nWhat is he holding? ASSISTANT: A cup.</s>USER: What color? ASSISTANT:"
    )
    # stage 1 (plain): the answer follows the memory directly, as the released preprocess_plain trained it
    assert Conversation(TEMPLATES["plain"]).prompt("ignored") == "<image>"


def test_memory_tokens_go_exactly_where_the_placeholder_was(tiny_model, snapshot):
    embeds, ids = prompt_inputs(tiny_model, snapshot, "What happens?")
    prompt = f"{SYSTEM} USER: <image>\nWhat happens? ASSISTANT:"
    before, after = prompt.split("<image>")
    tokenizer = tiny_model.tokenizer
    assert ids.before == tokenizer(before).input_ids and ids.before[0] == tokenizer.bos_token_id
    assert ids.after == tokenizer(after).input_ids[1:]  # each side alone, BOS only at the very start
    embed = tiny_model.llm.get_input_embeddings()
    n_before, n_memory = len(ids.before), snapshot.num_tokens
    assert embeds.shape == (1, n_before + n_memory + len(ids.after), tiny_model.config.hidden_size)
    with torch.no_grad():
        assert torch.equal(embeds[0, :n_before], embed(torch.tensor(ids.before)))
        assert torch.equal(embeds[0, n_before : n_before + n_memory], tiny_model.llm.project_memory(snapshot.tokens))
        assert torch.equal(embeds[0, n_before + n_memory :], embed(torch.tensor(ids.after)))


def test_answer_streams_pieces_before_it_is_complete_and_reports_timings(tiny_model, snapshot):
    stream = tiny_model.stream_answer(snapshot, "What happens?", options=FIXED)
    pieces, finished_early = [], []
    for piece in stream:
        assert isinstance(piece, str) and piece
        pieces.append(piece)
        finished_early.append(stream.answer is not None)
    answer = stream.answer
    assert len(pieces) >= 2 and not any(finished_early)  # every piece came before the answer was complete
    assert answer.text == "".join(pieces).strip() != ""
    assert answer.text == tiny_model.answer(snapshot, "What happens?", options=FIXED).text  # greedy: deterministic
    assert answer.new_tokens == 12 and answer.stop_reason == "length"
    assert answer.memory_tokens == snapshot.num_tokens == 84
    assert answer.prompt_tokens == prompt_inputs(tiny_model, snapshot, "What happens?")[0].shape[1]
    assert 0 < answer.ttft_s <= answer.total_s and answer.tokens_per_s > 0
    assert answer.frames_seen == 12 and answer.latest_frame_time == 11.0


def test_generation_stops_at_eos(tiny_checkpoint, snapshot):
    model = VStream.from_pretrained(tiny_checkpoint)
    eos = model.tokenizer.eos_token_id

    def favour_eos(module, inputs, logits):  # make EOS the most likely next token everywhere
        logits[..., eos] += 1e4
        return logits

    model.llm.lm_head.register_forward_hook(favour_eos)
    answer = model.answer(snapshot, "Anything?", options=GenerationOptions(max_new_tokens=20))
    assert answer.stop_reason == "eos" and answer.new_tokens == 1 and answer.text == ""
    delayed = model.answer(snapshot, "Anything?", options=GenerationOptions(max_new_tokens=20, min_new_tokens=3))
    assert delayed.stop_reason == "eos" and delayed.new_tokens == 4 and "</s>" not in delayed.text


def test_sampling_is_reproducible_with_a_seed(tiny_model, snapshot):
    options = GenerationOptions(max_new_tokens=10, min_new_tokens=10, temperature=1.0, top_p=0.9, seed=7)
    first = tiny_model.answer(snapshot, "Tell me.", options=options)
    assert tiny_model.answer(snapshot, "Tell me.", options=options).text == first.text


def test_a_conversation_keeps_its_history_in_the_template(tiny_model, snapshot):
    conversation = Conversation()
    first = tiny_model.answer(snapshot, "First?", conversation=conversation, options=FIXED)
    assert conversation.turns == [("First?", first.text)]
    _, ids = prompt_inputs(tiny_model, snapshot, "Second?", conversation)
    expected = f"{SYSTEM} USER: <image>\nFirst? ASSISTANT: {first.text}</s>USER: Second? ASSISTANT:"
    assert ids == split_tokenize(tiny_model.tokenizer, expected)
    second = tiny_model.answer(snapshot, "Second?", conversation=conversation, options=FIXED)
    assert len(conversation.turns) == 2 and second.prompt_tokens > first.prompt_tokens


def test_save_load_answer_gives_identical_output(tiny_model, snapshot, tmp_path):
    expected = tiny_model.answer(snapshot, "Same?", options=FIXED).text
    again = VStream.from_pretrained(tiny_model.save_pretrained(tmp_path / "saved"))
    assert again.answer(snapshot, "Same?", options=FIXED).text == expected


def test_answers_from_a_features_file(tiny_model, tmp_path):
    features = tiny_model.encode_frames(random_frames(9, seed=3))
    save_features(tmp_path / "clip.safetensors", features)
    assert torch.equal(load_features(tmp_path / "clip.safetensors"), features)
    from_file = tiny_model.answer_features(tmp_path / "clip.safetensors", "What?", options=FIXED)
    memory = tiny_model.new_memory()
    memory.update(features, np.arange(9.0))
    assert from_file.frames_seen == 9 and from_file.memory_tokens == 84
    assert from_file.text == tiny_model.answer(tiny_model.clip_snapshot(features), "What?", options=FIXED).text
    (tmp_path / "broken.safetensors").write_bytes(b"nope")
    with pytest.raises(FeatureFileError, match=r"broken\.safetensors: not a readable safetensors file"):
        tiny_model.answer_features(tmp_path / "broken.safetensors", "What?")
    save_features(tmp_path / "image.safetensors", features[0])
    assert load_features(tmp_path / "image.safetensors").shape == (1, 16, 32)
    times = [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0]  # extracted at 0.5 fps: the file says so
    save_features(tmp_path / "slow.safetensors", features, {"fps": "0.5", "times": json.dumps(times)})
    slow = tiny_model.answer_features(tmp_path / "slow.safetensors", "What?", options=FIXED)
    assert slow.latest_frame_time == 16.0 and from_file.latest_frame_time == 8.0


@pytest.mark.parametrize(
    ("question", "options", "message"),
    [
        ("", None, "the question is empty"),
        ("What is <image> here?", None, "must not contain '<image>'"),
        ("Fine?", {"max_new_tokens": 0}, "max_new_tokens must be a positive integer"),
        ("Fine?", {"top_p": 0.0}, "top_p must be in (0, 1]"),
        ("Fine?", {"temperature": -1.0}, "temperature must be >= 0"),
    ],
)
def test_bad_questions_and_options_are_clear_errors(tiny_model, snapshot, question, options, message):
    with pytest.raises(GenerationError) as info:
        tiny_model.answer(snapshot, question, options=GenerationOptions(**options) if options else None)
    assert message in str(info.value)


def test_a_question_before_anything_streamed(tiny_model):
    with pytest.raises(GenerationError, match="the memory is empty: nothing has streamed yet"):
        tiny_model.answer(tiny_model.new_memory().readout(), "Anything yet?")


def test_questions_about_one_snapshot_prefill_the_memory_once_and_answer_as_without_it(tiny_model, snapshot):
    uncached = VStream(tiny_model.llm, tiny_model.tokenizer, tiny_model.vision, cache_prefix=False)
    prompt_lengths: list[int] = []  # the length of every forward pass that prefills (decoding steps take 1 token)

    def record(module, args, kwargs):
        given = kwargs.get("inputs_embeds")
        if given is not None:
            prompt_lengths.append(given.shape[1])

    hook = tiny_model.llm.register_forward_pre_hook(record, with_kwargs=True)
    try:
        conversation, other = tiny_model.processor.conversation(), tiny_model.processor.conversation()
        cached = [tiny_model.answer(snapshot, q, conversation=conversation, options=FIXED) for q in ("Who?", "Where?")]
        prefix_only = list(prompt_lengths)
        plain = [uncached.answer(snapshot, q, conversation=other, options=FIXED) for q in ("Who?", "Where?")]
    finally:
        hook.remove()
    _, first_ids = prompt_inputs(tiny_model, snapshot, "Who?")
    memory_end = len(first_ids.before) + snapshot.num_tokens
    # the prefix (prompt start + memory) once, then only each question's own tokens (the follow-up carries the
    # first turn, so it is longer)
    assert prefix_only[0] == memory_end and prefix_only[1] == len(first_ids.after) and len(prefix_only) == 3
    assert (
        prefix_only[1] + memory_end == cached[0].prompt_tokens
        and prefix_only[2] + memory_end == cached[1].prompt_tokens
    )
    assert prompt_lengths[3:] == [a.prompt_tokens for a in plain]  # without the cache, whole prompts
    assert [a.text for a in cached] == [a.text for a in plain] and cached[0].text  # the same greedy answers


def test_a_new_snapshot_gets_a_new_prefix(tiny_model, snapshot):
    engine, short = tiny_model.engine, GenerationOptions(max_new_tokens=2)
    engine.clear_prefix_cache()
    start = engine.cache_stats()

    def counts() -> tuple[int, int]:  # (misses, hits) since the start of this test
        now = engine.cache_stats()
        return tuple(now[k] - start[k] for k in ("prefix_cache_misses", "prefix_cache_hits"))

    projections: list[int] = []  # the memory is projected only to compute a prefix, not for a question that hits
    hook = tiny_model.llm.model.mm_projector.register_forward_hook(lambda *_: projections.append(1))
    tiny_model.answer(snapshot, "What?", options=short)
    tiny_model.answer(snapshot, "And?", options=short)
    assert counts() == (1, 1)
    memory = tiny_model.new_memory()
    memory.update(tiny_model.encode_frames(random_frames(3)), [0.0, 1.0, 2.0])
    newer = memory.readout()
    tiny_model.answer(newer, "Now?", options=short)
    tiny_model.answer(newer, "Again?", options=short)
    assert counts() == (2, 2)
    tiny_model.answer(snapshot, "Back to the first?", options=short)  # one prefix is kept: the older one is gone
    hook.remove()
    assert counts() == (3, 2)
    assert len(projections) == 3
