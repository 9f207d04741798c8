"""When calibration refuses to write a profile: timings too noisy to trust, or a fit that
predicts held-out shapes (or whole reference iterations) worse than the profile it started
from. Both are decided before anything is written; ``--force`` writes anyway.

Pure functions over measurement rows and the accuracy table, so they are tested on synthetic
measurements, never on how busy the test machine happens to be.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["NOISE_LIMIT", "BUSY_LIMIT", "ACCURACY_MARGIN", "NAMES", "Noise", "noise",
           "refusals", "noise_line"]

#: refuse when the median, over the timings of a run, of their repeats' relative spread
#: (interquartile range / median) is above this. pyperf warns that a benchmark "may be
#: unstable" from a standard deviation of 10% of the mean; for Gaussian jitter IQR / median is
#: 1.35 x that ratio, so this is the same order, a little stricter. A median above it means
#: half the shapes were timed while something else competed (docs/calibration.md).
NOISE_LIMIT = 0.10

#: refuse CPU timings when other processes used more than this share of the host's CPU time
#: while they ran (:class:`hetsim.calibrate.measure.HostLoad`). torch runs a kernel on every
#: core; one that waits on a thread the scheduler took away pays a whole time slice, so a
#: steady load that the spread of repeats cannot see still fits a kernel floor of ~7 ms on a
#: 2-core VM whose committed profile has 61 us (benchmarks/calibration_noise.py). A tenth of
#: the host leaves room for background daemons, not for another job.
BUSY_LIMIT = 0.10

#: refuse when, for an op class on held-out shapes (or a reference iteration with --check),
#: the fitted profile's median error exceeds the base profile's by more than this (absolute:
#: 0.05 = five percentage points). On the CPU quick grid the attention and reference medians
#: are over 3-5 shapes each, so one shape moves them by several points; and on the committed
#: H100 and H200 fits whole decode iterations, already within 4-5% on the datasheet
#: (offsetting errors), end 2.5 and 1.1 points worse while every op class beneath them
#: improves: neither is a fit that made predictions worse.
ACCURACY_MARGIN = 0.05

#: what each accuracy entry measures, as tables and refusals name it
NAMES = {"gemm": "GEMM (held-out shapes)", "attention_prefill": "prefill attention (held-out)",
         "attention_decode": "decode attention (held-out)",
         "ref_prefill": "reference prefill iteration", "ref_decode": "reference decode iteration"}


@dataclass(frozen=True)
class Noise:
    """The spread of repeats over the timings that recorded one."""
    n: int              # timings with a recorded spread
    median: float
    p90: float
    worst: float
    worst_row: str      # which timing spread most


def _describe(r: dict) -> str:
    shape = " ".join(f"{k}={r[k]}" for k in ("m", "n", "k", "batch", "seq", "kv_len", "bytes")
                     if r.get(k) is not None)
    return f"{r['op']} {r['precision']} {shape}".strip()


def noise(rows) -> Noise | None:
    """The noise of a run from its rows' ``noise`` (None where no row recorded one: a CSV from
    before the column existed, or from another tool)."""
    have = [r for r in rows if r.get("noise") is not None]
    if not have:
        return None
    x = np.array([r["noise"] for r in have], dtype=float)
    w = have[int(np.argmax(x))]
    return Noise(len(have), float(np.median(x)), float(np.percentile(x, 90)), float(x.max()),
                 _describe(w))


def noise_line(n: Noise | None, busy: float | None = None) -> str:
    """The noise figures, one line."""
    spread = ("spread of repeats not recorded (no 'noise' column), not checked" if n is None
              else f"median spread of repeats {n.median:.1%} over {n.n} timings (limit "
                   f"{NOISE_LIMIT:.0%}; p90 {n.p90:.1%}, worst {n.worst:.1%}: {n.worst_row})")
    host = "" if busy is None else (f"; other processes used {busy:.0%} of the host's CPU "
                                    f"time while timing (limit {BUSY_LIMIT:.0%})")
    return f"noise: {spread}{host}"


def refusals(accuracy: dict, n: Noise | None, busy: float | None = None) -> list[str]:
    """Why the fitted profile must not be written; empty when it may be. ``busy``: the share
    of the host's CPU time other processes used during CPU timings (None: not measured)."""
    out = []
    if n is not None and n.median > NOISE_LIMIT:
        out.append(f"timings too noisy: median spread of repeats {n.median:.1%} > "
                   f"{NOISE_LIMIT:.0%}")
    if busy is not None and busy > BUSY_LIMIT:
        out.append(f"host busy: other processes used {busy:.0%} of its CPU time while "
                   f"timing (> {BUSY_LIMIT:.0%})")
    for cls, a in accuracy.items():
        if a["after_median"] > a["before_median"] + ACCURACY_MARGIN:
            out.append(f"{NAMES.get(cls, cls)} median error {a['after_median']:.1%} after "
                       f"calibration vs {a['before_median']:.1%} before (allowed "
                       f"+{ACCURACY_MARGIN * 100:.0f} points)")
    return out
