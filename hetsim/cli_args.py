"""The command line's argument types and shared flags (``--set``, ``--executor``, tolerances,
counts, knobs): each a one-line usage error on bad text, never a traceback."""
from __future__ import annotations

import argparse

from .errors import ConfigError

__all__ = ["set_arg", "overrides", "executor", "check_executor_flags", "add_set",
           "add_executor", "pct", "positive_int", "knobs", "tune_arg"]


def set_arg(text: str):
    """``--set PATH=VALUE`` (VALUE read as YAML)."""
    from .overrides import parse_assignment
    try:
        return parse_assignment(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(e.message) from None


def overrides(args) -> dict:
    """``--set`` pairs in the order given (a path set twice: the last wins)."""
    return dict(args.set or ())


def executor(args):
    """The executor ``--executor/--jobs/--address`` name (a context manager)."""
    from .executors import make_executor
    return make_executor(args.executor, args.jobs, args.address)


def check_executor_flags(args) -> None:
    if args.address and args.executor != "ray":
        raise ConfigError("--address is for --executor ray", path="--address")
    if args.address and args.jobs:
        raise ConfigError("--jobs sizes a local Ray instance; a cluster at --address has its "
                          "own CPUs", path="--jobs")


def add_set(p) -> None:
    p.add_argument("--set", action="append", type=set_arg, metavar="PATH=VALUE",
                   help="set a key path first (repeatable; VALUE in YAML): e.g. --set "
                   "workload.arrival.rate_rps=12 --set placements.NAME.pools.decode.instances=4")


def add_executor(p) -> None:
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where simulations run: local processes (default) or a Ray cluster "
                   "(pip install 'hetsim[ray]'); results are identical on either")
    p.add_argument("--jobs", type=lambda t: positive_int(t, most=4096), metavar="N",
                   help="local: worker processes (default 1: this process); ray: CPUs of a "
                   "local Ray instance")
    p.add_argument("--address", metavar="ADDR", help="ray: the cluster (auto, host:port, "
                   "ray://host:port; default: $RAY_ADDRESS, else start a local Ray)")


def pct(text: str, positive: bool = False) -> float:
    """A tolerance: ``5%`` or ``0.05``; >= 0 (> 0 where ``positive``) and below 100%."""
    t = text.strip()
    try:
        v = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        v = float("nan")
    if not (0 < v < 1 if positive else 0 <= v < 1):
        raise argparse.ArgumentTypeError(f"not a tolerance: {text!r} (e.g. 5% or 0.05; "
                                         f"{'above 0' if positive else 'at least 0'} and "
                                         f"below 100%)")
    return v


def positive_int(text: str, most: int | None = None) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1 or (most is not None and v > most):
        limit = f"from 1 to {most}" if most else ">= 1"
        raise argparse.ArgumentTypeError(f"must be a whole number {limit}, got {text!r}")
    return v


def knobs(knobs: dict) -> str:
    """``max_seqs=64 chunked_prefill=true`` (YAML's spelling of booleans)."""
    return " ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                    for k, v in knobs.items())


def tune_arg(text: str) -> tuple[str, list]:
    """``max_seqs=64,128`` -> ("max_seqs", [64, 128]) (argparse reports a ValueError's text)."""
    from .goodput_search import TUNABLE
    key, eq, values = text.partition("=")
    if key not in TUNABLE or not eq or not values:
        raise argparse.ArgumentTypeError(f"expected KNOB=V1,V2,... with KNOB one of "
                                         f"{', '.join(TUNABLE)}, got {text!r}")
    out = []
    for v in values.split(","):
        if key == "chunked_prefill":
            if v not in ("true", "false"):
                raise argparse.ArgumentTypeError(f"chunked_prefill takes true or false, got {v!r}")
            out.append(v == "true")
        else:
            out.append(positive_int(v))
    return key, out
