"""Fit the two host costs no serving runtime documents: per engine step and per request.

docs/runtime-rules.md §5: no runtime source states a per-step host time or a per-request
frontend time. hetsim fits one of each per runtime on the measured runs the team may use
(``serving_accuracy.allowed_rows``: the Llama and DeepSeek families are never read), only on
runs that barely queue: aggregated, 1-4 clients, each measurement once
(``serving_accuracy.measurements``: InferenceX's exports repeat runs).

1. Every runtime's constants at 0: the step overhead is the median, over that runtime's rows,
   of measured TPOT - hetsim TPOT (a TPOT is a decode step plus the gap between steps),
   floored at 0.
2. With those: the request overhead is the median of measured TTFT - hetsim TTFT, floored at 0.

The constants absorb whatever else differs between a summed-kernel step and the runtime's
real step at these loads; they are not tuned to the error figures (the median residual is
the whole fit). ``hetsim.runtimes.STEP_OVERHEAD_S`` / ``REQUEST_OVERHEAD_S`` carry the
printed values.

    python benchmarks/fit_runtime_overheads.py [--jobs 2] [--max-clients 4]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from serving_accuracy import allowed_rows, concurrency, evaluate, measurements


def fit_rows(rows, max_clients: int):
    """The rows the fit reads: aggregated runs of at most ``max_clients`` clients."""
    c = rows.apply(concurrency, axis=1)
    return rows[(rows["mode"] == "agg") & (c <= max_clients)]


def _median_gap(df, measured: str, predicted: str) -> tuple[float, int]:
    ok = df[df["skipped"] == ""]
    gap = (ok[measured] - ok[predicted]).dropna() / 1e3
    return (max(0.0, float(np.median(gap))) if len(gap) else 0.0), len(gap)


def fit(rows, jobs: int = 1) -> dict[str, dict]:
    """Per runtime: {step_overhead_s, request_overhead_s, rows}."""
    out = {}
    for backend, sub in rows.groupby("backend", sort=True):
        zero = {"step_overhead_s": 0.0, "request_overhead_s": 0.0}
        step, n = _median_gap(evaluate(sub, zero, jobs), "silicon_tpot_ms", "hetsim_tpot_ms")
        with_step = {"step_overhead_s": step, "request_overhead_s": 0.0}
        req, _ = _median_gap(evaluate(sub, with_step, jobs), "silicon_ttft_ms", "hetsim_ttft_ms")
        out[backend] = {"step_overhead_s": step, "request_overhead_s": req, "rows": n}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--max-clients", type=int, default=4)
    a = ap.parse_args(argv)
    res = fit(fit_rows(measurements(allowed_rows()), a.max_clients), a.jobs)
    for name, r in res.items():
        print(f"{name}: step {r['step_overhead_s'] * 1e3:.3g} ms, request "
              f"{r['request_overhead_s'] * 1e3:.3g} ms ({r['rows']} rows)")
    print("STEP_OVERHEAD_S = {" + ", ".join(f'"{k}": {r["step_overhead_s"]:.3g}'
                                            for k, r in res.items()) + "}")
    print("REQUEST_OVERHEAD_S = {" + ", ".join(f'"{k}": {r["request_overhead_s"]:.3g}'
                                               for k, r in res.items()) + "}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
