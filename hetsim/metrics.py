"""Metrics: pure functions over the table of per-request records.

Warm-up (``workload.warmup``): the records frame flags warm-up requests in a ``warmup`` column
(only when a warm-up is set, so runs without one keep their exact outputs) and the summary
measures the rest, over the *measured window*: from the first measured request's send time to
the latest completion (last token) among the measured requests. Per-request figures
(latencies, throughput, goodput, SLO attainment, cost per token, KV bytes and conversion time,
cached tokens) leave warm-up out; the counters the instances and links keep over the whole run
(``pool_utilization``, ``decode_step_s``, ``kv_occupancy``, ``kv_staging``,
``link_utilization``, ``preemptions``, ``kv_conversion_bytes``, hence ``bottleneck``) cannot be
split by request and cover the whole run, from the first send to the last completion.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .engine.kvsteps import STEPS, TransferRecord
from .engine.records import Records
from .engine.request import RECORD_COLUMNS
from .engine.network import PortStats
from .engine.stats import SimResult
from .errors import suggest
from .resolve import ResolvedPlacement
from .scenario import SLO
from .workload import Warmup

__all__ = ["records_frame", "summarize", "assemble", "percentiles", "slo_met", "meets",
           "meets_percentile", "arrival_window", "metric_error", "metric_names", "warmup_mask",
           "measured_window", "fault_metrics", "fault_figures", "availability",
           "time_to_recover", "timeline", "bin_goodput", "fault_windows", "transfer_steps"]

PCTS = {"mean": None, "p50": 50, "p90": 90, "p99": 99}


def records_frame(records: Records, placement: str, warmup: Warmup | None = None,
                  rows: slice = slice(None)) -> pd.DataFrame:
    """One row per request record (built straight from the run's columns), with derived
    latencies; with a ``warmup``, a boolean ``warmup`` column after ``id`` flags the warm-up
    requests (every request keeps its row). ``rows``: the requests of those ids only (a
    chunk of the frame: every value is a function of its own row)."""
    df = pd.DataFrame(records.columns(rows), columns=list(RECORD_COLUMNS))
    df.insert(0, "placement", placement)
    return _derived(df, warmup)


def _derived(df: pd.DataFrame, warmup: Warmup | None) -> pd.DataFrame:
    """``df`` with the warm-up flag (after ``id``, only with a ``warmup``) and the derived
    latencies added."""
    if warmup is not None:
        df.insert(df.columns.get_loc("id") + 1, "warmup", warmup_mask(df, warmup))
    df["queue_s"] = df["prefill_start_s"] - df["arrival_s"]
    df["ttft_s"] = df["first_token_s"] - df["arrival_s"]
    df["tpot_s"] = np.where(df["output_tokens"] > 1,
                            (df["last_token_s"] - df["first_token_s"])
                            / (df["output_tokens"] - 1).clip(lower=1), np.nan)
    df["e2e_s"] = df["last_token_s"] - df["arrival_s"]
    df["transfer_s"] = df["transfer_end_s"] - df["transfer_start_s"]
    # How long finished KV sat on the prefill side before its transfer began (waiting for
    # decode room), and the transfer time not hidden behind the prefill computing it.
    df["kv_wait_s"] = (df["transfer_start_s"] - df["prefill_end_s"]).clip(lower=0)
    df["kv_transfer_exposed_s"] = df["transfer_end_s"] - np.maximum(df["prefill_end_s"],
                                                                    df["transfer_start_s"])
    return df


def warmup_mask(df: pd.DataFrame, warmup: Warmup) -> pd.Series:
    """True for warm-up requests: the first ``warmup.requests`` sent, or those sent before
    ``warmup.seconds``. The engine gives ids in send order (open and closed loops alike), so
    the first N sent are the ids below N, and either way warm-up is a prefix of the ids."""
    if warmup.requests is not None:
        return df["id"] < warmup.requests
    return df["arrival_s"] < warmup.seconds


def measured_window(df: pd.DataFrame, end_s: float) -> tuple[pd.DataFrame, float, float]:
    """(the measured requests, window start, window end). Without a ``warmup`` column every
    request is measured and the window runs from the first arrival to ``end_s`` (the run's last
    completion). With one: the non-warm-up rows, from the first measured send to the latest
    last token among them (their first send when none completed; (0, 0) when none is
    measured)."""
    if "warmup" not in df:
        return df, (float(df["arrival_s"].min()) if len(df) else 0.0), end_s
    m = df[~df["warmup"]]
    if not len(m):
        return m, 0.0, 0.0
    start = float(m["arrival_s"].min())
    last = m["last_token_s"].max()
    return m, start, (start if math.isnan(last) else float(last))


def percentiles(x: pd.Series) -> dict:
    return percentiles_of(x.dropna().to_numpy())


def percentiles_of(x: np.ndarray, keys=tuple(PCTS), overwrite: bool = False) -> dict:
    """``keys`` of :data:`PCTS` over ``x`` (no NaN). ``overwrite``: ``x`` is the caller's
    scratch copy and may be reordered (the mean is taken first, and a percentile is an order
    statistic, so the figures are those of ``x`` as given)."""
    if len(x) == 0:
        return {k: None for k in keys}
    return {k: float(np.mean(x) if PCTS[k] is None else
                     np.percentile(x, PCTS[k], overwrite_input=overwrite)) for k in keys}


def slo_met(df: pd.DataFrame, slo: SLO) -> pd.Series:
    """Completed, TTFT within SLO and TPOT within SLO (single-token outputs have no TPOT)."""
    ok_tpot = df["tpot_s"].isna() | (df["tpot_s"] <= slo.tpot_s)
    return (df["state"] == "completed") & (df["ttft_s"] <= slo.ttft_s) & ok_tpot


def meets(df: pd.DataFrame, slo: SLO, ok: pd.Series | None = None) -> bool:
    """Whether a run meets the SLO: the attainment fraction, or (``slo.percentile``) the p-th
    percentile TTFT and TPOT each within target, dropped requests counting as infinitely slow."""
    if not len(df):
        return False
    if slo.percentile is None:
        ok = slo_met(df, slo) if ok is None else ok
        return bool(ok.mean() >= slo.attainment)
    done = df["state"] == "completed"
    return meets_percentile(df["ttft_s"].where(done, np.inf).to_numpy(),
                            df["tpot_s"].where(done, np.inf).dropna().to_numpy(), slo)


def meets_percentile(ttft: np.ndarray, tpot: np.ndarray, slo: SLO) -> bool:
    """The percentile form of :func:`meets`: ``ttft`` of every request and ``tpot`` of every
    request that has one (not completed: inf)."""
    q = slo.percentile
    return bool(np.percentile(ttft, q, method="higher") <= slo.ttft_s and
                (len(tpot) == 0 or np.percentile(tpot, q, method="higher") <= slo.tpot_s))


# The numeric metrics of a summary, by shape, for checking `expect:` bounds before a run
# (tests/test_reliability.py keeps this in step with `summarize`). The three window keys
# appear only in runs with a `workload.warmup`.
_SCALARS = {"requests", "completed", "dropped", "duration_s", "throughput_rps",
            "warmup_requests", "window_start_s", "window_end_s",
            "output_tokens_per_s", "slo_attainment", "goodput_rps", "accelerators",
            "cost_per_hour_usd", "usd_per_million_output_tokens", "goodput_rps_per_dollar_hour",
            "kv_transfer_bytes", "kv_conversion_s_total", "kv_conversion_bytes",
            "prefix_cached_tokens", "kv_wire_bytes", "kv_batches", "kv_requests_per_batch"}
_STATS = {**{k: tuple(PCTS) for k in ("ttft_s", "tpot_s", "e2e_s", "queue_s", "kv_transfer_s")},
          "kv_wait_s": ("mean", "p99"), "kv_transfer_exposed_s": ("mean", "p99"),
          "preemptions": ("count", "swapped_bytes", "recomputed_tokens", "device_s"),
          "kv_descriptors": ("mean", "p99"),
          **{f"kv_transfer_breakdown_s.{k}": ("mean", "p99") for k in STEPS}}
_PER_POOL = {"pool_utilization": (), "decode_step_s": (), "kv_occupancy": ("mean", "peak"),
             "kv_staging": ("mean", "peak"), "kv_capacity_tokens": ()}
#: placements with faults only (fault_metrics)
FAILURE_REASONS = ("retry_limit", "timeout", "too_long_after_fault")
_FAULT_METRICS = ["faults", "requests_retried", "requests_failed", "recomputed_tokens",
                  "time_to_recover_s.max", "time_to_recover_s.mean",
                  "time_to_recover_s.unrecovered",
                  "lost_prefill_tokens", "kv_bytes_lost", "kv_bytes_resent", "transfers_retried",
                  "requests_restored", "kv_bytes_restored", "kv_bytes_written_through",
                  *(f"requests_failed_by_reason.{r}" for r in FAILURE_REASONS),
                  *(f"fault_windows.{k}" for k in ("seconds", "requests", "slo_attainment",
                                                   "goodput_rps"))]


def metric_names(roles: dict[str, str], faults: bool = False) -> list[str]:
    """The numeric metrics of a placement whose pools have ``roles`` ({pool: role}), as
    `expect:` names them (link groups shown as ``link_utilization.<group>.mean|max``);
    ``faults``: the placement has faults (their metrics too)."""
    names = sorted(_SCALARS) + [f"{k}.{s}" for k, stats in _STATS.items() for s in stats]
    if faults:
        names += _FAULT_METRICS + [f"availability.{pool}" for pool in roles]
    for head, stats in _PER_POOL.items():
        for pool, role in roles.items():
            if head != "kv_staging" or role == "prefill":
                names += [f"{head}.{pool}.{s}" for s in stats] if stats else [f"{head}.{pool}"]
    return names


def metric_error(metric: str, roles: dict[str, str], faults: bool = False) -> str | None:
    """Why ``metric`` is not a numeric metric of a placement whose pools have ``roles`` (and
    ``faults``, see :func:`metric_names`), or None when it is one."""
    group, _, stat = metric.removeprefix("link_utilization.").rpartition(".")
    if metric.startswith("link_utilization.") and group and stat in ("mean", "max"):
        return None   # link groups are named by the engine (prefill.nic, cross-site, ...)
    names = metric_names(roles, faults)
    if metric in names:
        return None
    return (f"unknown metric {metric!r}" + suggest(metric, names) + "; see README \"Outputs\" "
            "(per-pool metrics name this placement's pools)")


def _nan_none(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def summarize(df: pd.DataFrame, placement: ResolvedPlacement, slo: SLO, sim: SimResult) -> dict:
    """The per-placement summary: latencies, throughput, SLO attainment, goodput and cost.
    A pure function of the records (``df``, as :func:`records_frame` builds it) and the run's
    statistics (``sim``). ``hetsim.run`` computes the same summary from the record columns
    (:func:`hetsim.summary.summarize_records`, no frame); this is the frame form, and the
    oracle a test holds that one to.

    With a ``warmup`` column, per-request figures cover the measured requests over the
    measured window (:func:`measured_window`), and the summary adds ``warmup_requests``,
    ``window_start_s`` and ``window_end_s``; instance and link counters cover the engine's
    measured span: from the first measured send (the engine restarted them there) to the run's
    last token."""
    whole, warm = df, "warmup" in df
    df, start, end = measured_window(whole, sim.end_s)
    # only the columns read below: a copy of every column would cost ~270 B a request
    done = df.loc[df["state"] == "completed",
                  ["output_tokens", "ttft_s", "tpot_s", "e2e_s", "queue_s"]]
    duration = max(end - start, 1e-12)
    run_start = (sim.stats_start_s if sim.stats_start_s is not None else
                 float(whole["arrival_s"].min()) if len(whole) else 0.0)
    ok = slo_met(df, slo)
    out_tokens = float(done["output_tokens"].sum())
    figures = {
        "requests": int(len(df)),
        "completed": int(len(done)),
        "dropped": int((df["state"] == "dropped").sum()),
        **({"warmup_requests": int(whole["warmup"].sum()),
            "window_start_s": start if len(df) else None,
            "window_end_s": end if len(df) else None} if warm else {}),
        "ttft_s": percentiles(done["ttft_s"]),
        "tpot_s": percentiles(done["tpot_s"]),
        "e2e_s": percentiles(done["e2e_s"]),
        "queue_s": percentiles(done["queue_s"]),
        "duration_s": duration if len(df) or not warm else 0.0,
        "throughput_rps": len(done) / duration,
        "output_tokens_per_s": out_tokens / duration,
        "slo_attainment": float(ok.mean()) if len(df) else 0.0,
        "meets_slo": meets(df, slo, ok),
        "goodput_rps": float(ok.sum()) / arrival_window(df["arrival_s"], duration),
        "kv_transfer_bytes": float(df["kv_bytes"].sum()),
        "kv_transfer_s": percentiles(df["transfer_s"]),
        "kv_wait_s": _mean_p99(df["kv_wait_s"]),
        "kv_transfer_exposed_s": _mean_p99(df["kv_transfer_exposed_s"]),
        "kv_conversion_s_total": float(df["conversion_s"].sum()),
        "prefix_cached_tokens": int(df["cached_tokens"].sum()),
    }
    tail = transfer_steps(sim.transfers, df["id"]) if sim.transfers is not None else {}
    if sim.faults is not None:
        tail.update(fault_metrics(df, sim, slo, placement))
    return assemble(figures, tail, placement, slo, sim, run_start)


#: the per-request figures, in the summary's order: those before the pools' cost, and the
#: KV figures after it (``kv_conversion_bytes``, a link counter, sits before the last one)
_HEAD = ("requests", "completed", "dropped", "warmup_requests", "window_start_s",
         "window_end_s", "ttft_s", "tpot_s", "e2e_s", "queue_s", "duration_s", "throughput_rps",
         "output_tokens_per_s", "slo_attainment", "meets_slo", "goodput_rps")
_KV = ("kv_transfer_bytes", "kv_transfer_s", "kv_wait_s", "kv_transfer_exposed_s",
       "kv_conversion_s_total")


def assemble(figures: dict, tail: dict, placement: ResolvedPlacement, slo: SLO,
             sim: SimResult, run_start: float) -> dict:
    """The summary from its per-request ``figures`` (the keys of ``_HEAD``, ``_KV`` and
    ``prefix_cached_tokens``) and the run's statistics, in the summary's key order;
    ``tail``: the stepwise-transfer and fault figures (after the pools'); ``run_start``:
    where the instances' counters start (the first send without a warm-up)."""
    # NOTE: busy time, KV occupancy and link busy area accumulate until the run's last token,
    # so they are divided by the span they cover (``duration`` without a warm-up)
    run_s = max(sim.end_s - run_start, 1e-12)
    cost = sum(p.usd_per_hour for p in placement.pools.values())
    tokens_per_s, goodput = figures["output_tokens_per_s"], figures["goodput_rps"]
    util, step = {}, {}
    kv_occ, staging = {}, {}
    preempt = {"count": 0, "swapped_bytes": 0.0, "recomputed_tokens": 0, "device_s": 0.0}
    for pname, insts in sim.instances.items():
        util[pname] = sum(i.busy_s for i in insts) / (len(insts) * run_s)
        ntok = sum(i.decode_tokens for i in insts)
        step[pname] = sum(i.decode_token_s for i in insts) / ntok if ntok else None
        kv_occ[pname] = {"mean": float(np.mean([i.kv.mean_occupancy for i in insts])),
                         "peak": max(i.kv.peak / i.kv.capacity for i in insts)}
        if placement.pools[pname].spec.role == "prefill":
            # KV of finished prompts still owned by prefill (waiting for, or in, transfer)
            staging[pname] = {
                "mean": float(np.mean([i.held_mean / i.kv.capacity for i in insts])),
                "peak": max(i.held_peak / i.kv.capacity for i in insts)}
        for i in insts:
            preempt["count"] += i.preemptions
            preempt["swapped_bytes"] += i.swapped_bytes
            preempt["recomputed_tokens"] += i.recomputed_tokens
            preempt["device_s"] += i.preemption_s
    summary = {
        "name": placement.name,
        **{k: figures[k] for k in _HEAD if k in figures},
        "accelerators": sum(p.accelerators for p in placement.pools.values()),
        "cost_per_hour_usd": cost,
        "usd_per_million_output_tokens": (cost / (tokens_per_s * 3600) * 1e6
                                          if tokens_per_s > 0 else None),
        "goodput_rps_per_dollar_hour": goodput / cost if cost > 0 else None,
        **{k: figures[k] for k in _KV},
        "kv_conversion_bytes": float(sim.conversion_bytes),
        "prefix_cached_tokens": figures["prefix_cached_tokens"],
        "preemptions": preempt,
        "pool_utilization": util,
        "decode_step_s": step,
        "link_utilization": link_utilization(sim.ports, run_s),
        "kv_occupancy": kv_occ,
        "kv_staging": staging,
        # per instance, as its runtime (or the idealised memory plan) sizes the KV cache
        "kv_capacity_tokens": {n: p.memory.kv_tokens for n, p in placement.pools.items()},
        **tail,
    }
    summary["bottleneck"] = bottleneck(summary, placement, slo)
    return {k: _nan_none(v) for k, v in summary.items()}


def transfer_steps(transfers: tuple[TransferRecord, ...], measured) -> dict:
    """Stepwise transfers of the ``measured`` request ids (a Series or an array of ids):
    wire bytes, each step's time per request ({mean, p99}), descriptors per request, streams
    sent and requests per stream."""
    t = pd.DataFrame.from_records(list(transfers), columns=list(TransferRecord._fields))
    t = t[t["id"].isin(measured)]
    batches = int(t["batch"].nunique())
    return {
        "kv_wire_bytes": float(t["wire_bytes"].sum()),
        "kv_transfer_breakdown_s": {k: _mean_p99(t[f"{k}_s"]) for k in STEPS},
        "kv_descriptors": _mean_p99(t["descriptors"].astype(float)),
        "kv_batches": batches,
        "kv_requests_per_batch": len(t) / batches if batches else None,
    }


def _union(intervals) -> list[tuple[float, float]]:
    """Overlapping [start, end) intervals merged, in order."""
    out: list[list[float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def availability(faults, pools: dict, end_s: float, start_s: float = 0.0) -> dict[str, float]:
    """Per pool: the fraction of instance-time up over [start_s, end_s] (outages clipped to
    it; a hang and a crash of one instance at once count once)."""
    down = {p: 0.0 for p in pools}
    span = end_s - start_s
    for inst, spans in faults.outages.items():
        for a, b in _union(spans):
            down[faults.pools[inst]] += max(0.0, min(b, end_s) - max(a, start_s))
    return {p: (1 - down[p] / (pools[p].spec.instances * span) if span > 0 else 1.0)
            for p in pools}


def timeline(df: pd.DataFrame, slo: SLO, bin_s: float) -> pd.DataFrame:
    """Per placement and arrival bin of ``bin_s`` seconds: the requests arriving, those
    meeting the SLO per second (goodput) and their SLO attainment."""
    return bin_goodput(df["placement"], df["arrival_s"], slo_met(df, slo), bin_s)


def bin_goodput(placement, arrival_s, ok, bin_s: float) -> pd.DataFrame:
    """:func:`timeline` of requests given as their placement (a name, or one per request),
    arrival times and whether each met the SLO."""
    t = (arrival_s // bin_s) * bin_s
    g = pd.DataFrame({"placement": placement, "t_s": t, "ok": ok}).groupby(
        ["placement", "t_s"], sort=False)["ok"]
    out = pd.DataFrame({"requests": g.size(), "met": g.sum()}).reset_index()
    out["goodput_rps"] = out["met"] / bin_s
    out["slo_attainment"] = out["met"] / out["requests"]
    return out.drop(columns="met")


def time_to_recover(arrival_s: np.ndarray, ok: np.ndarray, start: float, window_s: float,
                    target: float) -> float | None:
    """Seconds from ``start`` (a fault) to the first request arrival ``s`` >= start whose
    window [s, s + window_s) of arrivals meets the SLO at ``target`` attainment (0: it never
    fell below); None when no full window after ``start`` does. ``arrival_s`` is sorted."""
    lo = int(np.searchsorted(arrival_s, start))
    last = arrival_s[-1] if len(arrival_s) else start
    cum = np.concatenate([[0], np.cumsum(ok, dtype=np.int64)])
    for i in range(lo, len(arrival_s)):
        s = arrival_s[i]
        if s + window_s > last:      # no full window left
            break
        j = int(np.searchsorted(arrival_s, s + window_s))
        if (cum[j] - cum[i]) >= target * (j - i):
            return float(s - start) if i > lo else 0.0
    return None


def fault_windows(sim: SimResult) -> list[tuple[float, float]]:
    """When any instance or link of the run was down or degraded: merged (start, end) spans
    ([] without faults). With a warm-up, those of the measured span only (clipped to its
    start, ``sim.stats_start_s``)."""
    f = sim.faults
    if f is None:
        return []
    spans = [s for spans in f.outages.values() for s in spans] + [
        (a, b) for _, a, b in f.link_faults + f.degrades]
    t0 = sim.stats_start_s
    if t0 is not None:
        spans = [(max(a, t0), b) for a, b in spans if b > t0]
    return _union(spans)


def _fault_events(f, t0: float | None) -> int:
    """Fault events applied (with a warm-up: those whose outage reaches into the measured
    span, which starts at ``t0``)."""
    if t0 is None:
        return f.applied
    return (sum(b > t0 for spans in f.outages.values() for _, b in spans)
            + sum(b > t0 for _, _, b in f.link_faults + f.degrades))


def _request_costs(f, ids: np.ndarray, t0: float | None) -> tuple:
    """(requests moved, transfers retried, recomputed tokens, lost prefill tokens, KV bytes
    lost, KV bytes resent): the run's totals, or with a warm-up those of the measured
    requests ``ids``."""
    if t0 is None:
        return (f.retried, f.transfers_retried, f.recomputed_tokens, f.lost_prefill_tokens,
                f.kv_bytes_lost, f.kv_bytes_resent)
    measured = set(ids.tolist())
    rows = [r for r in f.by_request if r[0] in measured]
    return (sum(r[1] > 0 for r in rows), sum(r[2] for r in rows), sum(r[3] for r in rows),
            sum(r[4] for r in rows), float(sum(r[5] for r in rows)),
            float(sum(r[6] for r in rows)))


def _restores(f, ids: np.ndarray, t0: float | None, sim: SimResult) -> dict:
    """Requests restored from a write-through host copy and the KV bytes read back (with a
    warm-up: the measured requests'), and the KV bytes written to such tiers (the engine's
    measured span)."""
    restored, nbytes = f.restored, f.kv_bytes_restored
    if t0 is not None:
        measured = set(ids.tolist())
        rows = [r[7] for r in f.by_request if r[0] in measured]
        restored, nbytes = sum(b > 0 for b in rows), float(sum(rows))
    written = sum(i.host_written_bytes for insts in sim.instances.values() for i in insts)
    return {"requests_restored": restored, "kv_bytes_restored": nbytes,
            "kv_bytes_written_through": written}


def fault_metrics(df: pd.DataFrame, sim: SimResult, slo: SLO,
                  placement: ResolvedPlacement) -> dict:
    """What faults cost a run: events, moved and failed requests, lost KV, availability per
    pool, and the requests that arrived while any instance was down (the fault windows)."""
    failed = df.loc[df["state"] == "failed", "drop_reason"]
    return fault_figures(df["id"].to_numpy(), df["arrival_s"].to_numpy(),
                         slo_met(df, slo).to_numpy(),
                         {r: int((failed == r).sum()) for r in FAILURE_REASONS}, len(failed),
                         sim, slo, placement)


def fault_figures(ids: np.ndarray, arr: np.ndarray, ok: np.ndarray, failed_by_reason: dict,
                  failed: int, sim: SimResult, slo: SLO, placement: ResolvedPlacement) -> dict:
    """:func:`fault_metrics` of the measured requests given as their ids, arrival times and
    whether each met the SLO (by id), with the failed ones counted (all, and by reason)."""
    f, t0 = sim.faults, sim.stats_start_s
    retried, transfers, recomputed, lost_prefill, kv_lost, resent = _request_costs(
        f, ids, t0)
    windows = fault_windows(sim)
    # the run's end: the last token or, if later (requests that failed), arrival
    end = max(sim.end_s, float(arr.max()) if len(arr) else 0.0)
    inside = np.zeros(len(arr), dtype=bool)
    for a, b in windows:
        inside |= (arr >= a) & (arr < b)
    # a window still open when the run ends (a repair after it, as a resilience run's
    # whole-run fault) counts up to the end only
    win_s = sum(max(0.0, min(b, end) - a) for a, b in windows)
    met = ok[inside]
    recover = [time_to_recover(arr, ok, a, placement.recovery.recover_window_s,
                               slo.attainment) for a, _ in windows]
    done = [t for t in recover if t is not None]
    return {
        "faults": _fault_events(f, t0),
        "requests_retried": retried,
        "requests_failed": int(failed),
        "requests_failed_by_reason": failed_by_reason,
        "recomputed_tokens": recomputed,
        "lost_prefill_tokens": lost_prefill,
        "kv_bytes_lost": kv_lost,
        "kv_bytes_resent": resent,
        "transfers_retried": transfers,
        **_restores(f, ids, t0, sim),
        "availability": availability(f, placement.pools, end, t0 or 0.0),
        # over the fault windows: the slowest and mean recovery (None: one never recovered)
        "time_to_recover_s": {"max": max(done) if done and len(done) == len(recover) else None,
                              "mean": float(np.mean(done)) if done else None,
                              "unrecovered": len(recover) - len(done)},
        "fault_windows": {"seconds": win_s, "requests": int(inside.sum()),
                          "slo_attainment": float(met.mean()) if inside.any() else None,
                          "goodput_rps": float(met.sum()) / win_s if win_s > 0 else None},
    }


def arrival_window(arrival_s: pd.Series, fallback: float) -> float:
    """The span the requests arrived over, as n inter-arrival gaps: (last - first) x n/(n-1),
    so n requests arriving at rate r span n/r on average (goodput = attainment x that rate)."""
    n = len(arrival_s)
    span = float(arrival_s.max() - arrival_s.min()) if n else 0.0
    return span * n / (n - 1) if n > 1 and span > 0 else max(fallback, 1e-12)


def _mean_p99(x: pd.Series) -> dict:
    return percentiles_of(x.dropna().to_numpy(), ("mean", "p99"))


def link_utilization(ports: tuple[PortStats, ...], duration: float) -> dict:
    """Busy fraction of each link: per group of ports (a pool's NICs, a shared cross-site
    link), the mean and the busiest port."""
    groups: dict[str, list[float]] = {}
    for p in ports:
        if p.group:
            groups.setdefault(p.group, []).append(p.busy_area / duration)
    return {g: {"mean": float(np.mean(u)), "max": float(max(u))} for g, u in groups.items()}


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
    scores["transfer-bound"] = max((u["max"] for u in s["link_utilization"].values()),
                                   default=0.0)
    scores["memory-bound"] = max((o["mean"] for o in s["kv_occupancy"].values()), default=0.0)
    return max(scores, key=scores.get)
