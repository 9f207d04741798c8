"""DistServe's simulator reference, reproduced with hetsim's placement search.

Reference (shared/reference/validation.md; DistServe OSDI'24, simdistserve README): OPT-13B on
ShareGPT, one node of 4 x A100-80GB, p90 TTFT <= 200 ms and p90 TPOT <= 100 ms: the best unit is
prefill TP2 + decode TP1 at 1.56 req/s per GPU.

    python benchmarks/distserve.py                  # hetsim's datasheet A100 model
    python benchmarks/distserve.py --distserve-fits # diagnosis, see below

1. ``hetsim plan examples/plan/distserve-opt13b.yaml``: goodput per GPU of every unit, next to
   DistServe's simulator method (``distserve_ref.py``: DistServe's step-time fits and its
   batching and metric rules, re-implemented) run on the very same requests and seeds.
2. An anchor for that re-implementation: DistServe's published simulator output at one point
   (simdistserve/benchmarks/alignment/align-with-real.nb.ipynb: prefill TP2 + decode TP1,
   3 req/s, 300 ShareGPT requests: p90 TTFT 119.0 ms, p90 TPOT 20.2 ms).
3. An independent check of the A100 step model: hetsim's iteration times against DistServe's
   own published iteration-time fits for OPT-13B on A100-80GB (simdistserve/estimators/
   profile_data/profiler-a100-80g.distserve.json, milliseconds; third-party measurements used
   here only to check, never to fit).
4. ``--distserve-fits``: the same search with hetsim's step model *replaced* by those fits, to
   separate the engine (queueing, batching, KV memory) from the step times. This is a diagnosis
   harness, not a feature: it patches the simulator's step model inside this process only.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import hetsim
from hetsim import planner as plan_mod
from hetsim.planner import capacity as plan_capacity
from hetsim.engine import sim as sim_mod
from hetsim.perf import PerfModel, StepModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
import distserve_ref as ref  # noqa: E402
from distserve_ref import fit_decode, fit_prefill  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "plan" / "distserve-opt13b.yaml"
REFERENCE = 1.56    # req/s per GPU, prefill TP2 + decode TP1

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


def alignment_check(spec) -> None:
    t, p = ref.alignment_point(spec.workload)
    (t0, p0) = ref.ALIGNMENT
    print(f"\nDistServe's method re-implemented, prefill TP2 + decode TP1 at 3 req/s (5 seeds): "
          f"p90 TTFT {t * 1e3:.0f} ms ({t / t0 - 1:+.0%} of DistServe's simulator, "
          f"{t0 * 1e3:.0f}), p90 TPOT {p * 1e3:.1f} ms ({p / p0 - 1:+.0%} of {p0 * 1e3:.1f})")


def search(label: str) -> float:
    t0 = time.monotonic()
    spec = plan_mod.load_plan_spec(SPEC)
    res = plan_mod.plan(spec)
    print(f"\n{label} ({time.monotonic() - t0:.1f} s), next to DistServe's method on the same "
          f"requests:\n")
    print("| unit | GPUs | goodput req/s | req/s per GPU | DistServe's method, per GPU | "
          "hetsim / method |\n|---|---|---|---|---|---|")
    for c in sorted(res.verified, key=lambda c: -c.goodput_rps / c.accelerators):
        (p, _), (d, _) = c.pools["prefill"], c.pools["decode"]
        m = ref.plan_goodput(spec, p.tp, d.tp) / c.accelerators
        print(f"| prefill TP{p.tp} + decode TP{d.tp} | {c.accelerators} | "
              f"{c.goodput_rps:.2f} | {c.goodput_rps / c.accelerators:.2f} | {m:.2f} | "
              f"{c.goodput_rps / c.accelerators / m:.2f} |")
    best = res.best
    per_gpu = best.goodput_rps / best.accelerators
    (p, _), (d, _) = best.pools["prefill"], best.pools["decode"]
    print(f"\nbest: prefill TP{p.tp} + decode TP{d.tp}, {per_gpu:.2f} req/s per GPU "
          f"(DistServe's published figure: prefill TP2 + decode TP1, {REFERENCE}; "
          f"{per_gpu / REFERENCE - 1:+.0%})")
    alignment_check(spec)
    return per_gpu


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--distserve-fits", action="store_true",
                    help="replace hetsim's step model by DistServe's published fits")
    a = ap.parse_args()
    step_check()
    if a.distserve_fits:
        sim_mod.StepModel = plan_capacity.StepModel = FittedStep
        search("hetsim engine, DistServe's iteration-time fits")
    else:
        search("hetsim (datasheet A100 model)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
