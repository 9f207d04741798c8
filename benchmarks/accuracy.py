"""Prediction error of the performance model against real measurements and published figures.

1. torch on this CPU (fp32): GEMMs, causal prefill attention (SDPA), decode attention, and a
   small Llama-architecture forward pass (prefill and decode with a KV cache), each compared with
   ``PerfModel`` for a *datasheet-level* profile of the host: peak FLOP/s from lscpu
   (cores x GHz x FLOPs/cycle), memory bandwidth from a large copy. No fitting.
2. Published ratios (shared/reference/validation.md): Splitwise H100/A100 speed-ups.

    pip install torch==2.13.0   # the CPU build
    python benchmarks/accuracy.py [--quick]
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import time

import numpy as np

import hetsim
from hetsim.hardware import Accelerator, Efficiency, Source
from hetsim.models import ModelConfig
from hetsim.perf import PerfModel, StepModel


def host_profile() -> Accelerator:
    info = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    cores = int(re.search(r"^CPU\(s\):\s+(\d+)", info, re.M).group(1))
    ghz = float(re.search(r"@ ([\d.]+)GHz", info).group(1))
    flags = info
    # FLOPs/cycle/core in fp32: AVX-512 with 2 FMA ports = 2 x 16 x 2; AVX2 = 2 x 8 x 2.
    fpc = 64 if "avx512f" in flags else 32
    a = np.ones(64 * 2 ** 20 // 8)   # 64 MiB, past the caches
    b = np.empty_like(a)
    best = min(_timeit(lambda: np.copyto(b, a)) for _ in range(5))
    bw = 2 * a.nbytes / best / 1e12   # read + write
    return Accelerator(
        name="host-cpu", description=f"{cores}-core CPU @ {ghz} GHz", vendor="cpu",
        tflops={"fp32": cores * ghz * fpc / 1000}, precisions=["fp32"], hbm_gb=16,
        hbm_bandwidth_tbps=bw, compute_units=cores,
        efficiency=Efficiency(iteration_overhead_ms=0.0),
        sources=[Source("lscpu", "cores, clock, ISA flags; bandwidth from a 64 MiB numpy copy")])


def _timeit(fn, reps=3) -> float:
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def measure_ops(torch, quick: bool):
    F = torch.nn.functional
    rows = []
    ms = [1, 16, 128, 512] if quick else [1, 8, 32, 128, 512, 2048]
    nks = [(1024, 1024), (4096, 1024), (1024, 4096)] if quick else [
        (1024, 1024), (3072, 1024), (4096, 1024), (1024, 4096), (2816, 1024), (8192, 2048)]
    for m in ms:
        for n, k in nks:
            x, w = torch.randn(m, k), torch.randn(k, n)
            rows.append(("gemm", (m, n, k), _timeit(lambda: x @ w)))
    for s in ([128, 512] if quick else [128, 256, 512, 1024, 2048]):
        q = torch.randn(1, 16, s, 64)
        k = torch.randn(1, 16, s, 64)
        rows.append(("attn_prefill", (1, s, 16, 16, 64),
                     _timeit(lambda: F.scaled_dot_product_attention(q, k, k, is_causal=True))))
    for b in ([1, 16] if quick else [1, 8, 32]):
        for kv in ([256, 2048] if quick else [256, 1024, 4096]):
            q = torch.randn(b, 16, 1, 64)
            kc = torch.randn(b, 4, kv, 64)              # GQA: 16 query heads share 4 KV heads
            rows.append(("attn_decode", (b, kv, 16, 4, 64), _timeit(
                lambda: F.scaled_dot_product_attention(q, kc, kc, enable_gqa=True))))
    return rows


def predict_op(pm: PerfModel, op, shape):
    if op == "gemm":
        return pm.gemm_time(*shape, precision="fp32")
    if op == "attn_prefill":
        return pm.attention_prefill_time(*shape, precision="fp32")
    b, kv, h, kvh, d = shape
    return pm.attention_decode_time(b, kv, h, kvh, d, precision="fp32")


class TinyLlama:
    """A Llama-architecture forward pass in torch: RMSNorm, GQA attention with RoPE-free
    rotations omitted (elementwise, counted by the model as memory traffic), SwiGLU FFN, KV cache."""

    def __init__(self, torch, cfg: ModelConfig):
        self.t, self.c = torch, cfg
        h, H, kvh, d, f = (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                           cfg.ffn_size)
        r = lambda *s: torch.randn(*s) * 0.02  # noqa: E731
        self.layers = [dict(qkv=r(h, (H + 2 * kvh) * d), o=r(H * d, h), gu=r(h, 2 * f),
                            down=r(f, h)) for _ in range(cfg.num_layers)]
        self.lm = r(h, cfg.vocab_size)

    def forward(self, x, cache, start):
        """x: (batch, q, hidden); cache: per layer (k, v) tensors (batch, kvh, ctx, d)."""
        t, c = self.t, self.c
        F = t.nn.functional
        b, q, h = x.shape
        H, kvh, d = c.num_heads, c.num_kv_heads, c.head_dim
        for i, L in enumerate(self.layers):
            y = F.rms_norm(x, (h,))
            qkv = y @ L["qkv"]
            qh, k, v = qkv.split([H * d, kvh * d, kvh * d], -1)
            qh = qh.view(b, q, H, d).transpose(1, 2)
            k = k.view(b, q, kvh, d).transpose(1, 2)
            v = v.view(b, q, kvh, d).transpose(1, 2)
            kc, vc = cache[i]
            kc[:, :, start:start + q] = k
            vc[:, :, start:start + q] = v
            kk, vv = kc[:, :, :start + q], vc[:, :, :start + q]
            a = F.scaled_dot_product_attention(qh, kk, vv, is_causal=q > 1, enable_gqa=True)
            x = x + a.transpose(1, 2).reshape(b, q, H * d) @ L["o"]
            y = F.rms_norm(x, (h,))
            g, u = (y @ L["gu"]).chunk(2, -1)
            x = x + (F.silu(g) * u) @ L["down"]
        return F.rms_norm(x[:, -1], (h,)) @ self.lm

    def new_cache(self, b, ctx):
        c = self.c
        return [(self.t.zeros(b, c.num_kv_heads, ctx, c.head_dim),
                 self.t.zeros(b, c.num_kv_heads, ctx, c.head_dim)) for _ in self.layers]


def measure_model(torch, cfg, quick):
    net = TinyLlama(torch, cfg)
    rows = []
    with torch.no_grad():
        for s in ([64, 256] if quick else [32, 128, 512, 1024]):
            cache = net.new_cache(1, s)
            x = torch.randn(1, s, cfg.hidden_size)
            rows.append(("prefill", (1, s), _timeit(lambda: net.forward(x, cache, 0))))
        for b in ([1, 16] if quick else [1, 4, 16, 64]):
            ctx = 512
            cache = net.new_cache(b, ctx + 1)
            x = torch.randn(b, 1, cfg.hidden_size)
            rows.append(("decode", (b, ctx), _timeit(lambda: net.forward(x, cache, ctx))))
    return rows


def summarize(rows, predict):
    by = {}
    for op, shape, t in rows:
        p = predict(op, shape)
        by.setdefault(op, []).append((shape, t, p, abs(p - t) / t))
    out = []
    for op, items in by.items():
        ape = [x[3] for x in items]
        out.append((op, len(items), statistics.median(ape), float(np.percentile(ape, 90))))
    return by, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    import torch
    torch.manual_seed(0)
    acc = host_profile()
    pm = PerfModel(acc, link=None)
    print(f"host profile: {acc.description}, peak fp32 {acc.tflops['fp32'] * 1000:.0f} GFLOP/s, "
          f"copy bandwidth {acc.hbm_bandwidth_tbps * 1000:.1f} GB/s; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    cfg = ModelConfig(name="tiny-llama", num_layers=4, hidden_size=1024, num_heads=16,
                      num_kv_heads=4, ffn_size=2816, vocab_size=8192)
    step = StepModel(cfg, pm, 1, "fp32")
    ops = measure_ops(torch, a.quick)
    model_rows = measure_model(torch, cfg, a.quick)

    def predict(op, shape):
        if op == "prefill":
            return step.prefill_time([shape[1]] * shape[0])
        if op == "decode":
            return step.decode_time(shape[0], shape[0] * (shape[1] + 1))
        return predict_op(pm, op, shape)

    detail, table = summarize(ops + model_rows, predict)
    if a.verbose:
        for op, items in detail.items():
            for shape, t, p, e in items:
                print(f"  {op:13s} {str(shape):28s} measured {t * 1e3:9.3f} ms  "
                      f"predicted {p * 1e3:9.3f} ms  err {e:6.1%}")
    print("\n| op class (CPU, fp32, uncalibrated) | shapes | median APE | p90 APE |\n|---|---|---|---|")
    for op, n, med, p90 in table:
        print(f"| {op} | {n} | {med:.0%} | {p90:.0%} |")

    h100, a100 = (hetsim.PerfModel(hetsim.load_accelerator(n)) for n in ("h100-sxm", "a100-sxm"))
    print("\n| published check (validation.md) | published | hetsim |\n|---|---|---|")
    for name in ("bloom-176b", "llama-2-70b"):
        m = hetsim.load_model(name)
        pre = a100.prefill_time(m, 8, [1500]) / h100.prefill_time(m, 8, [1500])
        dec = a100.decode_time(m, 8, [1500] * 16) / h100.decode_time(m, 8, [1500] * 16)
        print(f"| Splitwise prefill speed-up H100/A100, {name}, 1500 tokens | 1.7-2.5x | {pre:.2f}x |")
        print(f"| Splitwise decode speed-up H100/A100, {name}, batch 16 | 1.35-1.55x | {dec:.2f}x |")
    m = hetsim.load_model("llama-3.1-70b")
    t = h100.decode_time(m, 8, [1024])
    print(f"| Llama-70B TP8 batch-1 decode step on H100 (reads ~17.5 GB/GPU) | bandwidth-bound | "
          f"{t * 1e3:.1f} ms ({17.5e9 / 3.35e12 * 1e3:.1f} ms byte floor) |")


if __name__ == "__main__":
    main()
