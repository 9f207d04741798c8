"""Workloads: arrival processes and length distributions -> an identical request stream.

Each random source (arrival gaps, input lengths, output lengths) gets its own
``numpy.random.Generator`` spawned from one ``SeedSequence``, so every placement sees the same
requests and changing one source never shifts another.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import build, meta, non_negative, positive
from .columns import read_columns
from .errors import ConfigError, suggest

__all__ = ["Arrival", "Lengths", "WorkloadSpec", "Requests", "generate", "PRESETS",
           "load_workload", "DEFAULT_REQUESTS", "MAX_TOKENS"]

#: Requests drawn when a workload gives no ``requests:`` (a trace replays all its rows).
DEFAULT_REQUESTS = 1000
#: Longest request length hetsim takes (int32): far past any model context, and every count
#: stays exact in int64 arithmetic.
MAX_TOKENS = 2 ** 31 - 1
#: Latest arrival hetsim simulates (~32 years): float64 time still resolves 0.1 us there, so
#: every engine step advances the clock.
MAX_TIME_S = 1e9


def tokens(v):
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
    think_time_s: float = field(default=0.0, metadata=meta(
        "closed: pause between requests",
        lambda v: None if 0 <= v <= MAX_TIME_S else f"must be in [0, {MAX_TIME_S:g}], got {v}"))
    trace: str | None = field(default=None, metadata=meta(
        "replay a CSV trace (timestamp_s,input_tokens,output_tokens) instead of a process"))

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
                   "constant": {"rate_rps"}, "closed": {"concurrency", "think_time_s"}}
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
    value: int | None = field(default=None, metadata=meta("fixed: the length", tokens))
    min: int | None = field(default=None, metadata=meta("uniform: lower bound; any: clip", tokens))
    max: int | None = field(default=None, metadata=meta("upper bound / clip", tokens))
    mean: float | None = field(default=None, metadata=meta("normal/lognormal: mean length",
                                                           positive))
    median: float | None = field(default=None, metadata=meta("lognormal: median (instead of mean)",
                                                             positive))
    std: float | None = field(default=None, metadata=meta("normal: standard deviation",
                                                          non_negative))
    sigma: float | None = field(default=None, metadata=meta("lognormal: sigma of log-length",
                                                            non_negative))
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


# Presets from the published statistics of the Azure LLM inference traces (2023, CC-BY):
# conversation: input median 1020 / p90 2735, output median 129 / p90 424 (max 1000),
# near-Poisson arrivals (CV ~1.1); code: input median 1469 / p90 5194 (p99 7436), output
# median 13 / p90 55 (p99 252), very bursty (CV ~13). Lognormals are fitted to median and
# p90: sigma = ln(p90/median) / 1.2816. Source: shared/reference/validation.md (Splitwise /
# Azure public dataset).
def _ln(median, p90, max_):
    return {"dist": "lognormal", "median": median, "sigma": round(math.log(p90 / median) / 1.2816, 4),
            "max": max_}


PRESETS = {
    "azure-conv-2023": {"input_tokens": _ln(1020, 2735, 8192), "output_tokens": _ln(129, 424, 1000),
                        "arrival_cv": 1.1},
    "azure-code-2023": {"input_tokens": _ln(1469, 5194, 8192), "output_tokens": _ln(13, 55, 1000),
                        "arrival_cv": 13.0},
    # ShareGPT as DistServe's artifact prepares it for OPT models (multi-turn prompts: a random
    # number of turns concatenated, the next turn as the output; OPT tokenizer; prompt + output
    # < 2048): percentiles of the request lengths (lengths only; no timings) of the 300-request
    # OPT-13B ShareGPT workload in LLMServe/DistServe simdistserve/benchmarks/alignment/
    # data-ground-truth/opt-13b-sharegpt-workload/ (Apache-2.0). Input mean 780 / median 758,
    # output mean 176 / median 67. Poisson arrivals.
    "sharegpt-distserve": {
        "input_tokens": {"dist": "quantiles", "quantiles": [
            [0, 9], [0.025, 15], [0.05, 31], [0.1, 94], [0.15, 180], [0.2, 279], [0.25, 345],
            [0.3, 430], [0.35, 501], [0.4, 573], [0.45, 658], [0.5, 758], [0.55, 821],
            [0.6, 867], [0.65, 972], [0.7, 1047], [0.75, 1157], [0.8, 1319], [0.85, 1421],
            [0.9, 1512], [0.95, 1718], [0.975, 1787], [0.99, 1889], [1, 2003]]},
        "output_tokens": {"dist": "quantiles", "quantiles": [
            [0, 2], [0.025, 3], [0.05, 5], [0.1, 9], [0.15, 12], [0.2, 14], [0.25, 18],
            [0.3, 23], [0.35, 33], [0.4, 36], [0.45, 48], [0.5, 67], [0.55, 112], [0.6, 164],
            [0.65, 201], [0.7, 236], [0.75, 278], [0.8, 337], [0.85, 403], [0.9, 478],
            [0.95, 594], [0.975, 780], [0.99, 834], [1, 1085]]},
        "arrival_cv": 1.0},
    # Stage-pressure regimes.
    "prefill-heavy": {"input_tokens": _ln(4096, 8192, 16384), "output_tokens": _ln(64, 128, 512),
                      "arrival_cv": 1.0},
    "decode-heavy": {"input_tokens": _ln(256, 512, 2048), "output_tokens": _ln(1024, 2048, 4096),
                     "arrival_cv": 1.0},
}


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
        "CSV with timestamp_s,input_tokens,output_tokens (replaces arrival and lengths)"))
    preset: str | None = field(default=None, metadata=meta(
        "fills input/output lengths (and gamma CV when arrival has no cv) from a named preset"))
    clip_to_context: bool = field(default=False, metadata=meta(
        "clip requests longer than the model's context (input to context - 1, then output to "
        "what is left) instead of refusing them; the run reports how many were clipped"))

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


@dataclass(frozen=True)
class Requests:
    """The request stream: arrival times (NaN for closed-loop) and token counts."""
    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    closed_concurrency: int | None = None
    think_time_s: float = 0.0
    clipped: int = 0    # requests clipped to the model context (clip_to_context: true)

    def __len__(self) -> int:
        return len(self.input_tokens)


def _lengths_spec(spec: Lengths | None, role: str, preset: str | None) -> Lengths:
    name = (spec.preset if spec is not None and spec.preset else None) or (
        preset if spec is None else None)
    if name:
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}" + suggest(name, PRESETS),
                              path=f"workload.{role}.preset")
        return build(Lengths, PRESETS[name][role], role)
    return spec


# What each CSV column must hold: a check on the parsed floats and the words for its error.
_RULES = {
    "count": (lambda x: (x >= 1) & (x <= MAX_TOKENS) & (x == np.floor(x)),
              f"must be a whole number from 1 to {MAX_TOKENS}"),
    "time": (lambda x: x >= 0, "must be a number >= 0"),
    "weight": (lambda x: x >= 0, "must be a number >= 0"),
}


def _read_histogram(path: Path, where: str):
    cols = read_columns(path, {"tokens": _RULES["count"], "weight": _RULES["weight"]}, where)
    if cols["weight"].sum() <= 0:
        raise ConfigError("weights sum to 0; at least one must be > 0", file=str(path))
    return cols["tokens"], cols["weight"] / cols["weight"].sum()


def sample_lengths(spec: Lengths, n: int, rng: np.random.Generator, base: Path,
                   where: str) -> np.ndarray:
    d = spec.dist
    if d == "fixed":
        x = np.full(n, float(spec.value))
    elif d == "uniform":
        x = rng.integers(spec.min, spec.max + 1, size=n).astype(float)
    elif d == "normal":
        x = rng.normal(spec.mean, spec.std, size=n)
    elif d == "lognormal":
        mu = math.log(spec.median) if spec.median else math.log(spec.mean) - spec.sigma ** 2 / 2
        x = rng.lognormal(mu, spec.sigma, size=n)
    elif d == "quantiles":   # inverse CDF, piecewise linear between the given percentiles
        p, tokens = np.array(spec.quantiles, dtype=float).T
        x = np.interp(rng.random(n), p, tokens)
    else:  # empirical
        tokens, p = _read_histogram(base / spec.file, f"{where}.file")
        x = rng.choice(tokens, size=n, p=p)
    lo = spec.min if spec.min is not None and d != "uniform" else 1
    hi = spec.max if spec.max is not None else np.inf
    x = np.clip(np.rint(x), lo, hi)
    if not (x <= MAX_TOKENS).all():     # NaN or inf draws too
        raise ConfigError(f"draws reach {np.nanmax(x):.3g} tokens, more than {MAX_TOKENS}; "
                          f"bound them with max:", path=where)
    return x.astype(np.int64)


def _arrivals(a: Arrival, n: int, rng: np.random.Generator) -> np.ndarray:
    if a.process == "closed":
        return np.full(n, np.nan)
    mean_gap = 1.0 / a.rate_rps
    if a.process == "poisson":
        gaps = rng.exponential(mean_gap, size=n)
    elif a.process == "gamma":  # shape k = 1/cv^2, scale = mean/k
        k = 1.0 / a.cv ** 2
        gaps = rng.gamma(k, mean_gap / k, size=n)
    else:
        gaps = np.full(n, mean_gap)
    gaps[0] = 0.0  # the first request arrives at t=0
    t = np.cumsum(gaps)
    if not t[-1] <= MAX_TIME_S:
        raise ConfigError(f"{n} requests at {a.rate_rps:g} req/s arrive over {t[-1]:.3g} s, "
                          f"longer than the {MAX_TIME_S:g} s hetsim simulates",
                          path="workload.arrival.rate_rps")
    return t


def _read_trace(path: Path, limit: int | None) -> Requests:
    """Replay a trace: arrival times are taken relative to its first row (time 0)."""
    cols = read_columns(path, {"timestamp_s": _RULES["time"], "input_tokens": _RULES["count"],
                               "output_tokens": _RULES["count"]}, "workload.trace")
    t = cols["timestamp_s"]
    if t[-1] - t[0] > MAX_TIME_S:
        raise ConfigError(f"spans {t[-1] - t[0]:.3g} s, longer than the {MAX_TIME_S:g} s hetsim "
                          f"simulates", file=str(path), path="timestamp_s")
    back = np.flatnonzero(np.diff(t) < 0)
    if len(back):
        i = int(back[0]) + 1
        raise ConfigError(f"timestamps go back in time ({t[i - 1]:g} then {t[i]:g}); sort the "
                          f"trace by timestamp_s", file=f"{path}:{cols['line'][i]}",
                          path="timestamp_s")
    if limit is not None and limit > len(t):
        raise ConfigError(f"requests: {limit} but the trace {path} has {len(t)} rows",
                          path="workload.requests")
    n = len(t) if limit is None else limit
    return Requests(t[:n] - t[0], cols["input_tokens"][:n].astype(np.int64),
                    cols["output_tokens"][:n].astype(np.int64))


def generate(spec: WorkloadSpec, base: Path | str = ".", max_context: int | None = None,
             model: str = "the model") -> Requests:
    """Draw the request stream. ``base`` resolves relative file paths (the scenario's folder).

    Requests longer than ``max_context`` (input + output) are an error naming how many and the
    longest, unless ``spec.clip_to_context``: then they are clipped and counted in ``clipped``.
    """
    base = Path(base)
    trace = spec.trace or (spec.arrival.trace if spec.arrival else None)
    if trace:
        reqs = _read_trace(base / trace, spec.requests)
    else:
        ss = np.random.SeedSequence(spec.seed)
        arr_rng, in_rng, out_rng = (np.random.default_rng(s) for s in ss.spawn(3))
        a = spec.arrival
        if spec.preset and a.process == "gamma" and "cv" not in _explicit(a):
            a = Arrival(**{**a.__dict__, "cv": PRESETS[spec.preset]["arrival_cv"]})
        n = spec.requests or DEFAULT_REQUESTS
        inp = sample_lengths(_lengths_spec(spec.input_tokens, "input_tokens", spec.preset), n,
                             in_rng, base, "workload.input_tokens")
        out = sample_lengths(_lengths_spec(spec.output_tokens, "output_tokens", spec.preset), n,
                             out_rng, base, "workload.output_tokens")
        reqs = Requests(_arrivals(a, n, arr_rng), inp, out, a.concurrency, a.think_time_s)
    if max_context:
        total = reqs.input_tokens + reqs.output_tokens
        over = total > max_context
        if over.any() and not spec.clip_to_context:
            raise ConfigError(
                f"{int(over.sum())} of {len(reqs)} requests are longer than {model}'s "
                f"{max_context}-token context (input + output up to {int(total.max())} "
                f"tokens); bound the lengths (max:) or set clip_to_context: true to clip them",
                path="workload")
        if over.any():
            inp = np.minimum(reqs.input_tokens, max_context - 1)
            out = np.minimum(reqs.output_tokens, max_context - inp)
            reqs = Requests(reqs.arrival_s, inp, out, reqs.closed_concurrency,
                            reqs.think_time_s, clipped=int(over.sum()))
    return reqs


def _explicit(a: Arrival) -> set:
    return {k for k, v in a.__dict__.items() if v != Arrival.__dataclass_fields__[k].default}


def load_workload(data: dict, path: str = "workload") -> WorkloadSpec:
    return build(WorkloadSpec, data, path)
