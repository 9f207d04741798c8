"""The closed-form capacity model: requests/s one instance sustains within the SLO.

No simulation here: each accelerator x TP x precision of the inventory gets a prefill, a
decode and a colocated capacity from the step model, so the search can size pools and prune
before anything is simulated. The numbers are estimates; verification by simulation decides.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from ..hardware import load_accelerator
from ..perf import PerfModel, PoolProblem, StepModel, pool_fit
from ..runtimes import RuntimeSpec, moe_compute, rules
from .spec import PlanSpec

__all__ = ["Option", "options", "prefill_rate", "decode_rate", "colocated_rate",
           "P90_OVER_MEAN_WAIT", "TPOT_MARGIN", "MAX_DECODE_BATCH"]

#: p90 of an M/D/1 wait over its mean (an exponential tail: ln 10 ~ 2.3).
P90_OVER_MEAN_WAIT = 2.3
#: A decode step may take at most this share of the TPOT target (headroom for stragglers).
TPOT_MARGIN = 0.9
#: Largest decode batch the model considers.
MAX_DECODE_BATCH = 1024


@dataclass
class Option:
    """One instance type for one role: accelerator, TP, precision, analytical capacity."""
    acc: str
    tp: int
    precision: str
    price: float          # $/h per instance
    capacity_rps: float   # requests/s one instance sustains within its SLO share
    site: str = "local"   # the inventory entry's site
    prefill_s: float = 0.0   # one mean prompt's prefill (re-rated when KV crosses sites)

    @property
    def label(self) -> str:
        return f"{self.acc} tp{self.tp} {self.precision}"


def prefill_rate(service_s: float, ttft_s: float) -> float:
    """Requests/s of one prefill instance with service time ``service_s``: an M/D/1 queue
    loaded to the highest utilisation whose p90 wait plus service fits ``ttft_s`` (bisection
    on the utilisation; 0 when one prompt alone misses the target)."""
    if not service_s < ttft_s:
        return 0.0
    lo, hi = 0.0, 0.999
    for _ in range(40):
        rho = (lo + hi) / 2
        wait90 = P90_OVER_MEAN_WAIT * rho * service_s / (2 * (1 - rho))
        lo, hi = (rho, hi) if service_s + wait90 <= ttft_s else (lo, rho)
    return lo / service_s


def decode_rate(step: StepModel, kv_tokens: int, prompt: int, output: int,
                tpot_s: float) -> float:
    """Requests/s of one decode instance: the largest power-of-two batch whose step fits the
    TPOT target (with margin) and whose KV fits ``kv_tokens``, each request staying ``output``
    steps (0 when even one request misses the target)."""
    # windows and linear-attention state included
    kv_cap = int(kv_tokens // step.model.kv_tokens(prompt + output, step.formats.kv, step.tp))
    batch, best = 1, 0.0
    while batch <= min(kv_cap, MAX_DECODE_BATCH):
        # NOTE: the batch's mean context is the prompt plus half the output
        t = step.decode_time(batch, int(batch * (prompt + output / 2)))
        if t > TPOT_MARGIN * tpot_s:
            break
        best = batch / (t * output)
        batch *= 2
    return best


def colocated_rate(prefill: float, decode: float) -> float:
    """One device time-sharing prefill and decode: the harmonic combination of the two."""
    return 1 / (1 / prefill + 1 / decode) if prefill > 0 and decode > 0 else 0.0


def _routing_measured(spec: PlanSpec, model, acc: str, tp: int, prec: str) -> bool:
    """Skewed MoE routing (``workload.moe_routing``) is read from the runtime profile's
    measured MoE kernels: whether ``acc`` at ``tp`` and ``prec`` has them (True otherwise)."""
    routing = spec.workload.moe_routing
    if routing in (None, "balanced") or model.moe is None:
        return True
    runtime = RuntimeSpec.of(spec.runtime)
    prof = load_accelerator(acc, runtime=runtime.name)
    # NOTE: the MoE kernels the simulated pool reads (ResolvedPool.step_model): the runtime's
    # expert compute format, which may not be the pool's (TRT-LLM on Blackwell: MXFP8)
    return StepModel(model, PerfModel(prof), tp, prec, moe_distribution=routing,
                     moe_compute=moe_compute(rules(runtime, prof, tp), prof)).measured_moe


def options(spec: PlanSpec, model, mean_in: float, mean_out: float) -> list[tuple]:
    """Per feasible accelerator x TP x precision of the inventory: ``(Option, prefill rate,
    decode rate, colocated rate)`` for requests of the mean lengths."""
    slo = spec.slo
    prompt, output = max(1, int(mean_in)), max(1, int(mean_out))
    out = []
    for name, stock in spec.inventory.items():
        acc = load_accelerator(name)
        price = stock.price_usd_per_hour if stock.price_usd_per_hour is not None else \
            acc.usd_per_hour
        for tp, prec in itertools.product(spec.tp, spec.precisions):
            if stock.max is not None and tp > stock.max:
                continue     # one instance needs more accelerators than the inventory holds
            mem = pool_fit(model, acc, tp, prec)
            if isinstance(mem, PoolProblem):
                continue     # the pool cannot run at all (the same check a scenario gets)
            if not _routing_measured(spec, model, name, tp, prec):
                continue     # the simulation would refuse it (resolve._check_routing)
            step = StepModel(model, PerfModel(acc), tp, prec)
            service = step.prefill_time([prompt])
            pre = prefill_rate(service, slo.ttft_s)
            dec = decode_rate(step, mem.kv_tokens, prompt, output, slo.tpot_s)
            out.append((Option(name, tp, prec, price * tp, 0.0, stock.site, service), pre, dec,
                        colocated_rate(pre, dec)))
    return out
