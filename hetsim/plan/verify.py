"""The search itself: capacity options -> pruned candidates -> short list -> simulation.

Verification simulates each short-listed candidate at the target rate, growing the pool that
misses its SLO by one instance (up to three times); the verified plans then get a goodput
search for the cost-vs-goodput frontier. The per-accelerator objective simulates a goodput
search of each short-listed serving unit instead.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from ..config import build
from ..models import load_model
from ..scenario import Placement, Scenario
from .capacity import options
from .result import PlanResult, pareto
from .search import Candidate, best_units, candidates, cheapest_layouts
from .spec import PlanSpec

__all__ = ["plan"]

#: Simulations of one candidate: the first, then up to three with one more instance.
_VERIFY_TRIES = 4


def _scenario(spec: PlanSpec, cands: list[Candidate], rate: float, requests: int) -> Scenario:
    w = dataclasses.replace(spec.workload, requests=requests,
                            arrival=dataclasses.replace(spec.workload.arrival, rate_rps=rate))
    return Scenario(name=spec.name, model=spec.model, workload=w, slo=spec.slo,
                    placements={c.name(): build(Placement, c.placement()) for c in cands},
                    source_file=spec.source_file)   # relative workload files, error attribution


def _verify(spec: PlanSpec, c: Candidate, target: float) -> Candidate:
    from ..api import run
    for _ in range(_VERIFY_TRIES):
        s = run(_scenario(spec, [c], target, spec.verify_requests)).summaries[0]
        c.attainment = s["slo_attainment"]
        if s["meets_slo"]:
            c.verified = True
            return c
        # grow the pool under pressure by one instance
        role = "mixed" if "mixed" in c.pools else (
            "prefill" if s["ttft_s"]["p90"] and s["ttft_s"]["p90"] > spec.slo.ttft_s
            else "decode")
        o, n = c.pools[role]
        c.pools[role] = (o, n + 1)
        c.cost += o.price
        if spec.budget_usd_per_hour is not None and c.cost > spec.budget_usd_per_hour:
            break
    c.verified = False
    return c


def _plan_per_accelerator(spec: PlanSpec, opts, kv_bytes: float, target: float, t0: float,
                          progress):
    from ..goodput import goodput
    units, considered, infeasible = candidates(spec, opts, kv_bytes, None)
    short = best_units(spec, units)
    for i, c in enumerate(short):
        if progress:
            progress("goodput", i + 1, len(short))
        sc = _scenario(spec, [c], max(c.estimate_rps, 0.05), spec.verify_requests)
        r = goodput(sc, seeds=spec.seeds, requests=spec.verify_requests, rel_tol=0.02,
                    tune=spec.tune)[0]
        c.goodput_rps, c.verified, c.knobs = r.max_goodput_rps, r.max_goodput_rps > 0, r.knobs
        c.attainment = next((p.attainment for p in r.curve if p.rate_rps == r.max_goodput_rps),
                            None)
    return PlanResult(spec, target, considered, considered - len(short), len(short),
                      time.monotonic() - t0, short, pareto(short), infeasible)


def plan(spec: PlanSpec, progress=None) -> PlanResult:
    """Search ``spec``. ``progress(stage, done, total)`` is called before each simulation."""
    from ..goodput import goodput
    t0 = time.monotonic()
    model = load_model(spec.model)
    target = spec.target
    reqs = spec.draw(model)
    mean_in, mean_out = float(np.mean(reqs.input_tokens)), float(np.mean(reqs.output_tokens))
    opts = options(spec, model, mean_in, mean_out)
    # NOTE: the KV crossing the link is sized at bf16 whatever the candidate's KV format
    kv_bytes = model.kv_tokens(mean_in) * model.kv_bytes_per_token("bf16")
    if spec.objective == "goodput-per-accelerator":
        return _plan_per_accelerator(spec, opts, kv_bytes, target, t0, progress)
    cands, considered, infeasible = candidates(spec, opts, kv_bytes, target)
    short = cheapest_layouts(spec, cands)
    verified, simulated = [], 0
    for i, c in enumerate(short):
        if progress:
            progress("verify", i + 1, len(short))
        verified.append(_verify(spec, c, target))
        simulated += 1
    ok = [c for c in verified if c.verified]
    if ok:
        sc = _scenario(spec, ok, target, spec.verify_requests)
        for c, r in zip(ok, goodput(sc, seeds=1, requests=spec.verify_requests,
                                    rel_tol=0.05)):
            c.goodput_rps = r.max_goodput_rps
    return PlanResult(spec, target, considered, considered - simulated, simulated,
                      time.monotonic() - t0, verified, pareto(verified), infeasible)
