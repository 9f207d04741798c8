"""Shape-aware throughput corrections: what the model predicts for a measured op, the curve
fitted to (model / measured) factors, and held-out error before and after.

A knot is the median, over the measured shapes at that x, of (model time / measured time);
knots are constrained so that more work never takes less time (the correction grows at most
linearly in x, and the memory-bound GEMM correction never grows with m). Each path's
correction is fitted from the measurements that path binds.
"""
from __future__ import annotations

import dataclasses
import math
import statistics

import numpy as np

from ..config import build
from ..hardware import Accelerator, Calibration
from ..perf import PerfModel
from .csvio import CLASSES

__all__ = ["predict", "fit_curve", "fit_curves", "with_curves", "held_out", "op_errors"]


def predict(pm: PerfModel, r: dict) -> float:
    """What ``pm`` predicts for one measured op."""
    op, p = r["op"], r["precision"]
    if op == "gemm":
        return pm.gemm_time(r["m"], r["n"], r["k"], p)
    if op == "attn_prefill":
        return pm.attention_chunks_time([(r["seq"], r["seq"])] * r["batch"], r["heads"],
                                        r["kv_heads"], r["head_dim"], p)
    if op == "attn_decode":
        return pm.attention_decode_time(r["batch"], r["kv_len"], r["heads"], r["kv_heads"],
                                        r["head_dim"], p)
    raise ValueError(op)


def fit_curve(points: list[tuple[float, float]], envelope: bool = False,
           max_slope: float = 1.0) -> dict:
    """Knots at each distinct log2(x): the median factor there, then the closest knots under
    which time never falls as work grows (see the isotonic step below).

    ``envelope``: for one path of a two-path roofline fitted from the same measurements; knots
    at bins two octaves wide, valued at the 90th percentile of the factors in the bin, since
    points where the other path binds understate this path's throughput. ``max_slope``: how fast
    (in log-log) the correction may grow with x: 1 where work is proportional to x, 0 where it
    is not (memory-bound GEMMs move about the same bytes at m=1 and m=16)."""
    by: dict[float, list[float]] = {}
    if envelope:
        groups: dict[int, list] = {}
        for x, f in points:
            groups.setdefault(int(math.log2(x) // 2), []).append((math.log2(x), f))
        for g in groups.values():
            by[round(statistics.median(lx for lx, _ in g), 6)] = [
                float(np.percentile([f for _, f in g], 90))]
    else:   # half-octave bins (a grid of powers of two gives one knot per measured x)
        groups = {}
        for x, f in points:
            groups.setdefault(round(2 * math.log2(x)), []).append((math.log2(x), f))
        for g in groups.values():
            by[round(statistics.median(lx for lx, _ in g), 6)] = [f for _, f in g]
    xs = sorted(by)
    ys = [statistics.median(by[x]) for x in xs]
    ws = [len(by[x]) for x in xs]
    # time ~ x**max_slope / scale must not fall as x grows, i.e. h = log2(scale) -
    # max_slope * log2(x) must not rise: the closest such h (weighted least squares, pool
    # adjacent violators), so one slow outlier is averaged with its neighbours instead of
    # capping every knot after it
    h = [math.log2(y) - max_slope * x for x, y in zip(xs, ys)]
    blocks: list[list[float]] = []     # [weighted mean, weight, count]
    for hv, w in zip(h, ws):
        blocks.append([hv, w, 1])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            b = blocks.pop()
            a = blocks[-1]
            a[0] = (a[0] * a[1] + b[0] * b[1]) / (a[1] + b[1])
            a[1] += b[1]
            a[2] += b[2]
    h = [b[0] for b in blocks for _ in range(b[2])]
    ys = [2 ** (hv + max_slope * x) for x, hv in zip(xs, h)]
    return {"log2_x": [float(x) for x in xs], "scale": [float(f"{y:.6g}") for y in ys]}


def fit_curves(acc: Accelerator, rows) -> dict:
    pm = PerfModel(acc, link=None)
    pts: dict[tuple[str, str], list] = {}
    for r in rows:
        op, p = r["op"], r["precision"]
        if op not in CLASSES:
            continue
        # the factor that makes a path reproduce this measurement (less the launch overhead)
        avail = max(r["seconds"] - pm.kernel_overhead, 0.05 * r["seconds"])
        add = lambda key, x, model_s: pts.setdefault((key, p), []).append(  # noqa: E731
            (x, model_s / avail))
        if op == "gemm":
            # each path's correction comes from the GEMMs that path binds (datasheet roofline)
            compute, memory = pm.gemm_parts(r["m"], r["n"], r["k"], p)
            if compute >= memory:
                add("gemm", pm.gemm_rows(r["m"], r["n"], r["k"]), compute)
            else:
                add("gemm_memory", r["m"], memory)
        elif op == "attn_prefill":
            compute, _, q = pm.attention_prefill_parts([(r["seq"], r["seq"])] * r["batch"],
                                                       r["heads"], r["kv_heads"], r["head_dim"], p)
            add("attention_prefill", q, compute)
        else:   # decode attention: both paths, each later taken at its upper envelope
            compute, memory, nbytes = pm.attention_decode_parts(
                r["batch"], r["batch"] * r["kv_len"], r["heads"], r["kv_heads"], r["head_dim"], p)
            add("attention_decode", compute * pm.peak(p), compute)
            add("attention_decode_memory", nbytes, memory)
    out: dict[str, dict] = {"gemm": {}, "gemm_memory": {}, "attention_prefill": {},
                            "attention_decode": {}, "attention_decode_memory": {}}
    for (cls, prec), points in pts.items():
        out[cls][prec] = fit_curve(points, envelope=cls.startswith("attention_decode"),
                                max_slope=0.0 if cls == "gemm_memory" else 1.0)
    return out


def with_curves(acc: Accelerator, curves: dict, **cal) -> Accelerator:
    c = build(Calibration, {"device": cal.pop("device", "?"), **curves, **cal})
    return dataclasses.replace(acc, calibration=c)


def held_out(rows) -> list[bool]:
    """One (n, k) in three and every fourth m for GEMMs; every third attention shape."""
    gm = sorted({r["m"] for r in rows if r["op"] == "gemm"})
    nks = sorted({(r["n"], r["k"]) for r in rows if r["op"] == "gemm"})
    out, counter = [], {}
    for r in rows:
        if r["op"] == "gemm":
            i_m = gm.index(r["m"])
            inner = 0 < i_m < len(gm) - 1
            out.append(nks.index((r["n"], r["k"])) % 3 == 2 or (inner and i_m % 4 == 3))
        elif r["op"] in ("attn_prefill", "attn_decode"):
            c = counter[r["op"]] = counter.get(r["op"], -1) + 1
            out.append(c % 3 == 2)
        else:
            out.append(False)
    return out


def op_errors(pm_before: PerfModel, pm_after: PerfModel, rows) -> dict:
    acc = {}
    for op, cls in CLASSES.items():
        sel = [r for r in rows if r["op"] == op]
        if not sel:
            continue
        b = [abs(predict(pm_before, r) - r["seconds"]) / r["seconds"] for r in sel]
        a = [abs(predict(pm_after, r) - r["seconds"]) / r["seconds"] for r in sel]
        acc[cls] = {"n": len(sel), "before_median": float(np.median(b)),
                    "before_p90": float(np.percentile(b, 90)),
                    "after_median": float(np.median(a)), "after_p90": float(np.percentile(a, 90))}
    return acc
