"""The shapes calibration measures: the projections of real models at TP 1-8, serving-sized m.

GEMM n and k come from Llama-3.1-8B / 70B-class projections (qkv, o, gate-up, down) sharded by
TP; m spans decode batches (1-256 rows) and prefill chunks (512-8192 tokens). On a CPU the grid
is scaled down (the same shapes would take minutes), keeping the small-m / large-m structure.
"""
from __future__ import annotations

from dataclasses import dataclass

# (hidden, ffn, heads, kv_heads, head_dim) of the model families whose projections we measure
_FAMILIES = {"8b": (4096, 14336, 32, 8, 128), "70b": (8192, 28672, 64, 8, 128),
             "1b": (2048, 8192, 32, 8, 64), "tiny": (1024, 2816, 16, 4, 64)}


def projections(family: str, tp: int) -> list[tuple[int, int]]:
    """(n, k) of the four per-layer GEMMs of one TP rank."""
    h, f, H, kvh, d = _FAMILIES[family]
    return [((H + 2 * kvh) * d // tp, h), (h, H * d // tp), (2 * f // tp, h), (h, f // tp)]


@dataclass(frozen=True)
class Grid:
    name: str
    gemm_m: tuple[int, ...]
    gemm_nk: tuple[tuple[int, int], ...]
    prefill: tuple[tuple[int, int], ...]          # (batch, seq)
    decode: tuple[tuple[int, int], ...]           # (batch, kv_len)
    heads: tuple[tuple[int, int, int], ...]       # (heads, kv_heads, head_dim): GQA ratios
    copy_mib: int
    reps: int


def _nk(families, tps, limit_k=None):
    out = []
    for fam in families:
        for tp in tps:
            for n, k in projections(fam, tp):
                if (n, k) not in out and (limit_k is None or n * k <= limit_k):
                    out.append((n, k))
    return tuple(out)


def grid(device: str, quick: bool) -> Grid:
    if device == "cpu":
        if quick:
            return Grid("quick", (1, 4, 16, 64, 256, 1024), _nk(["tiny"], [1, 4]),
                        ((1, 128), (1, 512), (2, 256), (1, 1024)),
                        ((1, 256), (8, 512), (16, 1024), (4, 2048)),
                        ((16, 4, 64), (8, 8, 64)), 64, 5)
        return Grid("full", (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
                    _nk(["tiny", "1b"], [1, 2, 4, 8], limit_k=2 ** 24),
                    ((1, 128), (1, 256), (1, 512), (2, 512), (1, 1024), (1, 2048), (4, 256)),
                    ((1, 256), (1, 2048), (8, 512), (16, 1024), (32, 256), (4, 4096), (64, 512)),
                    ((16, 4, 64), (16, 16, 64), (32, 4, 64)), 128, 5)
    if quick:
        return Grid("quick", (1, 8, 32, 128, 512, 2048, 8192), _nk(["8b"], [1, 8]),
                    ((1, 512), (1, 2048), (4, 1024), (1, 8192)),
                    ((1, 1024), (16, 2048), (64, 4096), (128, 1024)),
                    ((32, 8, 128),), 1024, 10)
    return Grid("full", (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192),
                _nk(["8b", "70b"], [1, 2, 4, 8]),
                ((1, 256), (1, 512), (1, 1024), (1, 2048), (1, 4096), (1, 8192), (4, 1024),
                 (8, 512), (2, 16384)),
                ((1, 512), (1, 8192), (8, 1024), (16, 2048), (32, 4096), (64, 1024), (64, 8192),
                 (128, 2048), (256, 512)),
                ((32, 8, 128), (64, 8, 128), (32, 32, 128), (8, 1, 128)), 2048, 20)
