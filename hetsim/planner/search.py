"""Enumeration and analytical pruning: candidate clusters built from the capacity options.

A candidate is a shape (colocated, homogeneous-PD, heterogeneous-PD), its pools (an
:class:`Option` and an instance count per role) and, when disaggregated, its KV link. Pruning
keeps only candidates that can meet the SLO at all, whose KV traffic the link carries, that fit
the inventory's caps and the budget.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field

from ..config import to_dict
from ..goodput_search import set_knobs
from ..hardware import load_interconnect
from ..scenario import CrossSite
from .capacity import prefill_rate
from .spec import PlanSpec

__all__ = ["Candidate", "size", "candidates", "fits_inventory", "cheapest_layouts",
           "best_units", "cross_site_link", "KV_LINK_MAX_LOAD"]

#: The KV of every request crosses the prefill NICs (and, between sites, the one cross-site
#: link): keep them at most this busy.
KV_LINK_MAX_LOAD = 0.7
_PD_SHAPES = ("homogeneous-pd", "heterogeneous-pd")


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
    first_token: str = "decode"    # disaggregated: which side shows the first token
    runtime: str | None = None     # every pool's serving runtime
    knobs: dict = field(default_factory=dict)   # tuned runtime knobs (goodput search)
    cross_site: CrossSite | None = None   # set exactly when prefill and decode sites differ
    cross_site_ok: bool | None = None     # its run with the cross-site link degraded passed
    reason: str | None = None             # why verification gave up, where known

    @property
    def accelerators(self) -> int:
        return sum(o.tp * n for o, n in self.pools.values())

    @property
    def per_accelerator_rps(self) -> float:
        return (self.goodput_rps or 0.0) / self.accelerators

    def name(self) -> str:
        parts = [f"{n}x{o.acc}-tp{o.tp}-{o.precision}" for o, n in self.pools.values()]
        return f"{self.shape}:" + "+".join(parts) + (f"@{self.link}" if self.link else "")

    def sites(self) -> str:
        """Its pools' sites in pool order, ``+``-joined as in :meth:`name` (one when shared)."""
        return "+".join(dict.fromkeys(o.site for o, _ in self.pools.values()))

    def placement(self) -> dict:
        pools = {}
        for role, (o, n) in self.pools.items():
            pools[role] = {"role": role, "accelerator": o.acc, "instances": n, "tp": o.tp,
                           "precision": o.precision, "price_usd_per_hour": o.price / o.tp}
            if o.site != "local":          # a scenario pool's default: written as before
                pools[role]["site"] = o.site
            if self.runtime:
                pools[role]["runtime"] = self.runtime
            set_knobs(pools[role], self.knobs)
        pl = {"pools": pools, "router": "least-loaded"}
        kv = {"link": self.link}
        if self.cross_site is not None:
            kv["cross_site"] = {k: v for k, v in to_dict(self.cross_site).items()
                                if v is not None}
        if self.first_token != "decode":
            kv["first_token"] = self.first_token
        if self.link and len(kv) > 1:
            pl["kv_transfer"] = kv
        elif self.link:
            pl["kv_link"] = self.link
        return pl


def cross_site_link(cs: CrossSite) -> tuple[float, float]:
    """(bandwidth B/s, one-way latency s) of the cross-site link, as a scenario resolves it."""
    lk = load_interconnect(cs.link)
    return lk.bandwidth * cs.count, lk.latency if cs.latency_us is None else cs.latency_us * 1e-6


def size(cap: float, target: float | None) -> int | None:
    """Instances of capacity ``cap`` to serve ``target`` (None: one unit, if it serves at all)."""
    if cap <= 0:
        return None
    return 1 if target is None else max(1, math.ceil(target / cap))


def fits_inventory(spec: PlanSpec, pools: dict) -> bool:
    """The pools use no accelerator beyond its ``max`` in the inventory."""
    used: dict[str, int] = {}
    for o, n in pools.values():
        used[o.acc] = used.get(o.acc, 0) + o.tp * n
    return all(spec.inventory[a].max is None or u <= spec.inventory[a].max
               for a, u in used.items())


def _colocated(spec: PlanSpec, opts, target: float | None):
    """(considered, candidates) of the colocated shape."""
    considered, out = 0, []
    for o, _, _, mixed in opts:
        considered += 1
        n = size(mixed, target)
        if n is None:
            continue
        c = Candidate("colocated", {"mixed": (dataclasses.replace(o, capacity_rps=mixed), n)},
                      None, o.price * n, mixed * n, runtime=spec.runtime)
        if fits_inventory(spec, c.pools):
            out.append(c)
    return considered, out


def _disaggregated(spec: PlanSpec, opts, kv_bytes: float, target: float | None):
    """(considered, candidates) of the prefill/decode shapes the spec asks for."""
    considered, out = 0, []
    wanted = [s for s in _PD_SHAPES if s in spec.shapes]
    if not wanted:
        return considered, out
    for (op, pre, _, _), (od, _, dec, _), link in itertools.product(opts, opts,
                                                                     spec.interconnects):
        shape = "homogeneous-pd" if op.acc == od.acc else "heterogeneous-pd"
        if shape not in wanted:
            continue
        considered += 1
        cross = spec.cross_site if op.site != od.site else None
        bw, lat = cross_site_link(cross) if cross is not None else (math.inf, 0.0)
        if cross is not None and spec.first_token == "decode":
            # NOTE: the client waits for the KV to cross sites: one prompt's KV alone on the
            # link plus its latency comes out of the TTFT budget (queueing on it is not
            # modelled here; the link stays at most KV_LINK_MAX_LOAD busy, below)
            pre = prefill_rate(op.prefill_s, spec.slo.ttft_s - kv_bytes / bw - lat)
        n_p, n_d = size(pre, target), size(dec, target)
        if n_p is None or n_d is None:
            continue
        lk = load_interconnect(link)
        load = target if target is not None else min(pre, dec)
        if load * kv_bytes > KV_LINK_MAX_LOAD * lk.bandwidth * op.tp * n_p:
            continue
        if load * kv_bytes > KV_LINK_MAX_LOAD * bw:    # one link between sites, shared by all
            continue
        pools = {"prefill": (dataclasses.replace(op, capacity_rps=pre), n_p),
                 "decode": (dataclasses.replace(od, capacity_rps=dec), n_d)}
        c = Candidate(shape, pools, link, op.price * n_p + od.price * n_d,
                      min(pre * n_p, dec * n_d), first_token=spec.first_token,
                      runtime=spec.runtime, cross_site=cross)
        if fits_inventory(spec, pools):
            out.append(c)
    return considered, out


def candidates(spec: PlanSpec, opts, kv_bytes: float, target: float | None):
    """Enumerate and prune. ``target`` sizes each pool to that rate; None enumerates serving
    units (one colocated instance, or one prefill + one decode instance) for the
    per-accelerator objective. Returns (survivors, considered, pruned)."""
    considered, cands = 0, []
    if "colocated" in spec.shapes:
        considered, cands = _colocated(spec, opts, target)
    n, pd = _disaggregated(spec, opts, kv_bytes, target)
    considered, cands = considered + n, cands + pd
    if spec.budget_usd_per_hour is not None:
        cands = [c for c in cands if c.cost <= spec.budget_usd_per_hour]
    return cands, considered, considered - len(cands)


def cheapest_layouts(spec: PlanSpec, cands: list[Candidate]) -> list[Candidate]:
    """The short list for the cost objective: per shape, the ``verify`` cheapest candidates
    with distinct pool layouts (one link per layout: the cheapest, first enumerated)."""
    short = []
    for shape in spec.shapes:
        seen: set = set()
        for c in sorted([c for c in cands if c.shape == shape], key=lambda c: c.cost):
            key = tuple((o.label, n) for o, n in c.pools.values())
            if key not in seen and len(seen) < spec.verify:
                seen.add(key)
                short.append(c)
    return short


def best_units(spec: PlanSpec, units: list[Candidate]) -> list[Candidate]:
    """The short list for the per-accelerator objective: per shape, the ``verify`` units with
    the most estimated requests/s per accelerator (then cheaper, then by name)."""
    short = []
    for shape in spec.shapes:
        ranked = sorted((c for c in units if c.shape == shape),
                        key=lambda c: (-c.estimate_rps / c.accelerators, c.cost, c.name()))
        short += ranked[:spec.verify]
    return short
