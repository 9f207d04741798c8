"""A runtime profile from aiconfigurator-core's measured kernel tables (no torch).

``build(system, runtime)`` turns one system x runtime's tables (:mod:`hetsim.kerneldb`) into
the datasheet profile of the same part plus ``runtime:`` and a ``calibration:`` block whose
``kernels:`` names an ``.npz`` of :class:`hetsim.perf.kernels.KernelGrid` s (one per op and
key, every cell filled by :func:`hetsim.perf.grid.fill_log_grid`). The shipped grids are fitted
on every row; the accuracy it reports is the same fit made without a held-out fraction of
shapes (:func:`hetsim.kerneldb.held_out`) and scored on them, beside the datasheet model's
error on the same rows.

Table rows -> grid points (keys and axes as :data:`hetsim.perf.kernels.OPS` names them):
gemm (dtype) over (m, n, k); attention (dtype, kv_dtype, heads, kv_heads, head_dim, window)
over (batch, isl) for context rows without a cached prefix (``step`` 0) and over (batch, kv =
isl + step) for generation; all-reduce (dtype, gpus) over bytes = message_size elements x the
dtype's bytes, CUDA-graph rows where a shape has one; MoE (dtype, hidden, inter, topk,
experts, tp, ep, distribution) over tokens; MLA (dtype, kv_dtype, heads per rank) like
attention; quantize (dtype) over (m, k) = ``compute_scale`` + ``scale_matrix`` of one shape
(a dynamic per-token quantization of an m x k activation). Of several kernels timed for one
point, the fastest. Every row not used is counted by reason in the profile.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import yaml

from .. import kerneldb
from ..config import read_yaml
from ..errors import ConfigError, match_name
from ..hardware import _index, load_accelerator, profile_dirs
from ..perf import PerfModel
from ..perf.grid import LogGrid, fill_log_grid
from ..perf.kernels import OPS, KernelGrid, MeasuredKernels
from ..precision import PRECISION_BYTES

__all__ = ["AicProfile", "build", "fit_grids", "held_out_fit", "package_version",
           "profile_text", "resolve_system", "round_times"]

#: hetsim op -> the kerneldb tables it is built from
SOURCES = {"gemm": ("gemm",), "context_attention": ("context_attention",),
           "generation_attention": ("generation_attention",), "allreduce": ("allreduce",),
           "moe": ("moe",), "context_mla": ("context_mla",),
           "generation_mla": ("generation_mla",), "quantize": ("compute_scale", "scale_matrix")}
_ATTN = {"dtype": "attn_dtype", "kv_dtype": "kv_cache_dtype", "heads": "num_heads",
         "kv_heads": "num_key_value_heads", "head_dim": "head_dim", "window": "window_size",
         "batch": "batch_size", "isl": "isl"}
_MLA = {"dtype": "mla_dtype", "kv_dtype": "kv_cache_dtype", "heads": "num_heads",
        "batch": "batch_size", "isl": "isl"}
#: hetsim op -> {key or axis field: table column} (kv, bytes and quantize's sum are derived)
COLUMNS = {
    "gemm": {"dtype": "gemm_dtype", "m": "m", "n": "n", "k": "k"},
    "context_attention": _ATTN, "generation_attention": _ATTN,
    "allreduce": {"dtype": "allreduce_dtype", "gpus": "num_gpus"},
    "moe": {"dtype": "moe_dtype", "hidden": "hidden_size", "inter": "inter_size", "topk": "topk",
            "experts": "num_experts", "tp": "moe_tp_size", "ep": "moe_ep_size",
            "distribution": "distribution", "tokens": "num_tokens"},
    "context_mla": _MLA, "generation_mla": _MLA,
    "quantize": {"dtype": "quant_dtype", "m": "m", "k": "k"},
}
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
    """``base`` where it is finite and > 0 at every node of ``axes`` (else None)."""
    if base is None:
        return None
    try:
        LogGrid(axes, np.ones([len(a) for a in axes]), base)
    except ValueError:
        return None
    return base


@dataclasses.dataclass
class AicProfile:
    """What :func:`build` returns: the YAML-ready profile and the grids its ``kernels:`` names."""
    profile: dict
    kernels: MeasuredKernels


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("aiconfigurator-core")
    except PackageNotFoundError:
        return "unknown"


def resolve_system(system: str, root=None) -> str:
    """An aiconfigurator system name (``h100_sxm``), or a name or alias of the hetsim profile
    it maps to (``h100-sxm``, ``H100``)."""
    have = sorted(set(kerneldb.catalog(root).system))
    try:
        return match_name(system, have, "aiconfigurator system")
    except ConfigError as e:
        back = {v: k for k, v in kerneldb.SYSTEMS.items() if k in have}
        try:
            name = load_accelerator(system + "@datasheet").name
        except ConfigError:
            raise e from None
        if name not in back:
            raise e from None
        return back[name]


# --- table rows -> points ------------------------------------------------------------------
def _allreduce_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Eager rows dropped where the same shape was timed as a CUDA graph (what serving replays);
    a system timed only eagerly keeps them."""
    mode = (df["backend"] if "backend" in df.columns else df["kernel_source"]).astype(str)
    eager = mode.str.contains("eager").to_numpy()
    shape = ["allreduce_dtype", "num_gpus", "message_size"]
    graphed = df[~eager].set_index(shape).index
    drop = eager & df.set_index(shape).index.isin(graphed)
    return df[~drop], int(drop.sum())


def _points(op: str, df: pd.DataFrame, zero_ok: bool = False
            ) -> tuple[pd.DataFrame, dict[str, int]]:
    """One table's rows as grid points: key and axis columns (perf.kernels names), seconds
    (> 0; >= 0 with ``zero_ok``, for a part of a sum)."""
    dropped: dict[str, int] = {}
    for col, default in (("window_size", 0), ("step", 0), ("beam_width", 1)):
        if "attention" in op and col not in df.columns:
            df = df.assign(**{col: default})
    if "beam_width" in df.columns:
        keep = (df["beam_width"] == 1).to_numpy()
        dropped["beam search (beam_width > 1)"] = int((~keep).sum())
        df = df[keep]
    if op.startswith("context_"):
        keep = (df["step"] == 0).to_numpy()
        dropped["context after a cached prefix (step > 0)"] = int((~keep).sum())
        df = df[keep]
    if op == "allreduce":
        df, n = _allreduce_rows(df)
        dropped["eager all-reduce (a graph row of the shape exists)"] = n
    out = pd.DataFrame({f: df[c].to_numpy() for f, c in COLUMNS[op].items()})
    if op.startswith("generation_"):
        out["kv"] = (df["isl"] + df["step"]).to_numpy()
        out = out.drop(columns="isl")
    if "window" in out.columns:
        out["window"] = out["window"].clip(lower=0)       # -1 and 0 both mean full attention
    if op == "allreduce":
        out["bytes"] = df["message_size"].to_numpy() * out["dtype"].map(PRECISION_BYTES).to_numpy()
    out["seconds"] = df["latency_s"].to_numpy(dtype=float)
    fields = list(OPS[op][0]) + list(OPS[op][1])
    out = out[fields + ["seconds"]]
    for f in fields:
        if f not in ("dtype", "kv_dtype", "distribution"):
            out[f] = out[f].astype(np.int64) if (out[f] % 1 == 0).all() else out[f]
    t = out["seconds"].to_numpy()
    bad = ~np.isfinite(t) | ((t < 0) if zero_ok else (t <= 0))
    for a in OPS[op][1]:
        bad |= out[a].to_numpy() <= 0
    dropped["non-positive time or axis value"] = int(bad.sum())
    out = out[~bad]
    best = out.sort_values("seconds", kind="stable").drop_duplicates(fields)
    dropped["merged: same point, slower kernel"] = len(out) - len(best)
    return best.sort_values(fields, ignore_index=True), {k: v for k, v in dropped.items() if v}


def _quantize(frames: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, dict[str, int]]:
    """compute_scale + scale_matrix per shape (both tables name the same shapes). SGLang's
    compute_scale is 0 (its quantization kernel finds the scale as it goes): a part of a sum
    may be 0."""
    parts, dropped = [], {}
    for name in ("compute_scale", "scale_matrix"):
        p, d = _points("quantize", frames[name], zero_ok=name == "compute_scale")
        parts.append(p.rename(columns={"seconds": name}))
        dropped.update({f"{name}: {k}": v for k, v in d.items()})
    both = parts[0].merge(parts[1], on=["dtype", "m", "k"], how="outer")
    one = both[["compute_scale", "scale_matrix"]].isna().any(axis=1)
    if one.any():
        dropped["quantize shape in one table only"] = int(one.sum())
    both = both[~one]
    both = both.assign(seconds=both["compute_scale"] + both["scale_matrix"])
    return both[["dtype", "m", "k", "seconds"]].reset_index(drop=True), dropped


# --- points -> grids -----------------------------------------------------------------------
def _plain(v):
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
        key = tuple(_plain(v) for v in (key if isinstance(key, tuple) else (key,)))
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


def _predict_grids(op: str, grids: list[KernelGrid], rows: pd.DataFrame,
                   pm: PerfModel | None = None) -> np.ndarray:
    """Each point's time off its key's grid, interpolated in the ratio to ``pm``'s model
    where it models the key (past the edge: the edge ratio times the model)."""
    by = {g.key: LogGrid(g.axes, g.seconds, _usable(g.axes, model_base(pm, op, g.key)))
          if pm is not None else g.grid for g in grids}
    keys, axes = list(OPS[op][0]), list(OPS[op][1])
    out = np.full(len(rows), np.nan)
    for i, r in enumerate(rows[keys + axes].itertuples(index=False)):
        g = by.get(tuple(_plain(v) for v in r[:len(keys)]))
        if g is not None:
            out[i] = g(r[len(keys):])
    return out


def _datasheet(pm, op: str, rows: pd.DataFrame) -> np.ndarray:
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
        elif op.endswith("attention") and r.window == 0 and acc.supports(r.dtype):
            heads = (int(r.heads), int(r.kv_heads), int(r.head_dim))
            if op == "context_attention":
                out[i] = pm.attention_chunks_time([(int(r.isl), int(r.isl))] * int(r.batch),
                                                  *heads, r.dtype, r.kv_dtype)
            else:
                out[i] = pm.attention_decode_time(int(r.batch), int(r.kv), *heads, r.dtype,
                                                  r.kv_dtype)
    return out


def _score(measured, predicted) -> tuple[int, float, float]:
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


def _sig(x: float) -> float:
    return float(f"{x:.4g}")


# --- one system x runtime ------------------------------------------------------------------
def _op_points(tables, op: str, fraction: float, seed: int):
    """(all points, points not held out, held-out points, provenance) of one hetsim op."""
    frames, held, info = {}, {}, {}
    for name in SOURCES[op]:
        df = kerneldb.read_op(tables, name)
        frames[name] = df
        held[name] = kerneldb.held_out(df, name, fraction, seed)
        version, path = tables.tables[name]
        info.setdefault("tables", []).append(f"{tables.system}/{path.parent.parent.parent.name}"
                                             f"/{tables.runtime}/{version}/{path.name}")
        info["rows read"] = info.get("rows read", 0) + len(df)
        if "device" in df.columns:
            info.setdefault("devices", set()).update(df["device"].astype(str))
    convert = (lambda fr: _quantize(fr)) if op == "quantize" else \
        (lambda fr: _points(op, fr[SOURCES[op][0]]))
    every, dropped = convert(frames)
    train, _ = convert({n: f[~held[n]] for n, f in frames.items()})
    test, _ = convert({n: f[held[n]] for n, f in frames.items()})
    info.update({"version": tables.tables[SOURCES[op][0]][0], "points": len(every),
                 "held-out points": len(test), "dropped": dropped})
    return every, train, test, info


def held_out_fit(tables, op: str, fraction: float, seed: int = 0, pm: PerfModel | None = None
                 ) -> tuple[list[KernelGrid], pd.DataFrame]:
    """The grids fitted without the held-out shapes, and the held-out points they are scored
    on (what :func:`build`'s accuracy reports)."""
    _, train, test, _ = _op_points(tables, op, fraction, seed)
    return fit_grids(op, train, pm)[0], test


def _op(tables, op: str, fraction: float, seed: int, pm):
    every, train, test, info = _op_points(tables, op, fraction, seed)
    grids, fitted = fit_grids(op, every, pm)
    grids = [dataclasses.replace(g, seconds=round_times(g.seconds)) for g in grids]
    train_grids, _ = fit_grids(op, train, pm)
    n, md, p90 = _score(test["seconds"], _predict_grids(op, train_grids, test, pm))
    acc = {"n": n, "after_median": _sig(md), "after_p90": _sig(p90)} if n else {"n": 0}
    if pm is not None and op in ("gemm", "context_attention", "generation_attention",
                                 "allreduce"):
        dn, dmd, dp90 = _score(test["seconds"], _datasheet(pm, op, test))
        if dn:
            acc.update(datasheet_n=dn, before_median=_sig(dmd), before_p90=_sig(dp90))
    if len(test) > n:
        info["dropped"]["held-out point with no grid for its key (not scored)"] = len(test) - n
    info.update(fitted)
    return grids, acc, info


def build(system: str, runtime: str, version: str | None = None, *, held_out: float = 0.2,
          seed: int = 0, root=None, kernels_file: str | None = None) -> AicProfile:
    """The runtime profile of ``system`` (aiconfigurator's name, or the hetsim profile's) for
    ``runtime`` at ``version`` (default: the package's declared current one)."""
    tables = kerneldb.select(resolve_system(system, root), runtime, version, root=root)
    name = kerneldb.SYSTEMS.get(tables.system)
    index = _index("accelerator", profile_dirs(), calibrated=False)
    if name not in index:
        raise ConfigError(f"aiconfigurator system {tables.system} has no hetsim datasheet "
                          f"profile (kerneldb.SYSTEMS)")
    base = read_yaml(index[name])
    pm = PerfModel(load_accelerator(name + "@datasheet"))
    grids, accuracy, provenance, devices = [], {}, {}, set()
    for op in OPS:
        have = [s for s in SOURCES[op] if s in tables.tables]
        if have and len(have) < len(SOURCES[op]):      # counted, not silently skipped
            provenance[op] = {"tables": [str(tables.tables[s][1].name) for s in have],
                              "not built": f"needs {' and '.join(SOURCES[op])}"}
        elif have:
            g, accuracy[op], provenance[op] = _op(tables, op, held_out, seed, pm)
            devices |= provenance[op].pop("devices", set())
            grids += g
    pkg = package_version()
    stamp = f"aiconfigurator-core {pkg}"
    kernels_file = kernels_file or f"{name}.{tables.runtime}.npz"
    device = ", ".join(sorted(devices)) or tables.system
    cal = {"device": device, "date": stamp, "base_profile": name, "grid": "aiconfigurator-core",
           "accuracy": accuracy, "kernels": kernels_file, "tables": provenance,
           "notes": (f"{tables.runtime} {tables.version} kernel tables from {stamp}; grids "
                     f"fitted on every row; accuracy: the same fit without "
                     f"{held_out:.0%} of shapes (kerneldb.held_out, seed {seed}), scored on them "
                     f"(after_*: the grids, before_*: the datasheet model on the same rows)")}
    out = {k: v for k, v in base.items() if k not in ("calibration", "runtime")}
    out["description"] = (f"{base.get('description', name)}; {tables.runtime} "
                          f"{tables.version} kernels ({stamp})")
    out["runtime"] = tables.runtime
    out["calibration"] = cal
    out["aliases"] = []
    used = sorted(p for op in provenance.values() for p in op["tables"])
    out["sources"] = list(base.get("sources") or []) + [{
        "key": "AIC", "ref": f"{stamp} (PyPI, Apache-2.0), aiconfigurator_core/systems/data",
        "note": "kernel tables: " + ", ".join(used)}]
    meta = {"source": stamp, "system": tables.system, "runtime": tables.runtime,
            "version": tables.version, "held_out": held_out, "seed": seed,
            "tables": provenance}
    return AicProfile(out, MeasuredKernels(grids, meta))


def profile_text(p: AicProfile) -> str:
    """The profile's YAML, headed by the command that rebuilds it (no output path, no date:
    the same tables give the same bytes)."""
    m = p.kernels.meta
    cmd = (f"hetsim calibrate --from-aiconfigurator {m['system']} --runtime {m['runtime']} "
           f"--version {m['version']}" + (f" --held-out {m['held_out']:g}"
                                          if m["held_out"] != 0.2 else "")
           + (f" (split seed {m['seed']})" if m["seed"] else ""))
    return (f"# Built by `{cmd}` from {m['source']}'s kernel tables; grids: "
            f"{p.profile['calibration']['kernels']}\n"
            + yaml.safe_dump(p.profile, sort_keys=False, width=100))
