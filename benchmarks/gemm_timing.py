"""How much the timing method and the input data move a GEMM's measured throughput (GPU).

`hetsim calibrate` times kernels as CUDA-graph replays on rotated randn inputs (see
hetsim/calibrate/timer.py). This script times the same GEMMs several other ways, so the
choice can be checked on the device at hand:

    python benchmarks/gemm_timing.py            # needs a CUDA device

Columns: TFLOP/s of eager back-to-back calls between CUDA events (median of 20 runs), of one
CUDA-graph replay (hetsim's Timer), and of eager calls on torch.rand / torch.zeros inputs
(bit patterns change power draw, hence clocks), and after 2 s of sustained load.
"""
from __future__ import annotations

import statistics
import sys
import time


def main() -> int:
    import torch
    if not torch.cuda.is_available():
        print("needs a CUDA device", file=sys.stderr)
        return 2
    sys.path.insert(0, ".")
    from hetsim.calibrate.measure import warm_up
    from hetsim.calibrate.timer import Timer
    warm_up(torch, "cuda", 1.0)
    ev = lambda: torch.cuda.Event(enable_timing=True)  # noqa: E731

    def eager(fn, n=20):
        fn()
        torch.cuda.synchronize()
        ts = []
        for _ in range(n):
            s, e = ev(), ev()
            s.record()
            fn()
            e.record()
            e.synchronize()
            ts.append(s.elapsed_time(e) / 1e3)
        return statistics.median(ts), min(ts)

    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| m x n x k (bf16) | eager randn med | min | graph (hetsim) | rand | zeros | sustained 2 s |")
    print("|---|---|---|---|---|---|---|")
    for m, n, k in ((8192, 8192, 8192), (4096, 4096, 4096), (8192, 28672, 8192),
                    (2048, 14336, 4096), (16384, 16384, 16384)):
        fl = 2 * m * n * k / 1e12
        a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(k, n, device="cuda", dtype=torch.bfloat16)
        med, mn = eager(lambda: a @ b)
        graph = Timer(torch, "cuda", 20)(lambda: a @ b)
        ar, br = torch.rand_like(a), torch.rand_like(b)
        rand = eager(lambda: ar @ br)[0]
        az, bz = torch.zeros_like(a), torch.zeros_like(b)
        zeros = eager(lambda: az @ bz)[0]
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 2.0:
            for _ in range(10):
                a @ b
            torch.cuda.synchronize()
        hot = eager(lambda: a @ b)[0]
        print(f"| {m}x{n}x{k} | {fl / med:.0f} | {fl / mn:.0f} | {fl / graph:.0f} | "
              f"{fl / rand:.0f} | {fl / zeros:.0f} | {fl / hot:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
