"""Prediction error of the performance model: against this machine (before and after
calibration, on held-out shapes) and against published figures.

1. ``hetsim calibrate --device cpu [--quick] --check`` in a temporary folder: torch reference
   kernels on this CPU, the datasheet-level host profile (peak from /proc/cpuinfo, bandwidth
   from a numpy copy) as "before", the fitted profile as "after"; GEMM and attention errors on
   held-out shapes, whole-iteration errors of the reference transformer (never fitted).
   With ``--device cuda --accelerator h100-sxm`` the same on a GPU; ``--published`` skips
   the measuring.
2. Published ratios (shared/reference/validation.md): Splitwise H100/A100 speed-ups, and the
   Llama-70B batch-1 decode byte floor.

    pip install torch==2.13.0   # the CPU build
    python benchmarks/accuracy.py [--quick] [--device cuda --accelerator h100-sxm]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import hetsim
from hetsim.calibrate.__main__ import main as calibrate


def published() -> None:
    a100 = hetsim.PerfModel(hetsim.load_accelerator("a100-sxm"))
    print("\n| published check (validation.md) | published | hetsim |\n|---|---|---|")
    for h100_name, label in (("h100-sxm@datasheet", "datasheet"), ("h100-sxm", "calibrated H100")):
        h100 = hetsim.PerfModel(hetsim.load_accelerator(h100_name))
        for name in ("bloom-176b", "llama-2-70b"):
            m = hetsim.load_model(name)
            a, h = (hetsim.StepModel(m, pm, 8) for pm in (a100, h100))
            pre = a.prefill_time([1500]) / h.prefill_time([1500])
            dec = a.decode_time(16, 16 * 1500) / h.decode_time(16, 16 * 1500)
            print(f"| Splitwise prefill speed-up H100/A100, {name}, 1500 tokens ({label}) | "
                  f"1.7-2.5x | {pre:.2f}x |")
            print(f"| Splitwise decode speed-up H100/A100, {name}, batch 16 ({label}) | "
                  f"1.35-1.55x | {dec:.2f}x |")
        m = hetsim.load_model("llama-3.1-70b")
        t = hetsim.StepModel(m, h100, 8).decode_time(1, 1024)
        print(f"| Llama-70B TP8 batch-1 decode step on H100 ({label}; reads ~17.5 GB/GPU) | "
              f"bandwidth-bound | {t * 1e3:.1f} ms ({17.5e9 / 3.35e12 * 1e3:.1f} ms byte floor) |")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--accelerator")
    ap.add_argument("--published", action="store_true", help="only the published checks")
    a = ap.parse_args()
    if a.published:
        published()
        return 0
    with tempfile.TemporaryDirectory() as d:
        args = ["--device", a.device, "--out", str(Path(d) / "profile.yaml"), "--check", "-q"]
        args += ["--quick"] if a.quick else []
        args += ["--accelerator", a.accelerator] if a.accelerator else []
        rc = calibrate(args)
    published()
    return rc


if __name__ == "__main__":
    sys.exit(main())
