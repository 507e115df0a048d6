"""The Flash-VStream LLM: LLaMA plus the projector and the abstract-memory attention, named as in the checkpoint.

Weights only, no per-stream state: the memory lives in `vstream.memory`, the vision tower is loaded
separately (`vision.py`), and the processor builds `inputs_embeds` outside `forward` (`processing_vstream.py`).
Checkpoint keys: LLaMA's (`model.embed_tokens`, `model.layers.N.*`, `model.norm`, `lm_head`),
`model.mm_projector.*` and `model.attention_model.{q,k,v,out}_proj|out_ln.*`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import AutoConfig, AutoModelForCausalLM, LlamaForCausalLM, LlamaModel

from vstream.memory.attention import SemanticAttention
from vstream.model.configuration_vstream import VStreamConfig
from vstream.model.projector import build_projector


class MemoryProjection(nn.Linear):
    """A Linear layer that computes in its input's dtype: the memory runs in float32 over weights that may be
    bf16 (as `SemanticAttention` does with its tensors)."""

    def forward(self, x: Tensor) -> Tensor:
        """`x @ weight.T + bias`, weights cast to `x`'s dtype."""
        return nn.functional.linear(x, self.weight.to(x.dtype), self.bias.to(x.dtype))


class SemanticAttentionModule(nn.Module):
    """The checkpoint's `attention_model`. Only `q_proj` and `k_proj` drive the abstract memory (STAR.md §3.3);
    the other parts exist so that the released weights load without missing or unexpected keys.

    It is itself the memory's `Projections` through module calls (`query`, `key`): training passes it to the
    offline memory so that engines which shard weights (DeepSpeed ZeRO-3, FSDP) gather them in the call.
    """

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.q_proj = MemoryProjection(dim, hidden_dim)
        self.k_proj = MemoryProjection(dim, hidden_dim)
        self.v_proj = nn.Linear(dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_dim, dim)
        self.out_dropout = nn.Dropout(dropout)
        self.out_ln = nn.LayerNorm(dim, eps=1e-12)

    @property
    def hidden_dim(self) -> int:
        """d, the width of q and k."""
        return self.q_proj.out_features

    def query(self, x: Tensor) -> Tensor:
        """q_proj(x) in x's dtype."""
        return self.q_proj(x)

    def key(self, x: Tensor) -> Tensor:
        """k_proj(x) in x's dtype."""
        return self.k_proj(x)

    def memory_weights(self) -> SemanticAttention:
        """The q/k projections as the memory uses them (shared tensors: training updates them in place)."""
        return SemanticAttention.from_module(self)


class VStreamLlamaModel(LlamaModel):
    """LlamaModel with `mm_projector` and `attention_model` beside its layers."""

    config_class = VStreamConfig

    def __init__(self, config: VStreamConfig) -> None:
        super().__init__(config)
        self.mm_projector = build_projector(config.mm_projector_type, config.mm_hidden_size, config.hidden_size)
        self.attention_model = SemanticAttentionModule(config.mm_hidden_size, config.compress_Turing_hidden_dim)


class VStreamLlamaForCausalLM(LlamaForCausalLM):
    """The language model of Flash-VStream (architecture `VStreamLlamaForCausalLM` in the released config)."""

    config_class = VStreamConfig

    def __init__(self, config: VStreamConfig) -> None:
        super().__init__(config)
        self.model = VStreamLlamaModel(config)
        self.post_init()

    def project_memory(self, tokens: Tensor) -> Tensor:
        """Memory tokens `(N, D)` to LLM input embeddings `(N, H)`, in the LLM's dtype and device."""
        first = next(self.model.mm_projector.parameters(), None)
        reference = first if first is not None else self.model.embed_tokens.weight
        return self.model.mm_projector(tokens.to(reference.device, reference.dtype))

    def semantic_attention(self) -> SemanticAttention:
        """The abstract memory's q/k projections."""
        return self.model.attention_model.memory_weights()


AutoConfig.register(VStreamConfig.model_type, VStreamConfig, exist_ok=True)
AutoModelForCausalLM.register(VStreamConfig, VStreamLlamaForCausalLM, exist_ok=True)


def init_new_modules(model: VStreamLlamaForCausalLM, seed: int) -> None:
    """Draw the projector and the attention module anew from `seed` (float32, then cast to the model's dtype).

    They are built as fresh PyTorch layers, so they get PyTorch's default initialisation, as a projector added to
    an LLM at the start of training does; the result depends only on `seed`, not on how transformers loaded.
    """
    config = model.config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        projector = build_projector(config.mm_projector_type, config.mm_hidden_size, config.hidden_size)
        attention = SemanticAttentionModule(config.mm_hidden_size, config.compress_Turing_hidden_dim)
    with torch.no_grad():
        model.model.mm_projector.load_state_dict(projector.state_dict())
        model.model.attention_model.load_state_dict(attention.state_dict())
