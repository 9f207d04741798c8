"""Which measured kernel grid serves a shape, and how a grid's time becomes a step model's.

:mod:`hetsim.perf.kernels` holds a runtime profile's grids (op x key over axes). This module
picks the grid for a shape hetsim asks about and reads it, the analytical model (the roofline
of :mod:`hetsim.perf.ops`) carrying the time wherever the grid does not reach:

- past a grid's top edge, ``t(edge) x analytical(shape) / analytical(edge)`` (``LogGrid``'s
  rule: continuous at the edge, growing with work as the roofline does); below its bottom edge
  (fewer rows, a shorter prompt, a smaller message than any measured) the smallest measured
  shape's time (``lift``);
- for a key the profile did not measure (attention heads per rank, say), the nearest measured
  key, read at the batch of equal work and scaled by the analytical model's ratio between
  the two shapes where more than the batch differs (``nearest_scaling``);
- for a shape the grid's axes cannot express (ragged prompt batches, prompt chunks after cached
  context), an equal-work equivalent shape on the grid, scaled by the analytical model's ratio
  between the real shape and that equivalent.

Nothing here knows a model: :class:`hetsim.perf.PerfModel` (through
:class:`hetsim.perf.measured_ops.MeasuredOps`) and :class:`hetsim.perf.StepModel` hand in the
key and the analytical function.
"""
from __future__ import annotations


import math
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence

from .grid import LogGrid
from .kernels import KernelGrid, MeasuredKernels

__all__ = ["GEMM_DTYPES", "gemm_dtypes", "nearest_key", "lift", "first_grid", "ContextForm",
           "DecodeForm", "UniformForm", "nearest_scaling"]

#: (compute format, weight format) -> the kernel tables' dtypes that time that GEMM, in order
#: of preference. NOTE: fp8 weights are read as per-tensor fp8 ('fp8'), block-scaled fp8
#: ('fp8-block') only where a profile has no per-tensor grid; ``weights: fp8-block`` (a
#: block-scaled checkpoint: DeepSeek-V3, Qwen3 FP8) reads the block-scaled kernels first.
#: Weight-only formats run 16-bit math on 4/8-bit weights (the tables' wXa16 kernels).
GEMM_DTYPES: dict[tuple[str, str], tuple[str, ...]] = {
    ("bf16", "bf16"): ("bf16",), ("fp16", "fp16"): ("fp16", "bf16"),
    ("fp8", "fp8"): ("fp8", "fp8-block"), ("fp8", "fp8-block"): ("fp8-block", "fp8"),
    ("fp8", "fp8-static"): ("fp8", "fp8-block"),
    ("fp4", "fp4"): ("fp4",),
    ("int8", "int8"): ("w8a8-int-smoothquant",),
    ("bf16", "int8"): ("w8a16-int",), ("fp16", "int8"): ("w8a16-int",),
    ("bf16", "int4"): ("w4a16-int",), ("fp16", "int4"): ("w4a16-int",),
    ("bf16", "fp4"): ("w4a16-mxfp4",), ("fp16", "fp4"): ("w4a16-mxfp4",),
    ("fp8", "int4"): ("w4a8-int-fp8",), ("fp8", "fp4"): ("w4a8-mxfp4",),
    # a checkpoint's own MXFP4 experts (gpt-oss): the tables' mxfp4 weight-only kernels
    ("bf16", "mxfp4"): ("w4a16-mxfp4",), ("fp16", "mxfp4"): ("w4a16-mxfp4",),
    ("fp8", "mxfp4"): ("w4a8-mxfp4",),
    # a checkpoint's own group-scaled int4 experts (Kimi-K2.5): the tables' int4 weight-only
    # kernels (aiconfigurator times them with 128-wide groups: the scales are 3% of the bytes
    # where Kimi's 32-wide groups make them 11%)
    ("bf16", "int4-g32"): ("w4a16-int",), ("fp16", "int4-g32"): ("w4a16-int",),
    ("fp8", "int4-g32"): ("w4a8-int-fp8",),
}


def gemm_dtypes(precision: str, weight_precision: str | None) -> tuple[str, ...]:
    """The table dtypes of a GEMM in ``precision`` on ``weight_precision`` weights (none: no
    table times that pair)."""
    return GEMM_DTYPES.get((precision, weight_precision or precision), ())


def lift(point: Sequence[float], axes) -> tuple:
    """``point`` raised to each axis's smallest measured value.

    NOTE: below a grid the time is the smallest measured shape's. Such kernels are
    launch-bound, and scaling the edge time down by the analytical model (LogGrid's carry) lets
    more work cost less wherever the model's shape differs from the kernel's (a 395-row GEMM of
    n = k = 1 was cheaper than a 394-row one); only past a grid's top does the model carry it."""
    return tuple(x if x >= a[0] else float(a[0]) for x, a in zip(point, axes))


def first_grid(kernels: MeasuredKernels, op: str, keys: Sequence[tuple]):
    """The grid of the first of ``keys`` the profile measured, or None."""
    for key in keys:
        g = kernels.get(op, key)
        if g is not None:
            return g
    return None


def nearest_key(keys: Sequence[tuple], want: tuple, same: Sequence[int],
                near: Sequence[int]) -> tuple | None:
    """The key among ``keys`` equal to ``want`` at the positions ``same`` and nearest to it at
    the positions ``near``: the same ratio of the first two ``near`` values first (heads / KV
    heads: the GQA ratio), then the least log distance summed over ``near``, then the smaller
    key; None if no key matches ``same``."""
    def distance(k):
        d = sum(abs(math.log(k[i] / want[i])) for i in near)
        ratio = len(near) < 2 or k[near[0]] * want[near[1]] == want[near[0]] * k[near[1]]
        return (not ratio, round(d, 12), k)
    pool = [k for k in keys if all(k[i] == want[i] for i in same)
            and all(k[i] > 0 for i in near)]
    return min(pool, key=distance) if pool else None


def split_keys(keys: Iterable[tuple], key: tuple) -> list[tuple]:
    """Those of the MoE ``keys`` (dtype, hidden, inter, topk, experts, tp, ep, distribution)
    that hold ``key``'s layer split over the same tp x ep GPUs another way, the nearest tp
    first."""
    *layer, tp, ep, dist = key
    found = [k for k in keys if list(k[:5]) == layer and k[7] == dist
             and k[5] * k[6] == tp * ep and k[5:7] != (tp, ep)]
    return sorted(found, key=lambda k: (abs(math.log(k[5] / tp)), k[5]))


class UniformForm:
    """A grid over one work axis (all-reduce bytes, MoE tokens), ``analytical(x)`` carrying it
    past the top."""

    def __init__(self, grid: LogGrid, analytical: Callable[[float], float]):
        self.grid, self.analytical = grid, analytical

    def __call__(self, x: float) -> float:
        return self.grid(lift((x,), self.grid.axes), lambda p: self.analytical(p[0]))


class _Lines:
    """A (batch, y) grid cut once per batch value to a 1-D log-log line over y (the two
    neighbouring batch rows interpolated in log batch), so a look-up is one bisect, one lerp and
    one exp; it equals ``LogGrid``'s bilinear value to rounding. The batch is read at ``scale``
    x itself; points below the grid are ``lift`` ed; past its top, ``carry(lifted batch, y,
    clamped batch, clamped y)`` scales the clamped point's time (``LogGrid``'s rule)."""

    def __init__(self, kernel: KernelGrid, scale: float):
        self.grid, self.scale = kernel.grid, scale
        self._lb, self._ly = ([math.log(v) for v in a] for a in kernel.axes)
        self._lt = [[math.log(v) for v in row] for row in kernel.seconds]
        self._y0, self._y1 = float(kernel.axes[1][0]), float(kernel.axes[1][-1])
        self._rows: dict[int, tuple] = {}

    def _row(self, batch: int) -> tuple:
        lb, ly, lt = self._lb, self._ly, self._lt
        axis = self.grid.axes[0]
        lifted = float(max(batch * self.scale, axis[0]))
        b = min(lifted, float(axis[-1]))
        if len(lb) == 1:
            line = list(lt[0])
        else:
            x = math.log(b)
            j = min(max(bisect_right(lb, x) - 1, 0), len(lb) - 2)
            w = (x - lb[j]) / (lb[j + 1] - lb[j])
            line = [(1.0 - w) * lt[j][i] + w * lt[j + 1][i] for i in range(len(ly))]
        slopes = [(line[i + 1] - line[i]) / (ly[i + 1] - ly[i]) for i in range(len(ly) - 1)]
        row = (line, slopes, lifted, b)
        self._rows[batch] = row
        return row

    def at(self, batch: int, y: float, carry) -> float:
        line, slopes, lifted, b = self._rows.get(batch) or self._row(batch)
        ly = self._ly
        x = math.log(y) if y > 0 else ly[0]
        if x <= ly[0]:
            j, xc, inside = 0, ly[0], True        # below the grid: the smallest measured y
        elif x >= ly[-1]:
            j, xc, inside = len(ly) - 2, ly[-1], x == ly[-1]
        else:
            j, xc, inside = bisect_right(ly, x) - 1, x, True
        t = math.exp(line[j] + (xc - ly[j]) * slopes[j]) if slopes else math.exp(line[0])
        if inside and lifted == b:
            return t
        y = max(y, self._y0)
        return t * carry(lifted, y, b, min(y, self._y1))

    def slow(self, batch: int, y: float, model) -> float:
        """The same time through ``LogGrid`` (the reference the fast path is tested against)."""
        return self.grid(lift((batch * self.scale, y), self.grid.axes), model)


class ContextForm:
    """Context (prefill) attention of prompt chunks ``[(q_len, kv_len)]`` from a (batch, isl)
    grid of causal prompts without cached context. ``theirs(chunks)`` is the analytical time of
    the grid's key (it carries the grid past its top), ``ours(chunks)`` of ours; a nearest key
    is read at ``scale`` x the batch and multiplied by ``ratio`` (``nearest_scaling``).

    NOTE (equal-work rule): the B chunks are read as B prompts of L tokens, L chosen so that they
    hold as many causal (query, key) pairs as the chunks' new tokens among themselves
    (sum q(q+1)/2 = B L(L+1)/2), and the grid's time there is scaled by the analytical model's
    ratio between the real chunks and that equivalent: t = G(B, L) x A(chunks) / A(B x (L, L)).
    A batch of equal prompts without cached context is read exactly at the grid; ragged prompts
    keep the measured kernel's efficiency at equal work; the prior context of a chunk
    (kv_len > q_len, chunked prefill) is carried by the analytical model, so its cost grows with
    the context as the roofline's does (memory and the q x prior pairs).
    """

    def __init__(self, kernel: KernelGrid, theirs, ours, scale: float = 1.0,
                 ratio: float = 1.0):
        self.theirs, self.ours, self.scale, self.ratio = theirs, ours, scale, ratio
        self._lines = _Lines(kernel, scale)

    @staticmethod
    def equivalent(chunks) -> tuple[int, float]:
        """(B, L): B prompts of L tokens with the chunks' own causal pairs."""
        b, q0 = len(chunks), chunks[0][0]
        if all(q == q0 for q, _ in chunks):
            return b, float(q0)
        pairs = sum(q * (q + 1) / 2 for q, _ in chunks) / b
        return b, (math.sqrt(1 + 8 * pairs) - 1) / 2

    def _carry(self, lifted, y, b, yc) -> float:
        return _uniform(self.theirs, (lifted, y)) / _uniform(self.theirs, (b, yc))

    def __call__(self, chunks, slow: bool = False) -> float:
        if not chunks:
            return 0.0
        b, length = self.equivalent(chunks)
        if slow:
            t = self._lines.slow(b, length, lambda p: _uniform(self.theirs, p))
        else:
            t = self._lines.at(b, length, self._carry)
        if self.ratio != 1.0:
            t *= self.ratio
        if not all(q == length and kv == q for q, kv in chunks):
            ours = self.ours          # ragged, or after cached context
            t *= ours(chunks) / _uniform(ours, (b, length))
        return t


def _uniform(f, point):
    """``f`` of ``point[0]`` prompts of ``point[1]`` tokens (the batch rounded: at least one)."""
    return f([(point[1], point[1])] * max(1, round(point[0])))


class DecodeForm(_Lines):
    """Generation (decode) attention: ``batch`` sequences of ``total_kv`` cached tokens in all,
    read at (batch x ``scale``, mean KV = total_kv / batch) on a (batch, kv) grid, times
    ``ratio``; ``theirs(batch, total_kv)`` is the grid key's analytical time (the carry).

    NOTE: the hot path (once per decode iteration): a look-up on the batch's cached line
    (``_Lines``), no allocation, unless the point lies past the grid's top.
    """

    def __init__(self, kernel: KernelGrid, theirs, scale: float = 1.0, ratio: float = 1.0):
        super().__init__(kernel, scale)
        self.theirs, self.ratio = theirs, ratio

    def _carry(self, lifted, kv, b, kc) -> float:
        return self.theirs(lifted, lifted * kv) / self.theirs(b, b * kc)

    def __call__(self, batch: int, total_kv: float) -> float:
        t = self.at(batch, total_kv / batch, self._carry)
        return t * self.ratio if self.ratio != 1.0 else t

    def slow(self, batch: int, total_kv: float) -> float:
        """The same time through ``LogGrid`` (the reference the fast path is tested against)."""
        theirs = self.theirs
        return super().slow(batch, total_kv / batch,
                            lambda p: theirs(p[0], p[0] * p[1])) * self.ratio


def nearest_scaling(grid: LogGrid, phase: str, shape, theirs: tuple[int, int], heads: int,
                    kv_heads: int) -> dict:
    """How a grid measured at ``theirs`` = (heads, KV heads) serves (heads, kv_heads): the
    batch scaled to equal work (``scale``), and a constant ``ratio`` for what that leaves.

    NOTE: heads x batch is the work an attention kernel spreads over, so a nearest key is read
    at the batch that gives it the same work in the resource that bounds the phase: query heads
    in context (FLOPs), KV heads in decode (bytes read; MLA's one latent: the same batch). What
    that leaves (KV bytes in context, query FLOPs in decode, where the GQA ratios differ) is
    the analytical model's ratio between the two shapes at the grid's top corner (largest batch
    and length, where work, not launch cost, sets the time): one constant per model. A ratio
    taken at each shape instead moved with the model's wave quantization faster than a
    launch-bound grid grows, so more work could cost less (found by the property test)."""
    h, kvh = theirs
    scale = heads / h if phase == "context" else kv_heads / kvh
    if h * kv_heads == heads * kvh:       # the same GQA ratio: scaling the batch is all
        return {"scale": scale, "ratio": 1.0}
    b, y = (float(a[-1]) for a in grid.axes)
    ours, base = shape(heads, kv_heads), shape(h, kvh)
    if phase == "context":
        ratio = _uniform(ours, (b / scale, y)) / _uniform(base, (b, y))
    else:
        ratio = ours(b / scale, b / scale * y) / base(b, b * y)
    return {"scale": scale, "ratio": ratio}
