"""DistServe's simulator method, re-implemented as an independent reference (no hetsim engine).

DistServe (OSDI'24) ships a simulator (LLMServe/DistServe, ``simdistserve``) whose published
reference is OPT-13B on ShareGPT, 4 x A100-80GB, p90 TTFT 200 ms and p90 TPOT 100 ms: best unit
prefill TP2 + decode TP1 at 1.56 req/s per GPU. Its *inputs* are public: the iteration-time fits
(``profiler-a100-80g.distserve.json``, measured on A100 with DistServe's engine) and the request
lengths (``sharegpt-distserve`` preset). So is its *method*, written here from its README and
source, not copied:

* one prefill worker per instance, FIFO; each iteration takes every waiting prompt (up to the
  instance's token budget, which OPT-13B never reaches) and lasts
  ``a + b * sum(L) + c * sum(L^2)`` ms;
* a request's first token is out when its prefill iteration ends (TTFT; no transfer time);
* one decode worker per instance; each iteration takes every request waiting (no KV-memory
  limit), lasts ``a + b * sum(context) + c * batch`` ms (other coefficients from batch 95), and
  emits one token per request; a request leaves after ``output_tokens`` iterations;
* TPOT = (exit - first token) / output_tokens; a rate passes when the p90 TTFT and the p90 TPOT
  are each within target.

This gives a second simulator with DistServe's own step times and semantics, on exactly the
requests hetsim simulates, to compare hetsim's answer with (``benchmarks/distserve.py`` and
``tests/test_goodput_check.py``). The fits are third-party measurements: used to check, never
to fit hetsim.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from hetsim import load_model
from hetsim.goodput_search import Point, search
from hetsim.workload import generate

# DistServe's fits, ms (profiler-a100-80g.distserve.json, OPT-13B): per TP degree
# (prefill a, b, c), (decode a, b, c for batch < 95), (decode a, b, c from batch 95).
FITS = {1: ((16.456860, 0.0926475, 6.474786e-06), (19.934703, 6.269357e-04, 0.0385070),
            (7.166189, 5.798000e-04, 0.1583110)),
        2: ((13.402703, 0.0623429, 2.226884e-06), (13.294796, 3.410922e-04, 0.0629639),
            (10.638742, 3.118337e-04, 0.0856291)),
        4: ((10.965725, 0.0346195, 4.751136e-07), (10.256232, 1.878670e-04, 0.0326927),
            (10.483515, 1.712089e-04, 0.0456665))}
LARGE_BATCH = 95


def fit_prefill(tp: int, chunks) -> float:
    """Seconds for one prefill iteration over ``chunks`` of (new tokens, attended tokens)."""
    a, b, c = FITS[tp][0]
    return (a + b * sum(q for q, _ in chunks) + c * sum(q * k for q, k in chunks)) / 1e3


def fit_decode(tp: int, batch: int, ctx: int) -> float:
    """Seconds for one decode iteration of ``batch`` requests holding ``ctx`` tokens in all
    (DistServe counts each request's context including the token being generated)."""
    a, b, c = FITS[tp][1] if batch < LARGE_BATCH else FITS[tp][2]
    return (a + b * (ctx + batch) + c * batch) / 1e3


def simulate(arrival_s, input_tokens, output_tokens, tp_prefill: int, tp_decode: int):
    """DistServe's method for one prefill and one decode instance: (TTFT s, TPOT s) per request."""
    arr = np.asarray(arrival_s, dtype=float)
    inp = np.asarray(input_tokens, dtype=np.int64)
    out = np.maximum(np.asarray(output_tokens, dtype=np.int64), 1)
    n = len(arr)
    order = np.argsort(arr, kind="stable")
    first = np.empty(n)
    # Prefill: a single FIFO server; each iteration takes everything that has arrived.
    t, i = 0.0, 0
    while i < n:
        t = max(t, arr[order[i]])
        j = i
        while j < n and arr[order[j]] <= t:
            j += 1
        batch = order[i:j]
        t += fit_prefill(tp_prefill, [(int(inp[k]), int(inp[k])) for k in batch])
        first[batch] = t
        i = j
    # Decode: every waiting request joins the next iteration; no memory limit.
    ready = np.argsort(first, kind="stable")
    done = np.empty(n)
    emitted = np.zeros(n, dtype=np.int64)
    active: list[int] = []
    t, k = 0.0, 0
    while k < n or active:
        if not active:
            t = max(t, first[ready[k]])
        while k < n and first[ready[k]] <= t:
            active.append(int(ready[k]))
            k += 1
        ctx = int(sum(inp[r] + emitted[r] for r in active))
        t += fit_decode(tp_decode, len(active), ctx)
        still = []
        for r in active:
            emitted[r] += 1
            if emitted[r] >= out[r]:
                done[r] = t
            else:
                still.append(r)
        active = still
    return first - arr, (done - first) / out


def passes(ttft, tpot, ttft_s: float, tpot_s: float, percentile: float) -> bool:
    return bool(np.percentile(ttft, percentile) <= ttft_s and
                np.percentile(tpot, percentile) <= tpot_s)


def goodput(workload, tp_prefill: int, tp_decode: int, *, seeds, slo, rel_tol: float = 0.02,
            start: float = 1.0, base=".", max_context: int | None = None) -> float:
    """Highest rate (req/s) at which most seeds pass, found by hetsim's own bracketing and
    bisection over the same request streams hetsim draws (``workload`` is a WorkloadSpec)."""
    def evaluate(rate: float) -> Point:
        ok = []
        for s in seeds:
            w = dataclasses.replace(workload, seed=s,
                                    arrival=dataclasses.replace(workload.arrival, rate_rps=rate))
            r = generate(w, base, max_context=max_context)
            ttft, tpot = simulate(r.arrival_s, r.input_tokens, r.output_tokens,
                                  tp_prefill, tp_decode)
            ok.append(passes(ttft, tpot, slo.ttft_s, slo.tpot_s, slo.percentile))
        return Point(rate, float(np.mean(ok)), 0.0, sum(ok) * 2 > len(ok), 0.0)
    rate, _, _ = search(evaluate, start, rel_tol=rel_tol)
    return rate


def plan_goodput(spec, tp_prefill: int, tp_decode: int) -> float:
    """The method on a plan spec's own requests (clipped to the model's context, as hetsim's
    goodput search draws them), seeds, SLO and starting rate."""
    w = dataclasses.replace(spec.workload, requests=spec.verify_requests)
    return goodput(w, tp_prefill, tp_decode, seeds=[w.seed + i for i in range(spec.seeds)],
                   slo=spec.slo, start=w.arrival.rate_rps,
                   max_context=load_model(spec.model).max_context)


# DistServe's simulator at prefill TP2 + decode TP1, 3 req/s, its 300-request ShareGPT sample
# (simdistserve/benchmarks/alignment/align-with-real.nb.ipynb): p90 TTFT and p90 TPOT, seconds.
ALIGNMENT = (0.1190, 0.0202)


def alignment_point(workload, seeds=range(5)) -> tuple[float, float]:
    """Mean p90 TTFT and p90 TPOT (s) of the method at DistServe's alignment point: 300 requests
    at 3 req/s, prefill TP2 + decode TP1. DistServe's simulate_dist gives the decode workers the
    prefill TP (``TP_Decode=TP_Prefill``), so the decode iterations use the TP2 fit here."""
    w = dataclasses.replace(workload, requests=300,
                            arrival=dataclasses.replace(workload.arrival, rate_rps=3.0))
    p90 = []
    for s in seeds:
        r = generate(dataclasses.replace(w, seed=s))
        ttft, tpot = simulate(r.arrival_s, r.input_tokens, r.output_tokens, 2, 2)
        p90.append((np.percentile(ttft, 90), np.percentile(tpot, 90)))
    t, p = np.mean(p90, axis=0)
    return float(t), float(p)
