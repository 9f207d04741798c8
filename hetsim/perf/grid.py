"""Measured kernel times on a grid of shapes, as a function of any shape.

A kernel table (aiconfigurator-core's, or a torch measurement) times one op on a grid: GEMM on
(m, n, k), decode attention on (batch, KV length), all-reduce on (message bytes,) and so on.
:class:`LogGrid` turns such a grid into a time for any shape:

- inside the grid, log time is interpolated multilinearly in log shape (times of kernels scale
  as powers of their dimensions, so straight lines in log-log space are the natural
  interpolant, and the measurement rules where it exists);
- outside it, the time at the nearest grid point is carried by the analytical model:
  ``t(x) = t(edge) x model(x) / model(edge)``, so time is continuous at the edge and grows with
  work as the roofline does (never a cliff, never a flat line past the last measurement);
- inside the grid the measurement is kept as measured, dips included. Lifting dips (a running
  maximum along each work axis) was tried on aiconfigurator's H100 vLLM bf16 GEMM table: it
  lifted 6k of 11k points (launch-bound shapes time within noise of each other) and raised the
  held-out error from 3.4% to 5.7% (MdAPE), so it is not done. Past the last measurement time
  grows as the model's does.

With a ``base`` (``LogGrid(axes, seconds, base=model)``, the analytical time of a shape) the
grid interpolates log(measured / base) instead and multiplies ``base(point)`` back in: the
model carries the structure it knows (wave quantization, tile padding, launch floors, a
window's saturation), the grid the smooth residual. On aiconfigurator-core's tables, held out
by shape, this takes attention's p90 error from 16-39% to 12-15% (H100 vLLM; DESIGN.md, "Kernel
databases"); past the edge it is the same carry as above (the edge ratio times the model).
The base is evaluated at every node once, when the grid is built, and at the query point only
on a look-up.

Scalar look-ups are written out with ``bisect`` (scipy's interpolators cost ~50 us a call; this
is the step model's inner loop).
"""
from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["LogGrid", "base_at_nodes", "fill_log_grid"]


class LogGrid:
    """Times ``seconds`` (shape ``len(a) for a in axes``) measured at every combination of the
    ``axes`` values (each strictly increasing and > 0)."""

    def __init__(self, axes: Sequence[Sequence[float]], seconds,
                 base: Callable[[Sequence[float]], float] | None = None):
        self.axes = tuple(np.asarray(a, dtype=float) for a in axes)
        self.base = base
        t = np.asarray(seconds, dtype=float)
        if t.shape != tuple(len(a) for a in self.axes):
            raise ValueError(f"times of shape {t.shape} for axes of {[len(a) for a in self.axes]}")
        for a in self.axes:
            if len(a) < 1 or a[0] <= 0 or np.any(np.diff(a) <= 0):
                raise ValueError("each axis must be > 0 and strictly increasing")
        if not np.all(np.isfinite(t)) or np.any(t <= 0):
            raise ValueError("times must be finite and > 0")
        self._log_axes = [[math.log(v) for v in a] for a in self.axes]
        self._log_t = np.log(t)
        if base is not None:     # the residual log(measured / base) at every node
            self._log_t = self._log_t - np.log(base_at_nodes(self.axes, base))
        # NOTE: look-ups read a flat Python list (indexing a numpy array per corner costs ~1 us)
        self._flat = self._log_t.ravel().tolist()
        self._strides = [s // self._log_t.itemsize for s in self._log_t.strides]
        self._bounds = [(float(a[0]), float(a[-1])) for a in self.axes]

    def _inside(self, point: Sequence[float]) -> float:
        """Multilinear interpolation of log time at a point inside the grid (log coordinates):
        the corners' flat offsets and weights are built one axis at a time."""
        corners = [(0, 1.0)]
        for la, stride, x in zip(self._log_axes, self._strides, point):
            if len(la) == 1:
                continue
            lx = math.log(x)
            j = min(max(bisect_right(la, lx) - 1, 0), len(la) - 2)
            w = min(max((lx - la[j]) / (la[j + 1] - la[j]), 0.0), 1.0)
            lo, hi = j * stride, (j + 1) * stride
            corners = [c for off, cw in corners
                       for c in ((off + lo, cw * (1.0 - w)), (off + hi, cw * w)) if c[1]]
        flat = self._flat
        return math.exp(sum(cw * flat[off] for off, cw in corners))

    def __call__(self, point: Sequence[float],
                 model: Callable[[Sequence[float]], float] | None = None) -> float:
        """Seconds at ``point``; outside the grid ``model`` (the analytical time of a shape)
        carries the edge time. Without a model, the edge time is used as is. A grid built
        with a ``base`` returns ``base(point)`` times the interpolated (inside) or edge
        (outside) ratio of measured to base time; ``model`` must then be None."""
        edge = [lo if x < lo else hi if x > hi else x for x, (lo, hi) in zip(point, self._bounds)]
        t = self._inside(edge)
        if self.base is not None:
            if model is not None:
                raise ValueError("a grid with a base carries its edges by it: no model")
            return t * self.base(point)
        if model is None or all(e == x for e, x in zip(edge, point)):
            return t
        return t * model(point) / model(edge)


def base_at_nodes(axes: Sequence[Sequence[float]], base: Callable[[Sequence[float]], float]
                  ) -> np.ndarray:
    """``base`` evaluated at every node of the grid (shape ``len(a) for a in axes``); each
    value must be finite and > 0."""
    axes = [np.asarray(a, dtype=float) for a in axes]
    out = np.empty([len(a) for a in axes])
    for idx in np.ndindex(out.shape):
        out[idx] = base(tuple(float(a[i]) for a, i in zip(axes, idx)))
    if not np.all(np.isfinite(out)) or np.any(out <= 0):
        raise ValueError("the base time must be finite and > 0 at every node")
    return out


def fill_log_grid(axes: Sequence[Sequence[float]], seconds,
                  base: Callable[[Sequence[float]], float] | None = None,
                  smoothest: bool = False, diagonals: bool = False
                  ) -> tuple[np.ndarray, int]:
    """A grid with holes (NaN: shapes not measured, or held out of a fit) made whole: each hole
    takes the mean of the log-log linear interpolations along every axis where its line has
    measurements on both sides, repeated until no hole has any (then the nearest measurement
    along the first axis that has one). Returns the filled times and the count of holes.

    With a ``base`` (the analytical time of a shape) the ratio measured / base is filled
    instead, so a hole past the measurements is carried by the base, not held flat. With
    ``diagonals``, the two diagonals of every pair of axes through a hole's immediate
    neighbours are directions too (in log-log space the anti-diagonal of batch x KV length is
    a line of equal work: a cliff there, such as a working set outgrowing the L2 cache, lies
    along it). With ``smoothest``, a hole takes the direction whose two bracketing
    measurements differ least (in log ratio) rather than the mean of all: a step along one
    direction (a kernel switch) then does not leak into its neighbours."""
    log_axes = [np.log(np.asarray(a, dtype=float)) for a in axes]
    t = np.log(np.asarray(seconds, dtype=float))
    log_base = 0.0 if base is None else np.log(base_at_nodes(axes, base))
    t = t - log_base
    holes = int(np.isnan(t).sum())
    while np.isnan(t).any():                 # holes bracketed in some direction
        found = _bracketed(log_axes, t) + (_diagonal(log_axes, t) if diagonals else [])
        est = np.array([e for e, _ in found])
        est[:, ~np.isnan(t)] = np.nan
        ok = ~np.isnan(est)
        if not ok.any():
            break
        if smoothest:
            jump = np.where(ok, np.array([j for _, j in found]), np.inf)
            pick = np.take_along_axis(est, jump.argmin(axis=0)[None], axis=0)[0]
            t = np.where(ok.any(axis=0), pick, t)
        else:
            t = np.where(ok.any(axis=0), np.nansum(est, axis=0) / np.maximum(ok.sum(axis=0), 1),
                         t)
    while np.isnan(t).any():                 # the rest: nearest along the first axis with one
        for d, la in enumerate(log_axes):
            moved = np.moveaxis(t.copy(), d, -1)
            for idx in np.ndindex(moved.shape[:-1]):
                line = moved[idx]
                known = ~np.isnan(line)
                if known.any() and not known.all():
                    line[~known] = np.interp(la[~known], la[known], line[known])
            got = np.moveaxis(moved, -1, d)
            if (np.isnan(t) & ~np.isnan(got)).any():
                t = np.where(np.isnan(t), got, t)
                break
        else:
            break
    return np.exp(t + log_base), holes


def _bracketed(log_axes, t) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per axis: (log-log interpolation of each hole between the nearest measurements on
    both sides along its line, the difference of those two), NaN and inf where none."""
    out = []
    for d, la in enumerate(log_axes):
        moved = np.moveaxis(t, d, -1)
        est = np.full(moved.shape, np.nan)
        jump = np.full(moved.shape, np.inf)
        for idx in np.ndindex(moved.shape[:-1]):
            line = moved[idx]
            known = ~np.isnan(line)
            if known.sum() < 2 or known.all():
                continue
            x, y = la[known], line[known]
            gaps = ~known & (la > x[0]) & (la < x[-1])
            est[idx][gaps] = np.interp(la[gaps], x, y)
            j = np.searchsorted(x, la[gaps])
            jump[idx][gaps] = np.abs(y[j] - y[j - 1])
        out.append((np.moveaxis(est, -1, d), np.moveaxis(jump, -1, d)))
    return out


def _diagonal(log_axes, t) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per pair of axes and each of its two diagonals: (the interpolation of each node between
    its two immediate diagonal neighbours, weighted by the first axis's spacing, the
    difference of those two), NaN and inf where a neighbour is missing."""
    out = []
    pad = np.pad(t, 1, constant_values=np.nan)
    for a in range(len(log_axes)):
        for b in range(a + 1, len(log_axes)):
            la = np.pad(log_axes[a], 1, mode="edge")
            w = (la[1:-1] - la[:-2]) / np.where(la[2:] > la[:-2], la[2:] - la[:-2], 1.0)
            w = w.reshape([-1 if d == a else 1 for d in range(t.ndim)])
            for sign in (1, -1):
                def shifted(step):
                    sl = [slice(1, -1)] * t.ndim
                    sl[a] = slice(1 + step, pad.shape[a] - 1 + step)
                    sl[b] = slice(1 + sign * step, pad.shape[b] - 1 + sign * step)
                    return pad[tuple(sl)]
                lo, hi = shifted(-1), shifted(1)
                jump = np.abs(hi - lo)
                out.append((lo + w * (hi - lo), np.where(np.isnan(jump), np.inf, jump)))
    return out
