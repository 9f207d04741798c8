"""The workload schema: arrival processes, length distributions, warm-up and their limits.

Inert once built: each dataclass checks in ``__post_init__`` that no field is missing or would
be ignored by the chosen process or distribution. Drawing requests is :mod:`.draw`'s job.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config import build, meta, non_negative, positive
from ..errors import ConfigError, suggest
from .presets import PRESETS

__all__ = ["Arrival", "Lengths", "Warmup", "WorkloadSpec", "load_workload", "written",
           "check_rate_varies", "DEFAULT_REQUESTS", "MAX_TOKENS", "MAX_TIME_S"]

#: Requests drawn when a workload gives no ``requests:`` (a trace replays all its rows).
DEFAULT_REQUESTS = 1000
#: Longest request length hetsim takes (int32): far past any model context, and every count
#: stays exact in int64 arithmetic.
MAX_TOKENS = 2 ** 31 - 1
#: Latest arrival hetsim simulates (~32 years): float64 time still resolves 0.1 us there, so
#: every engine step advances the clock.
MAX_TIME_S = 1e9


def _sigma(v):
    return None if v <= 10 else f"must be <= 10, got {v}"


def _time(v):
    return None if 0 <= v <= MAX_TIME_S else f"must be in [0, {MAX_TIME_S:g}], got {v}"


def _tokens(v):
    return None if 1 <= v <= MAX_TOKENS else f"must be between 1 and {MAX_TOKENS}, got {v}"


@dataclass(frozen=True)
class Arrival:
    process: str = field(default="poisson", metadata=meta(
        "poisson | gamma | constant | closed"))
    rate_rps: float | None = field(default=None, metadata=meta("mean arrival rate, requests/s",
                                                               positive))
    cv: float = field(default=1.0, metadata=meta(
        "gamma: coefficient of variation of gaps (at most 1000)",
        lambda v: None if 0 < v <= 1000 else f"must be in (0, 1000], got {v}"))
    concurrency: int | None = field(default=None, metadata=meta(
        "closed: number of clients, each sending its next request when the last completes",
        positive))
    think_time_s: float = field(default=0.0, metadata=meta("closed: pause between requests",
                                                           _time))
    ramp_s: float = field(default=0.0, metadata=meta(
        "closed: the clients start spread over this many seconds, client i (from 0) of N at "
        "i x ramp_s / N (default 0: all at t=0, as vllm bench serve and SGLang start them)",
        _time))
    trace: str | None = field(default=None, metadata=meta(
        "replay a CSV or .parquet trace (timestamp_s,input_tokens,output_tokens) instead of "
        "a process"))

    def __post_init__(self):
        # a field that the chosen process would ignore is an error, not a silent no-op
        given = {k for k, f in self.__dataclass_fields__.items()
                 if k != "trace" and getattr(self, k) != f.default}
        if self.trace:
            if given:
                raise ConfigError(f"a trace sets the arrivals; drop {sorted(given)[0]}",
                                  path=sorted(given)[0])
            return
        applies = {"poisson": {"rate_rps"}, "gamma": {"rate_rps", "cv"},
                   "constant": {"rate_rps"}, "closed": {"concurrency", "think_time_s", "ramp_s"}}
        for k in sorted(given - {"process"} - applies.get(self.process, given)):
            raise ConfigError(f"{k} does not apply to {self.process} arrivals", path=k)
        kinds = ("poisson", "gamma", "constant", "closed")
        if self.process not in kinds:
            raise ConfigError(f"unknown arrival process {self.process!r}"
                              + suggest(self.process, kinds) + f"; one of {', '.join(kinds)}",
                              path="process")
        if self.process == "closed" and not self.concurrency:
            raise ConfigError("closed loop needs concurrency: N", path="concurrency")
        if self.process != "closed" and not self.rate_rps:
            raise ConfigError(f"{self.process} arrivals need rate_rps", path="rate_rps")


@dataclass(frozen=True)
class Lengths:
    """A token-length distribution; every draw is rounded and clipped to [min_tokens, max]."""
    dist: str = field(default="fixed", metadata=meta(
        "fixed | uniform | normal | lognormal | empirical | quantiles"))
    value: int | None = field(default=None, metadata=meta("fixed: the length", _tokens))
    min: int | None = field(default=None, metadata=meta("uniform: lower bound; any: clip", _tokens))
    max: int | None = field(default=None, metadata=meta("upper bound / clip", _tokens))
    mean: float | None = field(default=None, metadata=meta("normal/lognormal: mean length",
                                                           positive))
    median: float | None = field(default=None, metadata=meta("lognormal: median (instead of mean)",
                                                             positive))
    std: float | None = field(default=None, metadata=meta("normal: standard deviation",
                                                          non_negative))
    sigma: float | None = field(default=None, metadata=meta(
        "lognormal: sigma of log-length (at most 10: e^10 spans 22,000x; more overflows)",
        non_negative, _sigma))
    file: str | None = field(default=None, metadata=meta(
        "empirical: CSV histogram with columns tokens,weight (relative to the scenario)"))
    quantiles: list[list[float]] | None = field(default=None, metadata=meta(
        "quantiles: [[p, tokens], ...] from p=0 to p=1 (a published percentile table); "
        "draws interpolate linearly between the points"))
    preset: str | None = field(default=None, metadata=meta("named preset, e.g. azure-conv-2023"))

    def __post_init__(self):
        need = {"fixed": ("value",), "uniform": ("min", "max"), "normal": ("mean", "std"),
                "lognormal": ("sigma",), "empirical": ("file",), "quantiles": ("quantiles",)}
        given = [k for k, f in self.__dataclass_fields__.items()
                 if k != "preset" and getattr(self, k) != f.default]
        if self.preset:
            if given:
                raise ConfigError(f"a preset fills the distribution; drop {given[0]}",
                                  path=given[0])
            return
        if self.dist not in need:
            raise ConfigError(f"unknown distribution {self.dist!r}" + suggest(self.dist, need)
                              + f"; one of {', '.join(need)}", path="dist")
        for k in need[self.dist]:
            if getattr(self, k) is None:
                raise ConfigError(f"{self.dist} needs {k}", path=k)
        uses = {*need[self.dist], "min", "max", "dist", *(("mean", "median")
                                                           if self.dist == "lognormal" else ())}
        for k in given:
            if k not in uses:
                raise ConfigError(f"{k} does not apply to {self.dist} lengths", path=k)
        if self.dist == "lognormal" and (self.mean is None) == (self.median is None):
            raise ConfigError("lognormal needs exactly one of mean or median", path="mean")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ConfigError(f"min {self.min} > max {self.max}", path="min")
        if self.dist == "quantiles":
            _check_quantiles(self.quantiles)


def _check_quantiles(q) -> None:
    """[[p, tokens], ...]: p rising strictly from 0 to 1, tokens positive and non-decreasing."""
    if len(q) < 2:
        raise ConfigError("needs at least two points, [[0, lo], [1, hi]]", path="quantiles")
    for i, pt in enumerate(q):
        if len(pt) != 2:
            raise ConfigError(f"each point is [p, tokens], got {pt!r}", path=f"quantiles[{i}]")
        p, tok = pt
        if not 0 <= p <= 1 or tok <= 0:
            raise ConfigError(f"needs 0 <= p <= 1 and tokens > 0, got {pt!r}",
                              path=f"quantiles[{i}]")
        if i and (p <= q[i - 1][0] or tok < q[i - 1][1]):
            raise ConfigError(f"p must rise and tokens must not fall, got {q[i - 1]!r} then "
                              f"{pt!r}", path=f"quantiles[{i}]")
    if q[0][0] != 0 or q[-1][0] != 1:
        raise ConfigError("the table must start at p=0 and end at p=1 (the min and the max)",
                          path="quantiles")


@dataclass(frozen=True)
class Warmup:
    """Warm-up: the first requests sent, which load the system but are left out of every
    per-request metric. Request ids are given in send order, so warm-up is always a prefix of
    the ids."""
    requests: int | None = field(default=None, metadata=meta(
        "the first N requests sent are warm-up", positive))
    seconds: float | None = field(default=None, metadata=meta(
        "requests sent before this many seconds are warm-up", positive, _time))

    def __post_init__(self):
        if self.requests is not None and self.seconds is not None:
            raise ConfigError("give requests or seconds, not both", path="seconds")
        if self.requests is None and self.seconds is None:
            raise ConfigError("needs requests: N or seconds: S")


#: How an MoE model's tokens spread over its experts: the distributions aiconfigurator-core
#: measures its MoE kernel tables at (its ``distribution`` column; ``power_law_A``: expert
#: loads drawn from a power law of exponent A, so the busiest expert sets the layer's time)
MOE_ROUTINGS = ("balanced", "power_law_1.01", "power_law_1.2")


def _moe_routing(v):
    if v in MOE_ROUTINGS:
        return None
    return f"unknown routing {v!r}" + suggest(str(v), MOE_ROUTINGS) + \
        f"; one of {', '.join(MOE_ROUTINGS)}"


@dataclass(frozen=True)
class WorkloadSpec:
    requests: int | None = field(default=None, metadata=meta(
        f"number of requests (default {DEFAULT_REQUESTS}; with a trace: all its rows, or its "
        f"first N)", positive))
    seed: int = field(default=0, metadata=meta("seed of the SeedSequence all sources spawn from",
                                               non_negative))
    arrival: Arrival | None = None
    input_tokens: Lengths | None = None
    output_tokens: Lengths | None = None
    trace: str | None = field(default=None, metadata=meta(
        "CSV or .parquet file with timestamp_s,input_tokens,output_tokens (replaces arrival "
        "and lengths)"))
    preset: str | None = field(default=None, metadata=meta(
        "fills input/output lengths (and gamma CV when arrival has no cv) from a named preset"))
    clip_to_context: bool = field(default=False, metadata=meta(
        "clip requests longer than the model's context (input to context - 1, then output to "
        "what is left) instead of refusing them; the run reports how many were clipped"))
    warmup: Warmup | None = field(default=None, metadata=meta(
        "{requests: N} or {seconds: S}: the first N requests sent, or those sent before S "
        "seconds, still run but are left out of every per-request metric; the summary measures "
        "the rest over their window (first measured send to last measured completion)"))
    max_output_tokens: int | None = field(default=None, metadata=meta(
        "the output limit every client sends (OpenAI max_tokens); every drawn output must be "
        "within it. A scheduler that reserves a request's output KV up front (TRT-LLM's "
        "GUARANTEED_NO_EVICT, SGLang's admission estimate, the idealised engine) can only "
        "reserve this, not the output the request turns out to have; unset: the true output "
        "(exact where the client forces every output to its length, ignore_eos)", positive))
    moe_routing: str | None = field(default=None, metadata=meta(
        "MoE models: how tokens spread over the experts, balanced (the default: each token's "
        "top-k equally likely to be any k experts) | power_law_1.01 | power_law_1.2; skewed "
        "routing is read from measured MoE kernels, so it needs every pool on a runtime "
        "profile that timed the model's MoE layer",
        _moe_routing))

    def __post_init__(self):
        if self.preset and self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}" + suggest(self.preset, PRESETS),
                              path="preset")
        if self.trace or (self.arrival is not None and self.arrival.trace):
            return
        if self.arrival is None:
            raise ConfigError("required key is missing (or give trace:)", path="arrival")
        if not self.preset:
            for k in ("input_tokens", "output_tokens"):
                if getattr(self, k) is None:
                    raise ConfigError("required key is missing (or give preset:)", path=k)


def check_rate_varies(w: WorkloadSpec, who: str) -> None:
    """A ConfigError unless ``w``'s arrival rate can be varied (``who``: "a plan", ...): an
    open arrival process, and a warm-up counted in requests, not seconds."""
    a = w.arrival
    if w.trace or a is None or a.trace or a.process == "closed":
        raise ConfigError(f"{who} varies the arrival rate: the workload needs a poisson, gamma "
                          f"or constant arrival process", path="workload.arrival")
    if w.warmup is not None and w.warmup.seconds is not None:
        raise ConfigError(f"{who} varies the arrival rate, and a warm-up in seconds would "
                          f"leave out a different share of requests at each rate; give "
                          f"warmup: {{requests: N}}", path="workload.warmup.seconds")


def load_workload(data: dict, path: str = "workload") -> WorkloadSpec:
    return build(WorkloadSpec, data, path)


def written(workload: dict) -> dict:
    """A workload mapping (``config.to_dict`` of a WorkloadSpec) as hetsim writes it back:
    ``warmup``, ``moe_routing``, ``max_output_tokens`` and ``arrival.ramp_s`` are left out
    while unset, so a scenario
    that uses none writes the bytes it wrote before they existed."""
    d = {k: v for k, v in workload.items()
         if k not in ("warmup", "moe_routing", "max_output_tokens") or v is not None}
    if isinstance(d.get("arrival"), dict) and not d["arrival"].get("ramp_s"):
        d["arrival"] = {k: v for k, v in d["arrival"].items() if k != "ramp_s"}
    return d
