"""The plan spec (``hetsim plan``'s YAML): what to serve, from which inventory, how to search.

Inert once loaded: :func:`load_plan_spec` checks that every name resolves and the workload
draws before any search starts, so a bad spec fails in a second, not after the simulations.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..config import build, meta, positive, power_of_two, read_yaml
from ..errors import ConfigError, suggest
from ..overrides import apply_overrides, blame
from ..hardware import load_accelerator, load_interconnect
from ..models import load_model
from ..perf import model_problem
from ..precision import unknown_precision
from ..resilience import Resilience
from ..runtimes import RuntimeSpec
from ..scenario import SLO, CrossSite
from ..workload import WorkloadSpec, check_rate_varies, generate

__all__ = ["Stock", "PlanSpec", "load_plan_spec", "spec_from_raw", "SHAPES"]

#: The cluster shapes a plan may search, in the order the results list them.
SHAPES = ("colocated", "homogeneous-pd", "heterogeneous-pd")


@dataclass(frozen=True)
class Stock:
    max: int | None = field(default=None, metadata=meta("accelerators available", positive))
    price_usd_per_hour: float | None = field(default=None, metadata=meta(
        "override the profile's price", positive))
    site: str = field(default="local", metadata=meta(
        "datacenter these accelerators sit in (as a scenario pool's site:); one site per "
        "accelerator type (one inventory entry each). A heterogeneous-PD candidate whose "
        "prefill and decode accelerators sit on different sites sends its KV over cross_site"))


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
    cross_site: CrossSite | None = field(default=None, metadata=meta(
        "the link between the inventory's sites, {link, count, latency_us}, as a scenario's "
        "kv_transfer.cross_site: needed when inventory entries sit on different sites and "
        "heterogeneous-pd is searched; every candidate spanning sites shares it"))
    shapes: list[str] = field(default_factory=lambda: list(SHAPES))
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
    first_token: Literal["decode", "prefill"] = field(default="decode", metadata=meta(
        "disaggregated shapes: which side shows the client the first token (see a "
        "scenario's kv_transfer.first_token)"))
    runtime: str | None = field(default=None, metadata=meta(
        "serve every pool on this runtime (vllm | sglang | trtllm): its kernels and rules in "
        "the simulations; the analytical pruning stays the runtime-free model"))
    tune: dict[str, list[int | bool]] | None = field(default=None, metadata=meta(
        "objective goodput-per-accelerator: runtime knobs each unit's goodput search tries, "
        "{max_seqs: [..], max_batch_tokens: [..], chunked_prefill: [true, false]}; the best "
        "combination is reported and written to plan.yaml"))
    description: str = ""
    resilience: Resilience | None = field(default=None, metadata=meta(
        "{survive: 1}: a plan must also meet its SLO with one instance of any one pool down "
        "for the whole verification run (verified with a crash: hetsim.engine.faults); "
        "cross_site_factor: f: a candidate spanning sites also with the cross-site link's "
        "bandwidth x f for the whole run"))
    source_file: str | None = field(default=None, metadata=meta("(set by the loader)"))

    def __post_init__(self):
        for key in ("tp", "precisions", "shapes"):
            if not getattr(self, key):
                raise ConfigError("must not be empty", path=key)
        for i, s in enumerate(self.shapes):
            if s not in SHAPES:
                raise ConfigError(f"unknown shape {s!r}" + suggest(s, SHAPES), path=f"shapes[{i}]")
        for i, t in enumerate(self.tp):
            msg = power_of_two(t)
            if msg:
                raise ConfigError(msg, path=f"tp[{i}]")
        for i, p in enumerate(self.precisions):
            msg = unknown_precision(p)
            if msg:
                raise ConfigError(msg, path=f"precisions[{i}]")
        if not self.interconnects and any(s != "colocated" for s in self.shapes):
            raise ConfigError("disaggregated shapes need at least one KV link",
                              path="interconnects")
        if not self.inventory:
            raise ConfigError("needs at least one accelerator", path="inventory")
        if self.tune is not None:
            self._check_tune()
        if self.resilience is not None and self.objective != "cost":
            # NOTE: the per-accelerator search measures one-instance units; it never verifies
            # resilience runs, so the key would pass silently
            raise ConfigError("resilience applies to objective: cost (a serving unit has one "
                              "instance per pool, nothing to lose)", path="resilience")
        self._check_sites()
        check_rate_varies(self.workload, "a plan")
        routing = self.workload.moe_routing
        if routing not in (None, "balanced") and not self.runtime:
            raise ConfigError(f"{routing} routing is read from measured MoE kernels, which only "
                              f"runtime profiles carry: a plan needs runtime:",
                              path="workload.moe_routing")

    @property
    def sites(self) -> list[str]:
        """The inventory's sites, in the order entries first name them."""
        return list(dict.fromkeys(s.site for s in self.inventory.values()))

    @property
    def spans_sites(self) -> bool:
        """Some candidate could put prefill and decode on different sites (only
        heterogeneous-PD can: one site per accelerator type)."""
        return len(self.sites) > 1 and "heterogeneous-pd" in self.shapes

    def _check_sites(self) -> None:
        """cross_site is given exactly when some candidate could use it; cross_site_factor
        only then. NOTE: an unused key would pass silently, a missing one fail late."""
        sites = self.sites
        if self.spans_sites and self.cross_site is None:
            first = next(iter(self.inventory))
            b = next(k for k, s in self.inventory.items() if s.site != sites[0])
            raise ConfigError(f"{b} sits on site {self.inventory[b].site!r} and {first} on "
                              f"{sites[0]!r}: "
                              f"heterogeneous-PD candidates across sites need cross_site: "
                              f"{{link, latency_us}}", path=f"inventory.{b}.site")
        why, fix = ((f"every inventory accelerator sits on site {sites[0]!r}",
                     "give inventory entries a site:") if len(sites) == 1 else
                    ("shapes has no heterogeneous-pd (the only shape that spans sites)",
                     "add heterogeneous-pd to shapes"))
        if self.cross_site is not None and not self.spans_sites:
            raise ConfigError(f"{why}: no candidate crosses sites, so cross_site would go "
                              f"unused ({fix})", path="cross_site")
        if (self.resilience is not None and self.resilience.cross_site_factor is not None
                and not self.spans_sites):
            raise ConfigError(f"{why}: no candidate spans sites, so there is no cross-site "
                              f"link to degrade ({fix})", path="resilience.cross_site_factor")

    def _check_tune(self) -> None:
        from ..goodput_search import TUNABLE
        if self.objective != "goodput-per-accelerator":
            raise ConfigError("tune applies to objective: goodput-per-accelerator (the cost "
                              "objective verifies at the runtime's defaults)", path="tune")
        for k, values in self.tune.items():
            if k not in TUNABLE:
                raise ConfigError(f"cannot tune {k!r}; tunable: {', '.join(TUNABLE)}",
                                  path=f"tune.{k}")
            if TUNABLE[k] == "runtime" and not self.runtime:
                raise ConfigError(f"tuning {k} needs runtime:", path=f"tune.{k}")
            for i, v in enumerate(values):
                ok = isinstance(v, bool) if k == "chunked_prefill" else (
                    not isinstance(v, bool) and v >= 1)
                if not ok:
                    want = "true or false" if k == "chunked_prefill" else "a positive integer"
                    raise ConfigError(f"must be {want}, got {v!r}", path=f"tune.{k}[{i}]")
            if not values:
                raise ConfigError("must not be empty", path=f"tune.{k}")

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


def load_plan_spec(path, overrides: dict | None = None, label: str = "overrides") -> PlanSpec:
    """Read and check a plan spec (a file path, or a mapping as one parses), with
    ``overrides`` ({key path: value}) set first: names resolve and the workload draws, before
    any search."""
    from collections.abc import Mapping
    if isinstance(path, Mapping):
        return spec_from_raw(path, None, overrides, label)
    return spec_from_raw(read_yaml(path), str(path), overrides, label)


def spec_from_raw(raw, file: str | None, overrides: dict | None = None,
                  label: str = "overrides") -> PlanSpec:
    """:func:`load_plan_spec` for a mapping parsed from ``file`` (None: built in Python)."""
    try:
        return _checked_spec(apply_overrides(raw, overrides, PlanSpec) if overrides else raw,
                             file)
    except ConfigError as e:
        e = e.with_file(file)
        if not overrides:
            raise e from None
        raise blame(e, label, lambda: _checked_spec(raw, file)) from None


def _checked_spec(raw, file: str | None) -> PlanSpec:
    try:
        spec = dataclasses.replace(build(PlanSpec, raw), source_file=file)
        _resolve_names(spec)
        spec.draw(load_model(spec.model))
        # verification runs shortlisted candidates side by side (at most verify per shape)
        from ..api import check_memory    # the simulator's estimate; keeps capacity SimPy-free
        check_memory(spec.verify_requests, spec.verify * len(spec.shapes), path="verify_requests")
    except ConfigError as e:
        raise e.with_file(file) from None
    return spec


def _resolve_names(spec: PlanSpec) -> None:
    """Every name loads, and no two entries name one profile (``h100`` beside ``H100-SXM``
    would count the same stock twice)."""
    seen: dict = {}
    entries = ([(f"inventory.{a}", a, load_accelerator) for a in spec.inventory]
               + [(f"interconnects[{i}]", n, load_interconnect)
                  for i, n in enumerate(spec.interconnects)])
    for a in spec.inventory if spec.runtime else ():     # every pool will run on it
        try:
            load_accelerator(a, runtime=RuntimeSpec.of(spec.runtime).name)
        except ConfigError as e:
            raise ConfigError(e.message, path="runtime") from None
    for key, a, load in entries:
        try:
            prof = load(a)
        except ConfigError as e:
            raise ConfigError(e.message, path=key) from None
        same = seen.setdefault((prof.name, getattr(prof, "calibration", None) is None), a)
        if same != a:
            raise ConfigError(f"{a!r} and {same!r} name the same profile ({prof.name})",
                              path=key)
    if spec.cross_site is not None:
        try:
            load_interconnect(spec.cross_site.link)
        except ConfigError as e:
            raise ConfigError(e.message, path="cross_site.link") from None
    try:
        model = load_model(spec.model)
    except ConfigError as e:
        raise ConfigError(e.message, path="model") from None
    why = model_problem(model)
    if why:
        raise ConfigError(why, path="model")
