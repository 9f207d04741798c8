"""The search itself: capacity options -> pruned candidates -> short list -> simulation.

Verification simulates each short-listed candidate at the target rate, growing the pool that
misses its SLO by one instance (up to three times); the verified plans then get a goodput
search for the cost-vs-goodput frontier. The per-accelerator objective simulates a goodput
search of each short-listed serving unit instead.
"""
from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path

import numpy as np

from ..config import build, to_dict
from ..executors import Executor, serialized
from ..models import load_model
from ..resilience import variants
from ..scenario import Placement, Scenario
from .capacity import options
from .result import PlanResult, pareto
from .search import Candidate, best_units, candidates, cheapest_layouts
from .spec import PlanSpec, load_plan_spec, spec_from_raw

__all__ = ["plan"]

#: Simulations of one candidate: the first, then up to three with one more instance.
_VERIFY_TRIES = 4


def _runs(spec: PlanSpec, c: Candidate, down: bool) -> list[tuple]:
    """``(name, placement, lost)`` of candidate ``c``'s runs: itself (lost None), then with
    ``down`` (``resilience``) each pool's first instance crashed for the whole run (lost: the
    pool) and, spanning sites with ``cross_site_factor``, the cross-site link degraded (lost
    "cross-site"): :func:`hetsim.resilience.variants`, in its order."""
    pl = build(Placement, c.placement())
    out = [(c.name(), pl, None)]
    for v in variants(c.name(), pl, spec.resilience, spec.slo.ttft_s) if down else ():
        # NOTE: a pool of one is simulated too: every request needing it times out, the
        # run misses and that pool grows (as any pool that cannot lose an instance)
        out.append((v.name, v.placement, v.lost))
    return out


def _scenario(spec: PlanSpec, cands: list[Candidate], rate: float, requests: int,
              down: bool = False) -> Scenario:
    """The candidates at ``rate``, each with its resilience runs when ``down`` (:func:`_runs`:
    placements ``<name> without <pool>/0``, ``<name> with cross-site x<f>``)."""
    w = dataclasses.replace(spec.workload, requests=requests,
                            arrival=dataclasses.replace(spec.workload.arrival, rate_rps=rate))
    placements = {name: pl for c in cands for name, pl, _ in _runs(spec, c, down)}
    return Scenario(name=spec.name, model=spec.model, workload=w, slo=spec.slo,
                    placements=placements,
                    source_file=spec.source_file)   # relative workload files, error attribution


def _verify(spec: PlanSpec, c: Candidate, target: float, executor: Executor) -> Candidate:
    from ..api import plain, run_summaries
    down = spec.resilience is not None
    for _ in range(_VERIFY_TRIES):
        sc = _scenario(spec, [c], target, spec.verify_requests, down)
        by_name = {r["name"]: r for r in executor.map(run_summaries, [plain(sc)])[0]}
        # NOTE: by name: plain() carries the placements sorted by name, not in _runs' order
        runs = [by_name[name] for name in sc.placements]
        lost = [what for _, _, what in _runs(spec, c, down)]
        c.attainment = min(r["slo_attainment"] for r in runs)
        if "cross-site" in lost:
            c.cross_site_ok = runs[lost.index("cross-site")]["meets_slo"]
        # the plan itself first, then each resilience run: the first that misses decides
        miss = next((i for i, r in enumerate(runs) if not r["meets_slo"]), None)
        if miss is None:
            c.verified = True
            return c
        s, grow = runs[miss], lost[miss]
        if grow == "cross-site":
            # NOTE: no pool growth widens the one link every transfer between sites shares
            c.reason = (f"misses its SLO with the cross-site link at "
                        f"x{spec.resilience.cross_site_factor:g} for the whole run "
                        f"(attainment {s['slo_attainment']:.1%})")
            break
        # grow the pool under pressure (or the one that could not lose an instance) by one
        role = grow or ("mixed" if "mixed" in c.pools else (
            "prefill" if s["ttft_s"]["p90"] and s["ttft_s"]["p90"] > spec.slo.ttft_s
            else "decode"))
        o, n = c.pools[role]
        c.pools[role] = (o, n + 1)
        c.cost += o.price
        if spec.budget_usd_per_hour is not None and c.cost > spec.budget_usd_per_hour:
            break
    c.verified = False
    return c


def _each(executor: Executor, fn, items: list, progress, stage: str) -> list:
    """``[fn(x) for x in items]``, one thread per item when the executor runs tasks in
    parallel (each thread's simulations go to the executor)."""
    done = itertools.count(1)
    concurrent = executor.parallel and len(items) > 1
    report = serialized(progress) if progress and concurrent else progress

    def one(x):
        out = fn(x)
        if report:
            report(stage, next(done), len(items))
        return out
    if concurrent:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(min(len(items), 64)) as threads:
            return list(threads.map(one, items))
    return [one(x) for x in items]


def _plan_per_accelerator(spec: PlanSpec, opts, kv_bytes: float, target: float, t0: float,
                          progress, executor: Executor):
    from ..goodput_search import goodput
    units, considered, infeasible = candidates(spec, opts, kv_bytes, None)
    short = best_units(spec, units)

    def measure(c: Candidate) -> None:
        sc = _scenario(spec, [c], max(c.estimate_rps, 0.05), spec.verify_requests)
        r = goodput(sc, seeds=spec.seeds, requests=spec.verify_requests, rel_tol=0.02,
                    tune=spec.tune, executor=executor)[0]
        c.goodput_rps, c.verified, c.knobs = r.max_goodput_rps, r.max_goodput_rps > 0, r.knobs
        c.attainment = next((p.attainment for p in r.curve if p.rate_rps == r.max_goodput_rps),
                            None)
    _each(executor, measure, short, progress, "goodput")
    return PlanResult(spec, target, considered, considered - len(short), len(short),
                      time.monotonic() - t0, short, pareto(short), infeasible)


def plan(spec: "PlanSpec | str | Path | dict", progress=None, *, overrides: dict | None = None,
         executor: Executor | None = None) -> PlanResult:
    """Search ``spec`` (a PlanSpec, a plan file or a mapping, with ``overrides`` {key path:
    value} set first). ``progress(stage, done, total)`` is called as simulations finish;
    ``executor`` (:mod:`hetsim.executors`) runs them, identically on any."""
    from ..goodput_search import goodput
    if not isinstance(spec, PlanSpec):
        spec = load_plan_spec(spec, overrides)
    elif overrides:
        raw = {k: v for k, v in to_dict(spec).items() if k != "source_file"}
        spec = spec_from_raw(raw, spec.source_file, overrides)
    executor = executor or Executor()
    t0 = time.monotonic()
    model = load_model(spec.model)
    target = spec.target
    reqs = spec.draw(model)
    mean_in, mean_out = float(np.mean(reqs.input_tokens)), float(np.mean(reqs.output_tokens))
    opts = options(spec, model, mean_in, mean_out)
    # NOTE: the KV crossing the link is sized at bf16 whatever the candidate's KV format
    kv_bytes = model.kv_tokens(mean_in, "bf16") * model.kv_bytes_per_token("bf16")
    if spec.objective == "goodput-per-accelerator":
        return _plan_per_accelerator(spec, opts, kv_bytes, target, t0, progress, executor)
    cands, considered, infeasible = candidates(spec, opts, kv_bytes, target)
    short = cheapest_layouts(spec, cands)
    verified = _each(executor, lambda c: _verify(spec, c, target, executor), short, progress,
                     "verify")
    ok = [c for c in verified if c.verified]
    if ok:
        sc = _scenario(spec, ok, target, spec.verify_requests)
        for c, r in zip(ok, goodput(sc, seeds=1, requests=spec.verify_requests,
                                    rel_tol=0.05, executor=executor)):
            c.goodput_rps = r.max_goodput_rps
    return PlanResult(spec, target, considered, considered - len(short), len(short),
                      time.monotonic() - t0, verified, pareto(verified), infeasible)
