"""The scenario file's schema: a model, a workload, SLOs and named placements, read strictly.

Reading checks keys, types and the checks that need no profile; :mod:`hetsim.resolve` then
loads every name (model, accelerators, links) and checks precision support and memory fit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from .config import (build, fraction, meta, non_negative, positive, power_of_two, read_yaml,
                     to_dict)
from .errors import ConfigError, suggest
from .overrides import apply_overrides, blame
from .precision import Formats, Precision, unknown_precision
from .runtimes import RuntimeSpec
from .workload import WorkloadSpec

__all__ = ["Scenario", "Placement", "Pool", "SLO", "KVTransfer", "KVOffload",
           "PrefixCache", "CrossSite", "Encoding", "Batching", "RouterSpec", "Fault", "Recovery",
           "read_scenario",
           "parse_scenario", "as_scenario"]

ROLES = ("mixed", "prefill", "decode")
#: a pool's sizes without a runtime (with one, the runtime's defaults: hetsim.runtimes)
GENERIC_SIZES = {"max_batch_tokens": 8192, "max_seqs": 256, "memory_utilization": 0.9,
                 "block_size": 16, "kv_allocation": "reserve"}
#: Instances per pool: each is a SimPy process with its own step model, and 100k TP groups are
#: past the largest single cluster; a larger count is a typo, not a plan.
MAX_INSTANCES = 100_000


@dataclass(frozen=True)
class KVOffload:
    """A host-DRAM KV tier per instance: preempted sequences swap out instead of recomputing."""
    capacity_gb: float = field(metadata=meta("host memory for swapped-out KV per instance, GB",
                                             positive))
    link: str = field(default="", metadata=meta(
        "host link profile (default: the accelerator's host_link)"))
    write_through: bool | None = field(default=None, metadata=meta(
        "true: the tier is a KV store beside the engine (LMCache's server, Mooncake's store) "
        "that each running sequence's KV is written to as its chunks fill; it outlives an "
        "engine crash (unless the fault says host: lost), and a sequence decoding on a crashed "
        "instance is restored from it, recomputing only the tokens past its last stored chunk. "
        "Unset/false: the engine's own swap space, lost with it"))
    chunk_tokens: int | None = field(default=None, metadata=meta(
        "write_through: tokens per stored chunk, a multiple of the pool's block_size (LMCache: "
        "256); default: the pool's block_size (one KV block at a time)", positive))

    def __post_init__(self):
        if self.chunk_tokens is not None and not self.write_through:
            raise ConfigError("chunk_tokens belongs to write_through: true", path="chunk_tokens")


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
    runtime: str | RuntimeSpec | None = field(default=None, metadata=meta(
        "serving runtime: vllm | sglang | trtllm (any case), or {name, version, <overrides>}; "
        "selects the runtime's measured kernel timings (hardware_profiles/runtimes/"
        "<accelerator>.<runtime>.yaml) and its serving rules (scheduler, KV admission, CUDA "
        "graphs, KV capacity, overheads; docs/runtime-rules.md); unset: the generic profile "
        "and the idealised engine", lambda v: None if not isinstance(v, str) or v.strip()
        else "must name a runtime, got ''"))
    instances: int = field(default=1, metadata=meta(
        f"serving instances (each a TP group), at most {MAX_INSTANCES:,}",
        lambda v: positive(v) or (None if v <= MAX_INSTANCES else
                                  f"must be at most {MAX_INSTANCES:,}, got {v}")))
    tp: int = field(default=1, metadata=meta("tensor-parallel degree per instance", power_of_two))
    moe_ep: int | None = field(default=None, metadata=meta(
        "MoE models: expert parallelism inside the TP group (each rank holds num_experts / "
        "moe_ep experts, each split tp / moe_ep ways; TRT-LLM moe_expert_parallel_size, vLLM "
        "--enable-expert-parallel at moe_ep = tp); default 1; must divide tp", power_of_two))
    attention_dp: int | None = field(default=None, metadata=meta(
        "attention data parallelism: the instance's tp GPUs are attention_dp ranks, each "
        "running attention and the non-expert layers on its own requests at TP tp / "
        "attention_dp with those weights replicated, the routed experts over all tp GPUs "
        "(vLLM --data-parallel-size N --enable-expert-parallel, tp = N x "
        "--tensor-parallel-size: vllm/engine/arg_utils.py; TRT-LLM enable_attention_dp: true, "
        "N = tp: tensorrt_llm/llmapi/llm_args.py; SGLang --enable-dp-attention --dp N, "
        "attention TP = tp / N: python/sglang/srt/layers/dp_attention.py); each rank is its "
        "own scheduler, so max_seqs and max_batch_tokens are per rank (the instance runs up "
        "to attention_dp x each) and the KV capacity is attention_dp ranks'; default 1; must "
        "divide tp", power_of_two))
    precision: str | Precision = field(default="bf16", metadata=meta(
        "bf16, or {compute, weights, kv} per runtime role"))
    max_batch_tokens: int | None = field(default=None, metadata=meta(
        "token budget of one iteration (chunked-prefill size on mixed pools); default 8192, "
        "or the runtime's; with attention_dp, per rank (one prompt chunk at most this)",
        positive))
    max_seqs: int | None = field(default=None, metadata=meta(
        "max sequences in one iteration; default 256, or the runtime's; with attention_dp, "
        "per rank", positive))
    memory_utilization: float | None = field(default=None, metadata=meta(
        "fraction of device memory the engine may use; default 0.9, or the runtime's rule",
        fraction))
    block_size: int | None = field(default=None, metadata=meta(
        "KV block (page) size, tokens; default 16, or the runtime's", positive))
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
    kv_allocation: Literal["reserve", "on-demand"] | None = field(default=None, metadata=meta(
        "decode KV: reserve prompt+output up front (never preempts; the default) | on-demand "
        "block growth with preemption (set by preemption/kv_offload); with a runtime: its "
        "rule"))
    preemption: Literal["recompute", "swap"] | None = field(default=None, metadata=meta(
        "when on-demand KV runs out: recompute the victim's KV, or swap it to kv_offload"))
    kv_offload: KVOffload | None = None
    prefix_cache: PrefixCache | None = None

    def __post_init__(self):
        if self.runtime is None:    # the idealised engine's sizes (a runtime's: at resolution)
            for k, v in GENERIC_SIZES.items():
                if getattr(self, k) is None:
                    object.__setattr__(self, k, v)
        if self.moe_ep is not None and self.tp % self.moe_ep:
            raise ConfigError(f"moe_ep={self.moe_ep} must divide tp={self.tp}", path="moe_ep")
        if self.attention_dp is not None and self.tp % self.attention_dp:
            raise ConfigError(f"attention_dp={self.attention_dp} must divide tp={self.tp}",
                              path="attention_dp")
        if self.role not in ROLES:
            raise ConfigError(f"unknown role {self.role!r}" + suggest(self.role, ROLES)
                              + f"; one of {', '.join(ROLES)}", path="role")
        why = unknown_precision(self.precision) if isinstance(self.precision, str) else None
        if why:
            raise ConfigError(why, path="precision")
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
    def dp(self) -> int:
        """Attention data-parallel ranks per instance (1: one TP group)."""
        return self.attention_dp or 1

    @property
    def attn_tp(self) -> int:
        """The ranks one sequence's KV is sharded over: tp / :attr:`dp` (a request lives on one
        attention data-parallel rank), so its KV bytes are per-device bytes x this."""
        return self.tp // self.dp

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


INSTANCE_FAULTS = ("crash", "hang", "degrade")
LINK_FAULTS = ("degrade", "down")
FAULT_KINDS = ("crash", "hang", "degrade", "down")


@dataclass(frozen=True)
class Fault:
    """One fault: scheduled (``at_s`` on a ``target``) or random (``pool`` or ``link`` with
    ``mtbf_s``/``mttr_s``: each instance of the pool, or the link group, fails after an
    exponential up time and stays down an exponential time, drawn from the faults' own seeded
    stream). Instance faults (target ``pool/i`` or a pool): a crash empties the instance (KV
    lost, cold on return), a hang stops its iterations, a degrade runs them at ``factor`` of
    its speed. Link faults (target a link group as ``link_utilization`` names it, e.g.
    ``decode.nic``, or ``cross-site``): degrade scales its bandwidth by ``factor``, down
    carries nothing (transfers crossing it are sent again)."""
    kind: str = field(metadata=meta(
        "crash (instance gone, back cold after repair_s) | hang (stops iterating for "
        "duration_s) | degrade (an instance's speed or a link's bandwidth x factor for "
        "duration_s) | down (a link carries nothing for duration_s)"))
    target: str | None = field(default=None, metadata=meta(
        "scheduled: an instance pool/i (from 0), a pool (all its instances), or for degrade "
        "and down a link group (pool.nic, pool.scale-up, pool.host, pool.tcp-stack, "
        "cross-site)"))
    at_s: float | None = field(default=None, metadata=meta(
        "scheduled: when the fault happens, s from the start", non_negative))
    repair_s: float | None = field(default=None, metadata=meta(
        "crash: seconds until the instance is back (cold: KV empty)", positive))
    duration_s: float | None = field(default=None, metadata=meta(
        "hang, degrade, down: seconds the fault lasts", positive))
    factor: float | None = field(default=None, metadata=meta(
        "degrade: the instance's speed (its iterations take 1/factor as long) or the link's "
        "bandwidth is multiplied by this, in (0, 1); overlapping degrades multiply",
        lambda v: None if 0 < v < 1 else f"must be in (0, 1), got {v}"))
    pool: str | None = field(default=None, metadata=meta(
        "random: the pool whose instances fail independently (crash, hang, degrade)"))
    link: str | None = field(default=None, metadata=meta(
        "random: the link group that fails (down, degrade), named as target is"))
    mtbf_s: float | None = field(default=None, metadata=meta(
        "random: mean time between failures of one instance or of the link, s (exponential)",
        positive))
    mttr_s: float | None = field(default=None, metadata=meta(
        "random: mean time to repair (crash) or length of a hang, degrade or down, s "
        "(exponential)", positive))
    host: Literal["survives", "lost"] | None = field(default=None, metadata=meta(
        "crash: survives (the default: the node stays up, a write-through kv_offload tier on "
        "it keeps its KV) | lost (the node died too: its host tier with it)"))

    def __post_init__(self):
        if self.kind not in FAULT_KINDS:
            raise ConfigError(f"unknown kind {self.kind!r}" + suggest(self.kind, FAULT_KINDS)
                              + f"; one of {', '.join(FAULT_KINDS)}", path="kind")
        if (self.factor is not None) != (self.kind == "degrade"):
            raise ConfigError("degrade needs factor" if self.kind == "degrade" else
                              f"factor belongs to degrade, not {self.kind}", path="factor")
        if self.host is not None and self.kind != "crash":
            raise ConfigError(f"host belongs to a crash, not {self.kind}", path="host")
        if self.random:
            self._check_random()
            return
        if self.mttr_s is not None or self.pool is not None or self.link is not None:
            k = next(k for k in ("mttr_s", "pool", "link") if getattr(self, k) is not None)
            raise ConfigError("mttr_s, pool and link belong to a random fault (with mtbf_s)",
                              path=k)
        if self.at_s is None or self.target is None:
            raise ConfigError("a scheduled fault needs at_s and target (or mtbf_s, mttr_s and "
                              "pool or link for a random one)",
                              path="at_s" if self.at_s is None else "target")
        need, other = ("repair_s", "duration_s") if self.kind == "crash" else (
            "duration_s", "repair_s")
        if getattr(self, other) is not None:
            raise ConfigError(f"a {self.kind} takes {need}, not {other}", path=other)
        if getattr(self, need) is None:
            raise ConfigError(f"a {self.kind} needs {need}", path=need)

    def _check_random(self) -> None:
        for k in ("target", "at_s", "repair_s", "duration_s"):
            if getattr(self, k) is not None:
                raise ConfigError(f"a random fault (mtbf_s) takes pool or link and mttr_s, "
                                  f"not {k}", path=k)
        if self.pool is not None and self.link is not None:
            raise ConfigError("a random fault strikes a pool's instances or a link, not both",
                              path="link")
        if self.mttr_s is None or self.pool is None is self.link:
            raise ConfigError("a random fault (mtbf_s) needs pool and mttr_s (instances), or "
                              "link and mttr_s (a link group)",
                              path="mttr_s" if self.mttr_s is None else "pool")
        if self.pool is not None and self.kind not in INSTANCE_FAULTS:
            raise ConfigError(f"a random fault on a pool strikes its instances (crash, hang, "
                              f"degrade), not links ({self.kind}: name a link group with "
                              f"link)", path="kind")
        if self.link is not None and self.kind not in LINK_FAULTS:
            raise ConfigError(f"a random fault on a link is down or degrade, not {self.kind}",
                              path="kind")

    @property
    def random(self) -> bool:
        return self.mtbf_s is not None

    @property
    def down_s(self) -> float | None:
        """A scheduled fault's length (repair time, or how long it lasts)."""
        return self.repair_s if self.kind == "crash" else self.duration_s


@dataclass(frozen=True)
class Recovery:
    """What the serving system does for the requests a fault hits."""
    kv_lost: Literal["reprefill"] = field(default="reprefill", metadata=meta(
        "a request whose KV is lost re-prefills its prompt + the tokens already generated"))
    retry_limit: int = field(default=3, metadata=meta(
        "recoveries one request may take; one more ends it failed (retry_limit)",
        non_negative))
    request_timeout_s: float | None = field(default=None, metadata=meta(
        "a request hit by a fault fails (timeout) once this long has passed since its "
        "arrival: its recovery, or its wait for a live instance, stops there", positive))
    recover_window_s: float = field(default=10.0, metadata=meta(
        "time to recover: from a fault until the SLO attainment of the requests arriving in "
        "a sliding window this long is back at the target", positive))


CONVERSIONS = ("prefill", "decode", "none")


@dataclass(frozen=True)
class Encoding:
    """How the KV is encoded for the wire (README "KV serialization"). Encoding and decoding
    are device work on the sending and receiving instances."""
    codec: Literal["none", "fp8", "int4", "compressed"] = field(metadata=meta(
        "none | fp8 | int4 (quantize the KV per element) | compressed (any codec with a stated "
        "ratio and throughputs, e.g. CacheGen-style entropy coding)"))
    ratio: float | None = field(default=None, metadata=meta(
        "wire bytes / KV bytes; default for fp8 and int4: the element-size ratio to the KV "
        "format on the wire (bf16 -> int4: 0.25; per-group scales not counted); required for "
        "compressed", fraction))
    encode_gb_s: float | None = field(default=None, metadata=meta(
        "KV bytes encoded per second per sending accelerator, GB/s; default for fp8 and int4: "
        "a memory-bound pass on the device (read the KV, write the codes, one kernel per "
        "layer, as KV format conversion); required for compressed", positive))
    decode_gb_s: float | None = field(default=None, metadata=meta(
        "KV bytes restored per second per receiving accelerator, GB/s; defaults as "
        "encode_gb_s", positive))

    def __post_init__(self):
        if self.codec == "none":
            for k in ("ratio", "encode_gb_s", "decode_gb_s"):
                if getattr(self, k) is not None:
                    raise ConfigError("codec none sends the KV as it is; remove this key", path=k)
        elif self.codec == "compressed":
            for k in ("ratio", "encode_gb_s", "decode_gb_s"):
                if getattr(self, k) is None:
                    raise ConfigError("codec compressed needs its measured ratio, encode_gb_s "
                                      "and decode_gb_s (no default exists for an arbitrary "
                                      "codec)", path=k)


@dataclass(frozen=True)
class Batching:
    """Transfers from one prefill instance to one decode instance that start within a window
    go as one: one setup, one descriptor submission, one stream."""
    window_ms: float = field(metadata=meta(
        "how long the first transfer of a batch waits for others, ms (no transfer waits "
        "longer)", positive))
    max_bytes_mb: float | None = field(default=None, metadata=meta(
        "a batch is sent at once when its wire bytes reach this, MB (required)", positive))

    def __post_init__(self):
        if self.max_bytes_mb is None:
            raise ConfigError("a batching window needs a cap: set max_bytes_mb (a batch is sent "
                              "when its window ends or its bytes reach the cap)",
                              path="max_bytes_mb")


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
    encoding: Encoding | None = field(default=None, metadata=meta(
        "encode the KV for the wire: {codec: none | fp8 | int4 | compressed, ratio, "
        "encode_gb_s, decode_gb_s}"))
    batching: Batching | Literal["none"] | None = field(default=None, metadata=meta(
        "send transfers to the same decode instance together: {window_ms, max_bytes_mb}, or "
        "none"))
    descriptor_us: float | None = field(default=None, metadata=meta(
        "host time to post one transfer descriptor (one per KV block x layer x K/V per rank, "
        "ranks posting in parallel), us; unset: not charged apart from the NIC's "
        "per-transfer overhead. Published: NIXL libfabric ~2.4 us (ai-dynamo/nixl#1514: "
        "18,880 descriptors, ~46 ms)", non_negative))
    first_token: Literal["decode", "prefill"] = field(default="decode", metadata=meta(
        "decode: the client sees the first token from the decode side, once the KV has "
        "arrived and the decode side admits the request (vLLM's disaggregated proxy, SGLang "
        "PD, TRT-LLM's disagg server, Dynamo) | prefill: when the prefill computes it "
        "(DistServe's convention)"))

    def __post_init__(self):
        if self.mode == "layerwise" and self.stepwise:
            key = next(k for k in _STEP_KEYS if getattr(self, k) is not None)
            raise ConfigError("encoding, batching and descriptor_us model whole transfers; "
                              "a layer-wise stream is not encoded, batched or posted per "
                              "block here (use mode: whole)", path=key)

    @property
    def stepwise(self) -> bool:
        """Whether transfers run as steps (setup, descriptors, encode, stream, decode) with a
        per-step breakdown: any of encoding, batching or descriptor_us is set. Otherwise a
        transfer is one setup and one stream, as before those keys existed."""
        return any(getattr(self, k) is not None for k in _STEP_KEYS)


_STEP_KEYS = ("encoding", "batching", "descriptor_us")


@dataclass(frozen=True)
class Placement:
    pools: dict[str, Pool] = field(metadata=meta("named pools of identical instances"))
    router: str | RouterSpec = field(default="round-robin", metadata=meta(
        "one router for both stages, or {prefill: R, decode: R, threshold_tokens: N}"))
    kv_link: str | None = field(default=None, metadata=meta(
        "shorthand for kv_transfer: {link: ...}"))
    kv_transfer: KVTransfer | None = None
    faults: list[Fault] = field(default_factory=list, metadata=meta(
        "faults of this placement only (besides the scenario's faults:)"))
    recovery: Recovery | None = field(default=None, metadata=meta(
        "this placement's recovery (default: the scenario's recovery:)"))

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
    faults: list[Fault] = field(default_factory=list, metadata=meta(
        "faults every placement sees (instance crashes and hangs, scheduled or random)"))
    recovery: Recovery | None = field(default=None, metadata=meta(
        "how requests hit by a fault recover (retry limit, timeout)"))
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
        # NOTE: unset keys are left out (an unset runtime, the sizes a runtime defaults), so
        # a scenario without a runtime writes what it wrote before the keys existed
        # (scenario.resolved.yaml stays byte-identical)
        # NOTE: so do faults and recovery when absent (unchanged output without them)
        _drop_unset(d)
        for placement in d["placements"].values():
            _drop_unset(placement)
            for pool in placement["pools"].values():
                for k in ("runtime", "moe_ep", "attention_dp", *GENERIC_SIZES):
                    if pool.get(k) is None:
                        pool.pop(k, None)
            kv = placement.get("kv_transfer") or {}
            for k in _STEP_KEYS:      # unset: written as before the keys existed
                if k in kv and kv[k] is None:
                    del kv[k]
        return d


def _drop_unset(d: dict) -> None:
    if not d.get("faults"):
        d.pop("faults", None)
    for f in d.get("faults") or ():     # keys added later: written only when set
        if f.get("host") is None:
            f.pop("host", None)
    for pool in d.get("pools", {}).values():
        kv = pool.get("kv_offload") or {}
        for k in ("write_through", "chunk_tokens"):
            if k in kv and kv[k] is None:
                del kv[k]
    if d.get("recovery") is None:
        d.pop("recovery", None)


def read_scenario(path: str | Path) -> Scenario:
    """Read a scenario file against the schema; every error names the file and key path.
    Names are not resolved here: ``hetsim.resolve.load_scenario`` does both."""
    return parse_scenario(read_yaml(path), path)


def parse_scenario(raw, path: str | Path | None) -> Scenario:
    """Check a parsed scenario that came from ``path`` against the schema (errors name it;
    relative paths in it resolve against its folder; None: built in Python, relative paths
    resolve against the working folder)."""
    path = None if path is None else str(path)
    try:
        sc = build(Scenario, raw)
    except ConfigError as e:
        raise e.with_file(path) from None
    return Scenario(**{**sc.__dict__, "source_file": path})


def as_scenario(scenario: "Scenario | str | Path | Mapping", overrides: Mapping | None = None,
                label: str = "overrides", file: str | None = None) -> Scenario:
    """A scenario from a file path, a mapping (as a scenario file parses) or a Scenario, with
    ``overrides`` ({key path: value}, :mod:`hetsim.overrides`) applied and checked. Errors name
    the file and key path, and ``(set by LABEL)`` when an override caused them. A mapping
    parsed from a file names it in ``file`` (its relative paths resolve there)."""
    if isinstance(scenario, Scenario):
        if not overrides:
            return scenario
        raw, file = scenario.to_dict(), scenario.source_file
    elif isinstance(scenario, Mapping):
        raw = scenario
    elif isinstance(scenario, (str, Path)):
        raw, file = read_yaml(scenario), str(scenario)
    else:
        raise TypeError(f"a scenario is a path, a mapping or a Scenario, not "
                        f"{type(scenario).__name__}")
    if not overrides:
        return parse_scenario(raw, file)
    try:
        return parse_scenario(apply_overrides(raw, overrides, Scenario), file)
    except ConfigError as e:
        raise blame(e.with_file(file), label, lambda: parse_scenario(raw, file)) from None
