"""Timing shapes on one device: a :class:`Job` per shape, :class:`Timer` to time them (CPU:
repeats interleaved across shapes in round-robin passes; CUDA: graph replays between events),
and each shape's time and noise from its repeats (outliers rejected).

No torch import of its own: the :class:`Timer` is handed the torch module (or None, in tests
that drive it on a synthetic clock).
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Job", "Timer", "copies", "spread", "inliers", "summarise", "ROTATE_BYTES", "MAX_COPIES",
           "OUTLIER_MADS", "GROUP_BYTES"]

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


#: a repeat further than this many standard deviations (estimated robustly, as 1.4826 x the
#: median absolute deviation) from its shape's median is an outlier: a burst of another
#: process, a page fault, a timer tick. Three is the usual robust-statistics cut: it keeps
#: 99.7% of Gaussian jitter and drops what is plainly something else.
OUTLIER_MADS = 3.0
#: operand bytes held at once by one round-robin group on a CPU, about: the full CPU grid's
#: 6-9 GiB of inputs is timed in 7-9 groups, each interleaving shapes from all over the grid
GROUP_BYTES = 1 << 30


def spread(times) -> float:
    """The relative spread of one shape's repeats: interquartile range / median (0 for fewer
    than two). For Gaussian jitter it is 1.35 x the coefficient of variation; unlike the
    standard deviation, one wild repeat cannot dominate it, and unlike the MAD it does not
    read zero when two clusters of repeats (contended and not) are tied around the median."""
    if len(times) < 2:
        return 0.0
    q1, q2, q3 = np.percentile(times, [25, 50, 75])
    return float((q3 - q1) / q2) if q2 > 0 else 0.0


def inliers(times) -> list[float]:
    """The repeats within :data:`OUTLIER_MADS` robust standard deviations of the median (the
    MAD is floored at 0.1% of the median, so identical repeats keep each other)."""
    med = float(np.median(times))
    mad = max(float(np.median(np.abs(np.asarray(times) - med))), 1e-3 * med)
    return [t for t in times if abs(t - med) <= OUTLIER_MADS * 1.4826 * mad]


def summarise(times) -> tuple[float, float]:
    """(seconds, noise) of one shape from its repeats: the median of the repeats that are not
    outliers, and the spread of all of them (see :func:`spread`)."""
    return float(np.median(inliers(times))), spread(times)


@dataclass
class Job:
    """One shape to time: the row it becomes (``seconds`` and ``noise`` are added), how to build
    the callables that run it (several on a GPU: inputs rotated past the L2), the bytes its
    inputs hold, and how many kernels one call runs (the launch loop: 200).

    ``optional``: a failure to build or run it (no fp8 GEMM in this torch/driver build) skips
    every later job of its op and precision with a warning, instead of stopping calibration.
    ``describe``: extra row fields from the built callables (the reference's kernel count)."""
    row: dict
    make: Callable[[], list]
    nbytes: float = 0
    per_call: int = 1
    optional: bool = False
    describe: Callable[[list], dict] | None = None


class Timer:
    """Seconds per call of shapes (:class:`Job`) on one device, with a noise figure per shape.

    CPU (:meth:`run`): every shape is built and warmed up twice, then timed in ``reps``
    round-robin passes over all the shapes (each pass starting at a different shape), so a
    burst of load from another process slows many shapes a little instead of one shape a lot.
    A shape's time is the median of its repeats less outliers (:func:`summarise`).

    CUDA: shape by shape (a GPU is rarely shared, and rotated inputs of 256 MiB per shape
    cannot all be held at once): the calls are captured back to back in a CUDA graph,
    ``inner`` of them (enough for about a millisecond), and the graph is replayed ``reps``
    times between CUDA events; the result is the minimum over replays of the time per call.
    Serving engines launch decode iterations as CUDA graphs too, so this is GPU time without
    the Python dispatch cost of eager torch (tens of microseconds per op, which would otherwise
    be fitted as "kernel overhead"). Where capture fails, eager back-to-back calls between
    events are timed instead."""

    def __init__(self, torch, device: str, reps: int, target_s: float = 1e-3,
                 budget_s: float = 0.25):
        self.torch, self.device, self.reps = torch, device, reps
        self.target_s, self.budget_s = target_s, budget_s
        self.graphs = 0          # how many timings used CUDA graphs (provenance)
        self.eager = 0
        self.clock = time.perf_counter    # wall clock of CPU timings (tests replace it)

    def __call__(self, fn) -> float:
        """Seconds per call of one callable (or a list over rotated inputs): the minimum of
        ``reps`` back-to-back repeats (CPU, after two warm-ups) or CUDA-graph replays."""
        return min(self.times(fn))

    def times(self, fn) -> list[float]:
        fns = list(fn) if isinstance(fn, (list, tuple)) else [fn]
        if self.device.startswith("cuda"):
            return self._cuda(fns)
        for i in range(2):                            # two warm-ups
            fns[i % len(fns)]()
        ts = []
        for i in range(self.reps):
            t = self.clock()
            fns[i % len(fns)]()
            ts.append(self.clock() - t)
        return ts

    def _cuda(self, fns) -> list[float]:
        """Seconds per call of each graph replay (or eager run where capture fails)."""
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
            return [eager(inner) for _ in range(reps)]
        self.graphs += 1
        ts = []
        for _ in range(reps):
            start.record()
            g.replay()
            end.record()
            end.synchronize()
            ts.append(start.elapsed_time(end) / 1e3 / inner)
        del g
        return ts

    def run(self, jobs, stage: str = "timing", progress=None) -> list[dict]:
        """Time ``jobs``; one row per job (optional jobs that failed are left out)."""
        with self.torch.no_grad() if self.torch else contextlib.nullcontext():
            if self.device.startswith("cuda"):
                return self._one_by_one(jobs, stage, progress)
            return self._round_robin(jobs, stage, progress)

    def _build(self, job: Job, skipped: set) -> tuple[list, dict] | None:
        if (job.row["op"], job.row["precision"]) in skipped:
            return None
        try:
            fns = job.make()
            extra = job.describe(fns) if job.describe else {}
            if not self.device.startswith("cuda"):
                for i in range(2):                    # two warm-ups
                    fns[i % len(fns)]()
            return fns, extra
        except RuntimeError as e:
            self._skip(job, e, skipped)
            return None

    @staticmethod
    def _skip(job: Job, e: RuntimeError, skipped: set) -> None:
        """An optional job failed (e.g. no fp8 GEMM in this torch/driver build): skip its op
        and precision from now on, with a warning. Any other failure propagates."""
        if not job.optional:
            raise e
        key = (job.row["op"], job.row["precision"])
        skipped.add(key)
        print(f"\ncalibrate: warning: {key[1]} {key[0]}s skipped ({str(e).splitlines()[0]})",
              file=sys.stderr)

    def _row(self, job: Job, times, extra: dict) -> dict:
        seconds, noise = summarise([t / job.per_call for t in times])
        return {**job.row, **extra, "seconds": seconds, "noise": float(f"{noise:.4g}"),
                "repeats": [t / job.per_call for t in times]}

    def _one_by_one(self, jobs, stage, progress) -> list[dict]:
        rows, skipped = [], set()
        for i, job in enumerate(jobs):
            built = self._build(job, skipped)
            if built is not None:
                try:
                    ts = self.times(built[0])
                except RuntimeError as e:
                    self._skip(job, e, skipped)
                    ts = []
                if ts:   # a GPU shape's time stays its best replay (a dedicated device)
                    rows.append({**self._row(job, ts, built[1]),
                                 "seconds": min(ts) / job.per_call})
                built = None                           # free this shape's inputs
            if progress:
                progress(stage, i + 1, len(jobs))
        return rows

    def _groups(self, jobs) -> list[list[int]]:
        """Job indices in groups of about :data:`GROUP_BYTES` of inputs, each drawn from across
        the whole list (job i goes to group i mod the number of groups)."""
        n = max(1, min(len(jobs), math.ceil(sum(j.nbytes for j in jobs) / GROUP_BYTES)))
        return [list(range(g, len(jobs), n)) for g in range(n)]

    def _round_robin(self, jobs, stage, progress) -> list[dict]:
        out: dict[int, dict] = {}
        skipped: set = set()
        groups = self._groups(jobs)
        done, total = 0, len(jobs) * self.reps
        for group in groups:
            built = {i: b for i in group if (b := self._build(jobs[i], skipped)) is not None}
            order = list(built)
            times: dict[int, list[float]] = {i: [] for i in order}
            for rep in range(self.reps):
                # each pass starts elsewhere, so a burst across the end of one pass and the
                # start of the next does not hit the same shapes twice
                start = rep * len(order) // max(1, self.reps)
                for i in order[start:] + order[:start]:
                    fns = built[i][0]
                    t = self.clock()
                    fns[rep % len(fns)]()
                    times[i].append(self.clock() - t)
                done += len(group)
                if progress:
                    progress(stage, done, total)
            for i in order:
                out[i] = self._row(jobs[i], times[i], built[i][1])
            built = None
        return [out[i] for i in sorted(out)]
