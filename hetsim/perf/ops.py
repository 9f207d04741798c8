"""Operator costs on one accelerator: rooflines with achievable-efficiency curves.

Every op is ``max(compute_time, memory_time) + kernel_overhead`` where
- compute_time = FLOPs / (peak(precision) x efficiency x shape_efficiency), and shape_efficiency
  models tile padding and wave quantization over the device's compute units (with split-K for
  tall-skinny shapes, as cuBLAS/hipBLASLt heuristics do);
- memory_time = bytes / (HBM bandwidth x hbm efficiency).

Where the profile carries measured kernel grids (``Calibration.kernels``), GEMMs, attention and
all-reduces read them first and the roofline above carries the time where they do not reach
(:mod:`hetsim.perf.measured`); without grids every time is the roofline's, bit for bit.
"""
from __future__ import annotations

from ..errors import ConfigError
from ..hardware import Accelerator, Calibration, Interconnect, load_interconnect
from ..precision import PRECISION_BYTES, unsupported
from .kernels import MeasuredKernels, load_kernels
from .measured import lift
from .measured_ops import MeasuredOps

__all__ = ["PerfModel", "GEMM_TILES"]

#: Candidate output tiles (m, n, relative efficiency of the tile's inner loop). Smaller tiles fill
#: more compute units but reuse operands less. A library picks the best per shape.
GEMM_TILES = ((128, 256, 1.0), (128, 128, 0.95), (64, 128, 0.85), (64, 64, 0.7),
              (16, 64, 0.5),    # small-m kernels (decode batches)
              (1, 256, 0.25))   # GEMV: no operand reuse, only ever wins for a handful of rows
#: Flash-attention query tile (rows of Q per thread block).
ATTN_Q_TILE = 128
#: Minimum K slice per split in split-K GEMMs.
SPLITK_MIN_K = 512


class PerfModel(MeasuredOps):
    """Time of operators on ``acc``; the TP all-reduce runs over ``link`` (default: its scale-up).

    Operators only: a whole iteration of a model is :class:`hetsim.perf.StepModel`'s job.
    """

    def __init__(self, acc: Accelerator, link: Interconnect | None = None):
        self.acc = acc
        if link is None:
            link = load_interconnect(acc.scale_up.link) if acc.scale_up else None
        self.link = link
        e = acc.efficiency
        self._bw = acc.hbm_bandwidth * e.hbm
        self._kernel = e.kernel_overhead_us * 1e-6
        self.iteration_overhead = e.iteration_overhead_ms * 1e-3
        self._cal = acc.calibration
        self._kernels = load_kernels(self._cal.kernels) if self._cal and self._cal.kernels \
            else None
        self._peaks: dict[str, float] = {}   # precision -> dense FLOP/s (a pure look-up)
        self._forms: dict[tuple, object] = {}  # measured grid (or None) per op and key, memoized

    def _corr(self, kind: str, precision: str, x: float) -> float:
        """Calibrated throughput correction (1.0 without a calibration for this op/format)."""
        cal = self._cal
        if cal is None:
            return 1.0
        curves = getattr(cal, kind)
        curve = curves.get(precision)
        if curve is None and kind.endswith("_memory") and curves:
            # a memory path's correction is about bytes, not their format: a KV format that
            # was not measured (fp8 KV, say) streams as the measured 16-bit ones do
            curve = curves.get("bf16") or curves.get("fp16") or next(iter(curves.values()))
        return curve(x) if curve is not None else 1.0

    # --- read-only views (calibration reads them) ----------------------------------------
    @property
    def bandwidth(self) -> float:
        """Achievable HBM bandwidth, B/s (datasheet x ``efficiency.hbm``)."""
        return self._bw

    @property
    def kernel_overhead(self) -> float:
        """Fixed seconds per kernel launch."""
        return self._kernel

    @property
    def calibration(self) -> Calibration | None:
        """The profile's fitted corrections (None: datasheet model)."""
        return self._cal

    @property
    def kernels(self) -> MeasuredKernels | None:
        """The profile's measured kernel grids (None: none; the model is analytical)."""
        return self._kernels

    def peak(self, precision: str) -> float:
        """Dense peak FLOP/s in ``precision``; ConfigError if the device does not compute in it."""
        peak = self._peaks.get(precision)
        if peak is None:
            why = unsupported(self.acc, precision)
            if why:
                raise ConfigError(why)
            peak = self._peaks[precision] = self.acc.peak_flops(precision)
        return peak

    # --- helpers -------------------------------------------------------------------------
    def shape_efficiency(self, m: int, n: int, k: int = 1 << 20) -> float:
        """Fraction of the GEMM ceiling an (m x k)@(k x n) reaches: padding x waves x tile."""
        units = self.acc.compute_units
        best = 0.0
        for tm, tn, tile_eff in GEMM_TILES:
            tiles_m, tiles_n = -(-m // tm), -(-n // tn)
            tiles = tiles_m * tiles_n
            pad = (m * n) / (tiles_m * tm * tiles_n * tn)
            split = max(1, min(units // tiles, k // SPLITK_MIN_K)) if tiles < units else 1
            work = tiles * split
            waves = -(-work // units)
            best = max(best, tile_eff * pad * work / (waves * units))
        return best

    def memory_time(self, nbytes: float) -> float:
        """A memory-bound kernel moving ``nbytes`` through HBM."""
        return nbytes / self._bw + self._kernel

    # --- public op API -------------------------------------------------------------------
    def gemm_time(self, m: int, n: int, k: int, precision: str = "bf16",
                  weight_precision: str | None = None) -> float:
        """Seconds for (m x k) @ (k x n): activations in ``precision``, the (k x n) operand in
        ``weight_precision`` (weight-only quantization reads fewer bytes, computes at
        ``precision``)."""
        if m <= 0 or n <= 0 or k <= 0:
            return 0.0
        if self._kernels is not None:
            grid = self._gemm_grid(precision, weight_precision)
            if grid is not None:
                t = grid(lift((m, n, k), grid.axes),
                         lambda p: self._gemm_work(*p, precision, weight_precision))
                if weight_precision == "fp8-static":
                    t = self._static_scale(t, m, n, k, precision)
                return t
        return self._gemm_analytic(m, n, k, precision, weight_precision)

    def _static_scale(self, t: float, m: int, n: int, k: int, precision: str) -> float:
        """A measured fp8 GEMM's time ``t`` with static activation scales: the tables time
        dynamic quantization (aiconfigurator's collectors load fp8 weights without an input
        scale), so the activation-scale computation at (m, k) comes off, floored at the GEMM's
        roofline (never above the table's time), as aiconfigurator derives its ``fp8_static`` mode
        (ai-dynamo/aiconfigurator@095f58a5 ``aic-core/rust/aiconfigurator-core/src/operators/
        gemm.rs`` ``Gemm::query``). Past the scale grid's edge its edge time is taken off."""
        scale = self._scale_grid(precision)
        if scale is None:
            return t
        cs = scale(lift((m, k), scale.axes))
        # (a kernel measured below the roofline keeps its time: the floor never raises it)
        return min(t, max(t - cs, self._gemm_work(m, n, k, precision, "fp8")))

    def _gemm_analytic(self, m, n, k, precision, weight_precision) -> float:
        se = self.shape_efficiency(m, n, k)
        compute, memory = self._gemm_parts(m, n, k, precision, weight_precision, se)
        if self._cal is not None:
            # the correction is a function of the padded rows the tiles compute (m / se), which
            # grow with the uncorrected time, so a curve rising at most linearly keeps time
            # monotone in m
            compute /= self._corr("gemm", precision, m / se)
            memory /= self._corr("gemm_memory", precision, m)
        if PRECISION_BYTES[weight_precision or precision] < PRECISION_BYTES[precision]:
            compute += self.dequant_time(m, n, k)
        return max(compute, memory) + self._kernel

    def _gemm_work(self, m, n, k, precision, weight_precision) -> float:
        """The roofline of a GEMM's work alone (no tile padding or wave quantization): what
        carries a measured GEMM past its grid. NOTE: the grid measured the kernel's efficiency at
        its edge and past it only the work grows; the quantized model's ratio between two shapes
        jumps with their tiles, which let a step with more rows cost less (the logits GEMM, n past
        the grid, at 513 rows against 511)."""
        compute, memory = self._gemm_parts(m, n, k, precision, weight_precision, 1.0)
        if PRECISION_BYTES[weight_precision or precision] < PRECISION_BYTES[precision]:
            compute += self.dequant_time(m, n, k)
        return max(compute, memory) + self._kernel

    def gemm_rows(self, m: int, n: int, k: int) -> float:
        """Rows a GEMM's tiles effectively compute (m over its shape efficiency): the shape
        variable of the calibrated compute correction."""
        return m / self.shape_efficiency(m, n, k)

    def gemm_parts(self, m: int, n: int, k: int, precision: str = "bf16",
                   weight_precision: str | None = None) -> tuple[float, float]:
        """(compute seconds before calibration, memory seconds) of a GEMM."""
        return self._gemm_parts(m, n, k, precision, weight_precision,
                                self.shape_efficiency(m, n, k))

    def _gemm_parts(self, m, n, k, precision, weight_precision, se):
        a = PRECISION_BYTES[precision]
        w = PRECISION_BYTES[weight_precision or precision]
        ceiling = self.peak(precision) * self.acc.efficiency.gemm
        compute = 2.0 * m * n * k / (ceiling * se)
        return compute, ((m * k + m * n) * a + k * n * w) / self._bw

    def dequant_time(self, m: int, n: int, k: int) -> float:
        """Extra compute of a weight-only GEMM: every M-tile of thread blocks re-expands the
        (k x n) weight tile to the compute format on the vector units (Marlin-style fused
        kernels). NOTE: one vector op per element per 128-row tile at the fp32 (CUDA-core)
        rate; hidden under weight reads at decode-sized m, ~5-10% at prefill-sized m."""
        vector = self.acc.peak_flops("fp32") if "fp32" in self.acc.tflops else \
            self.peak(next(iter(self.acc.precisions))) / 16
        return -(-m // 128) * k * n / (vector * self.acc.efficiency.gemm)

    def kv_convert_time(self, nbytes_in: float, nbytes_out: float, layers: int = 1) -> float:
        """A memory-bound pass that reads KV in one format and writes it in another (dtype
        cast, re-blocking, layout or re-sharding), one kernel per layer, on one device."""
        if nbytes_in <= 0:
            return 0.0
        return (nbytes_in + nbytes_out) / self._bw + layers * self._kernel

    def attention_prefill_time(self, batch: int, seq_len: int, n_heads: int, n_kv_heads: int,
                               head_dim: int, precision: str = "bf16") -> float:
        """Causal attention of ``batch`` prompts of ``seq_len`` tokens (heads of one rank)."""
        return self.attention_chunks_time([(seq_len, seq_len)] * batch, n_heads, n_kv_heads,
                                          head_dim, precision)

    def attention_chunks_time(self, chunks, n_heads: int, n_kv_heads: int, head_dim: int,
                              precision: str = "bf16", kv_precision: str | None = None,
                              v_head_dim: int | None = None, window: int = 0) -> float:
        """Causal attention for prompt chunks ``[(q_len, kv_len), ...]``: each chunk's q_len new
        tokens attend to kv_len tokens (previous context + themselves). ``window``: the
        sliding window in tokens (0: full attention; only a measured grid tells them apart)."""
        if not chunks:
            return 0.0
        if self._kernels is not None:
            form = self.context_attention_form(n_heads, n_kv_heads, head_dim, precision,
                                               kv_precision, v_head_dim, window)
            if form is not None:
                return form(chunks)
        return self._chunks_analytic(chunks, n_heads, n_kv_heads, head_dim, precision,
                                     kv_precision, v_head_dim)

    def _chunks_analytic(self, chunks, n_heads, n_kv_heads, head_dim, precision, kv_precision,
                         v_head_dim) -> float:
        compute, memory, q_tokens = self.attention_prefill_parts(
            chunks, n_heads, n_kv_heads, head_dim, precision, kv_precision, v_head_dim)
        compute /= self._corr("attention_prefill", precision, q_tokens)
        return max(compute, memory) + self._kernel

    def attention_prefill_parts(self, chunks, n_heads, n_kv_heads, head_dim, precision="bf16",
                                kv_precision=None, v_head_dim=None):
        """(compute seconds before calibration, memory seconds, query tokens)."""
        b = PRECISION_BYTES[precision]
        kvb = PRECISION_BYTES[kv_precision or precision]
        vd = v_head_dim or head_dim
        pairs = 0.0   # (query, key) pairs under the causal mask
        q_tokens = kv_tokens = q_tiles = 0
        for q, kv in chunks:
            prior = kv - q
            pairs += q * prior + q * (q + 1) / 2
            q_tokens += q
            kv_tokens += kv
            q_tiles += -(-q // ATTN_Q_TILE)
        flops = 2.0 * pairs * n_heads * (head_dim + vd)
        units = self.acc.compute_units
        work = q_tiles * n_heads
        pad = q_tokens / (q_tiles * ATTN_Q_TILE)
        waves = pad * work / (-(-work // units) * units)
        ceiling = self.peak(precision) * self.acc.efficiency.attention
        memory = (q_tokens * n_heads * (head_dim + vd) * b
                  + kv_tokens * n_kv_heads * (head_dim + vd) * kvb) / self._bw
        return flops / (ceiling * waves), memory, q_tokens

    def linear_attention_time(self, flops: float, nbytes: float, precision: str = "bf16",
                              kernels: int = 2) -> float:
        """A linear-attention layer's recurrence (Gated DeltaNet: its causal convolution and
        its state update, ``kernels`` launches) as a roofline of ``flops`` at the attention
        efficiency and ``nbytes`` through HBM (:meth:`attention_roofline`). NOTE: no
        calibrated correction applies (no profile has measured it); a measured GDN grid would
        replace it."""
        return self.attention_roofline(flops, nbytes, precision, kernels)

    def attention_roofline(self, flops: float, nbytes: float, precision: str = "bf16",
                           kernels: int = 1) -> float:
        """An attention-like op known only by its work: ``flops`` at the attention efficiency
        of ``precision``'s peak or ``nbytes`` through HBM, whichever is longer, plus
        ``kernels`` launches (a linear-attention recurrence, a sparse-attention indexer)."""
        compute = flops / (self.peak(precision) * self.acc.efficiency.attention)
        return max(compute, nbytes / self._bw) + kernels * self._kernel

    def attention_decode_time(self, batch: int, kv_len: int, n_heads: int, n_kv_heads: int,
                              head_dim: int, precision: str = "bf16",
                              kv_precision: str | None = None) -> float:
        """One query token per sequence against ``kv_len`` cached tokens each."""
        return self.attention_decode_total_time(batch, batch * kv_len, n_heads, n_kv_heads,
                                                head_dim, precision, kv_precision)

    def attention_decode_total_time(self, batch: int, total_kv: int, n_heads: int,
                                    n_kv_heads: int, head_dim: int, precision: str = "bf16",
                                    kv_precision: str | None = None,
                                    kv_width: int | None = None, window: int = 0) -> float:
        """Decode attention for ``batch`` sequences holding ``total_kv`` cached tokens in all.

        NOTE: depends on the batch only through (batch, sum of context lengths), which lets the
        engine keep decode steps O(1). ``kv_width`` overrides the cached elements per token and
        head (MLA caches one latent instead of K and V).
        """
        if batch <= 0:
            return 0.0
        if self._kernels is not None:
            form = self.decode_attention_form(n_heads, n_kv_heads, head_dim, precision,
                                              kv_precision, kv_width, window)
            if form is not None:
                return form(batch, total_kv)
        return self._decode_analytic(batch, total_kv, n_heads, n_kv_heads, head_dim, precision,
                                     kv_precision, kv_width)

    def _decode_analytic(self, batch, total_kv, n_heads, n_kv_heads, head_dim, precision,
                         kv_precision, kv_width) -> float:
        compute, memory, nbytes = self.attention_decode_parts(
            batch, total_kv, n_heads, n_kv_heads, head_dim, precision, kv_precision, kv_width)
        if self._cal is not None:
            compute /= self._corr("attention_decode", precision, compute * self.peak(precision))
            memory /= self._corr("attention_decode_memory", kv_precision or precision, nbytes)
        return max(compute, memory) + self._kernel

    def attention_decode_parts(self, batch, total_kv, n_heads, n_kv_heads, head_dim,
                               precision="bf16", kv_precision=None, kv_width=None):
        """(compute seconds, memory seconds, bytes read), before calibration."""
        b = PRECISION_BYTES[precision]
        kvb = PRECISION_BYTES[kv_precision or precision]
        width = kv_width if kv_width is not None else 2 * head_dim
        flops = 2.0 * total_kv * n_heads * width
        compute = flops / (self.peak(precision) * self.acc.efficiency.attention)
        nbytes = total_kv * n_kv_heads * width * kvb + 2 * batch * n_heads * head_dim * b
        return compute, nbytes / self._bw, nbytes

    def allreduce_time(self, nbytes: float, n_devices: int, dtype: str = "bf16") -> float:
        """Ring all-reduce of ``nbytes`` per device over the scale-up link (alpha-beta), or the
        calibrated fit for this device count when the profile has one, or the measured grid
        of ``n_devices`` (that model carrying it past the grid's message sizes)."""
        if n_devices <= 1 or nbytes <= 0:
            return 0.0
        if self._kernels is not None:
            form = self._allreduce_form(n_devices, dtype)
            if form is not None:
                return form(nbytes)
        return self._allreduce_analytic(nbytes, n_devices)

    def _allreduce_analytic(self, nbytes: float, n_devices: int) -> float:
        cal = self.acc.calibration
        fit = cal.allreduce.get(str(n_devices)) if cal is not None else None
        if fit:   # measured on this device (hetsim calibrate): latency + bus-bandwidth term
            return fit["latency_s"] + 2 * (n_devices - 1) / n_devices * nbytes / (
                fit["bus_bandwidth_gb_s"] * 1e9)
        if self.link is None:
            raise ConfigError(f"{self.acc.name} has no scale-up link for TP > 1")
        steps = 2 * (n_devices - 1)
        alpha = self.link.collective_base_us * 1e-6 + steps * self.link.collective_hop
        beta = steps / n_devices * nbytes / self.link.collective_bandwidth(n_devices)
        return alpha + beta
