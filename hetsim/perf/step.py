"""One engine iteration of a model on one instance (a TP group): prefill chunks + decode tokens.

``StepModel.time`` is the engine's hot path. The non-attention part (GEMMs, norms, all-reduces,
LM head) depends only on (new tokens, sequences needing logits) and is cached; attention depends
on the chunks and on (decode batch, sum of decode contexts), so a decode step is O(1).
"""
from __future__ import annotations

from ..errors import ConfigError
from ..precision import PRECISION_BYTES, Formats, unsupported
from .memory import model_problem
from .ops import PerfModel

__all__ = ["StepModel"]

_HIGH = ("fp32", "tf32", "fp16", "bf16")
#: The MoE routing a measured MoE grid is read at (aiconfigurator times 'balanced',
#: 'power_law_1.01' and 'power_law_1.2'). NOTE: balanced, because the analytical MoE (the
#: expected distinct experts of uniform routing) assumes it too, so a profile with and one
#: without an MoE grid model the same workload; routing skew is the workload's, not the device's.
MOE_DISTRIBUTION = "balanced"


class StepModel:
    """Iteration time for ``model`` at tensor parallelism ``tp`` on ``pm``'s accelerator."""

    def __init__(self, model, pm: PerfModel, tp: int = 1, precision: "str | Formats" = "bf16",
                 moe_distribution: str = MOE_DISTRIBUTION):
        self.model, self.pm, self.tp = model, pm, tp
        f = Formats.of(precision)
        self.formats = f
        acc = pm.acc
        why = unsupported(acc, f.compute) or model_problem(model)
        if why:
            raise ConfigError(why)
        # Attention and elementwise math stay in a 16-bit format when GEMMs run in fp8/int8.
        self.attn_precision = f.compute if f.compute in _HIGH else next(
            (p for p in ("bf16", "fp16") if acc.supports(p)), f.compute)
        self.act_bytes = PRECISION_BYTES["fp32" if f.compute in ("fp32", "tf32") else "bf16"]
        m = model
        self.heads = max(1, m.num_heads // tp)
        self.kv_heads = m.kv_heads_per_rank(tp)
        self._dense_cache: dict[tuple[int, int], float] = {}
        self._layer_gemms = self._gemm_shapes()
        self._decode_linear = None
        if pm.calibration is None:
            # Uncalibrated decode attention per layer is max(a T, b T + g B) + kernel in the
            # batch B and total context T: read the coefficients off the op model once.
            c1, m1, _ = self._decode_parts(1, 1)
            _, m2, _ = self._decode_parts(1, 2)
            self._decode_linear = (c1, m2 - m1, 2 * m1 - m2, pm.kernel_overhead)
        self._ctx_form = self._decode_form = self._moe_form = None
        if pm.kernels is not None:
            self._measured_forms(moe_distribution)

    def _measured_forms(self, moe_distribution: str) -> None:
        """The profile's measured grids for this model's shapes, resolved once (``perf.measured``;
        None where the profile has none: the analytical path)."""
        m, pm, f = self.model, self.pm, self.formats
        qk, v = self._attn_dims()
        mla = bool(m.mla)
        self._ctx_form = pm.context_attention_form(
            self.heads, self.heads if mla else self.kv_heads, qk, self.attn_precision, f.kv, v,
            mla=mla)
        self._decode_form = pm.decode_attention_form(*self._decode_args(1, 1)[2:], mla=mla)
        if m.moe:
            e = m.moe
            self._moe_form = pm.moe_form(f.compute, f.weights, m.hidden_size, e.expert_ffn_size,
                                         e.top_k, e.num_experts, self.tp, 1, moe_distribution,
                                         self._routed_analytic)

    # --- shapes --------------------------------------------------------------------------
    def _gemm_shapes(self):
        """Per-layer (n, k, count) of the attention projections and the dense FFN, one rank."""
        m = self.model
        h, H, d = m.hidden_size, self.heads, m.head_dim
        if m.mla:
            a = m.mla
            attn = [(a.kv_lora_rank + a.qk_rope_dim, h), (H * (a.qk_nope_dim + a.v_head_dim),
                                                          a.kv_lora_rank),
                    (h, H * a.v_head_dim)]
            attn += ([(a.q_lora_rank, h), (H * (a.qk_nope_dim + a.qk_rope_dim), a.q_lora_rank)]
                     if a.q_lora_rank else [(H * (a.qk_nope_dim + a.qk_rope_dim), h)])
        else:
            attn = [((H + 2 * self.kv_heads) * d, h), (h, H * d)]
        return attn

    def _ffn_time(self, n_tok: int, size: int, experts_m: float | None = None,
                  n_experts: float = 1.0) -> float:
        """Dense FFN of ``size`` (sharded by TP); for experts, ``n_experts`` groups of
        ``experts_m`` tokens run as one grouped GEMM (one launch)."""
        m, pm, f = self.model, self.pm, self.formats
        h, fs = m.hidden_size, max(1, size // self.tp)
        up = 2 * fs if m.gated_ffn else fs
        rows = n_tok if experts_m is None else max(1, int(-(-experts_m // 1)))
        t = (pm.gemm_time(rows, up, h, f.compute, f.weights)
             + pm.gemm_time(rows, h, fs, f.compute, f.weights) - 2 * pm.kernel_overhead)
        return t * n_experts + 2 * pm.kernel_overhead

    def _layer_dense_time(self, n_tok: int, layer_is_moe: bool) -> float:
        m, pm, f = self.model, self.pm, self.formats
        t = sum(pm.gemm_time(n_tok, n, k, f.compute, f.weights) for n, k in self._layer_gemms)
        if layer_is_moe:
            e = m.moe
            t += pm.gemm_time(n_tok, e.num_experts, m.hidden_size, self.attn_precision)
            # NOTE: a measured MoE grid times aiconfigurator's MoE op, the fused routed-experts
            # kernels alone (router GEMM, shared experts and all-reduce are charged as without)
            t += self._moe_form(n_tok) if self._moe_form is not None else \
                self._routed_analytic(n_tok)
            if e.shared_experts:
                t += self._ffn_time(n_tok, e.expert_ffn_size * e.shared_experts)
        else:
            t += self._ffn_time(n_tok, m.ffn_size)
        # Norms, residual adds, activation, RoPE and KV-cache write: memory-bound, ~5 kernels.
        h, fs = m.hidden_size, m.ffn_size // self.tp
        act = n_tok * self.act_bytes * (10 * h + (3 if m.gated_ffn else 2) * fs
                                        + 2 * (self.heads + self.kv_heads) * m.head_dim)
        kv_write = n_tok * self.model.kv_bytes_per_token(f.kv, self.tp) / m.num_layers
        t += pm.memory_time(act + kv_write) + 4 * pm.kernel_overhead
        t += 2 * pm.allreduce_time(n_tok * h * self.act_bytes, self.tp)
        return t

    def _routed_analytic(self, n_tok: float) -> float:
        """The routed experts of one MoE layer composed from grouped GEMMs."""
        e = self.model.moe
        routed = n_tok * e.top_k
        active = e.num_experts * (1.0 - (1.0 - e.top_k / e.num_experts) ** n_tok)
        return self._ffn_time(n_tok, e.expert_ffn_size, routed / active, active)

    def dense_time(self, n_tok: int, n_logits: int) -> float:
        """Everything but attention for ``n_tok`` new tokens, ``n_logits`` of which need logits."""
        key = (n_tok, n_logits)
        t = self._dense_cache.get(key)
        if t is None:
            m, pm = self.model, self.pm
            n_moe = 0 if not m.moe else m.num_layers - m.moe.first_dense_layers
            t = 0.0
            if n_tok:
                t += (m.num_layers - n_moe) * self._layer_dense_time(n_tok, False)
                if n_moe:
                    t += n_moe * self._layer_dense_time(n_tok, True)
            if n_logits:
                t += pm.gemm_time(n_logits, max(1, m.vocab_size // self.tp), m.hidden_size,
                                  self.attn_precision)
            self._dense_cache[key] = t
        return t

    # --- attention -----------------------------------------------------------------------
    def _attn_dims(self):
        m = self.model
        if m.mla:
            a = m.mla
            return a.qk_nope_dim + a.qk_rope_dim, a.v_head_dim
        return m.head_dim, m.head_dim

    def prefill_attention_time(self, chunks) -> float:
        if self._ctx_form is not None and chunks:
            return self.model.num_layers * self._ctx_form(chunks)
        qk, v = self._attn_dims()
        return self.model.num_layers * self.pm.attention_chunks_time(
            chunks, self.heads, self.heads if self.model.mla else self.kv_heads, qk,
            self.attn_precision, self.formats.kv, v_head_dim=v)

    def decode_attention_time(self, batch: int, total_kv: int) -> float:
        lin = self._decode_linear
        if lin is not None and batch > 0:   # hot path: one call per decode step
            a, b, g, k = lin
            return self.model.num_layers * (max(a * total_kv, b * total_kv + g * batch) + k)
        if self._decode_form is not None and batch > 0:   # measured: cached per batch value
            return self.model.num_layers * self._decode_form(batch, total_kv)
        return self._decode_attention_time(batch, total_kv)

    def _decode_args(self, batch: int, total_kv: int) -> tuple:
        """Per-layer arguments of the op model's decode attention for this model and rank."""
        m = self.model
        if m.mla:  # absorbed MLA: every head reads the one shared latent (+ RoPE key)
            width = m.mla.kv_lora_rank + m.mla.qk_rope_dim
            return (batch, total_kv, self.heads, 1, width // 2, self.attn_precision,
                    self.formats.kv, width)
        return (batch, total_kv, self.heads, self.kv_heads, m.head_dim, self.attn_precision,
                self.formats.kv, None)

    def _decode_parts(self, batch: int, total_kv: int):
        """(compute, memory, bytes) of one layer's decode attention, before calibration."""
        return self.pm.attention_decode_parts(*self._decode_args(batch, total_kv))

    def _decode_attention_time(self, batch: int, total_kv: int) -> float:
        return self.model.num_layers * self.pm.attention_decode_total_time(
            *self._decode_args(batch, total_kv))

    # --- iterations ----------------------------------------------------------------------
    def time(self, chunks=(), n_logits_prefill: int = 0, decode_n: int = 0,
             decode_ctx: int = 0) -> float:
        """One iteration: prefill ``chunks`` [(q_len, kv_len)], of which ``n_logits_prefill``
        finish their prompt, plus ``decode_n`` decode tokens over ``decode_ctx`` context."""
        q_tokens = sum(q for q, _ in chunks) if chunks else 0
        t = self.dense_time(q_tokens + decode_n, n_logits_prefill + decode_n)
        if chunks:
            t += self.prefill_attention_time(chunks)
        if decode_n:
            t += self.decode_attention_time(decode_n, decode_ctx)
        return t + self.pm.iteration_overhead

    def prefill_time(self, prompt_lens) -> float:
        lens = [int(x) for x in prompt_lens]
        return self.time([(n, n) for n in lens], n_logits_prefill=len(lens))

    def decode_time(self, batch: int, total_ctx: int) -> float:
        """``time(decode_n=batch, decode_ctx=total_ctx)``, the same sums in the same order.
        NOTE: hot path (once per decode iteration), so written out."""
        t = self._dense_cache.get((batch, batch))
        if t is None:
            t = self.dense_time(batch, batch)
        if batch:
            t += self.decode_attention_time(batch, total_ctx)
        return t + self.pm.iteration_overhead
