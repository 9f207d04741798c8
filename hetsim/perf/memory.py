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
    kv_bytes_per_token: float  # per rank
    kv_tokens: int             # tokens of full-attention KV the instance can hold (a
    #                            sequence of n tokens takes model.kv_tokens(n) of them)
    kv_blocks: int
    block_size: int

    @property
    def kv_fraction(self) -> float:
        return self.kv_bytes / self.usable_bytes


def memory_plan(model, acc, tp: int, precision, *, max_batched_tokens: int = 8192,
                max_seqs: int = 256, memory_utilization: float = 0.9,
                block_size: int = 16, kv_rule=None) -> MemoryPlan:
    """Split one device's memory; raise ConfigError if the model leaves no room for KV.

    NOTE: vLLM-style accounting: ``memory_utilization`` of HBM is usable (the rest covers the
    CUDA context, NCCL buffers and fragmentation); weights are sharded evenly over TP ranks;
    the activation workspace is sized for the largest iteration (``max_batched_tokens``) plus
    fp32 logits for ``max_seqs``. ``kv_rule(total, weights, activations) -> KV bytes``
    replaces that split with a serving runtime's own (:func:`hetsim.runtimes.kv_budget`).
    """
    why = model_problem(model)
    if why:
        raise ConfigError(why)
    f = Formats.of(precision)
    usable = acc.hbm_bytes * memory_utilization
    # experts (gpt-oss, Kimi-K2.5) or attention (Kimi-K2.5 NVFP4) in their own format
    if getattr(model, "expert_weights", None) or getattr(model, "attention_weights", None):
        weights = model.weight_bytes(f.weights) / tp
    else:
        weights = model.num_params() / tp * PRECISION_BYTES[f.weights]
    act_b = 4.0 if f.compute in ("fp32", "tf32") else 2.0
    h, ffn = model.hidden_size, (model.moe.expert_ffn_size * model.moe.top_k if model.moe
                                 else model.ffn_size)
    per_token = (4 * h + (model.num_heads + 2 * model.num_kv_heads) * model.head_dim / tp
                 + 3 * ffn / tp) * act_b
    activations = max_batched_tokens * per_token + max_seqs * model.vocab_size / tp * 4.0
    kv = (usable - weights - activations if kv_rule is None
          else kv_rule(acc.hbm_bytes, weights, activations))
    per_tok = model.kv_bytes_per_token(f.kv, tp)
    tokens = int(kv // per_tok) if kv > 0 else 0
    if tokens < block_size:
        need = (weights + activations) / 1e9
        raise ConfigError(
            f"{model.name} does not fit on {acc.name} at tp={tp} ({f.weights} weights): needs "
            f"{need:.1f} GB per device before KV, {usable / 1e9:.1f} GB usable; raise tp or use "
            f"a narrower weight format")
    return MemoryPlan(usable, weights, activations, kv, per_tok, (tokens // block_size) *
                      block_size, tokens // block_size, block_size)


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
