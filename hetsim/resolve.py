"""Resolution: a scenario's names -> profiles, with every check that needs them.

The one place profiles load for a scenario and pools are checked (precision support, TP
against the scale-up domain and heads, memory fit, KV links and formats), used by run,
validate, goodput, plan and check alike. A scenario is resolved once per run.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from .engine.routers import ROUTERS
from .errors import ConfigError, suggest
from .hardware import Accelerator, Interconnect, load_accelerator, load_interconnect
from .models import ModelConfig, load_model
from .perf import MemoryPlan, PerfModel, PoolProblem, StepModel, model_problem, pool_fit
from .precision import PRECISION_BYTES, Formats
from .runtimes import (STATE_SLOTS_PER_REQUEST, Rules, RuntimeSpec, kv_budget, moe_compute,
                       sglang_max_running, sglang_state_slots)
from .runtimes import rules as runtime_rules
from .overrides import blame
from .scenario import (Encoding, Fault, KVTransfer, Placement, Pool, Recovery, Scenario,
                       as_scenario, parse_scenario)

__all__ = ["ResolvedPool", "ResolvedTransfer", "TransferSteps", "ResolvedPlacement",
           "ResolvedFault", "kv_mismatch", "wire_pool", "resolve_scenario", "load_scenario",
           "scenario_from_dict"]


@dataclass(frozen=True)
class ResolvedPool:
    name: str
    spec: Pool
    accelerator: Accelerator
    formats: Formats
    memory: MemoryPlan
    host_link: Interconnect | None = None  # device <-> host (tcp staging, offload, host cache)
    scale_up: Interconnect | None = None
    offload_link: Interconnect | None = None   # kv_offload tier
    cache_link: Interconnect | None = None     # host-resident prefix cache
    cache_blocks: int = 0                  # HBM prefix cache carved out of the KV pool
    rules: Rules | None = None             # the serving runtime's rules (None: idealised)
    moe_routing: str = "balanced"          # how tokens spread over experts (workload's)

    @property
    def usd_per_hour(self) -> float:
        """Whole pool: instances x tp accelerators."""
        per = (self.spec.price_usd_per_hour if self.spec.price_usd_per_hour is not None
               else self.accelerator.usd_per_hour)
        return per * self.spec.instances * self.spec.tp

    @property
    def accelerators(self) -> int:
        return self.spec.instances * self.spec.tp

    def step_model(self, model: ModelConfig) -> StepModel:
        """The iteration-time model of one of this pool's instances running ``model``."""
        return StepModel(model, PerfModel(self.accelerator), self.spec.tp, self.formats,
                         moe_distribution=self.moe_routing, moe_ep=self.spec.moe_ep or 1,
                         moe_compute=moe_compute(self.rules, self.accelerator),
                         attention_dp=self.spec.dp)

    def kv_format(self) -> dict:
        """What a transfer engine cannot paper over: dtype, page size, layout, sharding (a
        sequence's KV is sharded over its attention data-parallel rank's GPUs: attn_tp, which
        is tp without attention DP)."""
        return {"dtype": self.formats.kv, "block_size": self.spec.block_size,
                "layout": self.spec.kv_layout, "tp": self.spec.attn_tp}


def kv_mismatch(src: ResolvedPool, dst: ResolvedPool) -> list[str]:
    """The KV-format fields two pools differ in, e.g. ``['dtype fp8 vs bf16']``."""
    a, b = src.kv_format(), dst.kv_format()
    return [f"{k} {a[k]} vs {b[k]}" for k in a if a[k] != b[k]]


def wire_pool(conversion: str, src: ResolvedPool, dst: ResolvedPool) -> ResolvedPool:
    """The pool whose KV format crosses the wire from ``src`` to ``dst``: the receiver's where
    their formats differ and the prefill side converts, else the sender's."""
    return dst if conversion == "prefill" and kv_mismatch(src, dst) else src


@dataclass(frozen=True)
class TransferSteps:
    """A stepwise transfer's costs in SI units (``kv_transfer`` with encoding, batching or
    descriptor_us): the codec, the per-descriptor time, and the batching window and cap."""
    codec: str = "none"                     # none | fp8 | int4 | compressed
    ratio: float | None = None              # wire / KV bytes (None: from the formats)
    encode_bytes_per_s: float | None = None   # per accelerator (None: memory-bound pass)
    decode_bytes_per_s: float | None = None
    descriptor_s: float = 0.0               # per descriptor, per rank
    window_s: float | None = None           # batching window (None: no batching)
    batch_cap_bytes: float = 0.0


@dataclass(frozen=True)
class ResolvedTransfer:
    """How KV crosses from prefill to decode pools, every name resolved: the engine, each
    pool's NIC, the cross-site link, where formats convert, and the push staging buffers."""
    mode: str                      # whole | layerwise
    handoff: str                   # pull | push
    conversion: str                # prefill | decode | none
    engine: str                    # rdma | tcp
    nics: dict[str, Interconnect]  # pool -> KV-transfer NIC of one accelerator
    staging_blocks: dict[str, int] = field(default_factory=dict)  # push: receiver -> blocks
    tcp_stream_bytes_per_s: float = 5e9   # tcp: host-side serialization per accelerator
    cross_site: Interconnect | None = None
    cross_site_bandwidth: float = 0.0     # B/s: the link x its count
    cross_site_latency_s: float = 0.0
    first_token: str = "decode"           # decode | prefill: which side shows the first token
    steps: TransferSteps | None = None    # None: one setup and one stream per transfer

    @property
    def early_routing(self) -> bool:
        """The decode target is chosen when the prefill starts if the prefill must know it
        then: to stream layers to it, or to write the KV in its format."""
        return self.mode == "layerwise" or self.conversion == "prefill"


@dataclass(frozen=True)
class ResolvedFault:
    """A fault with its target named: the instances it strikes and, for a random fault, the
    spawn key of its stream (the same in every placement: see hetsim.engine.faults)."""
    spec: Fault
    instances: tuple[str, ...]     # "pool/i" (instance faults)
    stream: tuple[int, ...]        # (0: scenario | 1: placement, index in that list)
    link: str | None = None        # a link group (link faults)


@dataclass(frozen=True)
class ResolvedPlacement:
    name: str
    spec: Placement
    pools: dict[str, ResolvedPool]
    transfer: ResolvedTransfer | None = None     # None: colocated, nothing crosses a boundary
    faults: tuple[ResolvedFault, ...] = ()
    recovery: Recovery | None = None             # set where faults are (default Recovery())

    @property
    def disaggregated(self) -> bool:
        """Prefill and decode on separate pools (and so a resolved KV transfer)."""
        return self.transfer is not None


def _load_link(name: str, dirs, path: str) -> Interconnect:
    try:
        return load_interconnect(name, dirs)
    except ConfigError as e:
        raise ConfigError(e.message, path=path) from None


def _in_pool(problem: PoolProblem, name: str) -> str:
    """A pool problem's message naming the pool: last for precision, first for memory (the
    key path names it for TP)."""
    if problem.key == "precision":
        return f"{problem.message}; pool {name!r}"
    return problem.message if problem.key else f"pool {name!r}: {problem.message}"


def _check_routing(name: str, pool: ResolvedPool, model: ModelConfig) -> None:
    """Skewed MoE routing is read from measured MoE kernels: refuse a pool that has none for
    this model's layer (the analytical MoE assumes balanced routing, and would ignore it)."""
    where = "workload.moe_routing"
    if model.moe is None:
        raise ConfigError(f"{model.name} has no MoE layers", path=where)
    if not pool.step_model(model).measured_moe:
        what = (f"{pool.accelerator.name}'s {pool.rules.name} profile has no measured MoE "
                f"kernels for {model.name}'s layer at tp={pool.spec.tp}" if pool.rules else
                "it has no runtime: (only runtime profiles carry measured MoE kernels)")
        raise ConfigError(f"{pool.moe_routing} routing needs measured MoE kernels; pool "
                          f"{name!r}: {what}", path=where)


def _resolve_pool(name, pool: Pool, model: ModelConfig, dirs, where) -> ResolvedPool:
    try:
        acc = load_accelerator(pool.accelerator, dirs)
    except ConfigError as e:
        raise ConfigError(e.message, path=f"{where}.accelerator") from None
    rules = None
    if pool.runtime:
        try:
            spec = RuntimeSpec.of(pool.runtime)
        except ConfigError as e:    # a bare name: the error is the key's own
            raise ConfigError(e.message, path=f"{where}.runtime") from None
        try:
            acc = load_accelerator(pool.accelerator, dirs, runtime=spec.name)
        except ConfigError as e:
            # NOTE: a broken runtime profile's own file goes into the message; the error's file
            # is the scenario's
            why = f"{e.file}: {e.message}" if e.file else e.message
            raise ConfigError(why, path=f"{where}.runtime") from None
        if pool.kv_allocation is not None:
            raise ConfigError("with a runtime, KV admission is the runtime's rule; set "
                              "runtime: {name: ..., kv_admission: ...} instead",
                              path=f"{where}.kv_allocation")
        seqs_unset = pool.max_seqs is None
        try:
            rules = runtime_rules(spec, acc, pool.tp)
        except ConfigError as e:
            raise ConfigError(e.message, path=f"{where}.runtime.{e.path}") from None
        # the runtime's host time per step replaces the profile's generic engine overhead
        acc = replace(acc, efficiency=replace(
            acc.efficiency, iteration_overhead_ms=rules.step_overhead_s * 1e3))
        pool = _with_rules(pool, rules)
        rules = replace(rules, memory_fraction=pool.memory_utilization)
        if rules.recv_interval > 1 and (pool.role != "mixed" or pool.dp > 1):
            # SGLang asserts it off with attention DP; hetsim gates colocated pools only
            raise ConfigError("recv_interval applies to a colocated (mixed) pool without "
                              "attention DP", path=f"{where}.runtime.recv_interval")
    if pool.moe_ep and pool.moe_ep > 1:
        moe = model.moe
        if moe is None or moe.num_experts % pool.moe_ep:
            why = (f"{model.name} has no MoE layers" if moe is None else
                   f"moe_ep={pool.moe_ep} does not divide {model.name}'s {moe.num_experts} experts")
            raise ConfigError(why, path=f"{where}.moe_ep")
    f = pool.formats()
    sizes = dict(max_batched_tokens=pool.max_batch_tokens, max_seqs=pool.max_seqs,
                 memory_utilization=pool.memory_utilization, block_size=pool.block_size)
    if rules is not None:
        sizes["kv_rule"] = partial(kv_budget, rules)
    mem = pool_fit(model, acc, pool.tp, f, attention_dp=pool.dp, **sizes)
    if isinstance(mem, PoolProblem):
        raise ConfigError(_in_pool(mem, name), path=f"{where}.{mem.key}" if mem.key else where)
    if rules is not None:
        rules = replace(rules, max_batch_tokens=pool.max_batch_tokens, block_size=pool.block_size)
        if rules.name == "sglang":
            pool = replace(pool, max_seqs=_sglang_running(rules, pool, model, mem, seqs_unset))
        rules = replace(rules, max_seqs=pool.max_seqs)
    host = _load_link(acc.host_link or "pcie-gen5", dirs, f"{where}.accelerator")
    side = {}
    for key, sub in (("kv_offload", pool.kv_offload), ("prefix_cache", pool.prefix_cache)):
        side[key] = (_load_link(sub.link, dirs, f"{where}.{key}.link")
                     if sub is not None and sub.link else host)
    scale_up = (_load_link(acc.scale_up.link, dirs, f"{where}.accelerator")
                if acc.scale_up else None)
    off = pool.kv_offload
    if off is not None and off.chunk_tokens and off.chunk_tokens % pool.block_size:
        raise ConfigError(f"must be a multiple of the pool's block_size ({pool.block_size}), "
                          f"got {off.chunk_tokens}", path=f"{where}.kv_offload.chunk_tokens")
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
                        cache_blocks=cache_blocks, rules=rules)


def _sglang_running(rules: Rules, pool: Pool, model: ModelConfig, mem, unset: bool) -> int:
    """SGLang's running-request cap on each attention-DP rank (its scheduler sizes itself by
    its own KV): the KV-derived default where the pool sets none, and for a linear-attention
    model at most what its state pool holds (:func:`sglang_state_slots`).

    NOTE: SGLang keeps the states in a pool of their own, carved out of the KV memory before
    the KV pool is sized; hetsim's one block pool holds both (kv_state_blocks), so only the
    cap and the capacity the default reads are SGLang's, and KV may use idle slots' memory."""
    kv_tokens, slots = mem.kv_tokens // pool.dp, None
    if model.linear_attention is not None:
        state = model.state_bytes(pool.tp // pool.dp)
        slots = sglang_state_slots(mem.kv_bytes, state, rules.radix_cache,
                                   None if unset else pool.max_seqs)
        kv_tokens = int(kv_tokens * max(0.0, 1 - slots * state / mem.kv_bytes))
    if unset:
        return sglang_max_running(kv_tokens, model.max_context, slots, rules.radix_cache,
                                  rules.overlap)
    if slots is None:
        return pool.max_seqs
    return max(1, min(pool.max_seqs,
                      slots // STATE_SLOTS_PER_REQUEST[rules.radix_cache, rules.overlap]))


def _with_rules(pool: Pool, rules: Rules) -> Pool:
    """``pool`` with every size it leaves unset taken from the runtime's rules."""
    defaults = {"max_batch_tokens": rules.max_batch_tokens, "max_seqs": rules.max_seqs,
                "memory_utilization": rules.memory_fraction, "block_size": rules.block_size,
                "kv_allocation": ("reserve" if rules.kv_admission == "reserve-output"
                                  else "on-demand")}
    return replace(pool, **{k: v for k, v in defaults.items() if getattr(pool, k) is None})


def _nics(pl: Placement, pools: dict[str, ResolvedPool], dirs, where: str, key: str):
    """Each pool's KV NIC: its own, else the placement's link, else its accelerator's."""
    t = pl.transfer
    common = _load_link(t.link, dirs, key if pl.kv_link else f"{key}.link") if t.link else None
    nics = {}
    for n, rp in pools.items():
        if rp.spec.nic:
            nics[n] = _load_link(rp.spec.nic, dirs, f"{where}.pools.{n}.nic")
        elif common is not None:
            nics[n] = common
        elif rp.accelerator.scale_out_nic:
            nics[n] = _load_link(rp.accelerator.scale_out_nic, dirs,
                                 f"{where}.pools.{n}.accelerator")
        else:
            raise ConfigError(f"{rp.accelerator.name} names no scale_out_nic; set "
                              f"kv_transfer.link or the pool's nic", path=f"{where}.pools.{n}.nic")
    return nics


def _check_domains(pools: dict[str, ResolvedPool], where: str) -> None:
    """Pools that share a scale-up domain must share its fabric and fit in it."""
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


def _check_formats(t: KVTransfer, pools: dict[str, ResolvedPool], key: str) -> None:
    """With conversion none, every prefill -> receiver pair must hold KV alike."""
    if t.conversion != "none":
        return
    for a, b in _pairs(pools):
        diff = kv_mismatch(a, b)
        if diff:
            raise ConfigError(f"pools {a.name!r} and {b.name!r} hold KV in different "
                              f"formats ({', '.join(diff)}) and conversion is none; set "
                              f"conversion: prefill or decode", path=f"{key}.conversion")


def _pairs(pools: dict[str, ResolvedPool]) -> list[tuple[ResolvedPool, ResolvedPool]]:
    """Every (prefill pool, receiving pool) pair that KV crosses between."""
    senders = [p for p in pools.values() if p.spec.role == "prefill"]
    receivers = [p for p in pools.values() if p.spec.role in ("decode", "mixed")]
    return [(a, b) for a in senders for b in receivers]


def _staging(t: KVTransfer, pools: dict[str, ResolvedPool], where: str) -> dict[str, int]:
    """Push: each receiver's staging buffer (blocks), and KV memory left beside it."""
    staging = {b.name: max(1, int(b.memory.kv_blocks * t.staging_fraction))
               for b in pools.values()
               if t.handoff == "push" and b.spec.role in ("decode", "mixed")}
    for b in pools.values():
        if b.memory.kv_blocks - staging.get(b.name, 0) - b.cache_blocks < 1:
            raise ConfigError(f"pool {b.name!r} has no KV memory left after its staging buffer "
                              f"and prefix cache", path=f"{where}.pools.{b.name}")
    return staging


def _resolve_transfer(pl: Placement, pools: dict[str, ResolvedPool], dirs,
                      where: str) -> ResolvedTransfer:
    """The KV link of a disaggregated placement: NICs, engine, cross-site link and the
    KV-format checks. Reads ``pools``, changes nothing."""
    t = pl.transfer
    key = f"{where}.kv_link" if pl.kv_link else f"{where}.kv_transfer"
    nics = _nics(pl, pools, dirs, where, key)
    engine = t.engine or ("rdma" if all(nic.rdma for nic in nics.values()) else "tcp")
    if engine == "rdma":
        for n, nic in nics.items():
            if not nic.rdma:
                raise ConfigError(f"engine rdma needs GPU-direct NICs; pool {n!r} uses "
                                  f"{nic.name} (rdma: false); use engine: tcp",
                                  path=f"{key}.engine")
    sites = {p.spec.site for p in pools.values()}
    cross, bandwidth, latency = None, 0.0, 0.0
    if len(sites) > 1:
        if t.cross_site is None:
            raise ConfigError(f"pools are on sites {', '.join(sorted(sites))}; KV between sites "
                              f"needs kv_transfer.cross_site: {{link: ...}}", path=key)
        cs = t.cross_site
        cross = _load_link(cs.link, dirs, f"{key}.cross_site.link")
        bandwidth = cross.bandwidth * cs.count
        latency = cross.latency if cs.latency_us is None else cs.latency_us * 1e-6
    _check_domains(pools, where)
    _check_formats(t, pools, key)
    return ResolvedTransfer(t.mode, t.handoff, t.conversion, engine, nics,
                            _staging(t, pools, where), t.tcp_stream_gb_s * 1e9, cross,
                            bandwidth, latency, t.first_token, _steps(t, pools, key))


def _steps(t: KVTransfer, pools: dict[str, ResolvedPool], key: str) -> TransferSteps | None:
    """A stepwise transfer's costs in SI units; a named codec must shrink the KV format on the
    wire of every pair KV crosses between (:func:`wire_pool`)."""
    if not t.stepwise:
        return None
    enc = t.encoding or Encoding(codec="none")
    if enc.codec in ("fp8", "int4") and enc.ratio is None:
        for rp in (wire_pool(t.conversion, a, b) for a, b in _pairs(pools)):
            if PRECISION_BYTES[rp.formats.kv] <= PRECISION_BYTES[enc.codec]:
                raise ConfigError(f"codec {enc.codec} does not shrink the {rp.formats.kv} KV "
                                  f"of pool {rp.name!r}; choose a narrower codec or state "
                                  f"the ratio", path=f"{key}.encoding.codec")
    b = t.batching if t.batching != "none" else None
    gb = (lambda v: None if v is None else v * 1e9)
    return TransferSteps(enc.codec, enc.ratio, gb(enc.encode_gb_s), gb(enc.decode_gb_s),
                         (t.descriptor_us or 0.0) * 1e-6,
                         None if b is None else b.window_ms * 1e-3,
                         0.0 if b is None else b.max_bytes_mb * 1e6)


def resolve_scenario(sc: Scenario) -> tuple[ModelConfig, dict[str, ResolvedPlacement]]:
    """Load every profile a scenario names and check fit; errors name the scenario's file and
    the key path."""
    try:
        return _resolve(sc)
    except ConfigError as e:
        raise e.with_file(sc.source_file) from None


def _resolve(sc: Scenario) -> tuple[ModelConfig, dict[str, ResolvedPlacement]]:
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
    why = model_problem(model)
    if why:
        raise ConfigError(why, path="model")
    out = {}
    for pname, pl in sc.placements.items():
        where = f"placements.{pname}"
        pools = {n: _resolve_pool(n, p, model, dirs, f"{where}.pools.{n}")
                 for n, p in pl.pools.items()}
        if sc.workload.moe_routing is not None:
            pools = {n: replace(p, moe_routing=sc.workload.moe_routing) for n, p in pools.items()}
            if sc.workload.moe_routing != "balanced":
                for n, p in pools.items():
                    _check_routing(f"{pname}.pools.{n}", p, model)
        for stage in ("prefill", "decode"):
            r = getattr(pl.routers, stage)
            if r not in ROUTERS:
                key = f"{where}.router" + ("" if isinstance(pl.router, str) else f".{stage}")
                raise ConfigError(f"unknown router {r!r}" + suggest(r, ROUTERS)
                                  + f"; one of {', '.join(sorted(ROUTERS))}", path=key)
        if any(p.spec.role == "prefill" for p in pools.values()):
            out[pname] = ResolvedPlacement(pname, pl, pools,
                                           _resolve_transfer(pl, pools, dirs, where))
        else:
            if pl.kv_link or pl.kv_transfer:
                raise ConfigError("a colocated placement moves no KV; drop kv_link/kv_transfer",
                                  path=f"{where}.kv_transfer" if pl.kv_transfer
                                  else f"{where}.kv_link")
            out[pname] = ResolvedPlacement(pname, pl, pools)
        faults = _faults(sc, pl, out[pname], where)
        if faults:
            out[pname] = replace(out[pname], faults=faults,
                                 recovery=pl.recovery or sc.recovery or Recovery())
    return model, out


def _faults(sc: Scenario, pl: Placement, rp: ResolvedPlacement,
            where: str) -> tuple[ResolvedFault, ...]:
    """The scenario's faults, then the placement's, each target checked against this
    placement's pools (a scenario-wide fault names the placement it does not fit)."""
    out = []
    for src, (faults, key) in enumerate(((sc.faults, "faults"), (pl.faults, f"{where}.faults"))):
        for j, f in enumerate(faults):
            path = f"{key}[{j}]"
            which = "" if src else f" (placement {rp.name!r})"
            if f.link is not None if f.random else _on_link(f, rp):
                k, named = ("link", f.link) if f.random else ("target", f.target)
                out.append(ResolvedFault(f, (), (src, j), _link_group(
                    named, rp, f"{path}.{k}", which)))
                continue
            named = f.pool if f.random else f.target
            out.append(ResolvedFault(f, _fault_targets(
                named, rp, f"{path}.{'pool' if f.random else 'target'}", which,
                random=f.random, degrade=f.kind == "degrade"), (src, j)))
    return tuple(out)


def _on_link(f, rp: ResolvedPlacement) -> bool:
    """A scheduled fault strikes a link group: down always, degrade where its target names
    one (else an instance or pool)."""
    return f.kind == "down" or (f.kind == "degrade" and f.target in link_groups(rp))


def link_groups(rp: ResolvedPlacement) -> list[str]:
    """The link groups a disaggregated placement's KV crosses (as ``link_utilization`` names
    them); none when colocated."""
    t = rp.transfer
    if t is None:
        return []
    groups = []
    for name, pool in rp.pools.items():
        groups.append(f"{name}.nic")
        if pool.scale_up is not None and pool.spec.scale_up_domain:
            groups.append(f"{name}.scale-up")
        if t.engine == "tcp":
            groups += [f"{name}.host", f"{name}.tcp-stack"]
    return groups + (["cross-site"] if t.cross_site is not None else [])


def _link_group(named: str, rp: ResolvedPlacement, path: str, which: str) -> str:
    groups = link_groups(rp)
    if named not in groups:
        raise ConfigError(f"unknown link group {named!r}{which}" + suggest(named, groups)
                          + (f"; one of {', '.join(groups)}" if groups else
                             "; a colocated placement moves no KV over links"), path=path)
    return named


def _fault_targets(named: str, rp: ResolvedPlacement, path: str, which: str,
                   random: bool, degrade: bool = False) -> tuple[str, ...]:
    """Instance names a fault target means: ``pool/i`` or a whole ``pool``."""
    pool, slash, index = named.partition("/")
    if random and slash:
        raise ConfigError(f"a random fault names a pool, got {named!r}", path=path)
    if pool not in rp.pools:
        groups = link_groups(rp)
        if degrade and not slash:    # either kind of target
            raise ConfigError(f"unknown pool or link group {named!r}{which}"
                              + suggest(named, [*rp.pools, *groups])
                              + "; degrade strikes pool, pool/i or a link group", path=path)
        hint = (" (a link group: degrade and down strike links)" if named in groups else "")
        raise ConfigError(f"unknown pool {pool!r}{which}{hint}" + suggest(pool, rp.pools)
                          + "; crash, hang and degrade strike pool or pool/i", path=path)
    n = rp.pools[pool].spec.instances
    if not slash:
        return tuple(f"{pool}/{i}" for i in range(n))
    if not index.isdigit() or int(index) >= n:
        raise ConfigError(f"{named!r}: pool {pool!r}{which} has instances 0..{n - 1}",
                          path=path)
    return (f"{pool}/{int(index)}",)




def load_scenario(scenario: "str | Path | dict | Scenario", overrides: dict | None = None,
                  label: str = "overrides", file: str | None = None) -> Scenario:
    """Read a scenario (a file, a mapping parsed from ``file``, or a Scenario), set
    ``overrides`` ({key path: value}) on it, and check everything but the workload's draws: a
    scenario that loads is one the engine can run. Every error names the file and key path;
    one the overrides caused, resolution's included, ends ``(set by LABEL)``."""
    sc = as_scenario(scenario, overrides, label, file)
    try:
        resolve_scenario(sc)
    except ConfigError as e:
        if not overrides:
            raise
        raise blame(e, label, lambda: resolve_scenario(as_scenario(scenario, None, file=file))
                    ) from None
    return sc


def scenario_from_dict(raw, path: str | Path) -> Scenario:
    """:func:`load_scenario` for a mapping already parsed from ``path``."""
    sc = parse_scenario(raw, path)
    resolve_scenario(sc)
    return sc
