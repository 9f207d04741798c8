"""DistServe's simulator reference, reproduced with hetsim's placement search.

Reference (shared/reference/validation.md; DistServe OSDI'24, simdistserve README): OPT-13B on
ShareGPT, one node of 4 x A100-80GB, p90 TTFT <= 200 ms and p90 TPOT <= 100 ms: the best unit is
prefill TP2 + decode TP1 at 1.56 req/s per GPU.

    python benchmarks/distserve.py                  # hetsim's datasheet A100 model
    python benchmarks/distserve.py --distserve-fits # diagnosis, see below

1. ``hetsim plan examples/plan/distserve-opt13b.yaml``: goodput per GPU of every unit.
2. An independent check of the A100 step model: hetsim's iteration times against DistServe's
   own published iteration-time fits for OPT-13B on A100-80GB (simdistserve/estimators/
   profile_data/profiler-a100-80g.distserve.json, milliseconds; third-party measurements used
   here only to check, never to fit).
3. ``--distserve-fits``: the same search with hetsim's step model *replaced* by those fits, to
   separate the engine (queueing, batching, KV memory) from the step times. This is a diagnosis
   harness, not a feature: it patches the simulator's step model inside this process only.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import hetsim
from hetsim import plan as plan_mod
from hetsim.engine import sim as sim_mod
from hetsim.perf import PerfModel, StepModel

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "plan" / "distserve-opt13b.yaml"
REFERENCE = 1.56    # req/s per GPU, prefill TP2 + decode TP1

# DistServe's fits, ms: prefill a + b*sum(L) + c*sum(L^2); decode a + b*sum(ctx) + c*batch,
# with a second set of coefficients from batch 95 up.
FITS = {1: ((16.456860, 0.0926475, 6.474786e-06), (19.934703, 6.269357e-04, 0.0385070),
            (7.166189, 5.798000e-04, 0.1583110)),
        2: ((13.402703, 0.0623429, 2.226884e-06), (13.294796, 3.410922e-04, 0.0629639),
            (10.638742, 3.118337e-04, 0.0856291)),
        4: ((10.965725, 0.0346195, 4.751136e-07), (10.256232, 1.878670e-04, 0.0326927),
            (10.483515, 1.712089e-04, 0.0456665))}


def fit_prefill(tp: int, chunks) -> float:
    a, b, c = FITS[tp][0]
    return (a + b * sum(q for q, _ in chunks) + c * sum(q * k for q, k in chunks)) / 1e3


def fit_decode(tp: int, batch: int, ctx: int) -> float:
    a, b, c = FITS[tp][1] if batch < 95 else FITS[tp][2]
    return (a + b * (ctx + batch) + c * batch) / 1e3


class FittedStep(StepModel):
    """DistServe's iteration-time fits in place of hetsim's operator model (TP 1, 2, 4)."""

    def time(self, chunks=(), n_logits_prefill=0, decode_n=0, decode_ctx=0):
        t = fit_prefill(self.tp, chunks) if chunks else 0.0
        return t + (fit_decode(self.tp, decode_n, decode_ctx) if decode_n else 0.0)


def step_check() -> None:
    m, a = hetsim.load_model("opt-13b"), hetsim.load_accelerator("a100-sxm")
    print("| OPT-13B on A100, one iteration | hetsim | DistServe's fit | hetsim / fit |")
    print("|---|---|---|---|")
    for tp in (1, 2, 4):
        s = StepModel(m, PerfModel(a), tp, "fp16")
        for n in (500, 1500):
            h, d = s.prefill_time([n]), fit_prefill(tp, [(n, n)])
            print(f"| TP{tp} prefill {n} tokens | {h * 1e3:.1f} ms | {d * 1e3:.1f} ms | "
                  f"{h / d:.2f} |")
        for b in (8, 64):
            h, d = s.decode_time(b, b * 900), fit_decode(tp, b, b * 900)
            print(f"| TP{tp} decode batch {b}, 900-token contexts | {h * 1e3:.1f} ms | "
                  f"{d * 1e3:.1f} ms | {h / d:.2f} |")


def search(label: str) -> float:
    t0 = time.monotonic()
    res = plan_mod.plan(plan_mod.load_plan_spec(SPEC))
    print(f"\n{label} ({time.monotonic() - t0:.1f} s):\n")
    print("| unit | GPUs | goodput req/s | req/s per GPU |\n|---|---|---|---|")
    for c in sorted(res.verified, key=lambda c: -c.goodput_rps / c.accelerators):
        (p, _), (d, _) = c.pools["prefill"], c.pools["decode"]
        print(f"| prefill TP{p.tp} + decode TP{d.tp} | {c.accelerators} | "
              f"{c.goodput_rps:.2f} | {c.goodput_rps / c.accelerators:.2f} |")
    best = res.best
    per_gpu = best.goodput_rps / best.accelerators
    (p, _), (d, _) = best.pools["prefill"], best.pools["decode"]
    print(f"\nbest: prefill TP{p.tp} + decode TP{d.tp}, {per_gpu:.2f} req/s per GPU "
          f"(DistServe: prefill TP2 + decode TP1, {REFERENCE}; {per_gpu / REFERENCE - 1:+.0%})")
    return per_gpu


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--distserve-fits", action="store_true",
                    help="replace hetsim's step model by DistServe's published fits")
    a = ap.parse_args()
    step_check()
    if a.distserve_fits:
        sim_mod.StepModel = plan_mod.StepModel = FittedStep
        search("hetsim engine, DistServe's iteration-time fits")
    else:
        search("hetsim (datasheet A100 model)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
