"""Scalar and probe fits: HBM efficiency and kernel overhead (device copy, weight-streaming
GEMMs, a trivial kernel), the iteration overhead (1- and 3-layer tiny reference probes), and
the measured all-reduce. Each sets a number of the profile's ``efficiency`` or
``calibration`` block; the curves are :mod:`.curves`' job.
"""
from __future__ import annotations

import dataclasses
import statistics

import numpy as np

from ..hardware import Accelerator
from ..perf import PerfModel, StepModel
from .curves import fit_curves, with_curves
from .reference import PROBE, PROBE_DEEP

__all__ = ["gemm_floor", "fit_scalars", "with_overheads", "device_only", "overheads",
           "model_kernels", "fit_allreduce"]


def gemm_floor(acc: Accelerator, rows) -> tuple[float, float] | None:
    """(fixed seconds per kernel, bytes/s) of memory-bound GEMMs: ``time = a + bytes / bw``
    fitted (least relative squares) over the GEMMs with m <= 16 that the roofline calls
    memory-bound, per precision, then the median over precisions. These are weight-streaming
    kernels as a decode step runs them, so ``a`` is what a real kernel costs beyond its bytes
    (launch, DRAM latency, split-K reduction) and ``bw`` what a well-tuned kernel gets from
    HBM. None where the fit is not trustworthy (fewer than 4 shapes, a non-positive term, or a
    median relative error over 20%)."""
    pm = PerfModel(acc, link=None)
    by: dict[str, dict[tuple[int, int], list]] = {}
    for r in rows:
        if r["op"] != "gemm" or r["m"] > 16:
            continue
        compute, memory = pm.gemm_parts(r["m"], r["n"], r["k"], r["precision"])
        if compute >= memory:
            continue
        nbytes = memory * pm.bandwidth                  # the bytes the model moves
        by.setdefault(r["precision"], {}).setdefault((r["n"], r["k"]), []).append(
            (nbytes, r["seconds"]))
    fits = []
    for shapes in by.values():
        if len(shapes) < 4:
            continue
        x = np.array([statistics.median(b for b, _ in v) for v in shapes.values()], dtype=float)
        y = np.array([statistics.median(t for _, t in v) for v in shapes.values()])
        if np.ptp(x) <= 0:
            continue
        slope, a = np.polyfit(x, y, 1, w=1 / y)
        if slope <= 0 or a <= 0 or np.median(np.abs(a + slope * x - y) / y) > 0.2:
            continue
        fits.append((float(a), float(1 / slope)))
    if not fits:
        return None
    return (statistics.median(f[0] for f in fits), statistics.median(f[1] for f in fits))


def fit_scalars(base: Accelerator, rows) -> tuple[Accelerator, bool]:
    """Scalars: HBM efficiency from the better of a device copy and the weight-streaming
    GEMMs; kernel overhead from the GEMMs' fixed cost, else from a trivial kernel. Also
    whether the GEMMs gave the kernel overhead."""
    eff = base.efficiency
    copies = [r for r in rows if r["op"] == "copy"]
    hbm = eff.hbm
    floor = gemm_floor(base, rows)
    bws = [statistics.median(r["bytes"] / r["seconds"] for r in copies)] if copies else []
    if floor:
        bws.append(floor[1])
    if bws:
        hbm = min(1.0, max(bws) / base.hbm_bandwidth)
    launches = [r["seconds"] for r in rows if r["op"] == "launch"]
    kernel = statistics.median(launches) * 1e6 if launches else eff.kernel_overhead_us
    if floor:
        kernel = floor[0] * 1e6
    return dataclasses.replace(base, efficiency=dataclasses.replace(
        eff, hbm=float(f"{hbm:.4g}"), kernel_overhead_us=float(f"{kernel:.4g}"))), bool(floor)


def with_overheads(s1: Accelerator, rows, keep_kernel: bool) -> tuple[Accelerator, float]:
    """Fit curves, read the probes against them, then set the iteration overhead, and the
    kernel overhead unless ``keep_kernel`` (the GEMMs gave it); also the probes' tiny-kernel
    cost in us (0 without probes). The caller re-fits the curves with the final overhead."""
    o = overheads(with_curves(s1, fit_curves(s1, rows)), rows)
    if o is None:
        return s1, 0.0
    kernel, iteration = o
    small_us = float(f"{kernel * 1e6:.4g}")
    if keep_kernel:                              # real kernels' fixed cost stands
        kernel = s1.efficiency.kernel_overhead_us * 1e-6
    # the base profile's iteration overhead is the serving engine's host work (scheduling,
    # sampling), which no device kernel shows; the probe measures the device's own part
    engine_ms = s1.efficiency.iteration_overhead_ms
    return dataclasses.replace(s1, efficiency=dataclasses.replace(
        s1.efficiency, kernel_overhead_us=float(f"{kernel * 1e6:.4g}"),
        iteration_overhead_ms=float(f"{engine_ms + iteration * 1e3:.4g}"))), small_us


def device_only(acc: Accelerator) -> Accelerator:
    """``acc`` without the serving engine's host overhead per iteration (what a bare torch
    reference iteration, which has no scheduler, should be compared with)."""
    engine_ms = acc.calibration.engine_overhead_ms if acc.calibration else \
        acc.efficiency.iteration_overhead_ms
    return dataclasses.replace(acc, efficiency=dataclasses.replace(
        acc.efficiency, iteration_overhead_ms=max(
            0.0, acc.efficiency.iteration_overhead_ms - engine_ms)))


def _without_overheads(acc: Accelerator, kernel_us: float = 0.0) -> PerfModel:
    return PerfModel(dataclasses.replace(acc, efficiency=dataclasses.replace(
        acc.efficiency, kernel_overhead_us=kernel_us, iteration_overhead_ms=0.0)), link=None)


def _probe(acc: Accelerator, rows, op: str) -> tuple[float, float] | None:
    """(median residual s, kernels per iteration) of the ``op`` probe rows: measured time less
    the step model's work with no kernel or iteration overhead; kernels as counted at
    measurement time, else as many as the step model charges."""
    cfg = PROBE if op == "probe" else PROBE_DEEP
    sel = [r for r in rows if r["op"] == op]
    if not sel:
        return None
    mc = cfg.model_config()
    res, kernels = [], []
    for r in sel:
        p = r["precision"]
        ctx = r["batch"] * (r["kv_len"] + 1)
        work = StepModel(mc, _without_overheads(acc), 1, p).decode_time(r["batch"], ctx)
        res.append(r["seconds"] - work)
        if r.get("kernels"):
            kernels.append(r["kernels"])
        else:   # what the step model charges: its time per ms of kernel overhead
            slow = StepModel(mc, _without_overheads(acc, 1000.0), 1, p).decode_time(r["batch"], ctx)
            kernels.append((slow - work) / 1e-3)
    return statistics.median(res), statistics.median(kernels)


def overheads(acc: Accelerator, rows) -> tuple[float, float] | None:
    """(kernel overhead s, iteration overhead s) from the probes: a 1-layer and a 3-layer tiny
    reference decode iteration, whose work is negligible. Their difference over the difference
    in kernels launched is the cost of one (tiny) kernel; what is left of the 1-layer probe is
    the device's fixed cost per iteration. With one probe, the launch measurement stands."""
    p1, p3 = _probe(acc, rows, "probe"), _probe(acc, rows, "probe_deep")
    if p1 is None:
        return None
    kernel = acc.efficiency.kernel_overhead_us * 1e-6
    if p3 is not None and p3[1] > p1[1] and p3[0] > p1[0]:
        kernel = (p3[0] - p1[0]) / (p3[1] - p1[1])
    return kernel, max(0.0, p1[0] - p1[1] * kernel)


def model_kernels(acc: Accelerator, cfg, precision: str, op: str, batch: int, n: int) -> float:
    """Kernels the step model charges for one reference iteration (prefill of ``batch`` x ``n``
    tokens, or decode of ``batch`` sequences at context ``n``)."""
    times = []
    for k_us in (0.0, 1000.0):
        step = StepModel(cfg.model_config(), _without_overheads(acc, k_us), 1, precision)
        times.append(step.prefill_time([n] * batch) if op.endswith("prefill")
                     else step.decode_time(batch, batch * (n + 1)))
    return (times[1] - times[0]) / 1e-3


def fit_allreduce(rows) -> dict[str, dict[str, float]]:
    """Per device count n: ``t = latency + 2(n-1)/n x bytes / bus_bandwidth`` by least squares
    over the measured sizes (nccl-tests' bus bandwidth, so counts compare). Needs two sizes."""
    out = {}
    by_n: dict[int, list] = {}
    for r in rows:
        if r["op"] == "allreduce" and r["devices"] > 1:
            by_n.setdefault(r["devices"], []).append((r["bytes"], r["seconds"]))
    for n, pts in sorted(by_n.items()):
        if len({b for b, _ in pts}) < 2:
            continue
        x, y = np.array(pts, dtype=float).T
        slope, lat = np.polyfit(x, y, 1)
        if lat < 0:                       # through the origin: latency below resolution
            lat, slope = 0.0, float((x @ y) / (x @ x))
        if slope <= 0:
            continue
        out[str(n)] = {"latency_s": float(f"{lat:.4g}"),
                       "bus_bandwidth_gb_s": float(f"{2 * (n - 1) / n / slope / 1e9:.4g}")}
    return out
