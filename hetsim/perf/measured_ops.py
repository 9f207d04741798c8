"""The measured-grid half of :class:`hetsim.perf.PerfModel`: which grid serves an op's key
(exact, or the nearest for attention), memoized per PerfModel, and the forms of
:mod:`hetsim.perf.measured` built on it with PerfModel's analytical ops as the carry."""
from __future__ import annotations

from .measured import (ContextForm, DecodeForm, UniformForm, first_grid, gemm_dtypes, lift,
                       nearest_key, nearest_scaling, split_keys)

__all__ = ["MeasuredOps"]


class MeasuredOps:
    """The measured-grid half of :class:`hetsim.perf.PerfModel` (a mixin: it reads the
    model's ``_kernels``, ``_forms`` memo and analytical ``_*_analytic`` methods). Every method
    answers None where the profile has no grid for the shape, and the caller keeps its
    analytical path."""

    def _gemm_grid(self, precision: str, weight_precision: str | None):
        """The measured GEMM grid of this format pair (``measured.GEMM_DTYPES``), or None."""
        key = ("gemm", precision, weight_precision or precision)
        if key not in self._forms:
            g = first_grid(self._kernels, "gemm",
                           [(d,) for d in gemm_dtypes(precision, weight_precision)])
            self._forms[key] = g.grid if g is not None else None
        return self._forms[key]

    def _scale_grid(self, precision: str):
        """The measured grid of the activation-scale computation a dynamically quantized GEMM
        in ``precision`` pays (op ``compute_scale``, over (m, k)), or None."""
        key = ("compute_scale", precision)
        if key not in self._forms:
            g = self._kernels.get("compute_scale", (precision,))
            self._forms[key] = g.grid if g is not None else None
        return self._forms[key]

    def gemm_launch(self, precision: str, weight_precision: str | None = None) -> float:
        """The fixed cost of one GEMM launch in this format: the measured grid's fastest shape
        (its launch floor) where the profile has one, else ``kernel_overhead``. A grouped GEMM
        composed of per-group GEMM times pays it once, not once per group."""
        key = ("gemm-launch", precision, weight_precision or precision)
        if key not in self._forms:
            g = first_grid(self._kernels, "gemm",
                           [(d,) for d in gemm_dtypes(precision, weight_precision)]) \
                if self._kernels is not None else None
            self._forms[key] = float(g.seconds.min()) if g is not None else self._kernel
        return self._forms[key]

    def _allreduce_form(self, n_devices: int, dtype: str):
        """The all-reduce grid of (dtype, n_devices); else of n_devices in another dtype (bytes
        are bytes to a ring), or None: an unmeasured count keeps the fit or alpha-beta."""
        key = ("allreduce", dtype, n_devices)
        if key not in self._forms:
            keys = sorted(k for k in (g.key for g in self._kernels.grids("allreduce"))
                          if k[1] == n_devices and k[0] != dtype)
            g = first_grid(self._kernels, "allreduce", [(dtype, n_devices), *keys])
            self._forms[key] = None if g is None else UniformForm(
                g.grid, lambda x: self._allreduce_analytic(x, n_devices))
        return self._forms[key]

    def _attention_grid(self, op: str, key: tuple, same, near):
        """The grid for ``key``: exact, else the nearest measured key
        (``measured.nearest_key``), else None. Memoized."""
        memo = (op, key)
        if memo not in self._forms:
            g = self._kernels.get(op, key)
            if g is None:
                k = nearest_key([g.key for g in self._kernels.grids(op)], key, same, near)
                g = self._kernels.get(op, k) if k is not None else None
            self._forms[memo] = g
        return self._forms[memo]

    def _attention_form(self, phase, n_heads, n_kv_heads, head_dim, precision, kv_precision,
                        window, mla):
        """(grid, heads and KV heads of the grid's shape) or None. GQA keys match dtypes, head
        dim and window and take the nearest heads / KV heads (the same GQA ratio first). MLA
        keys match dtypes and take the nearest query heads; the latent is passed as
        ``n_kv_heads == n_heads`` in context (it follows the heads) and one head in decode."""
        kv = kv_precision or precision
        if mla:
            g = self._attention_grid(f"{phase}_mla", (precision, kv, n_heads), (0, 1), (2,))
            h = g.key[2] if g is not None else 0
            return None if g is None else (g, (h, h if phase == "context" else n_kv_heads))
        key = (precision, kv, n_heads, n_kv_heads, head_dim, window)
        g = self._attention_grid(f"{phase}_attention", key, (0, 1, 4, 5), (2, 3))
        return None if g is None else (g, tuple(g.key[2:4]))

    def context_attention_form(self, n_heads, n_kv_heads, head_dim, precision="bf16",
                               kv_precision=None, v_head_dim=None, window=0, mla=False):
        """Measured context attention of one layer (heads of one rank) as a
        :class:`ContextForm` over chunks, or None (no grid: the analytical model). MLA (``mla``)
        reads the ``context_mla`` grids by query heads. Memoized per shape."""
        memo = ("context", n_heads, n_kv_heads, head_dim, precision, kv_precision, v_head_dim,
                window, mla)
        if memo not in self._forms:
            found = self._attention_form("context", n_heads, n_kv_heads, head_dim, precision,
                                         kv_precision, window, mla)

            def shape(heads, kv_heads):
                return lambda chunks: self._chunks_analytic(
                    chunks, heads, kv_heads, head_dim, precision, kv_precision, v_head_dim)
            self._forms[memo] = None if found is None else ContextForm(
                found[0], shape(*found[1]), shape(n_heads, n_kv_heads),
                **nearest_scaling(found[0].grid, "context", shape, found[1], n_heads,
                                  n_kv_heads))
        return self._forms[memo]

    def decode_attention_form(self, n_heads, n_kv_heads, head_dim, precision="bf16",
                              kv_precision=None, kv_width=None, window=0, mla=False):
        """Measured decode attention of one layer as a :class:`DecodeForm` over (batch, total
        KV), or None. MLA reads ``generation_mla`` by query heads. Memoized per shape."""
        memo = ("generation", n_heads, n_kv_heads, head_dim, precision, kv_precision, kv_width,
                window, mla)
        if memo not in self._forms:
            found = self._attention_form("generation", n_heads, n_kv_heads, head_dim,
                                         precision, kv_precision, window, mla)

            def shape(heads, kv_heads):
                return lambda b, t: self._decode_analytic(b, t, heads, kv_heads, head_dim,
                                                          precision, kv_precision, kv_width)
            self._forms[memo] = None if found is None else DecodeForm(
                found[0], shape(*found[1]),
                **nearest_scaling(found[0].grid, "generation", shape, found[1], n_heads,
                                  n_kv_heads))
        return self._forms[memo]

    def gdn_context_form(self, shape, analytical):
        """One linear layer's measured prefill kernels (causal convolution + chunked gated
        delta rule) for ``shape`` (:class:`hetsim.perf.linear.GdnShape`, exact key), as a
        function of prefill chunks, or None. The grid is read at (chunks, mean new tokens);
        ``analytical(chunks)`` carries it past the grid's edges."""
        g = self._kernels.get("context_gdn", shape.key) if self._kernels is not None else None
        if g is None:
            return None
        grid = g.grid

        def uniform(p):
            return analytical([(p[1], p[1])] * max(1, round(p[0])))

        def form(chunks):
            n = len(chunks)
            return grid(lift((n, sum(q for q, _ in chunks) / n), grid.axes), uniform)
        return form

    def gdn_generation_form(self, shape, analytical):
        """One linear layer's measured decode kernels (convolution update + recurrence) for
        ``shape`` over the batch, ``analytical(batch)`` carrying it past the top, or None."""
        g = self._kernels.get("generation_gdn", shape.key) if self._kernels is not None \
            else None
        return None if g is None else UniformForm(g.grid, analytical)

    def moe_form(self, precision, weight_precision, hidden, inter, topk, experts, tp, ep,
                 distribution, analytical):
        """A whole MoE layer's routed experts as the runtime runs them, measured over tokens
        (``measured.UniformForm``; ``analytical(tokens)`` carries it past the grid), for exactly
        this layer's key ``(dtype, hidden, inter, topk, experts, tp, ep, distribution)``
        (``inter``: one expert's full intermediate size, as aiconfigurator keys it), or None.

        NOTE (equal-GPU rule): where this ``(tp, ep)`` split was not measured, the same layer
        split over the same number of GPUs another way is read instead, the nearest ``tp``
        first. With balanced routing each GPU then reads the same expert bytes and does the
        same FLOPs; the kernels differ in shape (TP: every expert's slice; EP: whole experts).
        Scored on the tables where both exist (``benchmarks/moe_split.py``):
        this is far closer than composing the layer from GEMMs (off 2-5x on mxfp4 experts)."""
        if self._kernels is None:
            return None
        dtypes = gemm_dtypes(precision, weight_precision)
        g = first_grid(self._kernels, "moe", [(d, hidden, inter, topk, experts, tp, ep,
                                               distribution) for d in dtypes])
        if g is None:
            have = [g.key for g in self._kernels.grids("moe")]
            g = first_grid(self._kernels, "moe", [k for d in dtypes for k in split_keys(
                have, (d, hidden, inter, topk, experts, tp, ep, distribution))])
        return None if g is None else UniformForm(g.grid, analytical)

