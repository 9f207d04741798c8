"""Workload files: CSV traces (timestamp_s,input_tokens,output_tokens) and length histograms
(tokens,weight), read strictly by :func:`hetsim.columns.read_columns` with the rules below."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..columns import read_columns
from ..errors import ConfigError
from .spec import MAX_TIME_S, MAX_TOKENS

__all__ = ["read_histogram", "read_trace"]

# What each CSV column must hold: a check on the parsed floats and the words for its error.
_RULES = {
    "count": (lambda x: (x >= 1) & (x <= MAX_TOKENS) & (x == np.floor(x)),
              f"must be a whole number from 1 to {MAX_TOKENS}"),
    "time": (lambda x: x >= 0, "must be a number >= 0"),
    "weight": (lambda x: x >= 0, "must be a number >= 0"),
}


def read_histogram(path: Path, where: str):
    """Token counts and their probabilities (weights normalised to sum to 1)."""
    cols = read_columns(path, {"tokens": _RULES["count"], "weight": _RULES["weight"]}, where)
    if cols["weight"].sum() <= 0:
        raise ConfigError("weights sum to 0; at least one must be > 0", file=str(path))
    return cols["tokens"], cols["weight"] / cols["weight"].sum()


def read_trace(path: Path, limit: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A trace's first ``limit`` rows (all without one): (arrival times relative to its first
    row, input tokens, output tokens)."""
    cols = read_columns(path, {"timestamp_s": _RULES["time"], "input_tokens": _RULES["count"],
                               "output_tokens": _RULES["count"]}, "workload.trace")
    t = cols["timestamp_s"]
    if t[-1] - t[0] > MAX_TIME_S:
        raise ConfigError(f"spans {t[-1] - t[0]:.3g} s, longer than the {MAX_TIME_S:g} s hetsim "
                          f"simulates", file=str(path), path="timestamp_s")
    back = np.flatnonzero(np.diff(t) < 0)
    if len(back):
        i = int(back[0]) + 1
        raise ConfigError(f"timestamps go back in time ({t[i - 1]:g} then {t[i]:g}); sort the "
                          f"trace by timestamp_s", file=f"{path}:{cols['line'][i]}",
                          path="timestamp_s")
    if limit is not None and limit > len(t):
        raise ConfigError(f"requests: {limit} but the trace {path} has {len(t)} rows",
                          path="workload.requests")
    n = len(t) if limit is None else limit
    return (t[:n] - t[0], cols["input_tokens"][:n].astype(np.int64),
            cols["output_tokens"][:n].astype(np.int64))

