"""How often a CPU calibration passes its gates on this host, and how noisy its timings are.

Runs ``hetsim calibrate --device cpu --quick --check`` several times in this process (nothing is
written) and prints, per run: how much of the host's CPU time other processes took while
timing, the median and p90 spread of repeats, each class's held-out median error before ->
after, the fitted kernel floor (a contended CPU fits milliseconds per kernel), and whether
the gates would write the profile. The same repeats are also summarised by their minimum
instead of their median (what calibration used before) to show why the median is used.

The tests never depend on these figures (they assert the gates on synthetic measurements);
docs/calibration.md quotes them.

    pip install torch==2.13.0   # the CPU build
    python benchmarks/calibration_noise.py [--runs 5] [--threads N] [--full] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from hetsim.calibrate import gates
from hetsim.calibrate.cli import build_parser, measure_and_fit, score_reference
from hetsim.calibrate.profile import fit_profile

CLASSES = ("gemm", "attention_prefill", "attention_decode", "ref_prefill", "ref_decode")


def with_minimum(o) -> tuple[dict, list[str]]:
    """Held-out accuracy and refusals had each timing been the minimum of its repeats."""
    rows = [dict(r, seconds=min(r["repeats"])) if r.get("repeats") else r for r in o.rows]
    fit = fit_profile(o.base_raw, [r for r in rows if not r["op"].startswith("ref_")])
    acc = dict(fit.accuracy)
    acc.update(score_reference(fit, [r for r in rows if r["op"].startswith("ref_")], cpu=True))
    return acc, gates.refusals(acc, o.noise, o.busy)


def errors(acc: dict) -> str:
    return " / ".join(f"{acc[c]['before_median']:.0%}->{acc[c]['after_median']:.0%}"
                      for c in CLASSES if c in acc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--full", action="store_true", help="the full CPU grid (~75 s a run idle)")
    ap.add_argument("--json", help="also write every run's figures and raw repeats here")
    a = ap.parse_args()
    argv = ["--device", "cpu", "--check", "--out", "unused.yaml", "-q"]
    argv += [] if a.full else ["--quick"]
    argv += ["--threads", str(a.threads)] if a.threads else []
    print(f"| run | wall s | others' CPU share | spread median / p90 | held-out median error "
          f"before->after ({', '.join(CLASSES)}) | kernel floor us | gates | minimum of repeats "
          f"instead: errors | gates |")
    print("|---|---|---|---|---|---|---|---|---|")
    runs, passed = [], 0
    for i in range(a.runs):
        t0 = time.perf_counter()
        o = measure_and_fit(build_parser().parse_args(argv), "unused.csv")
        wall = time.perf_counter() - t0
        min_acc, min_refused = with_minimum(o)
        passed += not o.refused
        busy = "n/a" if o.busy is None else f"{o.busy:.0%}"
        print(f"| {i + 1} | {wall:.0f} | {busy} | {o.noise.median:.1%} / {o.noise.p90:.0%} | "
              f"{errors(o.accuracy)} | {o.fit.profile['efficiency']['kernel_overhead_us']:.4g} | "
              f"{'; '.join(o.refused) or 'write'} | {errors(min_acc)} | "
              f"{'refuse' if min_refused else 'write'} |", flush=True)
        runs.append({"wall_s": wall, "busy": o.busy, "noise_median": o.noise.median,
                     "noise_p90": o.noise.p90, "accuracy": o.accuracy, "refused": o.refused,
                     "kernel_overhead_us": o.fit.profile["efficiency"]["kernel_overhead_us"],
                     "min_accuracy": min_acc, "min_refused": min_refused, "rows": o.rows})
    print(f"\n{passed} of {a.runs} runs pass the gates (noise limit {gates.NOISE_LIMIT:.0%}, "
          f"host-busy limit {gates.BUSY_LIMIT:.0%}, accuracy margin "
          f"+{gates.ACCURACY_MARGIN * 100:.0f} points)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(runs, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
