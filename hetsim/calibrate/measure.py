"""Timing torch reference kernels on one device. Every function returns measurement rows
(dicts with the CSV columns of :mod:`hetsim.calibrate.fit`)."""
from __future__ import annotations

import sys
import time

from ..hardware import PRECISION_BYTES

TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16",
                "fp8": "float8_e4m3fn"}


#: on a GPU, inputs are rotated over copies adding up to at least this many bytes, so
#: repeated calls stream their operands from HBM as a serving step does (a layer's weights are
#: never in L2 when its GEMM runs), instead of hitting a 50 MB L2
ROTATE_BYTES = 256 * 2 ** 20
MAX_COPIES = 32


def copies(device: str, nbytes: int) -> int:
    """How many copies of ``nbytes`` of inputs to rotate over (1 off the GPU)."""
    if not device.startswith("cuda") or nbytes <= 0:
        return 1
    return max(1, min(MAX_COPIES, -(-ROTATE_BYTES // nbytes)))


class Timer:
    """Seconds per call of a callable (or of a list of callables over rotated inputs).

    CPU: the minimum wall time over ``reps`` runs after two warm-ups (interference from other
    processes only ever adds time, so the minimum is the stable estimate on shared machines).

    CUDA: the calls are captured back to back in a CUDA graph, ``inner`` of them (enough for
    about a millisecond), and the graph is replayed ``reps`` times between CUDA events; the
    result is the minimum over replays of the time per call. Serving engines launch decode
    iterations as CUDA graphs too, so this is GPU time without the Python dispatch cost of eager
    torch (tens of microseconds per op, which would otherwise be fitted as "kernel overhead").
    Where capture fails, eager back-to-back calls between events are timed instead."""

    def __init__(self, torch, device: str, reps: int, target_s: float = 1e-3,
                 budget_s: float = 0.25):
        self.torch, self.device, self.reps = torch, device, reps
        self.target_s, self.budget_s = target_s, budget_s
        self.graphs = 0          # how many timings used CUDA graphs (provenance)
        self.eager = 0

    def __call__(self, fn) -> float:
        fns = list(fn) if isinstance(fn, (list, tuple)) else [fn]
        if self.device.startswith("cuda"):
            return self._cuda(fns)
        for i in range(2):                            # two warm-ups
            fns[i % len(fns)]()
        ts = []
        for i in range(self.reps):
            t = time.perf_counter()
            fns[i % len(fns)]()
            ts.append(time.perf_counter() - t)
        return min(ts)

    def _cuda(self, fns) -> float:
        t = self.torch
        side = t.cuda.Stream()
        side.wait_stream(t.cuda.current_stream())
        with t.cuda.stream(side):             # warm-up off the capture stream (as torch asks)
            for f in fns:
                f()
            fns[0]()
        t.cuda.current_stream().wait_stream(side)
        t.cuda.synchronize()
        start, end = t.cuda.Event(enable_timing=True), t.cuda.Event(enable_timing=True)

        def eager(n):
            start.record()
            for i in range(n):
                fns[i % len(fns)]()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3 / n

        est = eager(len(fns))
        inner = max(1, min(1000, round(self.target_s / max(est, 1e-7))))
        reps = max(3, min(self.reps, round(self.budget_s / max(est * inner, 1e-9))))
        try:
            g = t.cuda.CUDAGraph()
            with t.cuda.graph(g):
                for i in range(inner):
                    fns[i % len(fns)]()
            g.replay()
            t.cuda.synchronize()
        except Exception:                     # noqa: BLE001 - not capturable: time eagerly
            t.cuda.synchronize()
            self.eager += 1
            return min(eager(inner) for _ in range(reps))
        self.graphs += 1
        best = float("inf")
        for _ in range(reps):
            start.record()
            g.replay()
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1e3 / inner)
        del g
        return best


def warm_up(torch, device: str, seconds: float = 0.5) -> None:
    """Large matmuls for ``seconds`` before the first timing, so clocks have left idle."""
    if not device.startswith("cuda"):
        return
    a = torch.randn(4096, 4096, device=device, dtype=torch.bfloat16)
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        for _ in range(20):
            a @ a
        torch.cuda.synchronize()


def supported_precisions(torch, device: str, wanted) -> list[str]:
    """The formats this device can run matmuls in, among ``wanted``."""
    out = []
    for p in wanted:
        if p == "fp8":
            if (device.startswith("cuda") and hasattr(torch, "_scaled_mm")
                    and torch.cuda.get_device_capability() >= (8, 9)):
                out.append(p)
            continue
        if p in ("fp16",) and device == "cpu":
            continue          # no fp16 GEMM kernels worth timing on CPUs
        if p == "fp32" and device.startswith("cuda"):
            continue          # CUDA-core fp32: no serving engine computes in it; minutes saved
        if p in TORCH_DTYPES:
            out.append(p)
    return out


def _row(op, precision, seconds, **shape):
    return {"op": op, "precision": precision, "seconds": seconds, **shape}


def gemms(torch, timer, grid, precisions, progress=None):
    rows, dev = [], timer.device
    todo = [(p, m, n, k) for p in precisions for m in grid.gemm_m for n, k in grid.gemm_nk]
    failed: set[str] = set()
    for i, (p, m, n, k) in enumerate(todo):
        if p in failed:
            continue
        size = PRECISION_BYTES[p]

        def make(p=p, m=m, n=n, k=k):
            if p == "fp8":
                a = torch.randn(m, k, device=dev).to(torch.float8_e4m3fn)
                b = torch.randn(n, k, device=dev).to(torch.float8_e4m3fn).t()
                one = torch.ones((), device=dev)
                return lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one,
                                                out_dtype=torch.bfloat16)
            dt = getattr(torch, TORCH_DTYPES[p])
            a = torch.randn(m, k, device=dev, dtype=dt)
            b = torch.randn(k, n, device=dev, dtype=dt)
            return lambda: a @ b
        try:
            fns = [make() for _ in range(copies(dev, (m * k + k * n) * size))]
            rows.append(_row("gemm", p, timer(fns), m=m, n=n, k=k))
        except RuntimeError as e:          # e.g. no fp8 GEMM in this torch/driver build
            if p == precisions[0]:
                raise
            failed.add(p)
            print(f"\ncalibrate: warning: {p} GEMMs skipped ({str(e).splitlines()[0]})",
                  file=sys.stderr)
        fns = None
        if progress:
            progress("gemm", i + 1, len(todo))
    return rows


def attention(torch, timer, grid, precisions, progress=None):
    F = torch.nn.functional
    rows, dev = [], timer.device
    attn_p = [p for p in precisions if p != "fp8"]
    todo = ([("attn_prefill", p, b, s, h) for p in attn_p for b, s in grid.prefill
             for h in grid.heads]
            + [("attn_decode", p, b, s, h) for p in attn_p for b, s in grid.decode
               for h in grid.heads])
    for i, (op, p, b, s, (H, kvh, d)) in enumerate(todo):
        dt = getattr(torch, TORCH_DTYPES[p])
        q_len = s if op == "attn_prefill" else 1

        def make(b=b, s=s, H=H, kvh=kvh, d=d, dt=dt, q_len=q_len):
            q = torch.randn(b, H, q_len, d, device=dev, dtype=dt)
            k = torch.randn(b, kvh, s, d, device=dev, dtype=dt)
            v = torch.randn(b, kvh, s, d, device=dev, dtype=dt)
            return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=q_len > 1,
                                                          enable_gqa=True)
        nbytes = b * (H * q_len + 2 * kvh * s) * d * PRECISION_BYTES[p]
        fns = [make() for _ in range(copies(dev, nbytes))]
        shape = dict(batch=b, heads=H, kv_heads=kvh, head_dim=d)
        shape.update(seq=s) if op == "attn_prefill" else shape.update(kv_len=s)
        rows.append(_row(op, p, timer(fns), **shape))
        fns = None
        if progress:
            progress("attention", i + 1, len(todo))
    return rows


def memory(torch, timer, grid):
    """Device copy bandwidth (read + write bytes), host<->device (pinned) where there is a
    host, and the launch overhead of a trivial kernel."""
    dev = timer.device
    n = grid.copy_mib * 2 ** 20 // 4
    a = torch.empty(n, device=dev)
    b = torch.empty(n, device=dev)
    rows = [_row("copy", "fp32", timer(lambda: b.copy_(a)), bytes=2 * a.numel() * 4)]
    if dev.startswith("cuda"):
        h = torch.empty(n, pin_memory=True)
        rows.append(_row("h2d", "fp32", timer(lambda: a.copy_(h, non_blocking=True)),
                         bytes=n * 4))
        rows.append(_row("d2h", "fp32", timer(lambda: h.copy_(a, non_blocking=True)),
                         bytes=n * 4))
    x = torch.ones(1, device=dev)
    launches = 200

    def many():
        for _ in range(launches):
            x.add_(1.0)
    rows.append(_row("launch", "fp32", timer(many) / launches))
    return rows


#: all-reduce message sizes, bytes per device: latency-bound to bandwidth-bound (a TP prefill
#: all-reduces tokens x hidden x 2 bytes: 8k tokens of an 8k hidden is 128 MiB)
ALLREDUCE_BYTES = tuple(2 ** k for k in (16, 18, 20, 22, 24, 26, 27))


def allreduce(torch, device: str, reps: int, sizes=ALLREDUCE_BYTES, progress=None):
    """All-reduce over 2, 4, 8 ... of this host's GPUs (single-process NCCL,
    ``torch.cuda.nccl.all_reduce``), fp16, when more than one is present; none otherwise."""
    if not device.startswith("cuda") or torch.cuda.device_count() < 2:
        return []
    from torch.cuda import nccl
    count = torch.cuda.device_count()
    counts = [n for n in (2, 4, 8, 16) if n <= count]
    rows, todo = [], [(n, b) for n in counts for b in sizes]
    for i, (n, nbytes) in enumerate(todo):
        xs = [torch.zeros(nbytes // 2, dtype=torch.float16, device=f"cuda:{d}")
              for d in range(n)]

        def run(xs=xs, n=n):
            nccl.all_reduce(xs)
            for d in range(n):
                torch.cuda.synchronize(d)
        run()
        run()
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            run()
            ts.append(time.perf_counter() - t)
        rows.append(_row("allreduce", "fp16", min(ts), bytes=nbytes, devices=n))
        if progress:
            progress("all-reduce", i + 1, len(todo))
    return rows


def device_name(torch, device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    import platform
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return platform.processor() or "cpu"


def driver_version(torch, device: str) -> str:
    if device.startswith("cuda"):
        return f"cuda {torch.version.cuda}"
    return ""
