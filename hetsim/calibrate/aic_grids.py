"""Grids from table points (:mod:`hetsim.calibrate.aic`'s second half): fill a key's points
into a grid in the ratio to the datasheet model (:func:`model_base`, :func:`fill_options`),
read held-out points off such grids, score them, and round the times shipped.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd

from ..perf import PerfModel
from ..perf.grid import LogGrid, fill_log_grid
from ..perf.kernels import OPS, KernelGrid
from ..perf.linear import GdnShape

__all__ = ["GEMM_FORMATS", "GRID_FILL", "fill_options", "model_base", "fit_grids",
           "predict_grids", "datasheet_times", "score", "round_times", "sig", "plain"]

#: table gemm dtype -> (compute precision, weight precision) of the datasheet model
GEMM_FORMATS = {"bf16": ("bf16", None), "fp16": ("fp16", None), "fp8": ("fp8", None),
                "fp8-block": ("fp8", None), "fp4": ("fp4", None),
                "w8a16-int": ("bf16", "int8"), "w4a16-int": ("bf16", "int4"),
                "w8a8-int-smoothquant": ("int8", None)}
#: how a grid's holes are filled per op (``fill_log_grid``'s options), chosen on a validation
#: split inside the fit rows (DESIGN.md, "Kernel databases"), never on held-out rows: attention
#: also along the diagonals, in the smoothest direction (a cache cliff runs along equal work)
GRID_FILL = {"context_attention": {"smoothest": True, "diagonals": True},
             "generation_attention": {"smoothest": True, "diagonals": True}}


def fill_options(op: str, key: tuple) -> dict:
    """``fill_log_grid``'s options for the grid of ``op`` at ``key`` (:data:`GRID_FILL`).
    NOTE: a windowed attention kernel saturates in length, so the anti-diagonal is no line of
    equal work for it: its grid fills along the axes only (with diagonals, H100 vLLM's
    window-128 decode cells drifted ~20% down past the measured lengths)."""
    opts = GRID_FILL.get(op, {})
    if op.endswith("_attention") and key[5] > 0:
        opts = {k: v for k, v in opts.items() if k != "diagonals"}
    return opts


def model_base(pm: PerfModel, op: str, key: tuple):
    """The datasheet model's seconds at a point of ``op``'s grid for ``key`` (None where it
    has no such op or format). Holes are filled, and the held-out points interpolated, in
    log(measured / this): the model carries wave quantization, launch floors and growth past
    a ragged table's edge, the grid the residual. A windowed attention's base attends to at
    most ``window`` tokens (the op model has no window; the tables saturate there)."""
    f, acc = dict(zip(OPS[op][0], key)), pm.acc
    if op == "gemm":
        p, w = GEMM_FORMATS.get(f["dtype"], (None, None))
        return None if not p or not acc.supports(p) else \
            (lambda x: pm.gemm_time(int(x[0]), int(x[1]), int(x[2]), p, w))
    if op == "allreduce":
        return None if pm.link is None else \
            (lambda x: pm.allreduce_time(float(x[0]), int(f["gpus"])))
    if op.endswith("_gdn"):      # bf16 activations, the float32 state (the tables' runtimes')
        g = GdnShape(*key)
        if op == "generation_gdn":
            return lambda x: g.decode_time(pm, int(x[0]))
        return lambda x: g.prefill_time(pm, [(int(x[1]), int(x[1]))] * int(x[0]))
    if not op.endswith("_attention") or not acc.supports(f["dtype"]):
        return None
    heads = (int(f["heads"]), int(f["kv_heads"]), int(f["head_dim"]), f["dtype"], f["kv_dtype"])
    win = int(f["window"])
    if op == "generation_attention":
        return lambda x: pm.attention_decode_time(
            int(x[0]), min(int(x[1]), win) if win > 0 else int(x[1]), *heads)

    def context(x):
        batch, isl = int(x[0]), int(x[1])
        t = pm.attention_chunks_time([(isl, isl)] * batch, *heads)
        return t * (isl * win - win * win / 2) / (isl * isl / 2) if 0 < win < isl else t
    return context


def _usable(axes, base):
    """``base``, memoized per point, where it is finite and > 0 at every node of ``axes``
    (else None). The memo spares the fill and the grid evaluating every node again."""
    if base is None:
        return None
    memo = functools.lru_cache(maxsize=None)(base)

    def cached(point):
        return memo(tuple(point))
    try:
        LogGrid(axes, np.ones([len(a) for a in axes]), cached)
    except ValueError:
        return None
    return cached



def plain(v):
    return v.item() if isinstance(v, np.generic) else v


def fit_grids(op: str, points: pd.DataFrame, pm: PerfModel | None = None
              ) -> tuple[list[KernelGrid], dict[str, int]]:
    """One grid per key over every combination of the key's measured axis values; holes
    filled by fill_log_grid, in the ratio to the datasheet model ``pm`` where it models the
    key (:func:`model_base`). A grid the fill cannot complete is dropped and counted.

    NOTE: measurements stay as measured, dips and one-off slow repeats included. Lowering each
    cell to the fastest larger shape (a smaller problem can run padded as a larger one) makes
    step times monotone in work, but on H100 vLLM it lowered 70k of 107k GEMM cells (kernel
    choice makes many larger shapes faster) and raised the held-out GEMM p90 from 12% to 20%
    and MoE's from 21% to 24%; lifting dips raised it too (DESIGN.md, "Kernel databases")."""
    keys, axes_names = list(OPS[op][0]), list(OPS[op][1])
    grids, info = [], {"grids": 0, "cells": 0, "cells filled": 0, "grids dropped": 0}
    for key, part in points.groupby(keys, sort=True):
        key = tuple(plain(v) for v in (key if isinstance(key, tuple) else (key,)))
        axes = [np.unique(part[a].to_numpy(dtype=float)) for a in axes_names]
        cube = np.full([len(a) for a in axes], np.nan)
        idx = tuple(np.searchsorted(a, part[n].to_numpy(dtype=float))
                    for a, n in zip(axes, axes_names))
        cube[idx] = part["seconds"].to_numpy(dtype=float)
        base = _usable(axes, model_base(pm, op, key)) if pm is not None else None
        t, holes = fill_log_grid(axes, cube, base, **fill_options(op, key))
        if not np.all(np.isfinite(t)):
            info["grids dropped"] += 1
            continue
        measured = ~np.isnan(cube)
        grids.append(KernelGrid(op, key, tuple(axes), t.astype(np.float32),
                                None if measured.all() else measured))
        info["grids"] += 1
        info["cells"] += int(t.size)
        info["cells filled"] += holes
    return grids, info


def predict_grids(op: str, grids: list[KernelGrid], rows: pd.DataFrame,
                   pm: PerfModel | None = None) -> np.ndarray:
    """Each point's time off its key's grid, interpolated in the ratio to ``pm``'s model
    where it models the key (past the edge: the edge ratio times the model)."""
    by = {g.key: LogGrid(g.axes, g.seconds, _usable(g.axes, model_base(pm, op, g.key)))
          if pm is not None else g.grid for g in grids}
    keys, axes = list(OPS[op][0]), list(OPS[op][1])
    out = np.full(len(rows), np.nan)
    for i, r in enumerate(rows[keys + axes].itertuples(index=False)):
        g = by.get(tuple(plain(v) for v in r[:len(keys)]))
        if g is not None:
            out[i] = g(r[len(keys):])
    return out


def datasheet_times(pm, op: str, rows: pd.DataFrame) -> np.ndarray:
    """The datasheet model's seconds per point (NaN: it does not model the op or format)."""
    out = np.full(len(rows), np.nan)
    acc = pm.acc
    for i, r in enumerate(rows.itertuples(index=False)):
        if op == "gemm":
            p, w = GEMM_FORMATS.get(r.dtype, (None, None))
            if p and acc.supports(p):
                out[i] = pm.gemm_time(int(r.m), int(r.n), int(r.k), p, w)
        elif op == "allreduce" and pm.link:
            out[i] = pm.allreduce_time(float(r.bytes), int(r.gpus))
        elif op.endswith("_gdn"):
            n = len(OPS[op][0])
            out[i] = model_base(pm, op, tuple(r[:n]))(tuple(r[n:n + len(OPS[op][1])]))
        elif op.endswith("attention") and r.window == 0 and acc.supports(r.dtype):
            heads = (int(r.heads), int(r.kv_heads), int(r.head_dim))
            if op == "context_attention":
                out[i] = pm.attention_chunks_time([(int(r.isl), int(r.isl))] * int(r.batch),
                                                  *heads, r.dtype, r.kv_dtype)
            else:
                out[i] = pm.attention_decode_time(int(r.batch), int(r.kv), *heads, r.dtype,
                                                  r.kv_dtype)
    return out


def score(measured, predicted) -> tuple[int, float, float]:
    m, p = np.asarray(measured, float), np.asarray(predicted, float)
    ok = ~np.isnan(p)
    if not ok.any():
        return 0, math.nan, math.nan
    e = np.abs(p[ok] / m[ok] - 1.0)
    return int(ok.sum()), float(np.median(e)), float(np.percentile(e, 90))


#: significant bits of the times shipped (float32 has 24): at most 2^-12 = 2.4e-4 relative, a
#: hundredth of the tables' own repeat-to-repeat spread, and half the file size
TIME_BITS = 12


def round_times(t: np.ndarray, bits: int = TIME_BITS) -> np.ndarray:
    """float32 times rounded to ``bits`` significant bits (to nearest)."""
    drop = 24 - bits
    u = np.asarray(t, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + (1 << (drop - 1))) >> drop << drop
    return u.astype(np.uint32).view(np.float32)


def sig(x: float) -> float:
    return float(f"{x:.4g}")
