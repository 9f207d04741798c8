"""How well does a thinned kernel grid predict the measurements it dropped? (issue 14 study)

Takes aiconfigurator-core's GEMM table for one system x runtime x dtype, keeps every m and
all but every ``--every``-th n and k value (the last always kept), builds a
:class:`hetsim.perf.grid.LogGrid` from the kept points (the datasheet model carries it past the
edges) and scores it on the dropped points, next to the datasheet model alone.

    pip install 'hetsim[aic]'
    python benchmarks/gemm_grid_holdout.py h100_sxm vllm h100-sxm@datasheet bf16 --every 2
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from hetsim import PerfModel, kerneldb, load_accelerator
from hetsim.perf.grid import LogGrid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("system")
    ap.add_argument("runtime")
    ap.add_argument("profile", help="hetsim accelerator profile for the model and the edges")
    ap.add_argument("dtype", help="table dtype in hetsim names (bf16, fp8, fp8-block, fp4)")
    ap.add_argument("--every", type=int, default=2, help="drop every Nth n and k value")
    a = ap.parse_args()
    g = kerneldb.read_op(kerneldb.select(a.system, a.runtime), "gemm")
    g = g[g.gemm_dtype == a.dtype]
    pm = PerfModel(load_accelerator(a.profile))
    prec = {"fp8-block": "fp8"}.get(a.dtype, a.dtype)
    ms, ns, ks = (np.sort(g[c].unique()) for c in "mnk")

    def kept(axis):
        return axis[[i % a.every != a.every - 1 or i == len(axis) - 1 for i in range(len(axis))]]

    kn, kk = kept(ns), kept(ks)
    on_grid = g.n.isin(kn) & g.k.isin(kk)
    # several kernels for one shape: the fastest, as the runtime would pick (and as
    # kernel_accuracy.prepare scores)
    cube = g[on_grid].pivot_table(index=["m", "n", "k"], values="latency_s", aggfunc="min")
    cube = cube.reindex(pd.MultiIndex.from_product([ms, kn, kk]))["latency_s"]
    # NOTE: a shape the table lacks takes its nearest neighbour's time, along k, then n, then m
    filled = int(cube.isna().sum())
    t = cube.to_numpy().reshape(len(ms), len(kn), len(kk))
    for axis in (2, 1, 0):
        moved = np.moveaxis(t, axis, -1)
        flat = pd.DataFrame(moved.reshape(-1, moved.shape[-1])).ffill(axis=1).bfill(axis=1)
        t = np.moveaxis(flat.to_numpy().reshape(moved.shape), -1, axis)
    grid = LogGrid([ms, kn, kk], t)
    held = g[~on_grid].sort_values("latency_s").drop_duplicates(["m", "n", "k"])

    def model(p):
        return pm.gemm_time(int(p[0]), int(p[1]), int(p[2]), prec)

    t0 = time.perf_counter()
    est = np.array([grid((m, n, k), model) for m, n, k in zip(held.m, held.n, held.k)])
    us = (time.perf_counter() - t0) / max(1, len(held)) * 1e6
    gen = np.array([model((m, n, k)) for m, n, k in zip(held.m, held.n, held.k)])
    meas = held.latency_s.to_numpy()
    for name, x in (("grid", est), ("datasheet model", gen)):
        ape = np.abs(x / meas - 1)
        print(f"{a.system} {a.runtime} {a.dtype} {name}: held-out {len(held)} of {len(g)} rows, "
              f"MdAPE {np.median(ape):.1%}, p90 {np.quantile(ape, 0.9):.1%}")
    print(f"grid: {grid.axes[0].size}x{grid.axes[1].size}x{grid.axes[2].size} points "
          f"({filled} filled from a neighbour), {us:.0f} us per look-up")


if __name__ == "__main__":
    main()
