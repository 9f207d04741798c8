"""The scenario file: a model, a workload, SLOs and named placements, loaded strictly.

Loading resolves every name (model, accelerators, links) and checks precision support and
memory fit, so a scenario that loads is one the engine can run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import build, fraction, meta, positive, power_of_two, read_yaml, to_dict
from .errors import ConfigError, suggest
from .hardware import PRECISION_BYTES, Accelerator, Interconnect, load_accelerator, load_interconnect
from .models import ModelConfig, load_model
from .perf import Formats, MemoryPlan, memory_plan
from .workload import WorkloadSpec

__all__ = ["Scenario", "Placement", "Pool", "SLO", "Precision", "load_scenario",
           "resolve_scenario", "ResolvedPool", "ResolvedPlacement"]

ROLES = ("mixed", "prefill", "decode")


@dataclass(frozen=True)
class Precision:
    """Per-role numeric formats; ``precision: bf16`` is shorthand for all three."""
    compute: str = field(default="bf16", metadata=meta("GEMM compute format"))
    weights: str | None = field(default=None, metadata=meta("stored weight format (default: compute)"))
    kv: str | None = field(default=None, metadata=meta("KV-cache format (default: compute)"))

    def __post_init__(self):
        for k in ("compute", "weights", "kv"):
            v = getattr(self, k)
            if v is not None and v not in PRECISION_BYTES:
                raise ConfigError(f"unknown precision {v!r}" + suggest(v, PRECISION_BYTES), path=k)

    def formats(self) -> Formats:
        return Formats(self.compute, self.weights or self.compute, self.kv or self.compute)


@dataclass(frozen=True)
class Pool:
    role: str = field(metadata=meta("mixed (colocated) | prefill | decode"))
    accelerator: str = field(metadata=meta("accelerator profile name"))
    instances: int = field(default=1, metadata=meta("serving instances (each a TP group)", positive))
    tp: int = field(default=1, metadata=meta("tensor-parallel degree per instance", power_of_two))
    precision: str | Precision = field(default="bf16", metadata=meta(
        "bf16, or {compute, weights, kv} per runtime role"))
    max_batch_tokens: int = field(default=8192, metadata=meta(
        "token budget of one iteration (chunked-prefill size on mixed pools)", positive))
    max_seqs: int = field(default=256, metadata=meta("max sequences in one iteration", positive))
    memory_utilization: float = field(default=0.9, metadata=meta(
        "fraction of device memory the engine may use", fraction))
    block_size: int = field(default=16, metadata=meta("KV block (page) size, tokens", positive))
    price_usd_per_hour: float | None = field(default=None, metadata=meta(
        "override the profile's $ per accelerator-hour", positive))

    def __post_init__(self):
        if self.role not in ROLES:
            raise ConfigError(f"unknown role {self.role!r}" + suggest(self.role, ROLES)
                              + f"; one of {', '.join(ROLES)}", path="role")
        if isinstance(self.precision, str) and self.precision not in PRECISION_BYTES:
            raise ConfigError(f"unknown precision {self.precision!r}"
                              + suggest(self.precision, PRECISION_BYTES), path="precision")

    def formats(self) -> Formats:
        p = self.precision
        return Formats.of(p) if isinstance(p, str) else p.formats()


@dataclass(frozen=True)
class RouterSpec:
    prefill: str = "round-robin"
    decode: str = "round-robin"


@dataclass(frozen=True)
class Placement:
    pools: dict[str, Pool] = field(metadata=meta("named pools of identical instances"))
    router: str | RouterSpec = field(default="round-robin", metadata=meta(
        "one router for both stages, or {prefill: R, decode: R}"))
    kv_link: str | None = field(default=None, metadata=meta(
        "interconnect the KV cache crosses from prefill to decode instances"))

    def __post_init__(self):
        roles = [p.role for p in self.pools.values()]
        if not roles:
            raise ConfigError("needs at least one pool", path="pools")
        has_mixed, has_p, has_d = ("mixed" in roles), ("prefill" in roles), ("decode" in roles)
        if has_mixed and (has_p or has_d):
            raise ConfigError("mixes colocated (mixed) and disaggregated pools; use one kind",
                              path="pools")
        if has_p != has_d:
            raise ConfigError("a disaggregated placement needs both a prefill and a decode pool",
                              path="pools")
        if has_d and not self.kv_link:
            raise ConfigError("a placement with a decode pool needs kv_link (the KV transfer "
                              "interconnect)", path="kv_link")

    @property
    def routers(self) -> RouterSpec:
        r = self.router
        return RouterSpec(r, r) if isinstance(r, str) else r


@dataclass(frozen=True)
class SLO:
    ttft_s: float = field(metadata=meta("time-to-first-token target, s", positive))
    tpot_s: float = field(metadata=meta("time-per-output-token target, s", positive))
    attainment: float = field(default=0.9, metadata=meta(
        "fraction of requests that must meet both", fraction))


@dataclass(frozen=True)
class Scenario:
    name: str
    model: str = field(metadata=meta("catalog name, model .yaml or HF config.json"))
    workload: WorkloadSpec
    slo: SLO
    placements: dict[str, Placement] = field(metadata=meta("named placements, simulated on "
                                                           "the identical request stream"))
    hardware_profiles: list[str] = field(default_factory=list, metadata=meta(
        "extra profile directories, searched before the shipped ones"))
    description: str = ""
    source_file: str | None = field(default=None, metadata=meta("(set by the loader)"))

    def __post_init__(self):
        if not self.placements:
            raise ConfigError("needs at least one placement", path="placements")

    @property
    def base_dir(self) -> Path:
        return Path(self.source_file).parent if self.source_file else Path(".")

    def to_dict(self) -> dict:
        d = to_dict(self)
        d.pop("source_file", None)
        return d


# --- resolution: names -> profiles, with the checks that need them --------------------------
@dataclass(frozen=True)
class ResolvedPool:
    name: str
    spec: Pool
    accelerator: Accelerator
    formats: Formats
    memory: MemoryPlan

    @property
    def usd_per_hour(self) -> float:
        """Whole pool: instances x tp accelerators."""
        per = (self.spec.price_usd_per_hour if self.spec.price_usd_per_hour is not None
               else self.accelerator.usd_per_hour)
        return per * self.spec.instances * self.spec.tp

    @property
    def accelerators(self) -> int:
        return self.spec.instances * self.spec.tp


@dataclass(frozen=True)
class ResolvedPlacement:
    name: str
    spec: Placement
    pools: dict[str, ResolvedPool]
    kv_link: Interconnect | None

    @property
    def disaggregated(self) -> bool:
        return self.kv_link is not None and any(p.spec.role == "decode"
                                                for p in self.pools.values())


def _resolve_pool(name, pool: Pool, model: ModelConfig, dirs, where) -> ResolvedPool:
    try:
        acc = load_accelerator(pool.accelerator, dirs)
    except ConfigError as e:
        raise ConfigError(e.message, path=f"{where}.accelerator") from None
    f = pool.formats()
    if not acc.supports(f.compute):
        raise ConfigError(f"{acc.name} does not compute in {f.compute} (supports "
                          f"{', '.join(acc.precisions)}); pool {name!r}", path=f"{where}.precision")
    if acc.scale_up and pool.tp > acc.scale_up.domain_size:
        raise ConfigError(f"tp={pool.tp} exceeds {acc.name}'s scale-up domain of "
                          f"{acc.scale_up.domain_size}", path=f"{where}.tp")
    if model.num_heads % pool.tp:
        raise ConfigError(f"tp={pool.tp} does not divide {model.name}'s {model.num_heads} heads",
                          path=f"{where}.tp")
    try:
        mem = memory_plan(model, acc, pool.tp, f, max_batched_tokens=pool.max_batch_tokens,
                          max_seqs=pool.max_seqs, memory_utilization=pool.memory_utilization,
                          block_size=pool.block_size)
    except ConfigError as e:
        raise ConfigError(f"pool {name!r}: {e.message}", path=where) from None
    return ResolvedPool(name, pool, acc, f, mem)


def resolve_scenario(sc: Scenario) -> tuple[ModelConfig, dict[str, ResolvedPlacement]]:
    """Load every profile a scenario names and check fit; errors name the key path."""
    dirs = [sc.base_dir / d for d in sc.hardware_profiles]
    model_ref = sc.model
    if model_ref.endswith((".json", ".yaml", ".yml")):
        model_ref = str(sc.base_dir / model_ref)
    try:
        model = load_model(model_ref)
    except ConfigError as e:
        raise ConfigError(e.message, file=e.file, path="model") from None
    out = {}
    for pname, pl in sc.placements.items():
        where = f"placements.{pname}"
        pools = {n: _resolve_pool(n, p, model, dirs, f"{where}.pools.{n}")
                 for n, p in pl.pools.items()}
        link = None
        if pl.kv_link:
            try:
                link = load_interconnect(pl.kv_link, dirs)
            except ConfigError as e:
                raise ConfigError(e.message, path=f"{where}.kv_link") from None
        from .engine.routers import ROUTERS  # registry of names
        for stage in ("prefill", "decode"):
            r = getattr(pl.routers, stage)
            if r not in ROUTERS:
                key = f"{where}.router" + ("" if isinstance(pl.router, str) else f".{stage}")
                raise ConfigError(f"unknown router {r!r}" + suggest(r, ROUTERS)
                                  + f"; one of {', '.join(sorted(ROUTERS))}", path=key)
        out[pname] = ResolvedPlacement(pname, pl, pools, link)
    return model, out


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; every error names the file and key path."""
    path = str(path)
    raw = read_yaml(path)
    try:
        sc = build(Scenario, raw)
        sc = Scenario(**{**sc.__dict__, "source_file": path})
        resolve_scenario(sc)
    except ConfigError as e:
        raise e.with_file(path) from None
    return sc
