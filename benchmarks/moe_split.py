"""The equal-GPU rule for MoE layers, scored on aiconfigurator-core's own MoE tables.

A runtime profile times a MoE layer from a measured grid keyed by its (moe_tp, moe_ep) split.
Where a pool's split was not measured (gpt-oss on H200 TRT-LLM: only moe_tp = 1 is), hetsim reads
the same layer split over the same number of GPUs another way, the nearest moe_tp first
(``hetsim.perf.measured.split_keys``). This scores that rule where the answer is known: for every
measured split with moe_tp > 1, the rule's pick among the *other* measured splits against the
measured latency at the same token counts (balanced routing; of several kernels, the fastest;
each system x runtime at the version its profile is built from, ``kerneldb.select``).
"pred/meas" below 1: the substitute split runs faster than the one it stands for.

    pip install 'hetsim[aic]'
    python benchmarks/moe_split.py [--readme README.md]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from hetsim import kerneldb
from hetsim.errors import ConfigError
from hetsim.perf.measured import split_keys

sys.path.insert(0, str(Path(__file__).parent))
from kernel_accuracy import emit  # noqa: E402

MARK = ("<!-- moe_split -->", "<!-- /moe_split -->")
LAYER = ["moe_dtype", "hidden_size", "inter_size", "topk", "num_experts"]
SPLIT = ["moe_tp_size", "moe_ep_size"]


def measured(system: str, runtime: str) -> pd.DataFrame | None:
    """The balanced rows of one system x runtime's MoE table, the fastest kernel per shape."""
    tables = kerneldb.select(system, runtime)
    if "moe" not in tables.tables:
        return None
    df = kerneldb.read_op(tables, "moe")
    df = df[df["distribution"] == "balanced"]
    return df.groupby(LAYER + SPLIT + ["num_tokens"], as_index=False)["latency_s"].min()


def pairs(df: pd.DataFrame, pick: int = 0) -> pd.DataFrame:
    """For every layer x split with moe_tp > 1, the rule's substitute among the other measured
    splits (``pick`` -1: the farthest, pure expert parallel), at the token counts both
    measured (latency_s, latency_s_sub, sub_tp, sub_ep)."""
    groups = {(*k, "balanced"): g for k, g in df.groupby(LAYER + SPLIT)}
    out = []
    for key, a in groups.items():
        subs = split_keys(groups, key) if key[5] > 1 else []
        if subs:
            sub = subs[pick]
            m = a.merge(groups[sub][["num_tokens", "latency_s"]], on="num_tokens",
                        suffixes=("", "_sub"))
            out.append(m.assign(sub_tp=sub[5], sub_ep=sub[6]))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _cells(g: pd.DataFrame) -> str:
    r = g["latency_s_sub"] / g["latency_s"]
    e = (r - 1).abs()
    return f"{_pct(e.median())} | {_pct(e.quantile(0.9))} | {r.median():.2f}"


def block(near: pd.DataFrame, far: pd.DataFrame) -> str:
    """Per runtime x moe_tp over every system, then all: the rule's pick (the nearest split)
    and the farthest one (for a pure-TP split, moe_tp 1: all its GPUs as experts)."""
    by = ["runtime", "moe_tp_size"]
    far = dict(iter(far.groupby(by)))
    systems = ", ".join(sorted(set(near["system"])))
    lines = [f"Systems: {systems}.", "",
             "| runtime | moe_tp | layer splits | rows | MdAPE | p90 | pred/meas "
             "| farthest split: MdAPE | p90 | pred/meas |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for k, g in near.groupby(by):
        n = g.groupby(["system"] + LAYER + SPLIT).ngroups
        lines.append(f"| {k[0]} | {k[1]} | {n} | {len(g)} | {_cells(g)} | {_cells(far[k])} |")
    n = near.groupby(["system", "runtime"] + LAYER + SPLIT).ngroups
    lines.append(f"| all | all | {n} | {len(near)} | {_cells(near)} | "
                 f"{_cells(pd.concat(far.values()))} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--system", action="append", help="aiconfigurator system (repeat)")
    ap.add_argument("--runtime", action="append", choices=kerneldb.RUNTIMES)
    ap.add_argument("--readme", type=Path, help=f"write the block into its {MARK[0]} region")
    a = ap.parse_args(argv)
    cat = kerneldb.catalog()
    cat = cat[cat["op"] == "moe"]
    found = []
    try:
        for (system, runtime), _ in cat.groupby(["system", "runtime"]):
            if (a.system and system not in a.system) or (a.runtime and runtime not in a.runtime):
                continue
            df = measured(system, runtime)
            if df is not None and len(p := pairs(df)):
                found.append((p.assign(system=system, runtime=runtime),
                              pairs(df, -1).assign(system=system, runtime=runtime)))
        if not found:
            raise ConfigError("no MoE table measures a split with moe_tp > 1 and another of "
                              "the same GPUs")
        near, far = (pd.concat(x, ignore_index=True) for x in zip(*found))
        emit(block(near, far), a.readme, MARK)
    except ConfigError as e:
        print(f"moe_split: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    np.seterr(all="raise")
    sys.exit(main())
