"""Training with every weight sharded: DeepSpeed ZeRO-3 through the Trainer, and PyTorch FSDP2 on the model the
engines wrap, each in two real processes on CPUs (gloo), compared with the same training unsharded."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train import SHORT, run_file, weights, write_feature_set

from vstream.model import VStream

HERE = Path(__file__).parent


def torchrun(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, **env})


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="DeepSpeed is not installed")
def test_zero2_and_zero3_train_what_ddp_trains_and_save_the_released_layout(tiny_checkpoint, tmp_path):
    weights_of = {}
    for engine in ("ddp", "zero2", "zero3"):
        root = tmp_path / engine
        write_feature_set(root)  # the same set for each (seeded)
        fields = {} if engine == "ddp" else {"deepspeed": engine}
        run = run_file(root, str(tiny_checkpoint), max_steps=2, per_device_batch_size=1, **fields)
        launch = torchrun("-m", "vstream.train", str(run), env={"VSTREAM_CACHE": str(tmp_path / "cache")})
        assert launch.returncode == 0, launch.stderr[-3000:]
        assert (root / "out" / "checkpoint-2" / "model.safetensors").is_file()
        weights_of[engine] = weights(root / "out")
    before, ddp = weights(tiny_checkpoint), weights_of["ddp"]
    trained = (
        "model.attention_model.q_proj.weight",
        "model.mm_projector.0.weight",
        "model.layers.0.mlp.up_proj.weight",
    )
    for engine in ("zero2", "zero3"):
        assert weights_of[engine].keys() == before.keys()  # the released layout (ZeRO-3: gathered from the shards)
        for name in trained:
            assert not torch.equal(weights_of[engine][name], before[name]), f"{name} did not train under {engine}"
        # Sharded reductions add in another order (and a CPU with AMX rounds a product by its shape), and Adam turns
        # a last-bit gradient difference into up to a step's size on weights whose gradient is near 0: on one
        # machine ZeRO-3 differed by 1.2e-5 after two steps that moved weights by up to 7.5e-3. A wrong step, rate or
        # shard moves them by the step itself; 1 % of it is far below that.
        moved = max(float((ddp[n] - before[n]).abs().max()) for n in ddp)
        worst = max(float((ddp[n] - weights_of[engine][n]).abs().max()) for n in ddp)
        assert worst < 0.01 * moved, f"{engine} weights differ from DDP's by {worst} (DDP moved them by {moved})"
    answer = VStream.from_pretrained(tmp_path / "zero3" / "out").answer_features(
        tmp_path / "zero3" / "features" / "clip1.safetensors", "Q?", options=SHORT
    )
    assert answer.text is not None


def test_an_fsdp_sharded_step_gives_the_unsharded_gradients(tiny_checkpoint, tmp_path):
    from fsdp_worker import sample

    from vstream.train.config import DataConfig, TrainConfig
    from vstream.train.model import TrainingModel
    from vstream.train.trainer import choose_trainable

    out = tmp_path / "grads.pt"
    launch = torchrun(str(HERE / "fsdp_worker.py"), str(tiny_checkpoint), str(out), env={"PYTHONPATH": str(HERE)})
    assert launch.returncode == 0, launch.stderr[-3000:]
    sharded = torch.load(out)
    vs = VStream.from_pretrained(tiny_checkpoint, template="vicuna_v1", cache_prefix=False)
    config = TrainConfig(stage=2, model=str(tiny_checkpoint), output_dir="unused", data=DataConfig(files=["x"]))
    model = TrainingModel(choose_trainable(vs.llm, config), vs.processor, vs.memory_config())
    for rank in range(2):  # FSDP averages the processes' gradients
        loss, _ = model(samples=[sample(rank, vs.processor)])
        (loss / 2).backward()
        assert float(loss.detach()) == pytest.approx(sharded["losses"][rank], rel=1e-6)
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert grads.keys() == sharded["grads"].keys()
    assert float(grads["llm.model.attention_model.q_proj.weight"].abs().max()) > 0  # the memory's q/k learn
    for name, grad in grads.items():
        torch.testing.assert_close(sharded["grads"][name], grad, rtol=1e-5, atol=1e-7, msg=name)
