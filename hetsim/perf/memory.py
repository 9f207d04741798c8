"""Per-device memory accounting: weights, activation workspace, and what is left for KV."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..precision import PRECISION_BYTES, Formats

__all__ = ["MemoryPlan", "memory_plan", "model_problem"]


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per device (one TP rank) and the instance's KV capacity."""
    usable_bytes: float
    weight_bytes: float
    activation_bytes: float
    kv_bytes: float
    kv_bytes_per_token: float  # per device (its share at the attention TP)
    kv_tokens: int             # tokens of full-attention KV the instance can hold (a
    #                            sequence of n tokens takes model.kv_tokens(n) of them);
    #                            with attention DP, N ranks' (each holds its own requests')
    kv_blocks: int
    block_size: int

    @property
    def kv_fraction(self) -> float:
        return self.kv_bytes / self.usable_bytes


def memory_plan(model, acc, tp: int, precision, *, max_batched_tokens: int = 8192,
                max_seqs: int = 256, memory_utilization: float = 0.9,
                block_size: int = 16, kv_rule=None, attention_dp: int = 1) -> MemoryPlan:
    """Split one device's memory; raise ConfigError if the model leaves no room for KV.

    NOTE: vLLM-style accounting: ``memory_utilization`` of HBM is usable (the rest covers the
    CUDA context, NCCL buffers and fragmentation); weights are sharded evenly over TP ranks;
    the activation workspace is sized for the largest iteration (``max_batched_tokens``) plus
    fp32 logits for ``max_seqs``. ``kv_rule(total, weights, activations) -> KV bytes``
    replaces that split with a serving runtime's own (:func:`hetsim.runtimes.kv_budget`).

    ``attention_dp`` N > 1: the tp devices are N ranks of attn_tp = tp / N; everything but the
    routed experts (attention, dense layers, shared experts, embeddings, LM head) is sharded
    attn_tp ways and replicated over the ranks, the routed experts tp ways; each rank keeps
    its own requests' KV at attn_tp sharding, so the instance holds N ranks' KV (for MLA,
    whose latent every TP rank replicates, N x what TP alone gives). ``max_batched_tokens``
    and ``max_seqs`` are per rank (the runtimes' flags are each rank scheduler's); the
    experts' activations are sized for every rank's tokens.
    """
    why = model_problem(model)
    if why:
        raise ConfigError(why)
    f = Formats.of(precision)
    usable = acc.hbm_bytes * memory_utilization
    # experts (gpt-oss, Kimi-K2.5) or attention (Kimi-K2.5 NVFP4) in their own format
    n, atp = attention_dp, tp // attention_dp
    if n > 1:
        weights = _dp_weight_bytes(model, f.weights, tp, atp)
    elif getattr(model, "expert_weights", None) or getattr(model, "attention_weights", None):
        weights = model.weight_bytes(f.weights) / tp
    else:
        weights = model.num_params() / tp * PRECISION_BYTES[f.weights]
    act_b = 4.0 if f.compute in ("fp32", "tf32") else 2.0
    h, ffn = model.hidden_size, (model.moe.expert_ffn_size * model.moe.top_k if model.moe
                                 else model.ffn_size)
    # (a dense model's FFN is per rank at atp; an MoE's experts see every rank's tokens)
    ffn_share = 3 * ffn * n / tp if model.moe else 3 * ffn / atp
    per_token = (4 * h + (model.num_heads + 2 * model.num_kv_heads) * model.head_dim / atp
                 + ffn_share) * act_b
    activations = max_batched_tokens * per_token + max_seqs * model.vocab_size / atp * 4.0
    kv = (usable - weights - activations if kv_rule is None
          else kv_rule(acc.hbm_bytes, weights, activations))
    per_tok = model.kv_bytes_per_token(f.kv, atp)
    tokens = int(kv // per_tok) if kv > 0 else 0     # one rank's
    if tokens < block_size:
        need = (weights + activations) / 1e9
        raise ConfigError(
            f"{model.name} does not fit on {acc.name} at tp={tp}"
            f"{f' (attention_dp={n})' if n > 1 else ''} ({f.weights} weights): needs "
            f"{need:.1f} GB per device before KV, {usable / 1e9:.1f} GB usable; raise tp or use "
            f"a narrower weight format")
    blocks = n * (tokens // block_size)     # whole blocks per rank, N ranks
    return MemoryPlan(usable, weights, activations, kv, per_tok, blocks * block_size, blocks,
                      block_size)


def _dp_weight_bytes(model, weights: str, tp: int, atp: int) -> float:
    """Weight bytes per device under attention DP: the routed experts sharded tp ways, the
    rest (attention, dense FFN, shared experts, router, embeddings) attn_tp ways."""
    total = model.weight_bytes(weights)
    routed = model.expert_params(shared=False) * PRECISION_BYTES[model.expert_format(weights)]
    return (total - routed) / atp + routed / tp


def model_problem(model) -> str | None:
    """What the performance model cannot represent about ``model`` yet (None: nothing);
    memory_plan, StepModel, resolution and the planner refuse such a model.

    Nothing in the catalog is refused today. Sliding-window layers (gpt-oss) are modelled: the
    step model charges them a causal band in prefill and min(context, window) per sequence in
    decode, KV memory and transfers count the window's tokens, and the experts' own weight
    format (mxfp4) sizes and streams them. Linear-attention layers (Qwen3.5) are modelled: a
    constant state per sequence in KV memory, their recurrence in the step model. What a model
    config cannot express (per-layer patterns beyond full/sliding/linear, other quantization
    methods) is refused or read conservatively by :func:`hetsim.models.from_hf_config`, so it
    does not reach here.
    NOTE: kept as the one hook the callers share, so a future unmodelled feature is refused
    everywhere at once rather than simulated wrongly."""
    return None
