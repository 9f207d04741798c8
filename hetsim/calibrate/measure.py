"""The torch kernels calibration times on one device. The ``*_jobs`` functions list the shapes
to time (:class:`~.timer.Job`); :meth:`.timer.Timer.run` times them and returns measurement rows
(dicts with the CSV columns of :mod:`hetsim.calibrate.csvio`, plus each shape's raw
``repeats``). Also the all-reduce, the device's name, and how busy the host was meanwhile."""
from __future__ import annotations

import os
import time

from ..precision import PRECISION_BYTES
from .timer import Job, copies, spread

__all__ = ["TORCH_DTYPES", "HostLoad", "warm_up", "supported_precisions", "gemm_jobs",
           "attention_jobs", "memory_jobs", "ALLREDUCE_BYTES", "allreduce", "device_name",
           "driver_version"]

TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16",
                "fp8": "float8_e4m3fn"}


class HostLoad:
    """How much of the host's CPU time other processes used while timings ran (Linux: from
    ``/proc/stat``, less this process's own CPU time; steal time on a VM counts as others').

    A steady load slows every repeat alike, so the spread of repeats cannot see it: each kernel
    that waits on a descheduled thread pays a whole scheduler slice, and a fit of such timings
    is consistent (it predicts its held-out shapes well) but describes a machine with a
    multi-millisecond kernel floor. Use as a context manager around each timing phase."""

    def __init__(self, stat: str = "/proc/stat"):
        self.stat, self.other_s, self.host_s = stat, 0.0, 0.0
        self._start: tuple[float, float, float] | None = None

    def _snapshot(self) -> tuple[float, float, float] | None:
        try:
            with open(self.stat) as f:
                fields = f.readline().split()
            ticks = [int(x) for x in fields[1:9]]    # user .. steal (guest is inside user)
        except (OSError, ValueError, IndexError):
            return None
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        t = os.times()
        total = sum(ticks) / hz
        busy = total - (ticks[3] + ticks[4]) / hz      # less idle and iowait
        return busy, total, t.user + t.system

    def __enter__(self):
        self._start = self._snapshot()
        return self

    def __exit__(self, *exc):
        end = self._snapshot()
        if self._start is not None and end is not None:
            busy, total, own = (e - s for e, s in zip(end, self._start))
            self.other_s += max(0.0, busy - own)
            self.host_s += total
        self._start = None

    @property
    def share(self) -> float | None:
        """Others' CPU time / the host's CPU time over the timed phases (None: not known)."""
        return min(1.0, self.other_s / self.host_s) if self.host_s > 0 else None


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


def gemm_jobs(torch, device: str, grid, precisions) -> list[Job]:
    """(m x k) @ (k x n) for every m and (n, k) of the grid in every precision; precisions after
    the first are optional (an fp8 GEMM may be missing from this torch/driver build)."""
    dev, jobs = device, []
    for p in precisions:
        for m in grid.gemm_m:
            for n, k in grid.gemm_nk:
                def one(p=p, m=m, n=n, k=k):
                    if p == "fp8":
                        a = torch.randn(m, k, device=dev).to(torch.float8_e4m3fn)
                        b = torch.randn(n, k, device=dev).to(torch.float8_e4m3fn).t()
                        s = torch.ones((), device=dev)
                        return lambda: torch._scaled_mm(a, b, scale_a=s, scale_b=s,
                                                        out_dtype=torch.bfloat16)
                    dt = getattr(torch, TORCH_DTYPES[p])
                    a = torch.randn(m, k, device=dev, dtype=dt)
                    b = torch.randn(k, n, device=dev, dtype=dt)
                    return lambda: a @ b
                nbytes = (m * k + k * n) * PRECISION_BYTES[p]
                n_copies = copies(dev, nbytes)
                jobs.append(Job({"op": "gemm", "precision": p, "m": m, "n": n, "k": k},
                                lambda one=one, c=n_copies: [one() for _ in range(c)],
                                nbytes * n_copies, optional=p != precisions[0]))
    return jobs


def attention_jobs(torch, device: str, grid, precisions) -> list[Job]:
    """Causal prefill and one-token decode SDPA over the grid's shapes and GQA ratios."""
    F = torch.nn.functional
    dev, jobs = device, []
    attn_p = [p for p in precisions if p != "fp8"]
    todo = ([("attn_prefill", p, b, s, h) for p in attn_p for b, s in grid.prefill
             for h in grid.heads]
            + [("attn_decode", p, b, s, h) for p in attn_p for b, s in grid.decode
               for h in grid.heads])
    for op, p, b, s, (H, kvh, d) in todo:
        dt = getattr(torch, TORCH_DTYPES[p])
        q_len = s if op == "attn_prefill" else 1

        def one(b=b, s=s, H=H, kvh=kvh, d=d, dt=dt, q_len=q_len):
            q = torch.randn(b, H, q_len, d, device=dev, dtype=dt)
            k = torch.randn(b, kvh, s, d, device=dev, dtype=dt)
            v = torch.randn(b, kvh, s, d, device=dev, dtype=dt)
            return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=q_len > 1,
                                                          enable_gqa=True)
        nbytes = b * (H * q_len + 2 * kvh * s) * d * PRECISION_BYTES[p]
        n_copies = copies(dev, nbytes)
        row = {"op": op, "precision": p, "batch": b, "heads": H, "kv_heads": kvh,
               "head_dim": d, ("seq" if op == "attn_prefill" else "kv_len"): s}
        jobs.append(Job(row, lambda one=one, c=n_copies: [one() for _ in range(c)],
                        nbytes * n_copies))
    return jobs


def memory_jobs(torch, device: str, grid) -> list[Job]:
    """Device copy bandwidth (read + write bytes), host<->device (pinned) where there is a
    host, and the launch overhead of a trivial kernel."""
    dev = device
    n = grid.copy_mib * 2 ** 20 // 4

    def copy():
        a, b = torch.empty(n, device=dev), torch.empty(n, device=dev)
        return [lambda: b.copy_(a)]

    def host(to_device: bool):
        a, h = torch.empty(n, device=dev), torch.empty(n, pin_memory=True)
        return [(lambda: a.copy_(h, non_blocking=True)) if to_device
                else (lambda: h.copy_(a, non_blocking=True))]
    launches = 200

    def launch():
        x = torch.ones(1, device=dev)

        def many():
            for _ in range(launches):
                x.add_(1.0)
        return [many]
    jobs = [Job({"op": "copy", "precision": "fp32", "bytes": 2 * n * 4}, copy, 2 * n * 4)]
    if dev.startswith("cuda"):
        jobs += [Job({"op": "h2d", "precision": "fp32", "bytes": n * 4},
                     lambda: host(True), 2 * n * 4),
                 Job({"op": "d2h", "precision": "fp32", "bytes": n * 4},
                     lambda: host(False), 2 * n * 4)]
    return jobs + [Job({"op": "launch", "precision": "fp32"}, launch, per_call=launches)]


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
        rows.append({"op": "allreduce", "precision": "fp16", "seconds": min(ts),
                     "noise": float(f"{spread(ts):.4g}"), "repeats": ts, "bytes": nbytes,
                     "devices": n})
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
