"""Planning and checking under failure: the runs a plan (``hetsim plan``) or a checks file
(``hetsim check``) must also pass, ``resilience: {survive: 1, cross_site_factor: 0.25}``.

One function makes them for both: :func:`variants` turns a placement into the same placement
with one instance of a pool crashed for the whole run (once per pool), and, where its pools sit
on different sites, with the cross-site link degraded for the whole run. Instances of a pool
are identical, so instance 0 stands for any one of them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .config import meta
from .scenario import Fault, Placement, Recovery

__all__ = ["Resilience", "Variant", "variants", "spans_sites", "WHOLE_RUN_S",
           "TIMEOUT_TTFTS"]

#: A fault from t = 0 lasting this long holds for the whole of any run.
WHOLE_RUN_S = 1e9
#: Without a timeout of its own, a request with no live instance to go to gives up after this
#: many TTFT targets (its wait counts against the placement) instead of waiting for ever.
TIMEOUT_TTFTS = 10


def _factor(v) -> str | None:
    return None if 0 < v < 1 else f"must be in (0, 1), got {v}"


@dataclass(frozen=True)
class Resilience:
    """What a plan, or every placement of a checks file, must survive besides meeting its
    SLO (or its expectations)."""
    survive: int = field(default=1, metadata=meta(
        "instances of each pool that may be down while the plan still meets its SLO (N+1: "
        "1, the one value supported)", lambda v: None if v == 1 else f"must be 1, got {v}"))
    cross_site_factor: float | None = field(default=None, metadata=meta(
        "placements whose pools sit on different sites must also hold with the cross-site "
        "link's bandwidth multiplied by this for the whole run, in (0, 1)", _factor))


@dataclass(frozen=True)
class Variant:
    """One run a placement must also pass."""
    name: str                 # "<placement> without <pool>/0" | "<placement> with cross-site x<f>"
    base: str                 # the placement it varies
    lost: str                 # a pool name, or "cross-site"
    placement: Placement
    cannot: str | None = None  # why it cannot pass, known without running (a pool of one)


def spans_sites(pl: Placement) -> bool:
    """Its pools sit on more than one site (so KV crosses ``kv_transfer.cross_site``)."""
    return len({p.site for p in pl.pools.values()}) > 1


def variants(name: str, pl: Placement, res: Resilience, ttft_s: float,
             recovery: Recovery | None = None) -> list[Variant]:
    """The runs placement ``name`` must also pass under ``res``: one per pool with its
    instance 0 crashed from t = 0 for the whole run, then (``cross_site_factor``, pools on
    several sites) one with the cross-site link degraded for the whole run. Each keeps the
    placement's own faults; ``recovery`` (the placement's, else the scenario's) gets a
    ``request_timeout_s`` of :data:`TIMEOUT_TTFTS` TTFT targets when it has none."""
    rec = recovery or Recovery()
    if rec.request_timeout_s is None:
        rec = dataclasses.replace(rec, request_timeout_s=TIMEOUT_TTFTS * ttft_s)

    def with_fault(f: Fault) -> Placement:
        return dataclasses.replace(pl, faults=[*pl.faults, f], recovery=rec)
    out = []
    for pool, p in pl.pools.items():
        crash = Fault(kind="crash", target=f"{pool}/0", at_s=0.0, repair_s=WHOLE_RUN_S)
        cannot = None if p.instances > res.survive else (
            f"pool {pool} has {p.instances} instance{'s' * (p.instances > 1)}: without "
            f"{pool}/0 {name} cannot serve (survive: {res.survive} needs at least "
            f"{res.survive + 1} per pool)")
        out.append(Variant(f"{name} without {pool}/0", name, pool, with_fault(crash), cannot))
    if res.cross_site_factor is not None and spans_sites(pl):
        f = res.cross_site_factor
        slow = Fault(kind="degrade", target="cross-site", at_s=0.0, duration_s=WHOLE_RUN_S,
                     factor=f)
        out.append(Variant(f"{name} with cross-site x{f:g}", name, "cross-site",
                           with_fault(slow)))
    return out
