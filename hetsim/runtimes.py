"""Serving runtimes as a pool's ``runtime:`` selects them: vLLM, SGLang and TRT-LLM.

A runtime is two things. Its **kernel profile** (``hardware_profiles/runtimes/``: what each
operator costs under that runtime; :mod:`hetsim.hardware`) and its **serving rules**, here:
how its scheduler fills a step, how it admits a request's KV, which decode batches run as
captured CUDA graphs, how much memory it gives the KV cache, and when the client sees the
first token. :func:`rules` gives the rules a runtime applies by default on a given GPU, with
the user's overrides (``runtime: {name: vllm, chunked_prefill: false}``) on top.

Every default below was read in the runtime's own source or documentation; the file and
version are in ``docs/runtime-rules.md`` (its section named beside each value). The two
numbers no runtime states, the host time per step and per request (HTTP, tokenisation,
streaming), are fitted on allowed measured runs (``benchmarks/fit_runtime_overheads.py``;
DESIGN.md "Serving accuracy" says which rows).
"""
from __future__ import annotations

import dataclasses
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Literal

from .config import meta, positive
from .errors import ConfigError, suggest

__all__ = ["RUNTIMES", "VERSIONS", "RuntimeSpec", "Rules", "rules", "kv_budget",
           "sglang_max_running", "sglang_state_slots", "pad_batch", "moe_compute"]

RUNTIMES = ("vllm", "sglang", "trtllm")
#: the version each runtime's rules were read from (docs/runtime-rules.md, "Versions read"),
#: and of the kernel tables its profiles carry; TRT-LLM's rules come from unpinned 1.3.0rc2x
#: sources (no rc20 source was readable), rc20 is aiconfigurator-core's tables' version
VERSIONS = {"vllm": "0.24.0", "sglang": "0.5.14", "trtllm": "1.3.0rc20"}
GIB = 2 ** 30

#: The two host costs no runtime states, fitted by benchmarks/fit_runtime_overheads.py on the
#: allowed rows of aiconfigurator-core 0.12.0 systems/silicon_sample.csv at 1-4 clients
#: (DESIGN.md "Serving runtimes"): per step, the device-idle time between steps that CUDA-graph
#: replay and overlap scheduling leave (it replaces the profile's iteration_overhead_ms);
#: per request, the time outside the engine (HTTP, tokenisation, the first streamed chunk)
#: (2026-12-03, latest: the QK-norm kernel of Qwen3, Qwen3.5 and MiniMax in the step model:
#: vLLM 144 rows, TRT-LLM 49, SGLang 60)
STEP_OVERHEAD_S = {"vllm": 0.000617, "sglang": 0.00186, "trtllm": 0.0}
REQUEST_OVERHEAD_S = {"vllm": 0.0328, "sglang": 0.194, "trtllm": 0.03}

@dataclass(frozen=True)
class RuntimeSpec:
    """A pool's ``runtime:`` mapping: a runtime, optionally its version, and overrides of the
    serving rules it would apply by default (each unset key keeps the runtime's default)."""
    name: str = field(metadata=meta("vllm | sglang | trtllm (any case)"))
    version: str | None = field(default=None, metadata=meta(
        f"the runtime version whose rules apply; only the versions read are known "
        f"({', '.join(f'{k} {v}' for k, v in VERSIONS.items())}); unset: that one"))
    chunked_prefill: bool | None = field(default=None, metadata=meta(
        "split long prompts over steps (vLLM enable_chunked_prefill, TRT-LLM "
        "enable_chunked_context, SGLang chunked_prefill_size > 0)"))
    mixed_batches: bool | None = field(default=None, metadata=meta(
        "prompt chunks share a step with the running decodes (vLLM and TRT-LLM: always; "
        "SGLang: enable_mixed_chunk, off by default: a prefill step pauses the decodes)"))
    kv_admission: Literal["on-demand", "reserve-output", "estimate"] | None = field(
        default=None, metadata=meta(
            "on-demand: admit on the prompt's KV, grow a block at a time, preempt the newest "
            "by recompute when full (vLLM) | reserve-output: reserve prompt + output at "
            "admission, never preempt (TRT-LLM GUARANTEED_NO_EVICT) | estimate: admit on "
            "prompt + min(output, 4096) against free KV less the running requests' remaining "
            "output x new_token_ratio, grow per token, retract when full (SGLang)"))
    cuda_graphs: bool | None = field(default=None, metadata=meta(
        "decode-only steps replay captured CUDA graphs, padded up to the next captured batch "
        "size"))
    overlap: bool | None = field(default=None, metadata=meta(
        "the next step is scheduled while one runs (vLLM async_scheduling, SGLang overlap "
        "schedule, TRT-LLM overlap scheduler): a request arriving mid-step waits one step more"))
    request_overhead_s: float | None = field(default=None, metadata=meta(
        "fixed time per request outside the engine (HTTP, tokenisation, streaming), seconds",
        lambda v: None if v >= 0 else f"must be >= 0, got {v}"))
    step_overhead_s: float | None = field(default=None, metadata=meta(
        "device-idle time per engine step (host work not hidden by CUDA graphs and overlap "
        "scheduling), seconds; replaces the profile's iteration_overhead_ms",
        lambda v: None if v >= 0 else f"must be >= 0, got {v}"))
    recv_interval: int | None = field(default=None, metadata=meta(
        "SGLang's --scheduler-recv-interval: new requests are taken in once the steps since "
        "the last intake weigh this much (decode 1, prefill 1000); default 1", positive))
    mxfp4_moe: Literal["bf16", "mxfp8"] | None = field(default=None, metadata=meta(
        "the activations MXFP4 experts compute on, on a Blackwell (fp4) device: mxfp8, or "
        "bf16 = the pool's compute format (vLLM: bf16, mxfp8 with "
        "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8=1; TRT-LLM: mxfp8, its TRTLLM MoE backend; "
        "SGLang: the pool's compute format)"))
    radix_cache: bool | None = field(default=None, metadata=meta(
        "SGLang's radix cache (on unless --disable-radix-cache): sizes a linear-attention "
        "model's state pool and the slots a request holds (prefix hits are not modelled)"))

    def __post_init__(self):
        name = self.name.strip().lower()
        if name not in RUNTIMES:
            raise ConfigError(f"unknown runtime {self.name!r}" + suggest(name, RUNTIMES)
                              + f"; one of {', '.join(RUNTIMES)}", path="name")
        object.__setattr__(self, "name", name)
        for key in ("radix_cache", "recv_interval"):
            if getattr(self, key) is not None and name != "sglang":
                raise ConfigError(f"{key} is SGLang's; {name} has none", path=key)
        if self.version is not None and self.version != VERSIONS[name]:
            raise ConfigError(f"hetsim has {name}'s rules for version {VERSIONS[name]} only, "
                              f"got {self.version!r}", path="version")

    @classmethod
    def of(cls, value: "str | RuntimeSpec") -> "RuntimeSpec":
        return value if isinstance(value, RuntimeSpec) else cls(value)


@dataclass(frozen=True)
class Rules:
    """The serving rules one pool runs under (resolved: every field set)."""
    name: str
    version: str
    max_batch_tokens: int        # token budget of one step
    max_seqs: int                # running requests
    block_size: int              # KV page, tokens
    chunked_prefill: bool
    mixed_batches: bool
    kv_admission: str            # on-demand | reserve-output | estimate
    cuda_graphs: bool
    graph_sizes: tuple[int, ...]  # captured decode batch sizes, ascending
    graph_padding: bool          # a batch between sizes pads up (else it runs eagerly)
    overlap: bool
    first_token_delay_steps: int  # the first token reaches the client this many steps late
    request_overhead_s: float
    step_overhead_s: float
    memory: str                  # which KV-capacity rule (see :func:`kv_budget`)
    memory_fraction: float
    #: what MXFP4 experts compute on where the device has fp4: "mxfp8", else the pool's compute
    mxfp4_moe: str | None = None
    radix_cache: bool = False    # SGLang's radix cache (sizes a hybrid model's state pool)
    recv_interval: int = 1       # SGLang's scheduler_recv_interval (see SglangPolicy)


def _sizes(*ranges, limit: int) -> tuple[int, ...]:
    out = sorted({s for r in ranges for s in r if s <= limit})
    return tuple(out)


def _vllm(acc, tp) -> dict:
    """vLLM 0.24.0 ``vllm serve`` (docs/runtime-rules.md §1-§3)."""
    big = acc.hbm_bytes >= 70 * GIB and "a100" not in acc.name
    tokens, seqs = (8192, 1024) if big else (2048, 256)
    top = min(seqs * 2, 512, tokens)
    graphs = _sizes([1, 2, 4], range(8, 256, 8), range(256, top + 1, 16), limit=top)
    return dict(max_batch_tokens=tokens, max_seqs=seqs, block_size=16, chunked_prefill=True,
                mixed_batches=True, kv_admission="on-demand", cuda_graphs=True,
                graph_sizes=graphs, graph_padding=True, overlap=True,
                first_token_delay_steps=0, memory="vllm", memory_fraction=0.92,
                mxfp4_moe="bf16")


def _sglang(acc, tp) -> dict:
    """SGLang 0.5.14 (docs/runtime-rules.md §1-§3): sizes by GPU memory (GiB)."""
    gib = acc.hbm_bytes / GIB
    chunk = 2048 if gib < 35 else 4096 if gib < 60 else 8192 if gib < 160 else 16384
    graph_max = (8 if gib < 20 else (80 if tp >= 4 else 24) if gib < 35 else
                 (160 if tp >= 4 else 32) if gib < 60 else
                 (512 if tp >= 4 else 256) if gib < 160 else 512)
    graphs = _sizes([1, 2, 4, 8, 12], range(16, 257, 8), range(272, 512, 16),
                    range(512, graph_max + 1, 32), [graph_max], limit=graph_max)
    prefill_graphs = len(_sizes(range(4, 33, 4), range(48, 257, 16), range(288, 513, 32),
                                range(576, 1025, 64), range(1280, 4097, 256),
                                range(4608, chunk + 1, 512), limit=chunk))
    reserved_mib = (512 + 1.5 * max(chunk, 2048) + 2 * graph_max + tp / 8 * 1024
                    + 8 * prefill_graphs)
    if gib > 60:
        reserved_mib = max(reserved_mib, 10 * 1024)
    fraction = (gib * 1024 - reserved_mib) / (gib * 1024)
    # max_seqs: the cap of sglang_max_running, until the KV capacity is known
    return dict(max_batch_tokens=chunk, max_seqs=4096, block_size=1, chunked_prefill=True,
                mixed_batches=False, kv_admission="estimate", cuda_graphs=True,
                graph_sizes=graphs, graph_padding=True, overlap=True,
                first_token_delay_steps=0, memory="sglang", memory_fraction=fraction,
                radix_cache=True, recv_interval=1, mxfp4_moe=None)


def _trtllm(acc, tp) -> dict:
    """TRT-LLM PyTorch backend, LLM-API defaults (docs/runtime-rules.md §1-§3): CUDA graphs
    for generation-only batches of the captured sizes, no padding."""
    graphs = _sizes(range(1, 33), [64, 128], limit=128)
    return dict(max_batch_tokens=8192, max_seqs=2048, block_size=32, chunked_prefill=False,
                mixed_batches=True, kv_admission="reserve-output", cuda_graphs=True,
                graph_sizes=graphs, graph_padding=False, overlap=True,
                first_token_delay_steps=1, memory="trtllm", memory_fraction=0.9,
                mxfp4_moe="mxfp8" if acc.supports("fp4") else "bf16")


_DEFAULTS = {"vllm": _vllm, "sglang": _sglang, "trtllm": _trtllm}


def rules(spec: "str | RuntimeSpec", acc, tp: int) -> Rules:
    """The rules ``spec``'s runtime applies on ``acc`` at ``tp``, with its overrides. SGLang's
    running-request cap depends on the KV capacity: resolution sets it with
    :func:`sglang_max_running`."""
    spec = RuntimeSpec.of(spec)
    d = _DEFAULTS[spec.name](acc, tp)
    for f in dataclasses.fields(RuntimeSpec):
        v = getattr(spec, f.name)
        if f.name not in ("name", "version") and v is not None and f.name in d:
            d[f.name] = v
    if spec.mxfp4_moe == "mxfp8" and not acc.supports("fp4"):
        raise ConfigError(f"MXFP8-activation MXFP4 experts run on Blackwell (fp4) devices; "
                          f"{acc.name} has no fp4", path="mxfp4_moe")
    if spec.overlap is not None and spec.name == "trtllm":
        d["first_token_delay_steps"] = int(spec.overlap)
    fitted = {k: getattr(spec, k) if getattr(spec, k) is not None else table[spec.name]
              for k, table in (("request_overhead_s", REQUEST_OVERHEAD_S),
                               ("step_overhead_s", STEP_OVERHEAD_S))}
    return Rules(name=spec.name, version=VERSIONS[spec.name], **fitted, **d)


def moe_compute(rules: Rules | None, acc) -> dict[str, str]:
    """{checkpoint expert format: the format the runtime's MoE kernels compute it in on
    ``acc``}, where that is not the pool's compute format (docs/runtime-rules.md §8):
    - MXFP4 experts on MXFP8 activations where the rules say so (``mxfp4_moe``): TRT-LLM on
      Blackwell (a device that computes in fp4) by default (its TRTLLM MoE backend; on Hopper
      BF16 activations, TRITON), vLLM with VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8=1;
    - NVFP4 experts run W4A4 wherever the device computes in fp4, on every runtime: the
      checkpoint carries the activations' fp4 scales (``input_activations``: 4-bit float,
      group 16) for exactly that; elsewhere they run on the pool's compute format (a pool's
      own weight-only fp4 under a wider compute is not such a checkpoint: StepModel keeps it
      weight-only)."""
    fp4 = acc.supports("fp4")
    rule = {"fp4": "fp4"} if fp4 else {}
    if fp4 and rules is not None and rules.mxfp4_moe == "mxfp8":
        rule["mxfp4"] = "fp8"
    return rule


#: SGLang's hybrid (mamba / linear-attention) state pool (docs/runtime-rules.md §1, sglang@0.5.14
#: ``model_runner_kv_cache_mixin.py``): sized by ratio, its memory is ``mamba_full_memory_ratio``
#: (default 0.9) times the full-attention KV pool's; a running request holds, by (radix cache,
#: overlap schedule), 1 state slot with the radix cache off, else
#: MAMBA_CACHE_SIZE_MAX_RUNNING_REQUESTS_RATIO (3), plus 2 for the extra_buffer strategy the
#: radix cache takes under the overlap schedule (``_handle_mamba_radix_cache``: no_buffer,
#: and no extra slots, without it)
MAMBA_FULL_MEMORY_RATIO = 0.9
STATE_SLOTS_PER_REQUEST = {(False, False): 1, (False, True): 1, (True, False): 3,
                           (True, True): 3 + 2}


def sglang_state_slots(kv_bytes: float, state_bytes: float, radix_cache: bool,
                       max_running: int | None) -> int:
    """SGLang 0.5.14 ``handle_max_mamba_cache``: the state slots of a hybrid model's pool on
    one rank, out of the ``kv_bytes`` its KV pool would otherwise get. With the radix cache
    off and ``--max-running-requests`` set, one slot per running request; otherwise the
    pool takes ratio / (1 + ratio) of that memory, ``state_bytes`` a slot."""
    if not radix_cache and max_running is not None:
        return max_running
    r = MAMBA_FULL_MEMORY_RATIO
    return int(kv_bytes * r / (1 + r) // state_bytes)


def sglang_max_running(kv_tokens: int, max_context: int, state_slots: int | None = None,
                       radix_cache: bool = True, overlap: bool = True) -> int:
    """SGLang 0.5.14 ``_resolve_max_num_reqs``: min(max(min(capacity / context x 512, 4096),
    2048), capacity // 2), and for a hybrid model at most its ``state_slots`` over the slots
    a request holds (:data:`STATE_SLOTS_PER_REQUEST`) (docs/runtime-rules.md §1)."""
    cap = int(min(max(min(kv_tokens / max_context * 512, 4096), 2048), kv_tokens // 2))
    if state_slots is not None:
        cap = min(cap, state_slots // STATE_SLOTS_PER_REQUEST[radix_cache, overlap])
    return max(1, cap)


def kv_budget(r: Rules, total: float, weights: float, activations: float) -> float:
    """Bytes per device the runtime gives its KV cache (docs/runtime-rules.md §2):
    vLLM: fraction x total - weights - activations (its profiling run); TRT-LLM: fraction x
    (total - weights - activations), the free memory after load; SGLang: fraction x total -
    weights (its reserve, in the fraction, covers activations and graphs)."""
    if r.memory == "trtllm":
        return r.memory_fraction * (total - weights - activations)
    if r.memory == "sglang":
        return r.memory_fraction * total - weights
    return r.memory_fraction * total - weights - activations


def pad_batch(r: Rules | None, n: int) -> int:
    """The batch a decode-only step of ``n`` sequences runs as: the next captured size when
    graphs pad (a batch past the largest runs eagerly, unpadded), else ``n``."""
    if r is None or not r.cuda_graphs or not r.graph_padding:
        return n
    sizes = r.graph_sizes
    if n > sizes[-1]:
        return n
    return sizes[bisect_left(sizes, n)]
