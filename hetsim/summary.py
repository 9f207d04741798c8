"""A placement's summary computed straight from its record columns (issue 19): the figures of
:func:`hetsim.metrics.summarize`, bit for bit, without a per-request frame.

Memory: besides the run's own columns (read-only, never copied whole), the summary holds one
float64 scratch column (each derived latency is computed into it in turn, with the same
float operations as ``metrics._derived``), the completed requests' values of one latency at
a time, and a few one-byte masks: ~20 B a request while it runs, where the slim frame it
replaces took ~90.

Why the figures are identical (``tests/test_summary_columns.py`` compares both on every
shipped scenario): every derived latency is the same elementwise expression over the same
float64 values; a mean or percentile is taken over the same values in the same order (the
completed, non-NaN requests by id, copied into a contiguous array, as ``Series.dropna``
gives), so numpy's pairwise summation adds them alike; sums of a column with NaN add its
whole length with NaN as 0, as pandas' ``nansum`` does; counts and integer sums are exact.
Warm-up requests are a prefix of the ids (the engine numbers requests in send order), so the
measured requests are a slice of every column.
"""
from __future__ import annotations

import numpy as np

from .engine.records import Records
from .engine.stats import SimResult
from .metrics import (FAILURE_REASONS, PCTS, arrival_window, assemble, bin_goodput,
                      fault_figures, meets_percentile, percentiles_of, transfer_steps)
from .resolve import ResolvedPlacement
from .scenario import SLO
from .workload import Warmup

__all__ = ["summarize_records", "warmup_count", "latencies", "timeline_frame"]


def warmup_count(records: Records, warmup: Warmup | None) -> int:
    """How many requests are warm-up: they are the ids below this count (asserted)."""
    n = len(records)
    if warmup is None:
        return 0
    if warmup.requests is not None:
        return min(warmup.requests, n)
    arrival = records.column("arrival_s")
    k = int(np.count_nonzero(arrival < warmup.seconds))
    # NOTE: ids follow send order and arrival is the send time, so the warm-up is a prefix
    assert not (arrival[k:] < warmup.seconds).any(), "warm-up requests are not a prefix"
    return k


class _Rows:
    """The measured rows (ids ``k``..n) of one run's columns, and one float64 scratch
    column the derived latencies are computed into, one at a time."""

    def __init__(self, records: Records, k: int):
        self.records, self.rows = records, slice(k, len(records))
        self.arrival = records.column("arrival_s", self.rows)
        state, vocab = records.codes("state")
        self.state, self.vocab = state[self.rows], vocab
        self.done = self.is_state("completed")
        self.buf = np.empty(len(self.arrival))

    def col(self, field: str) -> np.ndarray:
        return self.records.column(field, self.rows)

    def is_state(self, value: str) -> np.ndarray:
        return self.state == self.vocab.index(value)

    def diff(self, a: str, b: str | np.ndarray) -> np.ndarray:
        """``a - b`` into the scratch column (``b`` a field or values)."""
        return np.subtract(self.col(a), self.col(b) if isinstance(b, str) else b,
                           out=self.buf)

    def ttft(self) -> np.ndarray:
        return self.diff("first_token_s", self.arrival)

    def tpot(self) -> np.ndarray:
        """(last - first token) / (output tokens - 1); NaN for single-token outputs."""
        out = self.records.stored("output_tokens")[self.rows]   # int32, exact as float64
        x = np.divide(self.diff("last_token_s", "first_token_s"), np.maximum(out - 1, 1),
                      out=self.buf)
        x[out <= 1] = np.nan
        return x

    def values(self, x: np.ndarray, only_done: bool = True) -> np.ndarray:
        """The non-NaN values of ``x`` (of completed requests), by id, in a new array."""
        keep = ~np.isnan(x)
        if only_done:
            keep &= self.done
        return x[keep]

    def stats(self, x: np.ndarray, keys=tuple(PCTS), only_done: bool = True) -> dict:
        return percentiles_of(self.values(x, only_done), keys, overwrite=True)


def _slo_ok(rows: _Rows, slo: SLO) -> np.ndarray:
    """Completed, TTFT within SLO and TPOT within SLO (``metrics.slo_met``), by id."""
    ok = rows.done & (rows.ttft() <= slo.ttft_s)
    tpot = rows.tpot()
    ok &= np.isnan(tpot) | (tpot <= slo.tpot_s)
    return ok


def _window(rows: _Rows, warm: bool, end_s: float) -> tuple[float, float]:
    """``metrics.measured_window``'s (start, end) of the measured rows."""
    arr = rows.arrival
    if not warm:
        return (float(arr.min()) if len(arr) else 0.0), end_s
    if not len(arr):
        return 0.0, 0.0
    start, last = float(arr.min()), rows.col("last_token_s")
    return start, (start if np.isnan(last).all() else float(np.nanmax(last)))


def summarize_records(records: Records, placement: ResolvedPlacement, slo: SLO,
                      sim: SimResult, warmup: Warmup | None = None) -> dict:
    """``metrics.summarize(records_frame(records, name, warmup), placement, slo, sim)``,
    computed from the columns."""
    k = warmup_count(records, warmup)
    rows, warm = _Rows(records, k), warmup is not None
    n = len(rows.arrival)
    start, end = _window(rows, warm, sim.end_s)
    duration = max(end - start, 1e-12)
    arrival = records.column("arrival_s")
    run_start = (sim.stats_start_s if sim.stats_start_s is not None else
                 float(arrival.min()) if len(arrival) else 0.0)
    done = rows.done
    completed = int(np.count_nonzero(done))
    out_tokens = float(records.stored("output_tokens")[rows.rows][done].sum(dtype=np.int64))
    ok = _slo_ok(rows, slo)
    attainment = float(ok.mean()) if n else 0.0
    met = bool(n) and (bool(attainment >= slo.attainment) if slo.percentile is None
                       else _meets_percentile(rows, slo))
    lat = {"ttft_s": rows.stats(rows.ttft()), "tpot_s": rows.stats(rows.tpot()),
           "e2e_s": rows.stats(rows.diff("last_token_s", rows.arrival)),
           "queue_s": rows.stats(rows.diff("prefill_start_s", rows.arrival))}
    figures = {
        "requests": n,
        "completed": completed,
        "dropped": int(np.count_nonzero(rows.is_state("dropped"))),
        **({"warmup_requests": k, "window_start_s": start if n else None,
            "window_end_s": end if n else None} if warm else {}),
        **lat,
        "duration_s": duration if n or not warm else 0.0,
        "throughput_rps": completed / duration,
        "output_tokens_per_s": out_tokens / duration,
        "slo_attainment": attainment,
        "meets_slo": met,
        "goodput_rps": float(np.count_nonzero(ok)) / arrival_window(rows.arrival, duration),
        "kv_transfer_bytes": float(np.nansum(rows.col("kv_bytes"))),
        "kv_transfer_s": rows.stats(rows.diff("transfer_end_s", "transfer_start_s"),
                                    only_done=False),
        "kv_wait_s": rows.stats(_kv_wait(rows), ("mean", "p99"), only_done=False),
        "kv_transfer_exposed_s": rows.stats(_exposed(rows), ("mean", "p99"), only_done=False),
        "kv_conversion_s_total": float(np.nansum(rows.col("conversion_s"))),
        "prefix_cached_tokens": int(records.stored("cached_tokens")[rows.rows].sum(
            dtype=np.int64)),
    }
    ids = np.arange(k, len(records), dtype=np.int64)
    tail = transfer_steps(sim.transfers, ids) if sim.transfers is not None else {}
    if sim.faults is not None:
        tail.update(_faults(rows, ids, ok, sim, slo, placement))
    return assemble(figures, tail, placement, slo, sim, run_start)


def _meets_percentile(rows: _Rows, slo: SLO) -> bool:
    """``metrics.meets``' percentile form: requests not completed are infinitely slow."""
    ttft = np.where(rows.done, rows.ttft(), np.inf)
    tpot = np.where(rows.done, rows.tpot(), np.inf)
    return meets_percentile(ttft, tpot[~np.isnan(tpot)], slo)


def _kv_wait(rows: _Rows) -> np.ndarray:
    """transfer start - prefill end, clipped at 0 (NaN kept, as ``Series.clip`` keeps it)."""
    x = rows.diff("transfer_start_s", "prefill_end_s")
    x[x < 0] = 0.0
    return x


def _exposed(rows: _Rows) -> np.ndarray:
    """transfer end - max(prefill end, transfer start)."""
    np.maximum(rows.col("prefill_end_s"), rows.col("transfer_start_s"), out=rows.buf)
    return rows.diff("transfer_end_s", rows.buf)


def _faults(rows: _Rows, ids, ok, sim, slo, placement) -> dict:
    failed = rows.is_state("failed")
    codes, vocab = rows.records.codes("drop_reason")
    reasons = codes[rows.rows][failed]
    by_reason = {r: int(np.count_nonzero(reasons == vocab.index(r))) if r in vocab else 0
                 for r in FAILURE_REASONS}
    return fault_figures(ids, rows.arrival, ok, by_reason, int(np.count_nonzero(failed)),
                         sim, slo, placement)


def latencies(records: Records, field: str, warmup: Warmup | None = None) -> np.ndarray:
    """``ttft_s`` or ``tpot_s`` of the measured requests that have one (every state), by id."""
    rows = _Rows(records, warmup_count(records, warmup))
    return rows.values({"ttft_s": rows.ttft, "tpot_s": rows.tpot}[field](), only_done=False)


def timeline_frame(records: Records, name: str, slo: SLO, bin_s: float):
    """``metrics.timeline`` of one placement's requests (warm-up included), from columns."""
    rows = _Rows(records, 0)
    return bin_goodput(name, rows.arrival, _slo_ok(rows, slo), bin_s)
