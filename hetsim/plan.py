"""``hetsim plan``: the cheapest clusters that serve a target load within SLO, from an inventory.

Search in three steps, so it stays practical:
1. **Enumerate** colocated, homogeneous-PD and heterogeneous-PD candidates over the inventory's
   accelerators, the allowed TP degrees and compute precisions, and the candidate KV links.
2. **Prune analytically** with the performance model: memory fit, precision support, TP
   dividing the heads, per-instance capacity under the SLOs (prefill: an M/D/1 queue whose
   90th-percentile wait plus service fits the TTFT target; decode: the largest batch whose step
   fits the TPOT target and whose KV fits memory), rate matching (each pool sized to the target),
   KV link load, availability caps and the budget.
3. **Verify by simulation** the cheapest survivors of each shape at the target rate (growing the
   pool that misses its SLO by one instance, up to three times), then measure the goodput of the
   verified plans for the cost-vs-goodput Pareto frontier.

``objective: goodput-per-accelerator`` asks DistServe's question instead: which serving unit (one
colocated instance, or one prefill instance plus one decode instance) sustains the most goodput
per accelerator within the inventory. Units are ranked by their analytical capacity per
accelerator, and the best ``verify`` of each shape get a simulated goodput search.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from .api import check_memory
from .config import build, meta, positive, power_of_two, read_yaml
from .errors import ConfigError, suggest
from .hardware import PRECISION_BYTES, load_accelerator, load_interconnect
from .models import load_model
from .perf import Formats, PerfModel, StepModel, memory_plan
from .scenario import SLO, Placement, Scenario
from .workload import WorkloadSpec, generate

__all__ = ["PlanSpec", "Candidate", "plan", "load_plan_spec"]


@dataclass(frozen=True)
class Stock:
    max: int | None = field(default=None, metadata=meta("accelerators available", positive))
    price_usd_per_hour: float | None = field(default=None, metadata=meta(
        "override the profile's price", positive))


@dataclass(frozen=True)
class PlanSpec:
    name: str
    model: str
    workload: WorkloadSpec
    slo: SLO
    inventory: dict[str, Stock] = field(metadata=meta("accelerator -> {max, price_usd_per_hour}"))
    target_rps: float | None = field(default=None, metadata=meta(
        "load to serve (default: the workload's rate)", positive))
    tp: list[int] = field(default_factory=lambda: [1, 2, 4, 8], metadata=meta(
        "tensor-parallel degrees to consider"))
    precisions: list[str] = field(default_factory=lambda: ["bf16"], metadata=meta(
        "compute precisions to consider (where the accelerator supports them)"))
    interconnects: list[str] = field(default_factory=lambda: ["roce-400g"], metadata=meta(
        "candidate KV links for disaggregated plans"))
    shapes: list[str] = field(default_factory=lambda: ["colocated", "homogeneous-pd",
                                                       "heterogeneous-pd"])
    budget_usd_per_hour: float | None = field(default=None, metadata=meta(
        "most a plan may cost", positive))
    verify: int = field(default=3, metadata=meta("candidates per shape verified by simulation",
                                                 positive))
    verify_requests: int = field(default=600, metadata=meta("requests per verification run",
                                                            positive))
    objective: Literal["cost", "goodput-per-accelerator"] = field(default="cost", metadata=meta(
        "cost: the cheapest plans serving target_rps | goodput-per-accelerator: the serving "
        "unit (one colocated instance, or one prefill + one decode instance, as DistServe "
        "searches) with the most goodput per accelerator"))
    seeds: int = field(default=1, metadata=meta("seeds per rate in the goodput searches",
                                                positive))
    description: str = ""
    source_file: str | None = field(default=None, metadata=meta("(set by the loader)"))

    def __post_init__(self):
        kinds = ("colocated", "homogeneous-pd", "heterogeneous-pd")
        for key in ("tp", "precisions", "shapes"):
            if not getattr(self, key):
                raise ConfigError("must not be empty", path=key)
        for i, s in enumerate(self.shapes):
            if s not in kinds:
                raise ConfigError(f"unknown shape {s!r}" + suggest(s, kinds), path=f"shapes[{i}]")
        for i, t in enumerate(self.tp):
            msg = power_of_two(t)
            if msg:
                raise ConfigError(msg, path=f"tp[{i}]")
        for i, p in enumerate(self.precisions):
            if p not in PRECISION_BYTES:
                raise ConfigError(f"unknown precision {p!r}" + suggest(p, PRECISION_BYTES),
                                  path=f"precisions[{i}]")
        if not self.interconnects and any(s != "colocated" for s in self.shapes):
            raise ConfigError("disaggregated shapes need at least one KV link",
                              path="interconnects")
        if not self.inventory:
            raise ConfigError("needs at least one accelerator", path="inventory")
        a = self.workload.arrival
        if self.workload.trace or a is None or a.trace or a.process == "closed":
            raise ConfigError("a plan varies the arrival rate: the workload needs a poisson, "
                              "gamma or constant arrival process", path="workload.arrival")

    @property
    def base_dir(self) -> Path:
        return Path(self.source_file).parent if self.source_file else Path(".")

    @property
    def target(self) -> float:
        """The load to serve: ``target_rps``, else the workload's rate."""
        return self.target_rps or self.workload.arrival.rate_rps

    def draw(self, model, requests: int = 2000):
        """A sample of the workload's requests, as every check and estimate sees them."""
        return generate(dataclasses.replace(self.workload, requests=requests), self.base_dir,
                        model.max_context, model.name)


@dataclass
class Option:
    """One instance type for one role: accelerator, TP, precision, analytical capacity."""
    acc: str
    tp: int
    precision: str
    price: float          # $/h per instance
    capacity_rps: float   # requests/s one instance sustains within its SLO share

    @property
    def label(self) -> str:
        return f"{self.acc} tp{self.tp} {self.precision}"


@dataclass
class Candidate:
    shape: str
    pools: dict            # name -> (Option, instances)
    link: str | None
    cost: float
    estimate_rps: float
    verified: bool | None = None
    attainment: float | None = None
    goodput_rps: float | None = None

    @property
    def accelerators(self) -> int:
        return sum(o.tp * n for o, n in self.pools.values())

    @property
    def per_accelerator_rps(self) -> float:
        return (self.goodput_rps or 0.0) / self.accelerators

    def name(self) -> str:
        parts = [f"{n}x{o.acc}-tp{o.tp}-{o.precision}" for o, n in self.pools.values()]
        return f"{self.shape}:" + "+".join(parts) + (f"@{self.link}" if self.link else "")

    def placement(self) -> dict:
        pools = {}
        for role, (o, n) in self.pools.items():
            pools[role] = {"role": role, "accelerator": o.acc, "instances": n, "tp": o.tp,
                           "precision": o.precision, "price_usd_per_hour": o.price / o.tp}
        pl = {"pools": pools, "router": "least-loaded"}
        if self.link:
            pl["kv_link"] = self.link
        return pl


def load_plan_spec(path) -> PlanSpec:
    """Read and check a plan spec: names resolve and the workload draws, before any search."""
    raw = read_yaml(path)
    try:
        spec = dataclasses.replace(build(PlanSpec, raw), source_file=str(path))
        _resolve_names(spec)
        spec.draw(load_model(spec.model))
        # verification runs shortlisted candidates side by side (at most verify per shape)
        check_memory(spec.verify_requests, spec.verify * len(spec.shapes), path="verify_requests")
    except ConfigError as e:
        raise e.with_file(str(path)) from None
    return spec


def _resolve_names(spec: PlanSpec) -> None:
    """Every name loads, and no two entries name one profile (``h100`` beside ``H100-SXM``
    would count the same stock twice)."""
    seen: dict = {}
    entries = ([(f"inventory.{a}", a, load_accelerator) for a in spec.inventory]
               + [(f"interconnects[{i}]", n, load_interconnect)
                  for i, n in enumerate(spec.interconnects)])
    for key, a, load in entries:
        try:
            prof = load(a)
        except ConfigError as e:
            raise ConfigError(e.message, path=key) from None
        same = seen.setdefault((prof.name, getattr(prof, "calibration", None) is None), a)
        if same != a:
            raise ConfigError(f"{a!r} and {same!r} name the same profile ({prof.name})",
                              path=key)
    try:
        load_model(spec.model)
    except ConfigError as e:
        raise ConfigError(e.message, path="model") from None


# --- analytical capacity ----------------------------------------------------------------------
def _options(spec: PlanSpec, model, mean_in: float, mean_out: float):
    """Per accelerator x TP x precision: prefill, decode and colocated instance capacities."""
    slo = spec.slo
    out = []
    for name, stock in spec.inventory.items():
        acc = load_accelerator(name)
        price = stock.price_usd_per_hour if stock.price_usd_per_hour is not None else \
            acc.usd_per_hour
        for tp, prec in itertools.product(spec.tp, spec.precisions):
            if not acc.supports(prec) or model.num_heads % tp:
                continue
            if acc.scale_up and tp > acc.scale_up.domain_size:
                continue
            if stock.max is not None and tp > stock.max:
                continue
            try:
                mem = memory_plan(model, acc, tp, Formats.of(prec))
            except ConfigError:
                continue
            step = StepModel(model, PerfModel(acc), tp, prec)
            L, O = max(1, int(mean_in)), max(1, int(mean_out))
            # prefill: M/D/1 with service S; p90 wait ~ 2.3 x mean wait (exponential tail)
            S = step.prefill_time([L])
            pre = 0.0
            if S < slo.ttft_s:
                lo, hi = 0.0, 0.999
                for _ in range(40):
                    rho = (lo + hi) / 2
                    wait90 = 2.3 * rho * S / (2 * (1 - rho))
                    lo, hi = (rho, hi) if S + wait90 <= slo.ttft_s else (lo, rho)
                pre = lo / S
            # decode: largest batch whose step fits TPOT (90% margin) and whose KV fits
            kv_cap = mem.kv_tokens // (L + O)
            B, best = 1, 0.0
            while B <= min(kv_cap, 1024):
                t = step.decode_time(B, int(B * (L + O / 2)))
                if t > 0.9 * slo.tpot_s:
                    break
                best = B / (t * O)
                B *= 2
            dec = best
            # colocated: the same device time-shares prefill and decode
            mixed = 1 / (1 / pre + 1 / dec) if pre > 0 and dec > 0 else 0.0
            out.append((Option(name, tp, prec, price * tp, 0.0), pre, dec, mixed))
    return out


def _size(cap: float, target: float | None) -> int | None:
    """Instances of capacity ``cap`` to serve ``target`` (None: one unit, if it serves at all)."""
    if cap <= 0:
        return None
    return 1 if target is None else max(1, math.ceil(target / cap))


def _candidates(spec: PlanSpec, opts, kv_bytes: float, target: float | None):
    """Enumerate and prune. ``target`` sizes each pool to that rate; None enumerates serving
    units (one colocated instance, or one prefill + one decode instance) for the
    per-accelerator objective. Returns (survivors, considered, pruned)."""
    cands, considered = [], 0
    caps = {a: s.max for a, s in spec.inventory.items()}

    def fits(pools):
        used: dict[str, int] = {}
        for o, n in pools.values():
            used[o.acc] = used.get(o.acc, 0) + o.tp * n
        return all(caps[a] is None or u <= caps[a] for a, u in used.items())

    if "colocated" in spec.shapes:
        for o, _, _, mixed in opts:
            considered += 1
            n = _size(mixed, target)
            if n is None:
                continue
            c = Candidate("colocated", {"mixed": (dataclasses.replace(o, capacity_rps=mixed), n)},
                          None, o.price * n, mixed * n)
            if fits(c.pools):
                cands.append(c)
    pd = [s for s in ("homogeneous-pd", "heterogeneous-pd") if s in spec.shapes]
    if pd:
        for (op, pre, _, _), (od, _, dec, _), link in itertools.product(opts, opts,
                                                                         spec.interconnects):
            shape = "homogeneous-pd" if op.acc == od.acc else "heterogeneous-pd"
            if shape not in pd:
                continue
            considered += 1
            n_p, n_d = _size(pre, target), _size(dec, target)
            if n_p is None or n_d is None:
                continue
            lk = load_interconnect(link)
            # the KV of every request crosses the prefill NICs: keep them under 70% busy
            load = target if target is not None else min(pre, dec)
            if load * kv_bytes > 0.7 * lk.bandwidth * op.tp * n_p:
                continue
            pools = {"prefill": (dataclasses.replace(op, capacity_rps=pre), n_p),
                     "decode": (dataclasses.replace(od, capacity_rps=dec), n_d)}
            c = Candidate(shape, pools, link, op.price * n_p + od.price * n_d,
                          min(pre * n_p, dec * n_d))
            if fits(pools):
                cands.append(c)
    if spec.budget_usd_per_hour is not None:
        cands = [c for c in cands if c.cost <= spec.budget_usd_per_hour]
    return cands, considered, considered - len(cands)


def _plan_per_accelerator(spec: PlanSpec, opts, kv_bytes: float, target: float, t0: float,
                          progress):
    from .goodput import goodput
    units, considered, infeasible = _candidates(spec, opts, kv_bytes, None)
    short = []
    for shape in spec.shapes:
        ranked = sorted((c for c in units if c.shape == shape),
                        key=lambda c: (-c.estimate_rps / c.accelerators, c.cost, c.name()))
        short += ranked[:spec.verify]
    for i, c in enumerate(short):
        if progress:
            progress("goodput", i + 1, len(short))
        sc = _scenario(spec, [c], max(c.estimate_rps, 0.05), spec.verify_requests)
        r = goodput(sc, seeds=spec.seeds, requests=spec.verify_requests, rel_tol=0.02)[0]
        c.goodput_rps, c.verified = r.max_goodput_rps, r.max_goodput_rps > 0
        c.attainment = next((p.attainment for p in r.curve if p.rate_rps == r.max_goodput_rps),
                            None)
    return PlanResult(spec, target, considered, considered - len(short), len(short),
                      time.monotonic() - t0, short, pareto(short), infeasible)


# --- verification -----------------------------------------------------------------------------
def _scenario(spec: PlanSpec, cands: list[Candidate], rate: float, requests: int) -> Scenario:
    w = dataclasses.replace(spec.workload, requests=requests,
                            arrival=dataclasses.replace(spec.workload.arrival, rate_rps=rate))
    return Scenario(name=spec.name, model=spec.model, workload=w, slo=spec.slo,
                    placements={c.name(): build(Placement, c.placement()) for c in cands},
                    source_file=spec.source_file)   # relative workload files, error attribution


def _verify(spec: PlanSpec, c: Candidate, target: float) -> Candidate:
    from .api import run
    for _ in range(4):
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


def by_cost(c: Candidate) -> tuple:
    """Cheapest first; among equally cheap plans (to a micro-dollar per hour, so sums of the
    same prices in another order tie) the most goodput first, then fewer accelerators, then
    the name, so the order never depends on the enumeration."""
    return (round(c.cost, 6), -(c.goodput_rps or 0.0), c.accelerators, c.name())


def pareto(cands: list[Candidate]) -> list[Candidate]:
    """Verified candidates no other beats on both cost (lower) and goodput (higher).
    Its first point is the plan ``PlanResult.best`` names (``by_cost`` orders both)."""
    pts = [c for c in cands if c.verified and c.goodput_rps is not None]
    front = []
    for c in sorted(pts, key=by_cost):
        if not front or c.goodput_rps > front[-1].goodput_rps:
            front.append(c)
    return front


@dataclass
class PlanResult:
    spec: PlanSpec
    target_rps: float
    considered: int
    pruned: int
    simulated: int
    wall_s: float
    verified: list[Candidate]
    frontier: list[Candidate]
    infeasible: int = 0    # pruned because no instance count could meet the SLO or limits

    @property
    def best(self) -> Candidate | None:
        """The cheapest verified plan, the one with the most goodput among equally cheap ones
        (``by_cost``; it heads the frontier), or (goodput-per-accelerator) the unit with the
        most goodput per accelerator (fewer accelerators, then cheaper, on a tie)."""
        ok = [c for c in self.verified if c.verified]
        if not ok:
            return None
        if self.spec.objective == "goodput-per-accelerator":
            return min(ok, key=lambda c: (-c.per_accelerator_rps, c.accelerators, c.cost))
        return min(ok, key=by_cost)

    def scenario_dict(self) -> dict:
        """A runnable scenario whose placements are the chosen plans (cheapest first, or most
        goodput per accelerator first)."""
        per_acc = self.spec.objective == "goodput-per-accelerator"
        chosen, seen = [], set()
        order = (lambda c: (-c.per_accelerator_rps, c.cost)) if per_acc else by_cost
        for c in sorted([c for c in self.verified if c.verified], key=order):
            if c.name() not in seen:
                seen.add(c.name())
                chosen.append(c)
        from .config import to_dict
        # per accelerator: every unit at the best unit's goodput, so the run shows the knee
        rate = chosen[0].goodput_rps if per_acc and chosen else self.target_rps
        w = to_dict(dataclasses.replace(self.spec.workload, arrival=dataclasses.replace(
            self.spec.workload.arrival, rate_rps=rate)))
        what = ("serving units by goodput per accelerator" if per_acc
                else f"cheapest verified plans for {self.target_rps:g} req/s")
        return {"name": f"{self.spec.name}-plan", "model": self.spec.model,
                "description": f"hetsim plan: {what} ({self.considered} considered, "
                               f"{self.pruned} pruned, {self.simulated} simulated)",
                "workload": {k: v for k, v in w.items() if v is not None},
                "slo": {k: v for k, v in to_dict(self.spec.slo).items() if v is not None},
                "placements": {c.name().replace(":", "-").replace("+", "_").replace("@", "-at-"):
                               c.placement() for c in chosen}}


def plan(spec: PlanSpec, progress=None) -> PlanResult:
    from .goodput import goodput
    t0 = time.monotonic()
    model = load_model(spec.model)
    target = spec.target
    reqs = spec.draw(model)
    mean_in, mean_out = float(np.mean(reqs.input_tokens)), float(np.mean(reqs.output_tokens))
    opts = _options(spec, model, mean_in, mean_out)
    kv_bytes = mean_in * model.kv_bytes_per_token("bf16")
    if spec.objective == "goodput-per-accelerator":
        return _plan_per_accelerator(spec, opts, kv_bytes, target, t0, progress)
    cands, considered, infeasible = _candidates(spec, opts, kv_bytes, target)
    short = []
    for shape in spec.shapes:   # the cheapest distinct pool layouts of each shape
        seen: set = set()
        for c in sorted([c for c in cands if c.shape == shape], key=lambda c: c.cost):
            key = tuple((o.label, n) for o, n in c.pools.values())
            if key not in seen and len(seen) < spec.verify:
                seen.add(key)
                short.append(c)
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
