"""A runtime profile from aiconfigurator-core's measured kernel tables (no torch).

``build(system, runtime)`` turns one system x runtime's tables (:mod:`hetsim.kerneldb`) into
the datasheet profile of the same part plus ``runtime:`` and a ``calibration:`` block whose
``kernels:`` names an ``.npz`` of :class:`hetsim.perf.kernels.KernelGrid` s (one per op and
key, every cell filled by :func:`hetsim.perf.grid.fill_log_grid`). The shipped grids are fitted
on every row; the accuracy it reports is the same fit made without a held-out fraction of
shapes (:func:`hetsim.kerneldb.held_out`) and scored on them, beside the datasheet model's
error on the same rows.

Table rows -> grid points (keys and axes as :data:`hetsim.perf.kernels.OPS` names them):
gemm (dtype) over (m, n, k); GDN (heads per rank, head dims, convolution width) over (batch,
isl) in context and batch in generation, the convolution's kernel plus the recurrence's;
attention (dtype, kv_dtype, heads, kv_heads, head_dim, window)
over (batch, isl) for context rows without a cached prefix (``step`` 0) and over (batch, kv =
isl + step) for generation; all-reduce (dtype, gpus) over bytes = message_size elements x the
dtype's bytes, CUDA-graph rows where a shape has one; MoE (dtype, hidden, inter, topk,
experts, tp, ep, distribution) over tokens; MLA (dtype, kv_dtype, heads per rank) like
attention; quantize (dtype) over (m, k) = ``compute_scale`` + ``scale_matrix`` of one shape
(a dynamic per-token quantization of an m x k activation), and compute_scale alone (what a
static-scale checkpoint's fp8 GEMM does not pay; none where the table is 0, as SGLang's). Of
several kernels timed for one
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
from ..models import load_model
from ..perf import PerfModel
from ..perf.kernels import OPS, KernelGrid, MeasuredKernels
from ..precision import PRECISION_BYTES
from .aic_grids import (datasheet_times, fill_options, fit_grids, predict_grids, round_times,
                        score, sig)

__all__ = ["AicProfile", "build", "fill_options", "fit_grids", "held_out_fit",
           "package_version", "profile_text", "resolve_system", "round_times"]

#: hetsim op -> the kerneldb tables it is built from
SOURCES = {"gemm": ("gemm",), "context_attention": ("context_attention",),
           "generation_attention": ("generation_attention",), "allreduce": ("allreduce",),
           "moe": ("moe",), "context_mla": ("context_mla",),
           "generation_mla": ("generation_mla",), "quantize": ("compute_scale", "scale_matrix"),
           "compute_scale": ("compute_scale",),
           "context_gdn": ("gdn",), "generation_gdn": ("gdn",)}
_ATTN = {"dtype": "attn_dtype", "kv_dtype": "kv_cache_dtype", "heads": "num_heads",
         "kv_heads": "num_key_value_heads", "head_dim": "head_dim", "window": "window_size",
         "batch": "batch_size", "isl": "isl"}
_MLA = {"dtype": "mla_dtype", "kv_dtype": "kv_cache_dtype", "heads": "num_heads",
        "batch": "batch_size", "isl": "isl"}
_GDN = {"k_heads": "num_k_heads", "head_k_dim": "head_k_dim", "v_heads": "num_v_heads",
        "head_v_dim": "head_v_dim", "conv": "d_conv", "batch": "batch_size"}
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
    "compute_scale": {"dtype": "quant_dtype", "m": "m", "k": "k"},
    "context_gdn": _GDN | {"isl": "seq_len"}, "generation_gdn": _GDN,
}
#: an MLA op derived from the whole attention module's table where the runtime has no table of
#: the core (vLLM): the module's time less its projection GEMMs (:func:`_mla_module`)
MLA_MODULE = {"context_mla": "context_mla_module", "generation_mla": "generation_mla_module"}
#: the one model the module tables time whose rows are read (its projection shapes are known:
#: hetsim's catalog ``deepseek-v3``); other models' rows are counted as dropped
MLA_MODULE_MODEL = ("deepseek-ai/DeepSeek-V3", "deepseek-v3")
#: a module-derived MLA op whose small shapes (generation: batch <= 8, kv <= 1100; context:
#: batch x isl <= 512) median more than this many times the datasheet model carries the eager
#: native norm/RoPE chain aiconfigurator's vLLM module collector ran before
#: ai-dynamo/aiconfigurator@c56db49fe (2026-07-29: "a batch-independent ~50-65us per layer
#: that a serving engine never pays"). In aiconfigurator-core 0.12.0 only B200's vLLM module
#: tables were collected after it. NOTE: the measured MLA cores of TRT-LLM and SGLang on every
#: system are at 1.5-5.8x there, B200's vLLM module-derived ones at 3.1-5.0x, every other
#: system's at 8.1-22x: the threshold sits in that gap
MLA_EAGER_RATIO = 7.0
#: MoE kernels a runtime runs through the very library kernel another runtime's tables time:
#: (runtime, MoE format) -> the runtime whose table the profile reads for the layers its own
#: table has no grid of that format for (``provenance["moe"]["borrowed"]`` names the table).
#: NOTE: vLLM runs MXFP4 experts on MXFP8 activations with FlashInfer's TRT-LLM-gen kernel
#: (``SM100_FI_MXFP4_MXFP8_TRTLLM``, selected by VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8=1:
#: vllm-project/vllm@007d5005 ``quantization/mxfp4.py`` ``get_mxfp4_backend``), the kernel
#: aiconfigurator times for SGLang as ``w4a8_mxfp4_mxfp8`` (ai-dynamo/aiconfigurator@095f58a5
#: ``collector/sglang/collect_moe.py``: kernel source ``sglang_flashinfer_trtllm_moe``);
#: vLLM's 0.24.0 tables time that format at two DeepSeek/Kimi shapes only. Their BF16-activation
#: tables of the same FlashInfer kernel agree within 2% (b200, gpt-oss, 1-16384 tokens)
BORROWED_MOE = {("vllm", "w4a8-mxfp4"): "sglang"}
#: a GDN table's kernels by phase: (the convolution's, the recurrence's); a point's time is
#: their sum (the fastest of several recurrence kernels timed at one point)
GDN_KERNELS = {"context_gdn": ("context", "causal_conv1d_fn"),
               "generation_gdn": ("generation", "causal_conv1d_update")}
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


#: a block-fp8 GEMM table whose small-m rows (m <= 64: memory-bound, the same weight bytes as
#: per-tensor fp8 plus one scale per 128 x 128 block) median this many times the same table's
#: per-tensor fp8 rows of the same shapes timed the host, not the kernel
HOST_BOUND_RATIO = 3.0


def _host_bound_block_fp8(df: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """A GEMM table's block-fp8 rows dropped where they are host-bound, and the median
    ratio that decided it (nan: the table has no shapes timed both ways).

    NOTE: aiconfigurator-core 0.12.0's vLLM GEMM tables time block-fp8 at a flat 60-330 us
    from m = 1 to m = 1024 on every system: 6-42x (median over m <= 64) its own per-tensor fp8
    kernel at the same shapes, where SGLang's and TRT-LLM's block-fp8 tables, which run the
    same DeepGEMM/CUTLASS class of kernels, are at 0.56-1.05x. Served under CUDA graphs that
    host time is not paid; the per-tensor grid (``GEMM_DTYPES``' fallback) stands for it.
    Scored on the measured MiniMax-M2.5 fp8 runs (README, serving accuracy)."""
    small = df[df["m"] <= 64]
    t = small.pivot_table(index=["m", "n", "k"], columns="gemm_dtype", values="latency_s",
                          aggfunc="min")
    if "fp8-block" not in t.columns or "fp8" not in t.columns:
        return df, float("nan")
    ratio = float((t["fp8-block"] / t["fp8"]).median())
    if not ratio > HOST_BOUND_RATIO:
        return df, ratio
    return df[df["gemm_dtype"] != "fp8-block"], ratio


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
    if op.startswith("context_") and "step" in df.columns:    # (GDN tables have no prefix)
        keep = (df["step"] == 0).to_numpy()
        dropped["context after a cached prefix (step > 0)"] = int((~keep).sum())
        df = df[keep]
    if op == "allreduce":
        df, n = _allreduce_rows(df)
        dropped["eager all-reduce (a graph row of the shape exists)"] = n
    out = pd.DataFrame({f: df[c].to_numpy() for f, c in COLUMNS[op].items()})
    if "kv" in OPS[op][1]:
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


def _compute_scale(frames: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, dict[str, int]]:
    """The ``compute_scale`` table as points, or none where it is 0 at most shapes (SGLang's:
    its quantization kernel finds the scale as it goes, so a static-scale GEMM saves nothing;
    the few non-zero rows are noise, which a grid would take off every GEMM)."""
    df = frames["compute_scale"]
    if not len(df) or df["latency_s"].median() <= 0:
        return (pd.DataFrame(columns=[*OPS["compute_scale"][0], *OPS["compute_scale"][1],
                                      "seconds"]),
                {"table 0 at most shapes (the scale is found inside the quantize kernel)":
                 len(df)} if len(df) else {})
    return _points("compute_scale", df)


def _gdn(op: str, frames: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, dict[str, int]]:
    """One phase of a GDN table as points: the convolution's time plus the recurrence's per
    (key, axes). The other phase's rows are the other op's (not counted here)."""
    phase, conv = GDN_KERNELS[op]
    df = frames["gdn"]
    df = df[(df["phase"] == phase).to_numpy()]
    is_conv = (df["kernel_source"] == conv).to_numpy()
    parts, dropped = [], {}
    for name, rows in (("convolution", df[is_conv]), ("recurrence", df[~is_conv])):
        p, d = _points(op, rows)
        parts.append(p.rename(columns={"seconds": name}))
        dropped.update({f"{name}: {k}": v for k, v in d.items()})
    fields = list(OPS[op][0]) + list(OPS[op][1])
    both = parts[0].merge(parts[1], on=fields, how="outer")
    one = both[["convolution", "recurrence"]].isna().any(axis=1)
    if one.any():
        dropped["GDN point with one of its two kernels only"] = int(one.sum())
    both = both[~one]
    both = both.assign(seconds=both["convolution"] + both["recurrence"])
    return both[fields + ["seconds"]].reset_index(drop=True), dropped


def _mla_projections(points: pd.DataFrame, op: str) -> pd.DataFrame:
    """The projection GEMMs of the DeepSeek-V3 attention module at each point (bf16, as the
    rows read were timed): one row per (point, GEMM), ``point`` its index. The shapes are
    ``perf.step``'s MLA projections at ``heads`` query heads per rank (absorbed decode's two
    per-head BMMs are the same FLOPs as the ``kv_b`` GEMM counted there)."""
    model = load_model(MLA_MODULE_MODEL[1])
    a, h = model.mla, model.hidden_size
    heads = points["heads"].to_numpy()
    # (a generation point's tokens are its batch: one new token each)
    tokens = points["batch"].to_numpy() * (points["isl"].to_numpy() if op == "context_mla"
                                           else 1)
    shapes = [(np.full(len(points), a.kv_lora_rank + a.qk_rope_dim), h),
              (heads * (a.qk_nope_dim + a.v_head_dim), a.kv_lora_rank),
              (np.full(len(points), h), heads * a.v_head_dim),
              (np.full(len(points), a.q_lora_rank), h),
              (heads * (a.qk_nope_dim + a.qk_rope_dim), a.q_lora_rank)]
    return pd.concat([pd.DataFrame({"point": np.arange(len(points)), "dtype": "bf16",
                                    "m": tokens, "n": n, "k": np.broadcast_to(k, len(points))})
                      for n, k in shapes], ignore_index=True)


def _mla_module(op: str, df: pd.DataFrame, gemm: list[KernelGrid], pm: PerfModel | None
                ) -> tuple[pd.DataFrame, dict[str, int]]:
    """An MLA op's points from the whole-module table: each point's time less its projection
    GEMMs off the runtime's own GEMM grids (``gemm``, fitted on every GEMM row).

    NOTE: the module is q_a/q_b, kv_a, the latent up-projection (or absorbed BMMs), the core
    and o_proj, with two small norms; hetsim charges the GEMMs as GEMMs and the norms in its
    per-layer elementwise cost, so the GEMMs are taken out and the norms left in (a few us a
    layer). Only rows timed with bf16 projections are read: vLLM's block-fp8 GEMM tables time
    the host (``_host_bound_block_fp8``), and the core does not depend on the projections'
    format. Checked on TRT-LLM, which has both tables (tests/test_runtime_profiles.py)."""
    dropped = {}
    keep = (df["model"] == MLA_MODULE_MODEL[0]).to_numpy()
    dropped[f"module of another model than {MLA_MODULE_MODEL[0]}"] = int((~keep).sum())
    df = df[keep]
    keep = (df["gemm_type"] == "bf16").to_numpy()
    dropped["module timed with quantized projections"] = int((~keep).sum())
    points, d = _points(op, df[keep])
    dropped.update(d)
    proj = _mla_projections(points, op)
    t = predict_grids("gemm", gemm, proj, pm)
    per_point = np.bincount(proj["point"].to_numpy(), weights=t, minlength=len(points))
    core = points["seconds"].to_numpy() - per_point
    bad = ~(core > 0)      # (NaN: a projection shape off every GEMM grid)
    dropped["module no slower than its projection GEMMs"] = int(bad.sum())
    out = points.assign(seconds=core)[~bad].reset_index(drop=True)
    return out, {k: v for k, v in dropped.items() if v}


def _mla_eager_ratio(op: str, points: pd.DataFrame, pm: PerfModel) -> float:
    """Median of (derived core / datasheet model) over an MLA op's small bf16 shapes
    (:data:`MLA_EAGER_RATIO`); nan without such shapes."""
    a = load_model(MLA_MODULE_MODEL[1]).mla
    width = a.kv_lora_rank + a.qk_rope_dim
    p = points[points["dtype"] == "bf16"]
    if op == "generation_mla":
        p = p[(p["batch"] <= 8) & (p["kv"] <= 1100)]
        model = [pm.attention_decode_total_time(int(r.batch), int(r.batch * r.kv), int(r.heads),
                                                1, width // 2, "bf16", r.kv_dtype, width)
                 for r in p.itertuples()]
    else:
        p = p[p["batch"] * p["isl"] <= 512]
        model = [pm.attention_chunks_time([(int(r.isl), int(r.isl))] * int(r.batch),
                                          int(r.heads), int(r.heads),
                                          a.qk_nope_dim + a.qk_rope_dim, "bf16", r.kv_dtype,
                                          v_head_dim=a.v_head_dim) for r in p.itertuples()]
    return float(np.median(p["seconds"].to_numpy() / np.array(model))) if len(p) else math.nan


# --- points -> grids -----------------------------------------------------------------------
# --- one system x runtime ------------------------------------------------------------------
def _sources(tables, op: str) -> tuple[str, ...]:
    """The tables ``op`` is built from in ``tables``: :data:`SOURCES`, or for MLA without a
    core table the whole module's (:data:`MLA_MODULE`)."""
    if op in MLA_MODULE and SOURCES[op][0] not in tables.tables \
            and MLA_MODULE[op] in tables.tables:
        return (MLA_MODULE[op],)
    return SOURCES[op]


def _module_gemm(tables, pm: PerfModel | None) -> list[KernelGrid]:
    """The GEMM grids a module's projections are read off: fitted on every GEMM row."""
    return fit_grids("gemm", _op_points(tables, "gemm", 0.0, 0)[0], pm)[0]


def _op_points(tables, op: str, fraction: float, seed: int, pm: PerfModel | None = None):
    """(all points, points not held out, held-out points, provenance) of one hetsim op."""
    frames, held, info = {}, {}, {}
    host_bound = 0
    sources = _sources(tables, op)
    for name in sources:
        df = kerneldb.read_op(tables, name)
        if op == "gemm":
            kept, ratio = _host_bound_block_fp8(df)
            host_bound, df = len(df) - len(kept), kept
            if host_bound:
                info["block-fp8 small-m / fp8"] = sig(ratio)
        frames[name] = df
        held[name] = kerneldb.held_out(df, name, fraction, seed)
        version, path = tables.tables[name]
        info.setdefault("tables", []).append(f"{tables.system}/{path.parent.parent.parent.name}"
                                             f"/{tables.runtime}/{version}/{path.name}")
        info["rows read"] = info.get("rows read", 0) + len(df)
        if "device" in df.columns:
            info.setdefault("devices", set()).update(df["device"].astype(str))
    if sources[0] in MLA_MODULE.values():
        gemm = _module_gemm(tables, pm)
        info["derived"] = "module time less its projection GEMMs (this profile's GEMM grids)"

        def convert(fr):
            return _mla_module(op, fr[sources[0]], gemm, pm)
    else:
        convert = {"quantize": _quantize, "compute_scale": _compute_scale,
                   "context_gdn": lambda fr: _gdn(op, fr),
                   "generation_gdn": lambda fr: _gdn(op, fr)}.get(
            op, lambda fr: _points(op, fr[sources[0]]))
    every, dropped = convert(frames)
    if sources[0] in MLA_MODULE.values() and pm is not None:
        ratio = _mla_eager_ratio(op, every, pm)
        info["small shapes / datasheet"] = sig(ratio)
        if ratio > MLA_EAGER_RATIO:     # no grid: the datasheet model stands for the op
            info["not built"] = (f"eager-inflated module table (small shapes {ratio:.1f}x the "
                                 f"datasheet model > MLA_EAGER_RATIO {MLA_EAGER_RATIO:g})")
            dropped["eager-inflated module (MLA_EAGER_RATIO)"] = len(every)
            every = every.iloc[:0]
    train, _ = convert({n: f[~held[n]] for n, f in frames.items()})
    test, _ = convert({n: f[held[n]] for n, f in frames.items()})
    if every.empty:
        train, test = train.iloc[:0], test.iloc[:0]
    if host_bound:
        dropped["host-bound block-fp8 rows (HOST_BOUND_RATIO)"] = host_bound
    info.update({"version": tables.tables[sources[0]][0], "points": len(every),
                 "held-out points": len(test), "dropped": dropped})
    return every, train, test, info


def _borrowed_moe(tables, own: set, pm: PerfModel, root=None
                  ) -> tuple[list[KernelGrid], dict | None]:
    """The MoE grids :data:`BORROWED_MOE` gives ``tables``' runtime: each format's grids of
    the lending runtime's table (same system, its declared current version) for the layers
    ``own`` (the keys of the runtime's own MoE grids) lacks, fitted on every row; and their
    provenance (None: none borrowed)."""
    grids, info = [], None
    for (runtime, dtype), lender in BORROWED_MOE.items():
        if runtime != tables.runtime:
            continue
        try:
            src = kerneldb.select(tables.system, lender, root=root)
        except ConfigError:      # the system has no tables of the lending runtime
            continue
        if "moe" not in src.tables:
            continue
        df = kerneldb.read_op(src, "moe")
        points, _ = _points("moe", df[(df["moe_dtype"] == dtype).to_numpy()])
        keys = pd.MultiIndex.from_frame(points[list(OPS["moe"][0])])
        got, _ = fit_grids("moe", points[~keys.isin(list(own))], pm)
        got = [dataclasses.replace(g, seconds=round_times(g.seconds)) for g in got]
        if got:
            version, path = src.tables["moe"]
            info = info or {}
            info[dtype] = {"table": f"{src.system}/moe/{lender}/{version}/{path.name}",
                           "grids": len(got)}
            grids += got
    return grids, info


def held_out_fit(tables, op: str, fraction: float, seed: int = 0, pm: PerfModel | None = None
                 ) -> tuple[list[KernelGrid], pd.DataFrame]:
    """The grids fitted without the held-out shapes, and the held-out points they are scored
    on (what :func:`build`'s accuracy reports)."""
    _, train, test, _ = _op_points(tables, op, fraction, seed, pm)
    return fit_grids(op, train, pm)[0], test


def _op(tables, op: str, fraction: float, seed: int, pm):
    every, train, test, info = _op_points(tables, op, fraction, seed, pm)
    grids, fitted = fit_grids(op, every, pm)
    grids = [dataclasses.replace(g, seconds=round_times(g.seconds)) for g in grids]
    train_grids, _ = fit_grids(op, train, pm)
    n, md, p90 = score(test["seconds"], predict_grids(op, train_grids, test, pm))
    acc = {"n": n, "after_median": sig(md), "after_p90": sig(p90)} if n else {"n": 0}
    if pm is not None and op in ("gemm", "context_attention", "generation_attention",
                                 "allreduce", "context_gdn", "generation_gdn"):
        dn, dmd, dp90 = score(test["seconds"], datasheet_times(pm, op, test))
        if dn:
            acc.update(datasheet_n=dn, before_median=sig(dmd), before_p90=sig(dp90))
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
        sources = _sources(tables, op)
        have = [s for s in sources if s in tables.tables]
        if have and len(have) < len(sources):      # counted, not silently skipped
            provenance[op] = {"tables": [str(tables.tables[s][1].name) for s in have],
                              "not built": f"needs {' and '.join(sources)}"}
        elif have:
            g, acc, info = _op(tables, op, held_out, seed, pm)
            devices |= info.pop("devices", set())
            if "not built" in info:     # read, judged unusable: its reason, no grid
                provenance[op] = {k: info[k] for k in ("tables", "rows read", "version",
                                                       "small shapes / datasheet", "not built")}
                continue
            accuracy[op], provenance[op] = acc, info
            grids += g
    if "moe" in provenance:
        lent, info = _borrowed_moe(tables, {g.key for g in grids if g.op == "moe"}, pm, root)
        if lent:
            provenance["moe"]["borrowed"] = info
            grids += lent
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
    used = sorted({p for op in provenance.values() for p in op["tables"]}    # (GDN: 2 ops, 1 table)
                  | {b["table"] for op in provenance.values()
                     for b in op.get("borrowed", {}).values()})
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
