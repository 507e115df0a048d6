"""The processor: one way to build a sample for training and for inference; the engine behind its interface."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vstream.errors import GenerationError
from vstream.memory import offline_readout
from vstream.model import Engine, GenerationOptions, VStreamProcessor
from vstream.model.processing_vstream import IGNORE_INDEX

from conftest import random_frames

FIXED = GenerationOptions(max_new_tokens=8, min_new_tokens=8)


@pytest.fixture(scope="module")
def snapshot(tiny_model):
    memory = tiny_model.new_memory()
    memory.update(tiny_model.encode_frames(random_frames(10, seed=5)), np.arange(10.0))
    return memory.readout()


def learned_text(processor, ids, labels):
    """The text of the tokens a sample teaches (its labels that are not IGNORE_INDEX)."""
    tokens = [label for label in labels if label != IGNORE_INDEX]
    assert tokens == [i for i, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]
    return processor.tokenizer.decode(tokens)


def test_a_training_sample_learns_exactly_the_answers_and_their_end_marks(tiny_model):
    processor = tiny_model.processor
    turns = [("What is happening?", "A person is cooking."), ("What color is the car?", "Red.")]
    ids = processor.sample_ids(turns)
    assert set(ids.labels_before) == {IGNORE_INDEX}  # system prompt and `USER: ` come before the memory
    learned = learned_text(processor, ids.after, ids.labels_after)
    assert learned.replace(" ", "") == "Apersoniscooking.</s>Red.</s>"
    eos = processor.tokenizer.eos_token_id
    assert ids.labels_after.count(eos) == 2 and ids.labels_after[-1] == eos  # each answer ends with EOS, learned


def test_training_and_inference_build_the_same_prompt(tiny_model):
    processor = tiny_model.processor
    question = "Did anyone open the door?"
    prompt = processor.prompt_ids(question)
    sample = processor.sample_ids([(question, "Yes.")])
    assert sample.before == prompt.before
    assert sample.after[: len(prompt.after)] == prompt.after  # the answer continues the inference prompt
    first_learned = next(i for i, label in enumerate(sample.labels_after) if label != IGNORE_INDEX)
    assert first_learned == len(prompt.after)  # and it is exactly what the model is trained to write next


def test_stage_one_plain_sample_is_the_caption_right_after_the_memory(tiny_model):
    processor = VStreamProcessor(tiny_model.tokenizer, "plain")
    ids = processor.sample_ids([("ignored for plain", "A person is cooking.")])
    assert ids.before == [processor.tokenizer.bos_token_id] and ids.labels_before == [IGNORE_INDEX]
    assert ids.after == processor.tokenizer("A person is cooking.\n").input_ids[1:]
    assert ids.labels_after == ids.after  # caption and its newline, all learned (as the released preprocess_plain)
    assert processor.prompt_ids("Describe.").after == []  # at inference the caption starts right after the memory


def test_build_splices_the_memory_and_lets_gradients_reach_the_trained_parts(tiny_model):
    processor, llm = tiny_model.processor, tiny_model.llm
    features = tiny_model.encode_frames(random_frames(12, seed=1))
    weights = llm.semantic_attention()
    llm.model.attention_model.requires_grad_(True)
    llm.model.mm_projector.requires_grad_(True)
    try:
        snapshot = offline_readout(features, None, tiny_model.memory_config(), weights)  # differentiable in q/k
        ids = processor.sample_ids([("What happens?", "Cooking.")])
        sample = processor.build(llm, snapshot, ids)
        length = len(ids.before) + snapshot.num_tokens + len(ids.after)
        assert sample.inputs_embeds.shape == (1, length, llm.config.hidden_size) and sample.labels.shape == (1, length)
        assert (sample.memory_start, sample.memory_end) == (len(ids.before), len(ids.before) + snapshot.num_tokens)
        assert (sample.labels[0, sample.memory_start : sample.memory_end] == IGNORE_INDEX).all()
        loss = llm(inputs_embeds=sample.inputs_embeds, labels=sample.labels).loss
        loss.backward()
        assert llm.model.mm_projector[0].weight.grad.abs().sum() > 0
        assert llm.model.attention_model.q_proj.weight.grad.abs().sum() > 0  # through the abstract memory
    finally:
        llm.zero_grad(set_to_none=True)
        llm.requires_grad_(False)


def test_samples_that_cannot_be_built_are_clear_errors(tiny_model, snapshot):
    processor = tiny_model.processor
    with pytest.raises(GenerationError, match="an answer in every turn"):
        processor.sample_ids([("What?", None)])
    with pytest.raises(GenerationError, match="must not contain '<image>'"):
        processor.sample_ids([("What is <image>?", "This.")])
    with pytest.raises(GenerationError, match="the memory is empty"):
        processor.build(tiny_model.llm, snapshot.tokens[:0], processor.prompt_ids("What?"))


def test_the_engine_decodes_prompt_embeddings_behind_its_own_interface(tiny_model, snapshot):
    engine = Engine(tiny_model.llm, tiny_model.tokenizer, cache_prefix=False)
    assert engine.cache_stats() == {} and not engine.holds_prefix(snapshot)
    prompt = tiny_model.prompt(snapshot, "What happens?")
    pieces = engine.stream(prompt, FIXED)
    text = "".join(pieces)
    generation = engine.generate(prompt, FIXED)
    assert generation.text == text.strip() == tiny_model.answer(snapshot, "What happens?", options=FIXED).text
    assert generation.new_tokens == 8 and generation.stop_reason == "length"
    whole = tiny_model.processor.build(tiny_model.llm, snapshot, tiny_model.processor.prompt_ids("What happens?"))
    assert generation.prompt_tokens == whole.inputs_embeds.shape[1]
    with torch.no_grad():
        assert torch.equal(torch.cat([prompt.prefix(), prompt.suffix], dim=1), whole.inputs_embeds)
