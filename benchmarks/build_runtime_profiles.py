"""Rebuild every shipped runtime profile (``hardware_profiles/runtimes/<name>.<runtime>.yaml``
and its ``.npz``) from the installed aiconfigurator-core, through ``hetsim calibrate
--from-aiconfigurator`` itself, and summarize their held-out accuracy.

    pip install 'hetsim[aic]'
    python benchmarks/build_runtime_profiles.py [--system h100_sxm] [--runtime vllm]

Every system x runtime the package has at its declared current version (``kerneldb.select``);
tests/test_runtime_profiles.py rebuilds one and requires the committed bytes.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from hetsim import kerneldb
from hetsim.cli import main as hetsim_main
from hetsim.config import read_yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "hardware_profiles" / "runtimes"
MARK = ("<!-- runtime_profiles -->", "<!-- /runtime_profiles -->")


def pairs(systems=None, runtimes=None) -> list[tuple[str, str]]:
    cat = kerneldb.catalog()
    have = sorted(set(zip(cat.system, cat.runtime)))
    return [(s, r) for s, r in have if (not systems or s in systems)
            and (not runtimes or r in runtimes)]


def summary(files: list[Path]) -> str:
    """Per op class: the median and range over profiles of the held-out MdAPE and p90 (grid),
    and of the datasheet model's MdAPE on the same rows."""
    acc: dict[str, dict[str, list[float]]] = {}
    for f in files:
        for op, v in read_yaml(f)["calibration"]["accuracy"].items():
            slot = acc.setdefault(op, {})
            for k, x in v.items():
                slot.setdefault(k, []).append(x)
    lines = ["| op class | profiles | grid MdAPE median (range) | grid p90 median (range) | "
             "datasheet MdAPE median (range) |", "|---|---|---|---|---|"]

    def cell(xs):
        return "-" if not xs else (f"{np.median(xs):.1%} ({min(xs):.1%}-{max(xs):.1%})")
    for op, v in acc.items():
        lines.append(f"| {op} | {len(v.get('after_median', []))} | {cell(v.get('after_median'))}"
                     f" | {cell(v.get('after_p90'))} | {cell(v.get('before_median'))} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--system", action="append", help="aiconfigurator system (default: all)")
    ap.add_argument("--runtime", action="append", help="default: every runtime it has")
    ap.add_argument("--summary", action="store_true", help="only summarize the committed ones")
    ap.add_argument("--readme", type=Path, help=f"write the summary into its {MARK[0]} region")
    a = ap.parse_args(argv)
    files, start = [], time.perf_counter()
    for system, runtime in pairs(a.system, a.runtime):
        out = OUT / f"{kerneldb.SYSTEMS[system]}.{runtime}.yaml"
        files.append(out)
        if a.summary:
            continue
        t = time.perf_counter()
        rc = hetsim_main(["calibrate", "--from-aiconfigurator", system, "--runtime", runtime,
                          "--out", str(out), "--force"])
        if rc:
            return rc
        print(f"{system} {runtime}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    size = sum(f.stat().st_size + f.with_suffix(".npz").stat().st_size for f in files)
    print(f"{len(files)} profiles, {size / 1e6:.1f} MB"
          + ("" if a.summary else f", built in {time.perf_counter() - start:.0f} s"))
    block = (f"{len(files)} profiles, {size / 1e6:.1f} MB; held out: 20% of shapes (seed 0)."
             f"\n\n{summary(files)}")
    from kernel_accuracy import emit    # benchmarks/ is the script's folder
    emit(block, a.readme, MARK)
    return 0


if __name__ == "__main__":
    sys.exit(main())
