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

Scalar look-ups are written out with ``bisect`` (scipy's interpolators cost ~50 us a call; this
is the step model's inner loop).
"""
from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["LogGrid"]


class LogGrid:
    """Times ``seconds`` (shape ``len(a) for a in axes``) measured at every combination of the
    ``axes`` values (each strictly increasing and > 0)."""

    def __init__(self, axes: Sequence[Sequence[float]], seconds):
        self.axes = tuple(np.asarray(a, dtype=float) for a in axes)
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

    def _inside(self, point: Sequence[float]) -> float:
        """Multilinear interpolation of log time at a point inside the grid (log coordinates)."""
        lo_idx, weights = [], []
        for la, x in zip(self._log_axes, point):
            lx = math.log(x)
            j = min(max(bisect_right(la, lx) - 1, 0), max(len(la) - 2, 0))
            if len(la) == 1:
                lo_idx.append((0, 0))
                weights.append(0.0)
                continue
            w = (lx - la[j]) / (la[j + 1] - la[j])
            lo_idx.append((j, j + 1))
            weights.append(min(max(w, 0.0), 1.0))
        total = 0.0
        for corner in range(1 << len(point)):
            idx, w = [], 1.0
            for d, ((a, b), wd) in enumerate(zip(lo_idx, weights)):
                if corner >> d & 1:
                    idx.append(b)
                    w *= wd
                else:
                    idx.append(a)
                    w *= 1.0 - wd
            if w:
                total += w * self._log_t[tuple(idx)]
        return math.exp(total)

    def __call__(self, point: Sequence[float],
                 model: Callable[[Sequence[float]], float] | None = None) -> float:
        """Seconds at ``point``; outside the grid ``model`` (the analytical time of a shape)
        carries the edge time. Without a model, the edge time is used as is."""
        edge = [min(max(x, a[0]), a[-1]) for x, a in zip(point, self.axes)]
        t = self._inside(edge)
        if model is None or all(e == x for e, x in zip(edge, point)):
            return t
        return t * model(point) / model(edge)


def fill_log_grid(axes: Sequence[Sequence[float]], seconds) -> tuple[np.ndarray, int]:
    """A grid with holes (NaN: shapes not measured, or held out of a fit) made whole: each hole
    takes the mean of the log-log linear interpolations along every axis where its line has
    measurements on both sides, repeated until no hole has any (then the nearest measurement
    along the first axis that has one). Returns the filled times and the count of holes."""
    log_axes = [np.log(np.asarray(a, dtype=float)) for a in axes]
    t = np.log(np.asarray(seconds, dtype=float))
    holes = int(np.isnan(t).sum())
    for between in (True, False):
        while np.isnan(t).any():
            total, count = np.zeros_like(t), np.zeros_like(t)
            for d, la in enumerate(log_axes):
                moved = np.moveaxis(t, d, -1)
                est = np.full(moved.shape, np.nan)
                for idx in np.ndindex(moved.shape[:-1]):
                    line = moved[idx]
                    known = ~np.isnan(line)
                    if known.sum() == 0 or known.all():
                        continue
                    x, y = la[known], line[known]
                    gaps = ~known & (la > x[0]) & (la < x[-1]) if between else ~known
                    est[idx][gaps] = np.interp(la[gaps], x, y)
                est = np.moveaxis(est, -1, d)
                ok = ~np.isnan(est) & np.isnan(t)
                total[ok] += est[ok]
                count[ok] += 1
                if not between and ok.any():
                    break        # nearest along one axis is enough
            if not count.any():
                break
            t = np.where(count > 0, total / np.maximum(count, 1), t)
    return np.exp(t), holes
