"""Drawing the request stream: one ``numpy.random.Generator`` per random source (arrival gaps,
input lengths, output lengths), spawned from one ``SeedSequence``, so every placement sees the
same requests and changing one source never shifts another."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import build
from ..errors import ConfigError, suggest
from .files import read_histogram, read_trace
from .presets import PRESETS
from .spec import (DEFAULT_REQUESTS, MAX_TIME_S, MAX_TOKENS, Arrival, Lengths, Warmup,
                   WorkloadSpec)

__all__ = ["Requests", "generate", "sample_lengths"]


@dataclass(frozen=True)
class Requests:
    """The request stream: arrival times (NaN for closed-loop) and token counts."""
    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    closed_concurrency: int | None = None
    think_time_s: float = 0.0
    clipped: int = 0    # requests clipped to the model context (clip_to_context: true)
    ramp_s: float = 0.0     # closed loop: client i of N starts at i x ramp_s / N
    #: the warm-up, whose requests the engine's statistics leave out (``Simulation``)
    warmup: Warmup | None = None
    #: the clients' output limit (None: each request's own output), what schedulers that
    #: reserve output KV up front reserve
    max_output_tokens: int | None = None

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
        tokens, p = read_histogram(base / spec.file, f"{where}.file")
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


def generate(spec: WorkloadSpec, base: Path | str = ".", max_context: int | None = None,
             model: str = "the model") -> Requests:
    """Draw the request stream. ``base`` resolves relative file paths (the scenario's folder).

    Requests longer than ``max_context`` (input + output) are an error naming how many and the
    longest, unless ``spec.clip_to_context``: then they are clipped and counted in ``clipped``.
    """
    base = Path(base)
    trace = spec.trace or (spec.arrival.trace if spec.arrival else None)
    if trace:
        reqs = Requests(*read_trace(base / trace, spec.requests))
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
        reqs = Requests(_arrivals(a, n, arr_rng), inp, out, a.concurrency, a.think_time_s,
                        ramp_s=a.ramp_s)
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
            reqs = dataclasses.replace(reqs, input_tokens=inp, output_tokens=out,
                                       clipped=int(over.sum()))
    if spec.warmup is not None:
        _check_warmup(spec.warmup, reqs)
        reqs = dataclasses.replace(reqs, warmup=spec.warmup)
    if spec.max_output_tokens is not None:
        limit = spec.max_output_tokens
        over = reqs.output_tokens > limit
        if over.any():
            raise ConfigError(
                f"{int(over.sum())} of {len(reqs)} requests have more output tokens (up to "
                f"{int(reqs.output_tokens.max())}) than the clients' limit {limit}; an output "
                f"never exceeds max_tokens: bound output_tokens (max: {limit})",
                path="workload.max_output_tokens")
        reqs = dataclasses.replace(reqs, max_output_tokens=limit)
    return reqs


def _check_warmup(w: Warmup, reqs: Requests) -> None:
    """Refuse a warm-up that leaves no request measured, where the stream shows it before the
    run: N >= the request count, or open-loop arrivals all before S seconds. (A closed loop's
    send times are known only once it runs; there the summary reports 0 measured.)"""
    n = len(reqs)
    if w.requests is not None and w.requests >= n:
        raise ConfigError(f"warm-up of {w.requests} requests leaves none of the {n} measured",
                          path="workload.warmup.requests")
    last = reqs.arrival_s[-1] if n else math.nan
    if w.seconds is not None and last < w.seconds:     # NaN (closed loop) compares False
        raise ConfigError(f"every request arrives before the {w.seconds:g} s warm-up ends "
                          f"(the last at {last:.6g} s), so none would be measured",
                          path="workload.warmup.seconds")


def _explicit(a: Arrival) -> set:
    return {k for k, v in a.__dict__.items() if v != Arrival.__dataclass_fields__[k].default}

