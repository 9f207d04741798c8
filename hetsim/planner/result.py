"""What a plan search returns: the verified candidates, their order, the Pareto frontier, and
the runnable scenario of the chosen plans."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import to_dict
from ..workload import written
from .search import Candidate
from .spec import PlanSpec

__all__ = ["PlanResult", "by_cost", "pareto"]


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
        # per accelerator: every unit at the best unit's goodput, so the run shows the knee
        rate = chosen[0].goodput_rps if per_acc and chosen else self.target_rps
        w = written(to_dict(dataclasses.replace(self.spec.workload, arrival=dataclasses.replace(
            self.spec.workload.arrival, rate_rps=rate))))
        what = ("serving units by goodput per accelerator" if per_acc
                else f"cheapest verified plans for {self.target_rps:g} req/s")
        return {"name": f"{self.spec.name}-plan", "model": self.spec.model,
                "description": f"hetsim plan: {what} ({self.considered} considered, "
                               f"{self.pruned} pruned, {self.simulated} simulated)"
                               + self._cross_site_note(chosen),
                "workload": {k: v for k, v in w.items() if v is not None},
                "slo": {k: v for k, v in to_dict(self.spec.slo).items() if v is not None},
                "placements": {_placement_name(c): c.placement() for c in chosen}}


    def _cross_site_note(self, chosen: list[Candidate]) -> str:
        """What ``resilience.cross_site_factor`` verified of the chosen plans ('' unset)."""
        res = self.spec.resilience
        if res is None or res.cross_site_factor is None:
            return ""
        spans = [_placement_name(c) for c in chosen if c.cross_site is not None]
        return (f"; each verified with one instance of any pool down, and those spanning "
                f"sites ({', '.join(spans) or 'none'}) with the cross-site link at "
                f"x{res.cross_site_factor:g} for the whole run; the others sit on one site "
                f"(no such run)")


def _placement_name(c: Candidate) -> str:
    """A candidate's name as a scenario placement key (no ``:``, ``+`` or ``@``)."""
    return c.name().replace(":", "-").replace("+", "_").replace("@", "-at-")
