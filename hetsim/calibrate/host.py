"""A datasheet-level profile of the host CPU, for calibrating on ``--device cpu``.

Peak FLOP/s = cores x clock x FLOPs/cycle from the ISA (AVX-512 with two FMA ports: 64 fp32
FLOPs/cycle; AVX2: 32), memory bandwidth from a large numpy copy. This is what a user would
write from a spec sheet; calibration then measures what torch actually reaches.
"""
from __future__ import annotations

import os
import re
import time
from datetime import date

import numpy as np


def _cpuinfo() -> tuple[str, float | None, str]:
    model, ghz = "cpu", None
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        text = ""
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    if m:
        model = m.group(1).strip()
        g = re.search(r"@\s*([\d.]+)\s*GHz", model)
        ghz = float(g.group(1)) if g else None
    if ghz is None:
        g = re.search(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)
        ghz = float(g.group(1)) / 1000 if g else 2.0
    f = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    return model, ghz, f.group(1) if f else ""


def copy_bandwidth_tbps(mib: int = 64, reps: int = 5) -> float:
    a = np.ones(mib * 2 ** 20 // 8)
    b = np.empty_like(a)
    np.copyto(b, a)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best / 1e12     # read + write


def host_profile(name: str = "cpu", threads: int | None = None) -> dict:
    """A profile dict (the YAML schema of hardware_profiles/accelerators) for this CPU."""
    model, ghz, flags = _cpuinfo()
    if threads:
        cores = threads
    elif hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    fpc = 64 if "avx512f" in flags.split() else 32
    fp32 = cores * ghz * fpc / 1000
    tflops = {"fp32": round(fp32, 4)}
    precisions = ["fp32"]
    if {"avx512_bf16", "amx_bf16"} & set(flags.split()):
        tflops["bf16"] = round(2 * fp32, 4)
        precisions.append("bf16")
    return {
        "name": name,
        "description": f"{model}, {cores} threads (host CPU, datasheet-level)",
        "vendor": "cpu",
        "tflops": tflops,
        "precisions": precisions,
        "hbm_gb": 16,
        "hbm_bandwidth_tbps": round(copy_bandwidth_tbps(), 5),
        "compute_units": cores,
        "host_link": "pcie-gen5",
        "efficiency": {"gemm": 0.8, "attention": 0.5, "hbm": 1.0, "kernel_overhead_us": 3.0,
                       "iteration_overhead_ms": 0.0,
                       "note": "datasheet-level defaults before calibration"},
        "sources": [{"key": "HOST", "ref": f"/proc/cpuinfo ({model}; {cores} threads, {ghz} GHz, "
                                           f"{'AVX-512' if fpc == 64 else 'AVX2'} FMA), numpy "
                                           f"64 MiB copy, {date.today().isoformat()}"}],
    }
