"""Timing torch reference kernels on one device. Every function returns measurement rows
(dicts with the CSV columns of :mod:`hetsim.calibrate.fit`)."""
from __future__ import annotations

import time

TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16",
                "fp8": "float8_e4m3fn"}


class Timer:
    """Best (minimum) wall time of a callable on ``device`` over ``reps`` runs after two
    warm-ups: interference from other processes only ever adds time, so the minimum is the
    stable estimate on shared machines. We synchronize around each repetition (CUDA)."""

    def __init__(self, torch, device: str, reps: int):
        self.torch, self.device, self.reps = torch, device, reps

    def _sync(self):
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def __call__(self, fn) -> float:
        fn()                      # warm-up (allocations, kernel selection, thread pools)
        fn()
        self._sync()
        ts = []
        for _ in range(self.reps):
            t = time.perf_counter()
            fn()
            self._sync()
            ts.append(time.perf_counter() - t)
        return min(ts)


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
        if p in TORCH_DTYPES:
            out.append(p)
    return out


def _row(op, precision, seconds, **shape):
    return {"op": op, "precision": precision, "seconds": seconds, **shape}


def gemms(torch, timer, grid, precisions, progress=None):
    rows, dev = [], timer.device
    todo = [(p, m, n, k) for p in precisions for m in grid.gemm_m for n, k in grid.gemm_nk]
    for i, (p, m, n, k) in enumerate(todo):
        if p == "fp8":
            a = torch.randn(m, k, device=dev).to(torch.float8_e4m3fn)
            b = torch.randn(n, k, device=dev).to(torch.float8_e4m3fn).t()
            one = torch.ones((), device=dev)
            fn = lambda a=a, b=b, one=one: torch._scaled_mm(  # noqa: E731
                a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
        else:
            dt = getattr(torch, TORCH_DTYPES[p])
            a = torch.randn(m, k, device=dev, dtype=dt)
            b = torch.randn(k, n, device=dev, dtype=dt)
            fn = lambda a=a, b=b: a @ b  # noqa: E731
        rows.append(_row("gemm", p, timer(fn), m=m, n=n, k=k))
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
        if op == "attn_prefill":
            q = torch.randn(b, H, s, d, device=dev, dtype=dt)
            kv = torch.randn(b, kvh, s, d, device=dev, dtype=dt)
            fn = lambda q=q, kv=kv: F.scaled_dot_product_attention(  # noqa: E731
                q, kv, kv, is_causal=True, enable_gqa=True)
            rows.append(_row(op, p, timer(fn), batch=b, seq=s, heads=H, kv_heads=kvh,
                             head_dim=d))
        else:
            q = torch.randn(b, H, 1, d, device=dev, dtype=dt)
            kv = torch.randn(b, kvh, s, d, device=dev, dtype=dt)
            fn = lambda q=q, kv=kv: F.scaled_dot_product_attention(  # noqa: E731
                q, kv, kv, enable_gqa=True)
            rows.append(_row(op, p, timer(fn), batch=b, kv_len=s, heads=H, kv_heads=kvh,
                             head_dim=d))
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
