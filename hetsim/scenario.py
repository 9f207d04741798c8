"""The scenario file: a model, a workload, SLOs and named placements, loaded strictly.

Loading resolves every name (model, accelerators, links) and checks precision support and
memory fit, so a scenario that loads is one the engine can run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .config import build, fraction, meta, positive, power_of_two, read_yaml, to_dict
from .errors import ConfigError, suggest
from .hardware import PRECISION_BYTES, Accelerator, Interconnect, load_accelerator, load_interconnect
from .models import ModelConfig, load_model
from .perf import Formats, MemoryPlan, memory_plan
from .workload import WorkloadSpec

__all__ = ["Scenario", "Placement", "Pool", "SLO", "Precision", "KVTransfer", "KVOffload",
           "PrefixCache", "CrossSite", "load_scenario", "resolve_scenario", "ResolvedPool",
           "ResolvedPlacement", "kv_mismatch"]

ROLES = ("mixed", "prefill", "decode")
#: Instances per pool: each is a SimPy process with its own step model, and 100k TP groups are
#: past the largest single cluster; a larger count is a typo, not a plan.
MAX_INSTANCES = 100_000


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
        if self.weights and PRECISION_BYTES[self.weights] > PRECISION_BYTES[self.compute]:
            raise ConfigError(f"weights ({self.weights}) are wider than compute ({self.compute});"
                              f" weight-only quantization stores weights narrower than compute",
                              path="weights")

    def formats(self) -> Formats:
        return Formats(self.compute, self.weights or self.compute, self.kv or self.compute)


@dataclass(frozen=True)
class KVOffload:
    """A host-DRAM KV tier per instance: preempted sequences swap out instead of recomputing."""
    capacity_gb: float = field(metadata=meta("host memory for swapped-out KV per instance, GB",
                                             positive))
    link: str = field(default="", metadata=meta(
        "host link profile (default: the accelerator's host_link)"))


@dataclass(frozen=True)
class PrefixCache:
    """Prompt prefixes already cached (system prompts, multi-turn history)."""
    hit_rate: float = field(metadata=meta("fraction of prompt tokens served from the cache",
                                          lambda v: None if 0 <= v < 1 else
                                          f"must be in [0, 1), got {v}"))
    residency: Literal["hbm", "host"] = field(default="hbm", metadata=meta(
        "hbm: cached KV is read in place | host: fetched over the host link first"))
    capacity_gb: float = field(default=0.0, metadata=meta(
        "cache size per instance, GB; with residency hbm it comes out of the KV pool",
        lambda v: None if v >= 0 else f"must be >= 0, got {v}"))
    link: str = field(default="", metadata=meta(
        "host link profile for host residency (default: the accelerator's host_link)"))


@dataclass(frozen=True)
class Pool:
    role: str = field(metadata=meta("mixed (colocated) | prefill | decode"))
    accelerator: str = field(metadata=meta("accelerator profile name"))
    instances: int = field(default=1, metadata=meta(
        f"serving instances (each a TP group), at most {MAX_INSTANCES:,}",
        lambda v: positive(v) or (None if v <= MAX_INSTANCES else
                                  f"must be at most {MAX_INSTANCES:,}, got {v}")))
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
    kv_layout: Literal["nhd", "hnd"] = field(default="nhd", metadata=meta(
        "KV page layout: nhd [tokens, heads, dim] (vLLM flash-attn) | hnd (FlashInfer/TRT-LLM)"))
    nic: str | None = field(default=None, metadata=meta(
        "KV-transfer NIC per accelerator (default: kv_transfer.link, else the accelerator's "
        "scale_out_nic)"))
    site: str = field(default="local", metadata=meta(
        "datacenter of the pool; KV between sites crosses kv_transfer.cross_site"))
    scale_up_domain: str | None = field(default=None, metadata=meta(
        "pools naming the same domain share a scale-up fabric (NVLink/xGMI) for KV transfer"))
    kv_allocation: Literal["reserve", "on-demand"] = field(default="reserve", metadata=meta(
        "decode KV: reserve prompt+output up front (never preempts) | on-demand block growth "
        "with preemption (set by preemption/kv_offload)"))
    preemption: Literal["recompute", "swap"] | None = field(default=None, metadata=meta(
        "when on-demand KV runs out: recompute the victim's KV, or swap it to kv_offload"))
    kv_offload: KVOffload | None = None
    prefix_cache: PrefixCache | None = None

    def __post_init__(self):
        if self.role not in ROLES:
            raise ConfigError(f"unknown role {self.role!r}" + suggest(self.role, ROLES)
                              + f"; one of {', '.join(ROLES)}", path="role")
        if isinstance(self.precision, str) and self.precision not in PRECISION_BYTES:
            raise ConfigError(f"unknown precision {self.precision!r}"
                              + suggest(self.precision, PRECISION_BYTES), path="precision")
        if self.preemption == "swap" and self.kv_offload is None:
            raise ConfigError("preemption: swap needs kv_offload: {capacity_gb, link}",
                              path="preemption")
        if (self.preemption or self.kv_offload) and self.role != "decode":
            raise ConfigError("preemption and kv_offload apply to decode pools",
                              path="preemption" if self.preemption else "kv_offload")
        if self.prefix_cache and self.role == "decode":
            raise ConfigError("prefix_cache applies to pools that prefill (prefill or mixed)",
                              path="prefix_cache")

    @property
    def on_demand(self) -> bool:
        """Decode KV grows block by block and may preempt (vLLM-style)."""
        return (self.kv_allocation == "on-demand" or self.preemption is not None
                or self.kv_offload is not None)

    @property
    def preemption_policy(self) -> str:
        return self.preemption or ("swap" if self.kv_offload else "recompute")

    def formats(self) -> Formats:
        p = self.precision
        return Formats.of(p) if isinstance(p, str) else p.formats()


@dataclass(frozen=True)
class RouterSpec:
    prefill: str = field(default="round-robin", metadata=meta("router for prompts"))
    decode: str = field(default="round-robin", metadata=meta("router for KV handoffs"))
    threshold_tokens: int = field(default=2048, metadata=meta(
        "length-threshold: prompts at least this long go to the (remote) prefill pool",
        positive))


@dataclass(frozen=True)
class CrossSite:
    """A shared link between sites (e.g. a DCI or a leased line); every transfer between pools
    on different sites crosses it and shares its capacity."""
    link: str = field(metadata=meta("interconnect profile of one link"))
    count: int = field(default=1, metadata=meta("parallel links (capacity = count x link)",
                                                positive))
    latency_us: float | None = field(default=None, metadata=meta(
        "one-way latency between sites, us (default: the link's)",
        lambda v: None if v >= 0 else f"must be >= 0, got {v}"))


CONVERSIONS = ("prefill", "decode", "none")


@dataclass(frozen=True)
class KVTransfer:
    """How the KV cache crosses from prefill to decode: network, engine, timing and ownership."""
    link: str | None = field(default=None, metadata=meta(
        "NIC profile on every instance (default: each accelerator's scale_out_nic)"))
    conversion: Literal["prefill", "decode", "none"] = field(default="decode", metadata=meta(
        "where a KV format mismatch is converted; none makes a mismatch an error"))
    engine: Literal["rdma", "tcp"] | None = field(default=None, metadata=meta(
        "rdma (GPU-direct) | tcp (staged through host memory); default from the NIC profile"))
    mode: Literal["whole", "layerwise"] = field(default="whole", metadata=meta(
        "whole: send after prefill | layerwise: stream each layer as prefill computes it"))
    handoff: Literal["pull", "push"] = field(default="pull", metadata=meta(
        "pull: decode reserves KV blocks, then reads | push: prefill writes into a decode-side "
        "staging buffer as soon as it has room"))
    staging_fraction: float = field(default=0.1, metadata=meta(
        "push: share of each decode instance's KV memory set aside as the staging buffer",
        fraction))
    tcp_stream_gb_s: float = field(default=5.0, metadata=meta(
        "tcp: host-side serialization throughput per accelerator, GB/s (Mooncake: TCP 2.4-4.6x "
        "slower than RDMA, ~4.5-5 GB/s per GPU)", positive))
    cross_site: CrossSite | None = None


@dataclass(frozen=True)
class Placement:
    pools: dict[str, Pool] = field(metadata=meta("named pools of identical instances"))
    router: str | RouterSpec = field(default="round-robin", metadata=meta(
        "one router for both stages, or {prefill: R, decode: R, threshold_tokens: N}"))
    kv_link: str | None = field(default=None, metadata=meta(
        "shorthand for kv_transfer: {link: ...}"))
    kv_transfer: KVTransfer | None = None

    def __post_init__(self):
        roles = [p.role for p in self.pools.values()]
        if not roles:
            raise ConfigError("needs at least one pool", path="pools")
        has_mixed, has_p, has_d = ("mixed" in roles), ("prefill" in roles), ("decode" in roles)
        if has_mixed and has_d:
            raise ConfigError("mixes colocated (mixed) and decode pools; use one kind",
                              path="pools")
        if has_mixed and has_p and self.routers.prefill != "length-threshold":
            raise ConfigError("mixed + prefill pools need router: {prefill: length-threshold} "
                              "(short prompts stay local, long ones go to the prefill pool)",
                              path="router")
        if has_p and not (has_d or has_mixed):
            raise ConfigError("a prefill pool needs a decode (or mixed) pool to hand KV to",
                              path="pools")
        if has_d and not has_p:
            raise ConfigError("a disaggregated placement needs both a prefill and a decode pool",
                              path="pools")
        if self.kv_link and self.kv_transfer:
            raise ConfigError("give kv_link or kv_transfer.link, not both", path="kv_link")

    @property
    def routers(self) -> RouterSpec:
        r = self.router
        return RouterSpec(r, r) if isinstance(r, str) else r

    @property
    def transfer(self) -> KVTransfer:
        if self.kv_transfer is not None:
            return self.kv_transfer
        return KVTransfer(link=self.kv_link)


@dataclass(frozen=True)
class SLO:
    ttft_s: float = field(metadata=meta("time-to-first-token target, s", positive))
    tpot_s: float = field(metadata=meta("time-per-output-token target, s", positive))
    attainment: float = field(default=0.9, metadata=meta(
        "fraction of requests that must meet both", fraction))
    percentile: float | None = field(default=None, metadata=meta(
        "MLPerf form: the p-th percentile TTFT and TPOT must each be within target "
        "(instead of an attainment fraction)",
        lambda v: None if 0 < v < 100 else f"must be in (0, 100), got {v}"))


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
    nic: Interconnect | None = None        # KV-transfer NIC of one accelerator
    host_link: Interconnect | None = None  # device <-> host (tcp staging, offload, host cache)
    scale_up: Interconnect | None = None
    offload_link: Interconnect | None = None   # kv_offload tier
    cache_link: Interconnect | None = None     # host-resident prefix cache
    staging_blocks: int = 0                # push handoff: decode-side staging buffer
    cache_blocks: int = 0                  # HBM prefix cache carved out of the KV pool

    @property
    def usd_per_hour(self) -> float:
        """Whole pool: instances x tp accelerators."""
        per = (self.spec.price_usd_per_hour if self.spec.price_usd_per_hour is not None
               else self.accelerator.usd_per_hour)
        return per * self.spec.instances * self.spec.tp

    @property
    def accelerators(self) -> int:
        return self.spec.instances * self.spec.tp

    @property
    def kv_blocks(self) -> int:
        """Blocks the instance's KV pool holds once staging and cache are set aside."""
        return self.memory.kv_blocks - self.staging_blocks - self.cache_blocks

    def kv_format(self) -> dict:
        """What a transfer engine cannot paper over: dtype, page size, layout, sharding."""
        return {"dtype": self.formats.kv, "block_size": self.spec.block_size,
                "layout": self.spec.kv_layout, "tp": self.spec.tp}


def kv_mismatch(src: ResolvedPool, dst: ResolvedPool) -> list[str]:
    """The KV-format fields two pools differ in, e.g. ``['dtype fp8 vs bf16']``."""
    a, b = src.kv_format(), dst.kv_format()
    return [f"{k} {a[k]} vs {b[k]}" for k in a if a[k] != b[k]]


@dataclass(frozen=True)
class ResolvedPlacement:
    name: str
    spec: Placement
    pools: dict[str, ResolvedPool]
    transfer: KVTransfer | None = None     # None: colocated, nothing crosses a boundary
    engine: str = "rdma"
    cross_site: Interconnect | None = None

    @property
    def disaggregated(self) -> bool:
        return any(p.spec.role == "prefill" for p in self.pools.values())

    @property
    def kv_link(self) -> Interconnect | None:
        """The NIC of the first prefill pool (for reports); None when colocated."""
        return next((p.nic for p in self.pools.values() if p.spec.role == "prefill"), None)


def _load_link(name: str, dirs, path: str) -> Interconnect:
    try:
        return load_interconnect(name, dirs)
    except ConfigError as e:
        raise ConfigError(e.message, path=path) from None


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
    host = _load_link(acc.host_link or "pcie-gen5", dirs, f"{where}.accelerator")
    side = {}
    for key, sub in (("kv_offload", pool.kv_offload), ("prefix_cache", pool.prefix_cache)):
        side[key] = (_load_link(sub.link, dirs, f"{where}.{key}.link")
                     if sub is not None and sub.link else host)
    scale_up = (_load_link(acc.scale_up.link, dirs, f"{where}.accelerator")
                if acc.scale_up else None)
    cache_blocks = 0
    pc = pool.prefix_cache
    if pc and pc.residency == "hbm" and pc.capacity_gb:
        cache_blocks = int(pc.capacity_gb * 1e9 // (mem.kv_bytes_per_token * pool.block_size))
        if cache_blocks >= mem.kv_blocks:
            raise ConfigError(f"pool {name!r}: a {pc.capacity_gb:g} GB prefix cache leaves no "
                              f"KV memory ({mem.kv_bytes / 1e9:.1f} GB per device)",
                              path=f"{where}.prefix_cache.capacity_gb")
    return ResolvedPool(name, pool, acc, f, mem, host_link=host, scale_up=scale_up,
                        offload_link=side["kv_offload"], cache_link=side["prefix_cache"],
                        cache_blocks=cache_blocks)


def _resolve_transfer(pl: Placement, pools: dict[str, ResolvedPool], dirs, where: str):
    """NICs, engine, cross-site link and the KV-format checks of a disaggregated placement."""
    import dataclasses
    t = pl.transfer
    key = f"{where}.kv_link" if pl.kv_link else f"{where}.kv_transfer"
    common = _load_link(t.link, dirs, key if pl.kv_link else f"{key}.link") if t.link else None
    for n, rp in list(pools.items()):
        if rp.spec.nic:
            nic = _load_link(rp.spec.nic, dirs, f"{where}.pools.{n}.nic")
        elif common is not None:
            nic = common
        elif rp.accelerator.scale_out_nic:
            nic = _load_link(rp.accelerator.scale_out_nic, dirs, f"{where}.pools.{n}.accelerator")
        else:
            raise ConfigError(f"{rp.accelerator.name} names no scale_out_nic; set "
                              f"kv_transfer.link or the pool's nic", path=f"{where}.pools.{n}.nic")
        pools[n] = dataclasses.replace(rp, nic=nic)
    engine = t.engine or ("rdma" if all(p.nic.rdma for p in pools.values()) else "tcp")
    if engine == "rdma":
        for n, rp in pools.items():
            if not rp.nic.rdma:
                raise ConfigError(f"engine rdma needs GPU-direct NICs; pool {n!r} uses "
                                  f"{rp.nic.name} (rdma: false); use engine: tcp",
                                  path=f"{key}.engine")
    sites = {p.spec.site for p in pools.values()}
    cross = None
    if len(sites) > 1:
        if t.cross_site is None:
            raise ConfigError(f"pools are on sites {', '.join(sorted(sites))}; KV between sites "
                              f"needs kv_transfer.cross_site: {{link: ...}}", path=key)
        cross = _load_link(t.cross_site.link, dirs, f"{key}.cross_site.link")
    # Pools that share a scale-up domain must share its fabric and fit in it.
    domains: dict[str, list[ResolvedPool]] = {}
    for rp in pools.values():
        if rp.spec.scale_up_domain:
            domains.setdefault(rp.spec.scale_up_domain, []).append(rp)
    for dom, members in domains.items():
        links = {m.scale_up.name if m.scale_up else None for m in members}
        if len(links) > 1 or None in links:
            raise ConfigError(f"scale_up_domain {dom!r} mixes scale-up fabrics "
                              f"({', '.join(sorted(map(str, links)))})",
                              path=f"{where}.pools.{members[-1].name}.scale_up_domain")
        size = sum(m.accelerators for m in members)
        cap = members[0].accelerator.scale_up.domain_size
        if size > cap:
            raise ConfigError(f"scale_up_domain {dom!r} holds {size} accelerators, more than "
                              f"{members[0].accelerator.name}'s domain of {cap}",
                              path=f"{where}.pools.{members[-1].name}.scale_up_domain")
    senders = [p for p in pools.values() if p.spec.role == "prefill"]
    receivers = [p for p in pools.values() if p.spec.role in ("decode", "mixed")]
    if t.conversion == "none":
        for a in senders:
            for b in receivers:
                diff = kv_mismatch(a, b)
                if diff:
                    raise ConfigError(f"pools {a.name!r} and {b.name!r} hold KV in different "
                                      f"formats ({', '.join(diff)}) and conversion is none; set "
                                      f"conversion: prefill or decode", path=f"{key}.conversion")
    if t.handoff == "push":
        for b in receivers:
            staging = max(1, int(b.memory.kv_blocks * t.staging_fraction))
            pools[b.name] = dataclasses.replace(b, staging_blocks=staging)
    for b in pools.values():
        if b.kv_blocks < 1:
            raise ConfigError(f"pool {b.name!r} has no KV memory left after its staging buffer "
                              f"and prefix cache", path=f"{where}.pools.{b.name}")
    return engine, cross


def resolve_scenario(sc: Scenario) -> tuple[ModelConfig, dict[str, ResolvedPlacement]]:
    """Load every profile a scenario names and check fit; errors name the key path."""
    from .engine.routers import ROUTERS  # registry of names
    dirs = [sc.base_dir / d for d in sc.hardware_profiles]
    for i, d in enumerate(dirs):
        if not d.is_dir():
            raise ConfigError(f"{d} is not a folder" if d.exists() else f"{d} does not exist",
                              path=f"hardware_profiles[{i}]")
    model_ref = sc.model
    if model_ref.endswith((".json", ".yaml", ".yml")):
        model_ref = str(sc.base_dir / model_ref)
    try:
        model = load_model(model_ref)
    except ConfigError as e:   # inside the model's own file, keep its key path
        raise ConfigError(e.message, file=e.file, path=e.path if e.file else "model") from None
    out = {}
    for pname, pl in sc.placements.items():
        where = f"placements.{pname}"
        pools = {n: _resolve_pool(n, p, model, dirs, f"{where}.pools.{n}")
                 for n, p in pl.pools.items()}
        for stage in ("prefill", "decode"):
            r = getattr(pl.routers, stage)
            if r not in ROUTERS:
                key = f"{where}.router" + ("" if isinstance(pl.router, str) else f".{stage}")
                raise ConfigError(f"unknown router {r!r}" + suggest(r, ROUTERS)
                                  + f"; one of {', '.join(sorted(ROUTERS))}", path=key)
        if any(p.spec.role == "prefill" for p in pools.values()):
            engine, cross = _resolve_transfer(pl, pools, dirs, where)
            out[pname] = ResolvedPlacement(pname, pl, pools, pl.transfer, engine, cross)
        else:
            if pl.kv_link or pl.kv_transfer:
                raise ConfigError("a colocated placement moves no KV; drop kv_link/kv_transfer",
                                  path=f"{where}.kv_transfer" if pl.kv_transfer
                                  else f"{where}.kv_link")
            out[pname] = ResolvedPlacement(pname, pl, pools)
    return model, out


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; every error names the file and key path."""
    return scenario_from_dict(read_yaml(path), path)


def scenario_from_dict(raw, path: str | Path) -> Scenario:
    """Validate a parsed scenario that came from ``path`` (errors name it; relative paths in it
    resolve against its folder)."""
    path = str(path)
    try:
        sc = build(Scenario, raw)
        sc = Scenario(**{**sc.__dict__, "source_file": path})
        resolve_scenario(sc)
    except ConfigError as e:
        raise e.with_file(path) from None
    return sc
