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
