"""Training: the two-stage Flash-VStream recipe on Hugging Face `Trainer` (DDP, DeepSpeed ZeRO 0-3, FSDP), from one
YAML file.

    vstream train stage2.yaml                                     # or a preset: stage1, stage2, tiny_cpu, smol, ...
    torchrun --nproc-per-node 8 -m vstream.train stage2.yaml      # 8 GPUs; `--resume` continues from a checkpoint

    from vstream.train import load_train_config, train
    train(load_train_config("tiny_cpu", ["data.files=[train.json]"]))

Samples are built by the same memory functions and the same processor as inference (`vstream.train.data`); which
parts learn and how a batch reaches the LLM is `vstream.train.trainer`; the run file is `vstream.train.config`.
"""

from vstream.train.config import DataConfig, LoraSettings, TrainConfig, load_train_config
from vstream.train.trainer import build_trainer, train

__all__ = ["DataConfig", "LoraSettings", "TrainConfig", "build_trainer", "load_train_config", "train"]
