"""Fit a profile's efficiency curves to measurements, and say how accurate the result is.

The fitted model keeps the performance model's structure (roofline, tile and wave
quantization) and calibrates what a datasheet cannot know:
- ``efficiency.hbm`` from the device copy, ``efficiency.kernel_overhead_us`` from a trivial
  kernel, ``efficiency.iteration_overhead_ms`` from a tiny reference-transformer iteration;
- shape-aware throughput corrections (:class:`hetsim.hardware.Curve`): GEMM compute vs m (small-m
  kernels, wave effects the tile model misses), prefill attention compute vs query tokens
  (short contexts), decode attention compute vs FLOPs and memory throughput vs bytes read.
  Each path's correction is fitted from the measurements that path binds. A knot is the median,
  over the measured shapes at that x, of (model time / measured time); knots are constrained so
  that more work never takes less time (the correction grows at most linearly in x, and the
  memory-bound GEMM correction never grows with m).
Accuracy is measured on held-out shapes: one (n, k) pair in three and every fourth m (GEMM),
every third shape (attention), fitted on the rest.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import math
import statistics
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from ..config import build, to_dict
from ..errors import ConfigError
from ..hardware import Accelerator
from ..perf import PerfModel
from ..precision import PRECISION_BYTES, unsupported

CSV_COLUMNS = ("op", "precision", "m", "n", "k", "batch", "seq", "kv_len", "heads", "kv_heads",
               "head_dim", "bytes", "devices", "kernels", "seconds", "noise")
#: optional columns: read where present (older files and other tools may lack them). ``noise``
#: is the relative spread of a timing's repeats (interquartile range / median)
#: Largest shape value (m, n, k, ...) a measurement row may give: far past any real kernel.
MAX_SHAPE = 2 ** 40
OPTIONAL = {"kernels": (int, "a whole number", lambda v: True),
            "noise": (float, "a number >= 0", lambda v: math.isfinite(v) and v >= 0)}
#: which shape columns each op needs
OP_SHAPES = {"gemm": ("m", "n", "k"), "attn_prefill": ("batch", "seq", "heads", "kv_heads",
                                                       "head_dim"),
             "attn_decode": ("batch", "kv_len", "heads", "kv_heads", "head_dim"),
             "copy": ("bytes",), "h2d": ("bytes",), "d2h": ("bytes",), "launch": (),
             "ref_prefill": ("batch", "seq"), "ref_decode": ("batch", "kv_len"),
             "probe": ("batch", "kv_len"), "probe_deep": ("batch", "kv_len"),
             "allreduce": ("bytes", "devices")}
CLASSES = {"gemm": "gemm", "attn_prefill": "attention_prefill", "attn_decode": "attention_decode"}


# --- CSV ----------------------------------------------------------------------------------
def csv_text(rows) -> str:
    """The measurements as CSV text (columns :data:`CSV_COLUMNS`)."""
    f = io.StringIO(newline="")
    w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in CSV_COLUMNS})
    return f.getvalue()


def write_csv(rows, path) -> None:
    with open(path, "w", newline="") as f:
        f.write(csv_text(rows))


def read_csv(path) -> list[dict]:
    """Read measurements; every problem is a one-line ConfigError naming file, line, column."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", file=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text (a binary file?)", file=str(path)) from None
    if "\0" in text:
        raise ConfigError("binary file (holds NUL bytes), not a CSV", file=str(path))
    try:
        return _read_rows(csv.DictReader(io.StringIO(text, newline="")), path)
    except csv.Error as e:
        raise ConfigError(f"not a CSV file: {e}", file=str(path)) from None


def _read_rows(reader, path) -> list[dict]:
    reader.fieldnames = [c.strip() for c in reader.fieldnames or []]
    cols = reader.fieldnames
    dup = next((c for c in cols if cols.count(c) > 1), None)
    if dup is not None:
        raise ConfigError(f"column {dup!r} appears twice in the header", file=f"{path}:1")
    for need in ("op", "precision", "seconds"):
        if need not in cols:
            raise ConfigError(f"missing column {need!r}; columns are "
                              f"{', '.join(CSV_COLUMNS)} (see docs/calibration.md)",
                              file=str(path))
    rows = []
    for raw in reader:
        where = f"{path}:{reader.line_num}"    # the file's line, blank lines counted
        op = (raw.get("op") or "").strip()
        if op not in OP_SHAPES:
            from ..errors import suggest
            raise ConfigError(f"unknown op {op!r}" + suggest(op, OP_SHAPES)
                              + f"; one of {', '.join(OP_SHAPES)}", file=where, path="op")
        prec = (raw.get("precision") or "").strip()
        if prec not in PRECISION_BYTES:
            raise ConfigError(f"unknown precision {prec!r}", file=where,
                              path="precision")
        row = {"op": op, "precision": prec}
        for c in (*OP_SHAPES[op], "seconds"):
            v = (raw.get(c) or "").strip()
            try:
                x = float(v)
            except ValueError:
                raise ConfigError(f"{op} needs a number in column {c!r}, got {v!r}",
                                  file=where, path=c) from None
            if not math.isfinite(x) or x <= 0:
                raise ConfigError(f"must be > 0, got {v}", file=where, path=c)
            if c != "seconds" and (x != int(x) or x > MAX_SHAPE):
                raise ConfigError(f"a shape must be a whole number up to {MAX_SHAPE}, "
                                  f"got {v}", file=where, path=c)
            row[c] = x if c == "seconds" else int(x)
        for c, (kind, what, ok) in OPTIONAL.items():
            v = (raw.get(c) or "").strip()
            if v:
                try:
                    row[c] = kind(v)
                except ValueError:
                    row[c] = None
                if row[c] is None or not ok(row[c]):
                    raise ConfigError(f"column {c!r} must be {what}, got {v!r}",
                                      file=where, path=c)
        rows.append(row)
    if not any(r["op"] in CLASSES for r in rows):
        raise ConfigError("no gemm or attention measurements to fit", file=str(path))
    return rows


# --- predictions --------------------------------------------------------------------------
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


def _curve(points: list[tuple[float, float]], envelope: bool = False,
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


# --- fitting ------------------------------------------------------------------------------
@dataclass
class FitResult:
    profile: dict                      # YAML-ready, loadable as an Accelerator
    accuracy: dict                     # op class -> {n, before_median, before_p90, after_...}
    base: Accelerator
    fitted: Accelerator
    held_out: list[dict] = field(default_factory=list)


def _held_out(rows) -> list[bool]:
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


def _stage1(base: Accelerator, rows) -> tuple[Accelerator, bool]:
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


def _with_overheads(s1: Accelerator, rows, keep_kernel: bool) -> tuple[Accelerator, float]:
    """Fit curves, read the probes against them, then set the iteration overhead, and the
    kernel overhead unless ``keep_kernel`` (the GEMMs gave it); also the probes' tiny-kernel
    cost in us (0 without probes). The caller re-fits the curves with the final overhead."""
    o = overheads(_with_curves(s1, _curves(s1, rows)), rows)
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


def _curves(acc: Accelerator, rows) -> dict:
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
        out[cls][prec] = _curve(points, envelope=cls.startswith("attention_decode"),
                                max_slope=0.0 if cls == "gemm_memory" else 1.0)
    return out


def _with_curves(acc: Accelerator, curves: dict, **cal) -> Accelerator:
    from ..hardware import Calibration
    c = build(Calibration, {"device": cal.pop("device", "?"), **curves, **cal})
    return dataclasses.replace(acc, calibration=c)


def _errors(pm_before: PerfModel, pm_after: PerfModel, rows) -> dict:
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


def base_accelerator(raw: dict) -> Accelerator:
    """The datasheet profile a raw profile dict describes (a calibrated one is stripped back to
    its base: its calibration removed and its original efficiency restored)."""
    raw = dict(raw)
    cal = raw.pop("calibration", None)
    if cal and cal.get("base_efficiency"):
        raw["efficiency"] = cal["base_efficiency"]
    return build(Accelerator, raw)


def _without_overheads(acc: Accelerator, kernel_us: float = 0.0) -> PerfModel:
    return PerfModel(dataclasses.replace(acc, efficiency=dataclasses.replace(
        acc.efficiency, kernel_overhead_us=kernel_us, iteration_overhead_ms=0.0)), link=None)


def _probe(acc: Accelerator, rows, op: str) -> tuple[float, float] | None:
    """(median residual s, kernels per iteration) of the ``op`` probe rows: measured time less
    the step model's work with no kernel or iteration overhead; kernels as counted at
    measurement time, else as many as the step model charges."""
    from ..perf import StepModel
    from .reference import PROBE, PROBE_DEEP
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
    from ..perf import StepModel
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


def fit_profile(base_raw: dict, rows: list[dict], *, name: str | None = None, device: str = "?",
                torch_version: str = "", driver: str = "", grid: str = "",
                measurements: str = "", timing: str = "",
                measured: str | None = None) -> FitResult:
    """Fit ``rows`` (measurement dicts) on top of the datasheet profile ``base_raw``."""
    base = base_accelerator(base_raw)
    for r in rows:
        why = unsupported(base, r["precision"]) if r["op"] in CLASSES else None
        if why:
            raise ConfigError(f"{why}; measured {r['op']} rows in it")
    # held-out accuracy: fit on the training part, score the held-out part
    mask = _held_out(rows)
    train = [r for r, h in zip(rows, mask) if not h]
    held = [r for r, h in zip(rows, mask) if h and r["op"] in CLASSES]
    s1, from_gemms = _stage1(base, train)
    s1, _ = _with_overheads(s1, train, from_gemms)
    fitted_train = _with_curves(s1, _curves(s1, train))
    accuracy = _errors(PerfModel(base, link=None), PerfModel(fitted_train, link=None), held)
    # the profile: fit on everything
    s1, from_gemms = _stage1(base, rows)
    s1, small_us = _with_overheads(s1, rows, from_gemms)
    curves = _curves(s1, rows)
    base_eff = {k: v for k, v in to_dict(base.efficiency).items()}
    when = measured or date.today().isoformat()
    cal = dict(device=device, torch=torch_version, driver=driver, date=when,
               base_profile=base.name, grid=grid, measurements=measurements,
               accuracy={k: {kk: float(f"{vv:.4g}") for kk, vv in v.items()}
                         for k, v in accuracy.items()},
               allreduce=fit_allreduce(rows),
               engine_overhead_ms=base.efficiency.iteration_overhead_ms,
               small_kernel_us=small_us,
               notes="held-out accuracy: fitted without the held-out shapes"
               + (f"; timing: {timing}" if timing else ""))
    fitted = _with_curves(s1, curves, **cal)
    out = to_dict(fitted)
    out["calibration"]["base_efficiency"] = base_eff
    if name:
        out["name"] = name
    out["description"] = base.description.replace(" (datasheet-level)", "").removesuffix(
        " (calibrated)") + " (calibrated)"
    out["aliases"] = []
    eff = out["efficiency"]
    eff["note"] = (f"calibrated by hetsim calibrate on {device}: hbm from the better of a "
                   f"device copy and weight-streaming GEMMs, kernel overhead from the GEMMs' "
                   f"fixed cost (else a trivial kernel), iteration overhead = the base's engine "
                   f"overhead + the device's own (1- and 3-layer probes); shape-aware curves "
                   f"under calibration")
    out["sources"] = [s for s in out.get("sources") or [] if s.get("key") != "CAL"] + [{
        "key": "CAL", "ref": f"hetsim calibrate, {device}, torch {torch_version}, {when}",
        "note": f"raw: {measurements}"}]
    return FitResult(out, accuracy, base, fitted, held)
