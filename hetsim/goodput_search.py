"""Goodput search: the highest arrival rate at which a placement still meets its SLO.

For each placement, the rate is bracketed (doubling up from the scenario's rate while the SLO
holds, halving down while it does not) and then bisected. Every rate is simulated with several
seeds (independent request streams); a rate passes when the mean SLO attainment over the seeds
reaches the target (or, with ``slo.percentile``, when most seeds meet the percentile form).
Noise can make attainment non-monotone near the knee: bisection keeps the invariant "lo passed,
hi failed" and so always ends with a rate that was observed to pass.

``tune`` searches a runtime's batch knobs as a serving team tunes them: every combination of
the values given (``max_seqs``, ``max_batch_tokens``: the pool keys; ``chunked_prefill``: the
runtime rule) is set on every pool of the placement, each variant gets its own goodput search,
and the result is the best variant's, with the knobs it used and every variant's rate.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .api import check_memory, plain
from .engine.sim import Simulation
from .errors import ConfigError, match_name
from .metrics import measured_window, meets, records_frame, slo_met
from .executors import Executor, serialized
from .resolve import load_scenario, resolve_scenario, scenario_from_dict
from .scenario import Scenario, as_scenario, parse_scenario
from .workload import DEFAULT_REQUESTS, check_rate_varies, generate

__all__ = ["GoodputResult", "search", "goodput", "TUNABLE", "set_knobs"]

#: knobs ``tune`` may search: pool keys, and runtime rules (set in the pool's ``runtime:``)
TUNABLE = {"max_seqs": "pool", "max_batch_tokens": "pool", "chunked_prefill": "runtime"}


@dataclass
class Point:
    rate_rps: float
    attainment: float              # mean over seeds
    attainment_std: float          # across seeds
    passed: bool
    tokens_per_s: float            # output tokens/s of requests meeting the SLO (mean)
    ttft_s_p50: float | None = None    # latency percentiles (means over seeds; None: no
    ttft_s_p99: float | None = None    # request got that far)
    tpot_s_p50: float | None = None
    tpot_s_p99: float | None = None


#: the latency fields of a Point
LATENCIES = ("ttft_s_p50", "ttft_s_p99", "tpot_s_p50", "tpot_s_p99")


@dataclass
class GoodputResult:
    name: str
    max_goodput_rps: float
    max_goodput_tokens_per_s: float
    accelerators: int
    cost_per_hour_usd: float
    seeds: int
    requests: int
    curve: list[Point] = field(default_factory=list)
    bracketed: bool = True         # False: never passed, or passed at the highest rate tried
    knobs: dict = field(default_factory=dict)     # tuned: the chosen values
    tuning: list = field(default_factory=list)    # tuned: [(knobs, r/s or None, why not)]

    def to_json(self) -> dict:
        knee = next((p for p in self.curve if p.rate_rps == self.max_goodput_rps), None)
        return {
            "name": self.name,
            "max_goodput_rps": self.max_goodput_rps,
            "max_goodput_tokens_per_s": self.max_goodput_tokens_per_s,
            "per_accelerator_rps": self.max_goodput_rps / self.accelerators,
            "per_dollar_hour_rps": (self.max_goodput_rps / self.cost_per_hour_usd
                                    if self.cost_per_hour_usd else None),
            "accelerators": self.accelerators,
            "cost_per_hour_usd": self.cost_per_hour_usd,
            "seeds": self.seeds,
            "requests_per_run": self.requests,
            "bracketed": self.bracketed,
            # a normal-approximation 95% interval of the mean attainment at the reported rate
            "attainment_at_goodput": None if knee is None else {
                "mean": knee.attainment,
                "ci95": [max(0.0, knee.attainment - 1.96 * knee.attainment_std
                             / math.sqrt(self.seeds)),
                         min(1.0, knee.attainment + 1.96 * knee.attainment_std
                             / math.sqrt(self.seeds))]},
            "curve": [{"rate_rps": p.rate_rps, "attainment": p.attainment,
                       "passed": p.passed, **{k: getattr(p, k) for k in LATENCIES}}
                      for p in self.curve],
            **({"knobs": self.knobs,
                "tuning": [{"knobs": k, "max_goodput_rps": r, **({"infeasible": why} if why
                                                                 else {})}
                           for k, r, why in self.tuning]} if self.tuning else {}),
        }


def search(evaluate, start: float, *, rel_tol: float = 0.02, max_steps: int = 40,
           lo_limit: float = 1e-3, hi_limit: float = 1e6, progress=None) -> tuple[float, list,
                                                                                  bool]:
    """Largest passing rate. ``evaluate(rate) -> Point``. Returns (rate or 0, points, bracketed).

    Robust to non-monotone noise: only the invariant lo-passed / hi-failed is kept."""
    points: dict[float, Point] = {}

    def ev(r):
        r = float(f"{r:.6g}")
        if r not in points:
            points[r] = evaluate(r)
            if progress:
                progress(len(points))
        return points[r]

    lo = hi = None
    r = start
    for _ in range(max_steps):
        if ev(r).passed:
            lo = r
            if hi is not None or r * 2 > hi_limit:
                break
            r *= 2
        else:
            hi = r
            if lo is not None or r / 2 < lo_limit:
                break
            r /= 2
    if lo is None:
        return 0.0, sorted(points.values(), key=lambda p: p.rate_rps), False
    if hi is None:
        return lo, sorted(points.values(), key=lambda p: p.rate_rps), False
    steps = 0
    while (hi - lo) / lo > rel_tol and steps < max_steps:
        mid = (lo + hi) / 2
        if ev(mid).passed:
            lo = mid
        else:
            hi = mid
        steps += 1
    lo = float(f"{lo:.6g}")
    return lo, sorted(points.values(), key=lambda p: p.rate_rps), True


def _checked(sc: Scenario) -> None:
    """A scenario whose rate a goodput search may vary, or a ConfigError."""
    check_rate_varies(sc.workload, "goodput search")


@functools.lru_cache(maxsize=8)
def _loaded(text: str, source: str | None, search: str):
    """A scenario parsed and resolved once per search (``search``: the search's id), so a
    profile edited between two searches in one session is read again."""
    sc = parse_scenario(json.loads(text), source)
    return (sc, *resolve_scenario(sc))


def simulate_rate(text: str, source: str | None, search: str, name: str, rate: float,
                  seed: int, requests: int) -> dict:
    """One placement at one rate with one seed (a task: a pure function of its arguments;
    ``search`` only scopes the memo of the resolved scenario)."""
    sc, model, resolved = _loaded(text, source, search)
    placement = resolved[name]
    w = dataclasses.replace(sc.workload, requests=requests, seed=seed,
                            arrival=dataclasses.replace(sc.workload.arrival, rate_rps=rate))
    reqs = generate(w, sc.base_dir, max_context=model.max_context, model=model.name)
    res = Simulation(placement, model, reqs, seed=seed).run()
    # warm-up requests run but are not scored (the measured window, as `run` reports)
    df, start, end = measured_window(records_frame(res.requests, name, w.warmup), res.end_s)
    good = slo_met(df, sc.slo)
    tpot = df["tpot_s"].dropna()
    return {"attainment": float(good.mean()),
            "tokens_per_s": float(df.loc[good, "output_tokens"].sum()) / max(end - start, 1e-12),
            "ok": bool(meets(df, sc.slo, good)),
            **{f"{m}_{q}": float(np.percentile(col, int(q[1:]))) if len(col) else None
               for m, col in (("ttft_s", df["ttft_s"].dropna()), ("tpot_s", tpot))
               for q in ("p50", "p99")}}


def _evaluator(sc: Scenario, name: str, seeds: list[int], requests: int, executor: Executor):
    task = (*plain(sc), uuid.uuid4().hex)

    def evaluate(rate: float) -> Point:
        runs = executor.map(simulate_rate, [(*task, name, rate, s, requests) for s in seeds])
        att = [r["attainment"] for r in runs]
        mean = float(np.mean(att))
        passed = ((mean >= sc.slo.attainment) if sc.slo.percentile is None
                  else (sum(r["ok"] for r in runs) * 2 > len(runs)))
        lat = {k: _mean([r[k] for r in runs]) for k in LATENCIES}
        return Point(rate, mean, float(np.std(att)), passed,
                     float(np.mean([r["tokens_per_s"] for r in runs])), **lat)
    return evaluate


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def goodput(scenario: "Scenario | str | Path | dict", placements: list[str] | None = None, *,
            seeds: int = 3, requests: int | None = None, rel_tol: float = 0.02, progress=None,
            tune: dict[str, list] | None = None, overrides: dict | None = None,
            executor: Executor | None = None) -> list[GoodputResult]:
    """Goodput of every placement (or those named) of ``scenario`` (a path, a mapping or a
    Scenario, with ``overrides`` {key path: value} set first); deterministic for a fixed seed,
    on any ``executor`` (:mod:`hetsim.executors`; default: this process). ``tune`` ({knob:
    [values]}, knobs in :data:`TUNABLE`): the best of every combination."""
    sc = load_scenario(scenario, overrides) if overrides else as_scenario(scenario)
    executor = executor or Executor()
    try:
        if tune:
            return _tuned(sc, placements, seeds, requests, rel_tol, progress, tune, executor)
        jobs = [(sc, n) for n in _names(sc, placements)]
        return _searches(jobs, seeds, requests, rel_tol, progress, executor)
    except ConfigError as e:
        raise e.with_file(sc.source_file) from None


def set_knobs(pool: dict, knobs: dict) -> None:
    """Set tuned ``knobs`` on a pool as a scenario writes it: pool keys, or rules in its
    ``runtime:`` (a bare name becomes a mapping)."""
    for k, v in knobs.items():
        if TUNABLE[k] == "pool":
            pool[k] = v
        else:
            rt = pool["runtime"]
            pool["runtime"] = {**(rt if isinstance(rt, dict) else {"name": rt}), k: v}


def _variant(sc: Scenario, name: str, knobs: dict) -> Scenario:
    """``sc`` with only placement ``name``, every pool of it set to ``knobs``."""
    d = sc.to_dict()
    d["placements"] = {name: d["placements"][name]}
    for pool in d["placements"][name]["pools"].values():
        set_knobs(pool, knobs)
    return scenario_from_dict(d, sc.source_file)


def _names(sc: Scenario, placements: list[str] | None) -> list[str]:
    _, resolved = resolve_scenario(sc)
    return [match_name(n, resolved, "placement") for n in placements or list(resolved)]


def _tuned(sc, placements, seeds, requests, rel_tol, progress, tune, executor
           ) -> list[GoodputResult]:
    for k in tune:
        if k not in TUNABLE:
            raise ConfigError(f"cannot tune {k!r}; tunable: {', '.join(TUNABLE)}", path="tune")
    _, resolved = resolve_scenario(sc)
    names = _names(sc, placements)
    jobs, tried = [], {}
    for name in names:
        rules = [k for k in tune if TUNABLE[k] == "runtime"]
        bare = [p for p, rp in resolved[name].pools.items() if rp.rules is None]
        if rules and bare:
            raise ConfigError(f"tuning {rules[0]} needs a runtime on every pool; pool "
                              f"{bare[0]!r} has none", path=f"placements.{name}.pools."
                              f"{bare[0]}.runtime")
        tried[name] = []
        for values in itertools.product(*tune.values()):
            knobs = dict(zip(tune, values))
            try:
                jobs.append((_variant(sc, name, knobs), name))
                tried[name].append((knobs, len(jobs) - 1, ""))
            except ConfigError as e:
                if not e.path.startswith(f"placements.{name}."):
                    raise       # not the variant's own: the scenario cannot be searched
                tried[name].append((knobs, None, e.message))     # e.g. no memory left for KV
    results = _searches(jobs, seeds, requests, rel_tol, progress, executor)
    out = []
    for name in names:
        best = None
        for knobs, job, _ in tried[name]:
            if job is not None and (best is None or results[job].max_goodput_rps
                                    > best.max_goodput_rps):
                best = dataclasses.replace(results[job], knobs=knobs)
        if best is None:
            raise ConfigError(f"no tuned variant of {name!r} can run: {tried[name][0][2]}",
                              path="tune")
        out.append(dataclasses.replace(best, tuning=[
            (k, None if job is None else results[job].max_goodput_rps, why)
            for k, job, why in tried[name]]))
    return out


def _searches(jobs: list[tuple[Scenario, str]], seeds, requests, rel_tol, progress,
              executor: Executor) -> list[GoodputResult]:
    """One goodput search per (scenario, placement); concurrent when the executor is."""
    for sc, _ in jobs:
        _checked(sc)
    n = requests or jobs[0][0].workload.requests or DEFAULT_REQUESTS
    check_memory(n, executor.here)      # one placement and seed at a time per local worker
    concurrent = executor.parallel and len(jobs) > 1
    count = itertools.count(1)
    # one count over every search, from any thread (counted under the callback's lock)
    shared = serialized(lambda: progress("all placements", next(count))) if progress else None

    def progress_of(name: str):
        if not progress:
            return None
        return (lambda k: shared()) if concurrent else (lambda k: progress(name, k))

    def one(job) -> GoodputResult:
        sc, name = job
        pl = resolve_scenario(sc)[1][name]
        seed_list = [sc.workload.seed + i for i in range(seeds)]
        start = sc.workload.arrival.rate_rps
        cb = progress_of(name)
        ev = _evaluator(sc, name, seed_list, n, executor)
        rate, pts, bracketed = search(ev, start or 1.0, rel_tol=rel_tol, progress=cb)
        knee = next((p for p in pts if p.rate_rps == rate), None)
        return GoodputResult(
            name, rate, knee.tokens_per_s if knee else 0.0,
            sum(p.accelerators for p in pl.pools.values()),
            sum(p.usd_per_hour for p in pl.pools.values()), seeds, n, pts, bracketed)
    if concurrent:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(min(len(jobs), 64)) as threads:
            return list(threads.map(one, jobs))
    return [one(j) for j in jobs]
