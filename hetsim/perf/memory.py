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
    kv_tokens: int             # tokens of KV the instance can hold
    kv_blocks: int
    block_size: int

    @property
    def kv_fraction(self) -> float:
        return self.kv_bytes / self.usable_bytes


def memory_plan(model, acc, tp: int, precision, *, max_batched_tokens: int = 8192,
                max_seqs: int = 256, memory_utilization: float = 0.9,
                block_size: int = 16) -> MemoryPlan:
    """Split one device's memory; raise ConfigError if the model leaves no room for KV.

    NOTE: vLLM-style accounting: ``memory_utilization`` of HBM is usable (the rest covers the
    CUDA context, NCCL buffers and fragmentation); weights are sharded evenly over TP ranks;
    the activation workspace is sized for the largest iteration (``max_batched_tokens``) plus
    fp32 logits for ``max_seqs``.
    """
    why = model_problem(model)
    if why:
        raise ConfigError(why)
    f = Formats.of(precision)
    usable = acc.hbm_bytes * memory_utilization
    weights = model.num_params() / tp * PRECISION_BYTES[f.weights]
    act_b = 4.0 if f.compute in ("fp32", "tf32") else 2.0
    h, ffn = model.hidden_size, (model.moe.expert_ffn_size * model.moe.top_k if model.moe
                                 else model.ffn_size)
    per_token = (4 * h + (model.num_heads + 2 * model.num_kv_heads) * model.head_dim / tp
                 + 3 * ffn / tp) * act_b
    activations = max_batched_tokens * per_token + max_seqs * model.vocab_size / tp * 4.0
    kv = usable - weights - activations
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

    NOTE: sliding-window layers (gpt-oss) hold at most a window of KV and attend to at most a
    window of it; the step model, memory plan and KV transfers count every layer as full
    attention and the per-token KV as full-attention layers only, so a run would be wrong in
    both directions. Refused until they do (DESIGN.md, "Kernel databases"). gpt-oss also
    stores its experts in mxfp4 and the rest in bf16, which one weight format cannot express:
    lifting this refusal needs that too."""
    if getattr(model, "sliding_window", None) is not None:
        return (f"{model.name} has sliding-window attention layers "
                f"({model.sliding_window.layers} of {model.num_layers}), which hetsim's step "
                f"model and KV accounting do not model yet")
    return None
