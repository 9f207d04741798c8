"""Metrics: pure functions over the table of per-request records."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .engine.request import RECORD_COLUMNS
from .scenario import SLO, ResolvedPlacement

__all__ = ["records_frame", "summarize", "percentiles"]

PCTS = {"mean": None, "p50": 50, "p90": 90, "p99": 99}


def records_frame(requests, placement: str) -> pd.DataFrame:
    """One row per request, with derived latencies."""
    df = pd.DataFrame.from_records([r.record() for r in requests], columns=list(RECORD_COLUMNS))
    df.insert(0, "placement", placement)
    df["queue_s"] = df["prefill_start_s"] - df["arrival_s"]
    df["ttft_s"] = df["first_token_s"] - df["arrival_s"]
    df["tpot_s"] = np.where(df["output_tokens"] > 1,
                            (df["last_token_s"] - df["first_token_s"])
                            / (df["output_tokens"] - 1).clip(lower=1), np.nan)
    df["e2e_s"] = df["last_token_s"] - df["arrival_s"]
    df["transfer_s"] = df["transfer_end_s"] - df["transfer_start_s"]
    return df


def percentiles(x: pd.Series) -> dict:
    x = x.dropna().to_numpy()
    if len(x) == 0:
        return {k: None for k in PCTS}
    return {k: float(np.mean(x) if q is None else np.percentile(x, q)) for k, q in PCTS.items()}


def slo_met(df: pd.DataFrame, slo: SLO) -> pd.Series:
    """Completed, TTFT within SLO and TPOT within SLO (single-token outputs have no TPOT)."""
    ok_tpot = df["tpot_s"].isna() | (df["tpot_s"] <= slo.tpot_s)
    return (df["state"] == "completed") & (df["ttft_s"] <= slo.ttft_s) & ok_tpot


def _nan_none(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def summarize(df: pd.DataFrame, placement: ResolvedPlacement, slo: SLO, sim) -> dict:
    """The per-placement summary: latencies, throughput, SLO attainment, goodput and cost."""
    done = df[df["state"] == "completed"]
    start = float(df["arrival_s"].min()) if len(df) else 0.0
    duration = max(sim.end_s - start, 1e-12)
    ok = slo_met(df, slo)
    out_tokens = float(done["output_tokens"].sum())
    cost = sum(p.usd_per_hour for p in placement.pools.values())
    tokens_per_s = out_tokens / duration
    goodput = float(ok.sum()) / duration
    util, step = {}, {}
    kv_occ = {}
    for pname, insts in sim.instances.items():
        util[pname] = sum(i.busy_s for i in insts) / (len(insts) * duration)
        ntok = sum(i.decode_tokens for i in insts)
        step[pname] = sum(i.decode_token_s for i in insts) / ntok if ntok else None
        kv_occ[pname] = {"mean": float(np.mean([i.kv.mean_occupancy(sim.end_s) for i in insts])),
                         "peak": max(i.kv.peak / i.kv.capacity for i in insts)}
    link_util = {p.name: p.busy_area / duration for p in sim.ports}
    transfers = df["transfer_s"]
    summary = {
        "name": placement.name,
        "requests": int(len(df)),
        "completed": int(len(done)),
        "dropped": int((df["state"] == "dropped").sum()),
        "ttft_s": percentiles(done["ttft_s"]),
        "tpot_s": percentiles(done["tpot_s"]),
        "e2e_s": percentiles(done["e2e_s"]),
        "queue_s": percentiles(done["queue_s"]),
        "duration_s": duration,
        "throughput_rps": len(done) / duration,
        "output_tokens_per_s": tokens_per_s,
        "slo_attainment": float(ok.mean()) if len(df) else 0.0,
        "meets_slo": bool(len(df) and ok.mean() >= slo.attainment),
        "goodput_rps": goodput,
        "accelerators": sum(p.accelerators for p in placement.pools.values()),
        "cost_per_hour_usd": cost,
        "usd_per_million_output_tokens": (cost / (tokens_per_s * 3600) * 1e6
                                          if tokens_per_s > 0 else None),
        "goodput_rps_per_dollar_hour": goodput / cost if cost > 0 else None,
        "kv_transfer_bytes": float(df["kv_bytes"].sum()),
        "kv_transfer_s": percentiles(transfers),
        "pool_utilization": util,
        "decode_step_s": step,
        "link_utilization": {"max": max(link_util.values(), default=0.0),
                             "mean": float(np.mean(list(link_util.values()))) if link_util else 0.0},
        "kv_occupancy": kv_occ,
    }
    summary["bottleneck"] = bottleneck(summary, placement, slo)
    return {k: _nan_none(v) for k, v in summary.items()}


def bottleneck(s: dict, placement: ResolvedPlacement, slo: SLO) -> str:
    """Name the stage under the most pressure.

    Pressure: prefill pools, their busy fraction; decode and mixed pools, the token-weighted
    step time as a fraction of the TPOT SLO (a decode loop is always "busy" while it has work,
    so busy time says nothing there); links, their busiest port's utilisation; memory, the
    mean KV occupancy. Mixed pools also count their busy fraction as prefill pressure.
    """
    scores = {}
    for pname, u in s["pool_utilization"].items():
        role = placement.pools[pname].spec.role
        step = s["decode_step_s"].get(pname)
        if role in ("prefill", "mixed"):
            scores["prefill-bound"] = max(scores.get("prefill-bound", 0.0),
                                          u if role == "prefill" else 0.0)
        if role in ("decode", "mixed") and step is not None:
            scores["decode-bound"] = max(scores.get("decode-bound", 0.0), step / slo.tpot_s)
    scores["transfer-bound"] = s["link_utilization"]["max"]
    scores["memory-bound"] = max((o["mean"] for o in s["kv_occupancy"].values()), default=0.0)
    return max(scores, key=scores.get)
