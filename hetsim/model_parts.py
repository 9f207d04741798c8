"""The optional sections of a model file (:class:`hetsim.models.ModelConfig`): experts (``moe:``),
latent attention (``mla:``) and its sparse form (``sparse_attention:``), windowed layers
(``sliding_window:``) and linear-attention layers (``linear_attention:``), one frozen dataclass
each, with their own sizes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .config import meta, non_negative, positive

__all__ = ["MoE", "MLA", "SparseAttention", "SlidingWindow", "LinearAttention"]


@dataclass(frozen=True)
class MoE:
    num_experts: int = field(metadata=meta("routed experts per MoE layer", positive))
    top_k: int = field(metadata=meta("routed experts per token", positive))
    expert_ffn_size: int = field(metadata=meta("intermediate size of one expert", positive))
    shared_experts: int = field(default=0, metadata=meta("always-active experts", non_negative))
    first_dense_layers: int = field(default=0, metadata=meta(
        "leading layers with a dense FFN of ffn_size instead of experts", non_negative))


@dataclass(frozen=True)
class MLA:
    """Multi-head latent attention (DeepSeek-V2/V3): the KV cache holds a compressed latent."""
    kv_lora_rank: int = field(metadata=meta("latent KV dimension", positive))
    qk_rope_dim: int = field(metadata=meta("decoupled RoPE key dimension", positive))
    qk_nope_dim: int = field(metadata=meta("per-head non-RoPE query/key dimension", positive))
    v_head_dim: int = field(metadata=meta("per-head value dimension", positive))
    q_lora_rank: int = field(default=0, metadata=meta("query low-rank dimension (0: none)",
                                                      non_negative))


@dataclass(frozen=True)
class SparseAttention:
    """DeepSeek Sparse Attention (DeepSeek-V3.2, GLM-5) on the MLA layers: a lightning indexer
    scores each query against every earlier token (``heads`` heads of ``head_dim`` in fp8, one
    shared key per token kept in a cache of its own) and the MLA attends to the ``top_k``
    best-scored tokens only (all of them while the context is shorter).

    NOTE: the indexer's projections and key are replicated on every TP rank (vLLM's and
    SGLang's ``Indexer``: ``ReplicatedLinear``, one key head). Its key cache holds, per token
    and layer, ``head_dim`` fp8 values and one fp32 scale per 128 (vLLM
    ``deepseek_v2.py`` ``Indexer``: ``head_dim + head_dim // quant_block_size * 4`` bytes,
    block 128), whatever the MLA cache's format. ``indexer_layers`` of the MLA layers run an
    indexer (GLM-5.2's ``indexer_types``: the others reuse an earlier layer's choice); the
    count is kept, not the pattern."""
    top_k: int = field(metadata=meta("tokens each query attends to (index_topk)", positive))
    heads: int = field(metadata=meta("indexer query heads (index_n_heads)", positive))
    head_dim: int = field(metadata=meta("indexer head dimension (index_head_dim)", positive))
    indexer_layers: int = field(default=0, metadata=meta(
        "MLA layers that run their own indexer (0: every one)", non_negative))

    @property
    def key_bytes(self) -> int:
        """Indexer key-cache bytes per token in one indexer layer."""
        return self.head_dim + self.head_dim // 128 * 4

    def params(self, hidden: int, q_rank: int) -> int:
        """One indexer's projections: its queries from the query latent (the hidden state
        without one), its key and its per-head weights from the hidden state."""
        return (q_rank or hidden) * self.heads * self.head_dim + hidden * (self.head_dim
                                                                           + self.heads)


@dataclass(frozen=True)
class SlidingWindow:
    """Local attention (gpt-oss, Gemma, Step): ``layers`` of the model's layers attend to, and
    keep KV for, only the last ``size`` tokens; the other layers attend to the whole context.

    NOTE: which layers are windowed does not matter to any cost hetsim computes (the layers are
    otherwise alike), so the count is kept, not the pattern (gpt-oss: every other layer).
    """
    size: int = field(metadata=meta("tokens a windowed layer attends to and keeps KV for",
                                    positive))
    layers: int = field(metadata=meta("how many layers are windowed (the rest: full attention)",
                                      positive))


@dataclass(frozen=True)
class LinearAttention:
    """Linear-attention layers (Gated DeltaNet: Qwen3-Next, Qwen3.5): ``layers`` of the model's
    layers keep, per sequence, a constant recurrent state (``num_v_heads`` matrices of
    ``head_k_dim`` x ``head_v_dim`` in ``state_dtype``) and the last ``conv_kernel - 1`` inputs
    of their short causal convolution, instead of KV that grows with the context.

    NOTE: as for ``sliding_window``, the count is kept, not the pattern (Qwen3.5: three linear
    layers, then one full-attention layer)."""
    layers: int = field(metadata=meta("how many layers are linear attention (the rest: full "
                                      "attention)", positive))
    num_k_heads: int = field(metadata=meta("query/key heads of a linear layer", positive))
    head_k_dim: int = field(metadata=meta("per-head query/key dimension", positive))
    num_v_heads: int = field(metadata=meta("value heads (one state matrix each)", positive))
    head_v_dim: int = field(metadata=meta("per-head value dimension", positive))
    conv_kernel: int = field(default=4, metadata=meta(
        "width of the short causal convolution over q, k and v", positive))
    kind: Literal["gdn"] = field(default="gdn", metadata=meta(
        "the recurrence: gdn (Gated DeltaNet, the gated delta rule)"))
    state_dtype: Literal["fp32", "bf16", "fp16"] = field(default="fp32", metadata=meta(
        "format of the recurrent state (the config's mamba_ssm_dtype; SGLang's default fp32)"))

    @property
    def key_dim(self) -> int:
        return self.num_k_heads * self.head_k_dim

    @property
    def value_dim(self) -> int:
        return self.num_v_heads * self.head_v_dim

    @property
    def conv_dim(self) -> int:
        """Channels of the convolution: q, k and v."""
        return 2 * self.key_dim + self.value_dim

    def params(self, hidden: int) -> int:
        """One layer's weights: the q/k/v/z input projection, the b/a gate projection (one
        scalar each per value head), the depthwise convolution and the output projection
        (A_log, dt_bias and the norm, 2 x num_v_heads + head_v_dim values, left out)."""
        return (hidden * (2 * self.key_dim + 2 * self.value_dim + 2 * self.num_v_heads)
                + self.conv_dim * self.conv_kernel + self.value_dim * hidden)
