"""One engine iteration of a model on one instance (a TP group): prefill chunks + decode tokens.

``StepModel.time`` is the engine's hot path. The non-attention part (GEMMs, norms, all-reduces,
LM head) depends only on (new tokens, sequences needing logits) and is cached; attention depends
on the chunks and on (decode batch, sum of decode contexts), so a decode step is O(1).
Sliding-window layers (gpt-oss) attend to at most the window: a causal band in prefill, and in
decode the sum over sequences of min(context, window), which the engine keeps as it keeps the
context sum (DESIGN.md, "Sliding-window layers and mxfp4 experts"). Linear-attention layers
(Qwen3.5's Gated DeltaNet) have their own projections and a recurrence whose cost depends on
the new tokens and the batch, never on the context (DESIGN.md, "Linear-attention layers").
With attention data parallelism (``attention_dp`` N > 1) the instance's tp GPUs are N ranks,
each running attention and the non-expert layers on its own requests at TP tp / N, and the
routed experts run over every rank's tokens on all tp GPUs (DESIGN.md, "Attention data
parallelism"); a step then takes its slowest rank.
"""
from __future__ import annotations

import heapq

from ..errors import ConfigError
from ..precision import PRECISION_BYTES, Formats, unsupported
from .linear import LinearLayers
from .memory import model_problem
from .ops import PerfModel

__all__ = ["StepModel", "band_pairs"]

_HIGH = ("fp32", "tf32", "fp16", "bf16")
#: The MoE routing a measured MoE grid is read at by default (aiconfigurator times 'balanced',
#: 'power_law_1.01' and 'power_law_1.2'). NOTE: balanced, because the analytical MoE (the
#: expected distinct experts of uniform routing) assumes it too, so a profile with and one
#: without an MoE grid model the same workload; routing skew is the workload's, not the device's
#: (``workload.moe_routing`` asks for another; resolution refuses it where no grid has it).
MOE_DISTRIBUTION = "balanced"


class StepModel:
    """Iteration time for ``model`` at tensor parallelism ``tp`` on ``pm``'s accelerator;
    ``attention_dp`` N > 1: the tp GPUs are N attention data-parallel ranks of TP tp / N each
    (:meth:`_dp_time`)."""

    def __init__(self, model, pm: PerfModel, tp: int = 1, precision: "str | Formats" = "bf16",
                 moe_distribution: str = MOE_DISTRIBUTION, moe_ep: int = 1,
                 moe_compute: "dict[str, str] | None" = None, attention_dp: int = 1):
        self.model, self.pm, self.tp = model, pm, tp
        if attention_dp < 1 or tp % attention_dp:
            raise ConfigError(f"attention_dp={attention_dp} must divide tp={tp}")
        #: attention data-parallel ranks, and the TP of each: attention, the dense layers,
        #: shared experts, router, norms and the LM head are sharded attn_tp ways (tp at N = 1)
        self.attention_dp, self.attn_tp = attention_dp, tp // attention_dp
        #: expert parallelism inside the TP group: a measured MoE grid of (tp / ep, ep) times
        #: the layer; without one the routed experts are costed TP-sharded either way
        self.moe_ep = moe_ep
        f = Formats.of(precision)
        self.formats = f
        acc = pm.acc
        #: (compute, weights) of the attention projections: the checkpoint's own format where
        #: it fixes one (kimi-k2.5-nvfp4 keeps them bf16), else the pool's
        self.attn_gemm = ((model.attention_weights,) * 2 if model.attention_weights
                          else (f.compute, f.weights))
        why = (unsupported(acc, f.compute) or unsupported(acc, self.attn_gemm[0])
               or model_problem(model))
        if why:
            raise ConfigError(why)
        # Attention and elementwise math stay in a 16-bit format when GEMMs run in fp8/int8.
        self.attn_precision = f.compute if f.compute in _HIGH else next(
            (p for p in ("bf16", "fp16") if acc.supports(p)), f.compute)
        self.act_bytes = PRECISION_BYTES["fp32" if f.compute in ("fp32", "tf32") else "bf16"]
        m = model
        atp = self.attn_tp
        self.heads = max(1, m.num_heads // atp)
        self.kv_heads = m.kv_heads_per_rank(atp)
        # the routed experts' stored format: f.weights unless the checkpoint's is narrower
        # (mxfp4, int4-g32); shared experts are stored as the rest of the model (f.weights)
        self.expert_weights = m.expert_format(f.weights)
        #: the format the runtime's MoE kernels compute those experts in (``moe_compute``:
        #: {checkpoint expert format: compute format}, ``runtimes.moe_compute``), else the
        #: pool's. NOTE: the rules are the checkpoint's (NVFP4's W4A4 needs its activation
        #: scales): experts a pool stores in its own format (``weights: fp4`` under a wider
        #: compute, or narrower than the checkpoint's) compute in the pool's format
        own = self.expert_weights == m.expert_weights
        self.expert_compute = ((moe_compute or {}).get(self.expert_weights) if own else None) \
            or f.compute
        self.window = m.sliding_window
        #: DeepSeek Sparse Attention: every MLA layer reads at most top_k tokens of context,
        #: and its indexer layers score all of it (:meth:`_sparse_decode_time`)
        self.sparse = m.sparse_attention
        self._indexer_precision = "fp8" if acc.supports("fp8") else self.attn_precision
        #: the linear-attention layers (None: none)
        self.linear = None if m.linear_attention is None else LinearLayers(
            m.linear_attention, pm, atp, m.hidden_size, self.act_bytes, self.attn_precision)
        self._full_layers = m.full_attention_layers
        self._dense_cache: dict[tuple[int, int], float] = {}
        self._experts_cache: dict[int, float] = {}   # attention DP: all tokens -> experts
        self._prompt_cache: dict[tuple[int, int, int], float] = {}   # see time()
        self._layer_gemms = self._gemm_shapes()
        #: activations a full-attention layer's projections read and write per token
        self._attn_act = 2 * (self.heads + self.kv_heads) * m.head_dim
        self._qk_norm = m.qk_norm or m.layer_qk_norm
        self._decode_linear = None
        if pm.calibration is None:
            # Uncalibrated decode attention per layer is max(a T, b T + g B) + kernel in the
            # batch B and total context T: read the coefficients off the op model once.
            c1, m1, _ = self._decode_parts(1, 1)
            _, m2, _ = self._decode_parts(1, 2)
            self._decode_linear = (c1, m2 - m1, 2 * m1 - m2, pm.kernel_overhead)
        #: decode_time's fast form: the linear coefficients and the layer count (only a model
        #: whose every layer is full attention: no window, no linear-attention layers)
        lin = self._decode_linear
        self._decode_lin_layers = (None if lin is None or self.window is not None
                                   or self.linear is not None or self.sparse is not None
                                   else (*lin, model.num_layers))
        self._decode_dense: dict[int, float] = {}    # batch -> dense_time(batch, batch)
        self._iteration_overhead = pm.iteration_overhead
        self._ctx_form = self._decode_form = self._moe_form = self._moe_grid = None
        self._ctx_win_form = self._decode_win_form = None
        if pm.kernels is not None:
            self._measured_forms(moe_distribution)
        if attention_dp > 1:
            # NOTE: the rank split replaces the whole-instance sums; at N = 1 nothing is
            # rebound, so that path is the very code (and floats) it was
            self._time, self.decode_time = self._dp_time, self._dp_decode_time

    @property
    def read_window(self) -> int:
        """The most tokens of a sequence's context some of its layers read (0: every layer
        reads all of it): the sliding window, or sparse attention's top-k. The engine keeps
        the sum over running sequences of min(context, this) for :meth:`decode_time`."""
        if self.window is not None:
            return self.window.size
        return self.sparse.top_k if self.sparse is not None else 0

    @property
    def measured_moe(self) -> bool:
        """Whether the routed experts are read from a measured MoE grid (at the routing asked
        for), not composed from GEMMs."""
        return self._moe_form is not None

    def _measured_forms(self, moe_distribution: str) -> None:
        """The profile's measured grids for this model's shapes, resolved once (``perf.measured``;
        None where the profile has none: the analytical path). Windowed layers read the grids
        measured with their window (the runtime's windowed kernel, at the real context)."""
        m, pm, f = self.model, self.pm, self.formats
        qk, v = self._attn_dims()
        mla = bool(m.mla)
        ctx = (self.heads, self.heads if mla else self.kv_heads, qk, self.attn_precision, f.kv, v)
        dec = self._decode_args(1, 1)[2:]
        self._ctx_form = pm.context_attention_form(*ctx, mla=mla)
        self._decode_form = pm.decode_attention_form(*dec, mla=mla)
        if self.window is not None:
            self._ctx_win_form = pm.context_attention_form(*ctx, window=self.window.size)
            self._decode_win_form = pm.decode_attention_form(*dec, window=self.window.size)
        if m.moe:
            e = m.moe
            self._moe_grid = pm.moe_form(self.expert_compute, self.expert_weights, m.hidden_size,
                                         e.expert_ffn_size, e.top_k, e.num_experts,
                                         self.tp // self.moe_ep, self.moe_ep,
                                         moe_distribution, self._routed_analytic)
            if self._moe_grid is not None:
                self._moe_form = (self._moe_spread if moe_distribution == MOE_DISTRIBUTION
                                  else self._moe_grid)

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
        else:   # a gated attention's query projection makes the gate too
            q = 2 * H if m.attention_gate else H
            attn = [((q + 2 * self.kv_heads) * d, h), (h, H * d)]
        return attn

    def _ffn_time(self, n_tok: int, size: int, experts_m: float | None = None,
                  n_experts: float = 1.0, weights: str | None = None,
                  compute: str | None = None, tp: int | None = None) -> float:
        """Dense FFN of ``size`` (sharded ``tp`` ways, default the attention TP); for experts,
        ``n_experts`` groups of ``experts_m`` tokens run as one grouped GEMM (one launch).
        ``weights``: the stored format of these weights, ``compute`` the format they are
        computed in (default: the pool's)."""
        m, pm = self.model, self.pm
        wf = weights or self.formats.weights
        cf = compute or self.formats.compute
        h, fs = m.hidden_size, max(1, size // (tp or self.attn_tp))
        up = 2 * fs if m.gated_ffn else fs
        rows = n_tok if experts_m is None else max(1, int(-(-experts_m // 1)))
        # NOTE: the groups share one launch each for up and down: its fixed cost (a measured
        # grid's launch floor, else the profile's kernel overhead) is paid once, not per group
        launch = pm.gemm_launch(cf, wf) if n_experts != 1.0 else pm.kernel_overhead
        t = (pm.gemm_time(rows, up, h, cf, wf)
             + pm.gemm_time(rows, h, fs, cf, wf) - 2 * launch)
        return t * n_experts + 2 * launch

    def _layer_dense_time(self, n_tok: int, layer_is_moe: bool, linear: bool = False,
                          routed: bool = True) -> float:
        """One layer but its attention (or recurrence): projections, FFN or experts, norms,
        KV write, all-reduces. ``linear``: a linear-attention layer's projections, no KV.
        ``routed`` False (attention DP): one rank's part of an MoE layer, its routed experts
        and their token exchange left to :meth:`experts_time`, one all-reduce (attention's)."""
        m, pm, f = self.model, self.pm, self.formats
        gemms = self.linear.gemms if linear else self._layer_gemms
        t = sum(pm.gemm_time(n_tok, n, k, *self.attn_gemm) for n, k in gemms)
        if layer_is_moe:
            e = m.moe
            t += pm.gemm_time(n_tok, e.num_experts, m.hidden_size, self.attn_precision)
            # NOTE: a measured MoE grid times aiconfigurator's MoE op, the fused routed-experts
            # kernels alone (router GEMM, shared experts and all-reduce are charged as without)
            if routed:
                t += self._moe_form(n_tok) if self._moe_form is not None else \
                    self._routed_analytic(n_tok)
            if e.shared_experts:
                t += self._ffn_time(n_tok, e.expert_ffn_size * e.shared_experts)
        else:
            t += self._ffn_time(n_tok, m.ffn_size)
        # Norms, residual adds, activation, RoPE and KV-cache write: memory-bound, ~5 kernels.
        # A QK-norm reads and writes q and k once more, in one kernel more (every runtime's
        # default: vLLM's Inductor combo kernel of the q and k norms, SGLang's
        # fused_inplace_qknorm, TRT-LLM's fused_qk_norm_rope where a plain layer's RoPE runs
        # inside attention; DESIGN.md "QK-norm")
        atp = self.attn_tp
        h, fs = m.hidden_size, m.ffn_size // atp
        qk = self._qk_norm and not linear
        act = n_tok * self.act_bytes * (10 * h + (3 if m.gated_ffn else 2) * fs
                                        + (self.linear.act if linear else
                                           2 * self._attn_act if qk else self._attn_act))
        # windowed layers write KV too; a linear layer's state write is its recurrence's
        kv_write = 0.0 if linear else n_tok * m.kv_layer_bytes(f.kv, atp)
        t += pm.memory_time(act + kv_write) + (5 if qk else 4) * pm.kernel_overhead
        reduces = 1 if layer_is_moe and not routed else 2
        t += reduces * pm.allreduce_time(n_tok * h * self.act_bytes, atp)
        if m.layer_qk_norm and not linear and atp > 1:
            # the norm's variance of q and of k (fp32) summed over the ranks' heads
            # (vLLM minimax_m2.py: MiniMaxText01RMSNormTP.forward_qk)
            t += pm.allreduce_time(n_tok * 2 * 4, atp)
        return t

    def _active_experts(self, n_tok: float) -> float:
        """Experts that ``n_tok`` tokens route to, in expectation, when each token's top-k
        are equally likely to be any k of the experts (``balanced`` routing)."""
        e = self.model.moe
        return e.num_experts * (1.0 - (1.0 - e.top_k / e.num_experts) ** n_tok)

    def _routed_analytic(self, n_tok: float) -> float:
        """The routed experts of one MoE layer composed from grouped GEMMs, in the format the
        runtime's MoE kernels compute them in (:attr:`expert_compute`), as the measured grid
        (:meth:`_measured_forms`) reads them."""
        e = self.model.moe
        active = self._active_experts(n_tok)
        return self._ffn_time(n_tok, e.expert_ffn_size, n_tok * e.top_k / active, active,
                              self.expert_weights, self.expert_compute, self.tp)

    def _routed_work(self, n_tok: float, active: float) -> float:
        """The roofline of one MoE layer's routed experts on one GPU: ``n_tok`` x top-k rows
        over ``active`` experts, each expert's weights read once (work alone: no tiles, no
        launches)."""
        m, pm = self.model, self.pm
        h, fs = m.hidden_size, max(1, m.moe.expert_ffn_size // self.tp)
        rows = n_tok * m.moe.top_k / active
        compute = memory = 0.0
        for n, k in (((2 if m.gated_ffn else 1) * fs, h), (h, fs)):
            c, b = pm._gemm_parts(rows, n, k, self.expert_compute, self.expert_weights, 1.0)
            compute, memory = compute + c, memory + b
        return active * max(compute, memory)

    def _moe_spread(self, n_tok: float) -> float:
        """The measured MoE grid under ``balanced`` routing, at the experts such routing
        reaches. NOTE: aiconfigurator's ``balanced`` table routes by a fixed stride
        (ai-dynamo/aiconfigurator collector/helper.py ``balanced_logits``@006afd78: token i's
        j-th expert is (i + j ceil(E / k)) mod E), so its n tokens reach min(E, n k) experts:
        every expert from n = E / k on. Tokens that each pick k of E equally likely reach
        E (1 - (1 - k/E)^n) in expectation (gpt-oss at 32 tokens: 82 of 128), and at decode
        sizes the fused kernel's time is its active experts' weights (the tables' time grows in
        proportion to them below E / k). The grid is read times the roofline's ratio between
        the two: the active experts' share where weights bound the layer, 1 where compute
        does."""
        e = self.model.moe
        return self._moe_grid(n_tok) * (
            self._routed_work(n_tok, self._active_experts(n_tok))
            / self._routed_work(n_tok, min(e.num_experts, n_tok * e.top_k)))

    @property
    def _moe_layers(self) -> int:
        m = self.model
        return 0 if not m.moe else m.num_layers - m.moe.first_dense_layers

    def dense_time(self, n_tok: int, n_logits: int) -> float:
        """Everything but attention for ``n_tok`` new tokens, ``n_logits`` of which need
        logits. Under attention DP: one rank's ``n_tok`` tokens, the routed experts left out
        (they run over every rank's tokens: :meth:`experts_time`)."""
        key = (n_tok, n_logits)
        t = self._dense_cache.get(key)
        if t is None:
            m, pm = self.model, self.pm
            n_moe = self._moe_layers
            routed = self.attention_dp == 1
            t = 0.0
            if n_tok and self.linear is not None:
                t += self._hybrid_dense_time(n_tok, n_moe, routed)
            elif n_tok:
                t += (m.num_layers - n_moe) * self._layer_dense_time(n_tok, False)
                if n_moe:
                    t += n_moe * self._layer_dense_time(n_tok, True, routed=routed)
            if n_tok and self.sparse is not None:
                t += m.indexer_layers * self._indexer_projections(n_tok)
            if n_logits:
                t += pm.gemm_time(n_logits, max(1, m.vocab_size // self.attn_tp), m.hidden_size,
                                  self.attn_precision)
            self._dense_cache[key] = t
        return t

    def experts_time(self, n_tok: int) -> float:
        """Attention DP: the routed experts of every MoE layer over ``n_tok`` tokens (all the
        ranks' together) on the tp GPUs (``moe_ep`` as given), and their token exchange.
        NOTE: the exchange is an all-gather of every rank's hidden states before the experts
        and a reduce-scatter of their outputs after: together the two halves of a ring
        all-reduce of the gathered tokens (same steps, same bytes per link), so it is costed
        as ``allreduce_time`` of ``n_tok`` tokens over tp (the profile's collective model)."""
        t = self._experts_cache.get(n_tok)
        if t is None:
            t = 0.0
            if n_tok and self._moe_layers:
                moe = (self._moe_form(n_tok) if self._moe_form is not None
                       else self._routed_analytic(n_tok))
                xchg = self.pm.allreduce_time(n_tok * self.model.hidden_size * self.act_bytes,
                                              self.tp)
                t = self._moe_layers * (moe + xchg)
            self._experts_cache[n_tok] = t
        return t

    def _hybrid_dense_time(self, n_tok: int, n_moe: int, routed: bool = True) -> float:
        """:meth:`dense_time`'s layers for a model with linear-attention layers.
        NOTE: the count of each kind is kept, not the pattern; the linear layers are counted
        among the MoE layers first (Qwen3.5: every layer is MoE, so the split is exact)."""
        lin = self.linear.layers
        lin_moe = min(lin, n_moe)
        n_dense = self.model.num_layers - n_moe
        t = 0.0
        for count, moe, linear in ((n_dense - (lin - lin_moe), False, False),
                                   (lin - lin_moe, False, True), (n_moe - lin_moe, True, False),
                                   (lin_moe, True, True)):
            if count:
                t += count * self._layer_dense_time(n_tok, moe, linear, routed)
        return t

    # --- attention -----------------------------------------------------------------------
    def _attn_dims(self):
        m = self.model
        if m.mla:
            a = m.mla
            return a.qk_nope_dim + a.qk_rope_dim, a.v_head_dim
        return m.head_dim, m.head_dim

    def prefill_attention_time(self, chunks) -> float:
        """Attention of prefill ``chunks`` in every layer: the full-attention layers', the
        windowed layers' band, the linear layers' chunked recurrence."""
        if self.linear is not None and chunks:
            return self._full_prefill_time(chunks) + self.linear.prefill_time(chunks)
        return self._full_prefill_time(chunks)

    def _full_prefill_time(self, chunks) -> float:
        if self.window is not None:
            return self._windowed_prefill_time(chunks)
        if self.sparse is not None and chunks:
            return self._sparse_prefill_time(chunks)
        return self._full_layers * self._layer_attention(chunks)

    def _layer_attention(self, chunks) -> float:
        """One full-attention layer's attention over prefill ``chunks``: the profile's measured
        grid where it has one, else the op model."""
        if self._ctx_form is not None and chunks:
            return self._ctx_form(chunks)
        qk, v = self._attn_dims()
        return self.pm.attention_chunks_time(
            chunks, self.heads, self.heads if self.model.mla else self.kv_heads, qk,
            self.attn_precision, self.formats.kv, v_head_dim=v)

    def _windowed_prefill_time(self, chunks) -> float:
        """Full-attention layers as without a window; each windowed layer is a causal band:
        the query at position p attends to keys (p - size, p], so a chunk reads at most
        q + size - 1 keys and computes :func:`band_pairs` (query, key) pairs.

        NOTE: the op model's FLOPs are proportional to the causal pairs over the same query
        tiles, so the band's compute is the op model's for the keys it reads scaled by the
        ratio of pairs; its memory is the op model's for those keys, exactly."""
        pm, m, w = self.pm, self.model, self.window.size
        qk, v = self._attn_dims()
        kvh = self.heads if m.mla else self.kv_heads
        args = (self.heads, kvh, qk, self.attn_precision, self.formats.kv, v)
        full = self._layer_attention(chunks)
        band = [(q, min(kv, q + w - 1)) for q, kv in chunks]
        if self._ctx_win_form is not None and chunks:
            # NOTE: the band, not the chunk: a windowed layer reads at most q + w - 1 keys
            # whatever the context before the chunk
            return (m.full_attention_layers * full
                    + self.window.layers * self._ctx_win_form(band))
        compute, memory, q_tokens = pm.attention_prefill_parts(band, *args)
        causal = sum(band_pairs(q, kv, kv) for q, kv in band)
        if causal:
            compute *= sum(band_pairs(q, kv, w) for q, kv in chunks) / causal
        compute /= pm._corr("attention_prefill", self.attn_precision, q_tokens)
        windowed = max(compute, memory) + pm.kernel_overhead
        return m.full_attention_layers * full + self.window.layers * windowed

    # --- sparse attention (DeepSeek-V3.2, GLM-5) --------------------------------------------
    def _indexer_projections(self, n_tok: int) -> float:
        """One indexer's projections for ``n_tok`` tokens, replicated on every rank: its
        queries (heads x head_dim from the query latent) and its key and head weights (from the
        hidden state; vLLM runs those two as one GEMM, ``wk_weights_proj``)."""
        s, m, pm = self.sparse, self.model, self.pm
        return (pm.gemm_time(n_tok, s.heads * s.head_dim, m.mla.q_lora_rank or m.hidden_size,
                             *self.attn_gemm)
                + pm.gemm_time(n_tok, s.head_dim + s.heads, m.hidden_size, *self.attn_gemm))

    def _indexer_scores(self, queries: int, pairs: float, keys: float) -> float:
        """One indexer layer scoring ``pairs`` (query, key) pairs of ``queries`` queries over
        ``keys`` cached keys in all, then picking each query's top-k: the fp8 score kernel
        (2 x heads x head_dim flops a pair; the keys and the queries read) and the top-k
        kernel. NOTE: each pair's fp32 score is written and read back (8 B a pair); no
        kernel table times the indexer, so this is the roofline at the attention efficiency."""
        s = self.sparse
        flops = 2.0 * s.heads * s.head_dim * pairs
        nbytes = keys * s.key_bytes + 8.0 * pairs + queries * s.heads * s.head_dim
        return self.pm.attention_roofline(flops, nbytes, self._indexer_precision, kernels=2)

    def _sparse_prefill_time(self, chunks) -> float:
        """Every MLA layer's attention over the tokens the indexer picks, and the indexer
        layers' scoring. A query at position p reads min(p, top_k) keys: the measured (else
        modelled) MLA time of the chunk's band (at most q + top_k - 1 keys, the window's
        rule), scaled by the ratio of the pairs read to the band's causal pairs (exactly the
        dense time while the context is within top_k); the indexer scores every causal pair.
        NOTE: a runtime may run short prompts on a dense kernel and long ones on a sparse
        absorbed one; both are read here as the MLA op the profile measured."""
        m, w = self.model, self.sparse.top_k
        band = [(q, min(kv, q + w - 1)) for q, kv in chunks]
        mla = self._layer_attention(band)
        causal = sum(band_pairs(q, kv, kv) for q, kv in band)
        if causal:
            mla *= sum(band_pairs(q, kv, w) for q, kv in chunks) / causal
        pairs = sum(band_pairs(q, kv, kv) for q, kv in chunks)
        scores = self._indexer_scores(sum(q for q, _ in chunks), pairs,
                                      sum(kv for _, kv in chunks))
        return self._full_layers * mla + m.indexer_layers * scores

    def _sparse_decode_time(self, batch: int, total_kv: int, read_kv: int | None) -> float:
        """Decode attention under sparse attention: every MLA layer reads ``read_kv`` latents
        (the sum of min(context, top_k); default min(total_kv, batch x top_k), exact when every
        context reaches top_k), and each indexer layer scores all ``total_kv`` tokens."""
        if read_kv is None:
            read_kv = min(total_kv, batch * self.sparse.top_k)
        return (self._full_layers * self._decode_layer_time(batch, read_kv)
                + self.model.indexer_layers * self._indexer_scores(batch, total_kv, total_kv))

    def decode_attention_time(self, batch: int, total_kv: int,
                              window_kv: int | None = None) -> float:
        """Decode attention of ``batch`` sequences holding ``total_kv`` tokens of context in
        all; ``window_kv``: the sum over them of min(context, window) for windowed layers, or
        of min(context, top_k) under sparse attention (default min(total_kv, batch x window),
        exact when every context fills the window)."""
        if self.window is not None:
            t = self._windowed_decode_time(batch, total_kv, window_kv)
        elif self.sparse is not None:
            t = self._sparse_decode_time(batch, total_kv, window_kv) if batch > 0 else 0.0
        else:
            t = self._full_layers * self._decode_layer_time(batch, total_kv)
        if self.linear is not None and batch > 0:
            t += self.linear.decode_time(batch)
        return t

    def _windowed_decode_time(self, batch: int, total_kv: int, window_kv: int | None) -> float:
        if window_kv is None:
            window_kv = min(total_kv, batch * self.window.size)
        full = self.model.full_attention_layers * self._decode_layer_time(batch, total_kv)
        if self._decode_win_form is not None and batch > 0:
            # NOTE: the windowed grid was measured at the sequences' real context (the
            # kernel applies the window), so it is read there, not at the window's sum
            return full + self.window.layers * self._decode_win_form(batch, total_kv)
        return full + self.window.layers * self._decode_layer_time(batch, window_kv)

    def _decode_layer_time(self, batch: int, kv: int) -> float:
        """One layer's decode attention over ``kv`` tokens of context in all (hot path: once
        per decode step)."""
        lin = self._decode_linear
        if lin is not None and batch > 0:     # the datasheet model's linear form
            a, b, g, k = lin
            return max(a * kv, b * kv + g * batch) + k
        if self._decode_form is not None and batch > 0:   # measured: cached per batch value
            return self._decode_form(batch, kv)
        return self.pm.attention_decode_total_time(*self._decode_args(batch, kv))

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

    # --- iterations ----------------------------------------------------------------------
    def time(self, chunks=(), n_logits_prefill: int = 0, decode_n: int = 0,
             decode_ctx: int = 0, decode_window_ctx: int | None = None) -> float:
        """One iteration: prefill ``chunks`` [(q_len, kv_len)], of which ``n_logits_prefill``
        finish their prompt, plus ``decode_n`` decode tokens over ``decode_ctx`` context
        (``decode_window_ctx``: the windowed layers' part, see :meth:`decode_attention_time`).

        An iteration of one prompt chunk and no decode (nearly every prefill iteration) is
        memoized by (q_len, kv_len, n_logits_prefill): the time is a pure function of them, so
        a repeat is the very float the sum below gives (the cache holds one entry per distinct
        prompt shape, as ``_dense_cache`` does per token count)."""
        if not decode_n and len(chunks) == 1:
            (q, kv), = chunks
            key = (q, kv, n_logits_prefill)
            t = self._prompt_cache.get(key)
            if t is None:
                t = self._prompt_cache[key] = self._time(chunks, n_logits_prefill, 0, 0, None)
            return t
        return self._time(chunks, n_logits_prefill, decode_n, decode_ctx, decode_window_ctx)

    def _time(self, chunks, n_logits_prefill, decode_n, decode_ctx, decode_window_ctx) -> float:
        q_tokens = sum(q for q, _ in chunks) if chunks else 0
        t = self.dense_time(q_tokens + decode_n, n_logits_prefill + decode_n)
        if chunks:
            t += self.prefill_attention_time(chunks)
        if decode_n:
            t += self.decode_attention_time(decode_n, decode_ctx, decode_window_ctx)
        return t + self.pm.iteration_overhead

    def prefill_time(self, prompt_lens) -> float:
        lens = [int(x) for x in prompt_lens]
        return self.time([(n, n) for n in lens], n_logits_prefill=len(lens))

    def decode_time(self, batch: int, total_ctx: int, window_ctx: int | None = None) -> float:
        """``time(decode_n=batch, decode_ctx=total_ctx, decode_window_ctx=window_ctx)``, the
        same sums in the same order.
        NOTE: hot path (once per decode iteration), so written out: the dense part is cached
        by batch (``dense_time(batch, batch)``'s value), and the linear attention form below
        is ``_decode_layer_time``'s with ``max(x, y)`` as ``y if y > x else x`` (the value
        max returns, NaN included)."""
        t = self._decode_dense.get(batch)
        if t is None:
            t = self._decode_dense[batch] = self.dense_time(batch, batch)
        if batch:
            lin = self._decode_lin_layers
            if lin is not None:
                a, b, g, k, layers = lin
                x, y = a * total_ctx, b * total_ctx + g * batch
                t += layers * ((y if y > x else x) + k)
            else:
                t += self.decode_attention_time(batch, total_ctx, window_ctx)
        return t + self._iteration_overhead

    def decode_times(self, batch: int, ctx: int, grow: int, count: int,
                     window_ctx: int | None = None) -> list[float]:
        """``[decode_time(batch, ctx + j * grow, window_ctx) for j in 1 .. count]``, the very
        floats (a decode span's iterations: each adds ``grow`` tokens of context), without a
        call per iteration on the linear form."""
        lin = self._decode_lin_layers
        if lin is None or not batch or self.attention_dp > 1:
            return [self.decode_time(batch, ctx + j * grow, window_ctx)
                    for j in range(1, count + 1)]
        t0 = self._decode_dense.get(batch)
        if t0 is None:
            t0 = self._decode_dense[batch] = self.dense_time(batch, batch)
        a, b, g, k, layers = lin
        gb, over = g * batch, self._iteration_overhead
        out = []
        for _ in range(count):
            ctx += grow
            x, y = a * ctx, b * ctx + gb
            out.append(t0 + layers * ((y if y > x else x) + k) + over)
        return out

    # --- attention data parallelism ------------------------------------------------------
    def _dp_time(self, chunks, n_logits_prefill, decode_n, decode_ctx, decode_window_ctx):
        """:meth:`time` under attention DP (N ranks). Decodes split evenly (ranks 0 .. r - 1
        hold one more where N does not divide them); a prompt chunk stays whole on one rank,
        the largest first to the rank holding the fewest tokens (ties: the lowest rank), and
        the first ``n_logits_prefill`` chunks are the ones finishing their prompt (the
        schedulers list those first: ``policy._split``). Each rank's attention and non-expert
        layers run on its own tokens; the routed experts wait for every rank (their exchange
        is a barrier each MoE layer), so the step is the slowest rank's part plus
        :meth:`experts_time` of all the tokens."""
        n = self.attention_dp
        base, extra = divmod(decode_n, n)
        dec = [base + (r < extra) for r in range(n)]
        mine: list[list] = [[] for _ in range(n)]
        logits = [0] * n
        load = [(dec[r], r) for r in range(n)]     # (tokens, rank): a heap, least first
        heapq.heapify(load)
        for i in sorted(range(len(chunks)), key=lambda i: -chunks[i][0]):
            tokens, r = heapq.heappop(load)
            mine[r].append(chunks[i])
            logits[r] += i < n_logits_prefill
            heapq.heappush(load, (tokens + chunks[i][0], r))
        slowest = 0.0
        for r in range(n):
            b, own = dec[r], mine[r]
            q = sum(c for c, _ in own)
            t = self.dense_time(q + b, logits[r] + b)
            if own:
                t += self.prefill_attention_time(own)
            if b:
                t += self._rank_decode_attention(b, decode_n, decode_ctx, decode_window_ctx)
            slowest = t if t > slowest else slowest
        q_all = sum(q for q, _ in chunks)
        return slowest + self.experts_time(q_all + decode_n) + self.pm.iteration_overhead

    def _rank_decode_attention(self, b: int, batch: int, total_ctx: int,
                               window_ctx: int | None) -> float:
        """Decode attention of a rank holding ``b`` of the ``batch`` sequences: the context
        sums scaled by b / batch, rounded up (NOTE: the ranks' contexts are not tracked
        apart; an even split of the batch is taken to split its context evenly too)."""
        win = None if window_ctx is None else -(-window_ctx * b // batch)
        return self.decode_attention_time(b, -(-total_ctx * b // batch), win)

    def _dp_decode_time(self, batch: int, total_ctx: int, window_ctx: int | None = None) -> float:
        """:meth:`decode_time` under attention DP: the slowest rank holds ceil(batch / N)
        sequences (:meth:`_dp_time`'s split, the same sums in the same order); O(1)."""
        b = -(-batch // self.attention_dp)
        t = self.dense_time(b, b)
        if batch:
            t += self._rank_decode_attention(b, batch, total_ctx, window_ctx)
        return t + self.experts_time(batch) + self._iteration_overhead

def band_pairs(q: int, kv: int, window: int) -> int:
    """(query, key) pairs of a chunk of ``q`` queries ending at position ``kv`` (1-based, so the
    chunk's queries are positions kv - q + 1 .. kv) when each attends to the last ``window``
    keys up to itself: sum over those positions x of min(x, window). ``window >= kv`` is the
    plain causal count q (kv - q) + q (q + 1) / 2."""
    def upto(n: int) -> int:   # sum of min(x, window) for x = 1..n
        if n <= window:
            return n * (n + 1) // 2
        return window * (window + 1) // 2 + (n - window) * window
    return upto(kv) - upto(kv - q)
