"""The released checkpoint on a GPU: runs only where CUDA and the weights are available.

VSTREAM_CHECKPOINT=IVGSZ/Flash-VStream-7b python -m pytest -m gpu tests/test_model_gpu.py
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from conftest import random_frames

pytestmark = [pytest.mark.gpu, pytest.mark.slow]
CHECKPOINT = os.environ.get("VSTREAM_CHECKPOINT")


@pytest.mark.skipif(not CHECKPOINT, reason="set VSTREAM_CHECKPOINT to a Flash-VStream checkpoint (folder or Hub id)")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_released_checkpoint_answers_in_words_on_gpu(dtype):
    from vstream.model import GenerationOptions, VStream

    vs = VStream.from_pretrained(CHECKPOINT, dtype=dtype, device="cuda")
    assert vs.memory_config().num_tokens == 681
    memory = vs.new_memory()
    memory.update(vs.encode_frames(random_frames(30, size=(240, 320))), np.arange(30.0))
    answer = vs.answer(memory.readout(), "Describe the video.", options=GenerationOptions(max_new_tokens=64))
    assert answer.memory_tokens == 681 and answer.text
    assert sum(c.isalpha() or c.isspace() for c in answer.text) > 0.7 * len(answer.text)  # words, not noise


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_tiny_model_on_gpu_prefix_cache_and_session(tiny_checkpoint, dtype):
    from vstream.model import GenerationOptions, VStream
    from vstream.stream import StreamSession

    vs = VStream.from_pretrained(tiny_checkpoint, dtype=dtype, device="cuda")
    plain = VStream(vs.llm, vs.tokenizer, vs.vision, cache_prefix=False)
    memory = vs.new_memory()
    memory.update(vs.encode_frames(random_frames(12)), np.arange(12.0))
    snapshot = memory.readout()
    assert snapshot.tokens.device.type == "cuda"
    fixed = GenerationOptions(max_new_tokens=8, min_new_tokens=8)
    cached = [vs.answer(snapshot, q, options=fixed) for q in ("Who?", "Where?")]
    assert vs.engine.cache_stats() == {"prefix_cache_hits": 1, "prefix_cache_misses": 1}
    if dtype == torch.float32:  # half precision may round a split prefill differently
        assert [a.text for a in cached] == [plain.answer(snapshot, q, options=fixed).text for q in ("Who?", "Where?")]
    session = StreamSession(vs, "synthetic:6", speed=0, prefill=True)
    answers = list(session.ask_at([(2, "Early?"), (5, "Late?")], options=fixed))
    assert [a.answer.latest_frame_time for a in answers] == [2.0, 5.0]
