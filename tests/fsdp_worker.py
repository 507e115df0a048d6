"""Run by torchrun in tests/test_train_sharded.py: one training step of the tiny model's `TrainingModel` with every
weight sharded by PyTorch FSDP2 (`fully_shard`, one unit per decoder layer and the root) on CPUs over gloo.

Each process trains on its own sample; rank 0 writes the loss of each rank and the full gradients (averaged
over processes by FSDP) to `OUT`, for the test to compare with the same step unsharded.

Usage: torchrun --nproc-per-node 2 fsdp_worker.py CHECKPOINT OUT
"""

import sys

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

from vstream.model import VStream
from vstream.train.config import DataConfig, TrainConfig
from vstream.train.model import TrainingModel
from vstream.train.trainer import choose_trainable


def sample(seed: int, processor):
    """A training sample with enough frames that the abstract memory (and so q/k) is used."""
    from vstream.train.data import TrainingSample

    features = torch.randn(12, 16, 32, generator=torch.Generator().manual_seed(seed))
    ids = processor.sample_ids([("What colour is it?", ["red", "green"][seed % 2])])
    return TrainingSample(features, [float(t) for t in range(12)], ids, f"sample {seed}")


def main(checkpoint: str, out: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    vs = VStream.from_pretrained(checkpoint, template="vicuna_v1", cache_prefix=False)
    config = TrainConfig(stage=2, model=checkpoint, output_dir=out, data=DataConfig(files=["unused.json"]))
    model = TrainingModel(choose_trainable(vs.llm, config), vs.processor, vs.memory_config())
    for layer in model.llm.model.layers:
        fully_shard(layer)
    fully_shard(model)
    loss, _ = model(samples=[sample(rank, vs.processor)])
    loss.backward()
    losses = [torch.zeros(1) for _ in range(dist.get_world_size())]
    dist.all_gather(losses, loss.detach().reshape(1))
    grads = {name: p.grad.full_tensor() for name, p in model.named_parameters() if p.grad is not None}
    if rank == 0:
        torch.save({"losses": [float(x) for x in losses], "grads": grads}, out)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
