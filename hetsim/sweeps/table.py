"""The sweep's tables (one row per point, seed and placement; means and Student-t intervals
per point) and its output folder."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..config import to_dict
from ..outputs import OutputDir, check_output_dir
from ..scenario import Scenario
from .spec import IN_MEMORY, SweepSpec

__all__ = ["SweepResult", "build_table", "summarize", "write_sweep"]


@dataclass
class SweepResult:
    spec: SweepSpec
    scenario: Scenario              # the base, with ``set`` applied
    points: list[dict]              # each point's {path: value}
    table: pd.DataFrame             # one row per (point, seed, placement)
    summary: pd.DataFrame           # one row per (point, placement): means and 95% intervals
    computed: int = 0               # tasks simulated now
    cached: int = 0                 # tasks read from the cache
    wall_s: float = 0.0

    @property
    def axes(self) -> list[str]:
        return self.spec.axes


def _column(values: list) -> list:
    """A swept path's column: the values themselves when they are scalars of one kind, else
    their compact JSON text (Parquet columns hold one type)."""
    kinds = {bool if isinstance(v, bool) else (float if isinstance(v, (int, float)) else type(v))
             for v in values}
    if len(kinds) == 1 and kinds <= {bool, float, str}:
        return values
    return [v if isinstance(v, str) else json.dumps(v, sort_keys=True, separators=(",", ":"))
            for v in values]


def build_table(spec: SweepSpec, points: list[dict], order: list[tuple], rows: dict
           ) -> pd.DataFrame:
    records = [{"point": i, **points[i], "seed": s, **r} for i, s in order for r in rows[(i, s)]]
    df = pd.DataFrame.from_records(records)
    for path in spec.axes:
        df[path] = _column(df[path].tolist())
    return df.reset_index(drop=True)


def summarize(table: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Per (point, placement): each numeric metric's mean over seeds and its 95% interval."""
    keys = ["point", *axes, "placement"]
    numeric = [c for c in table.columns if c not in keys and c != "seed"
               and (pd.api.types.is_numeric_dtype(table[c]) or pd.api.types.is_bool_dtype(
                   table[c]))]
    from scipy.stats import t as student_t
    out = []
    for _, g in table.groupby(["point", "placement"], sort=False):
        row = {k: g[k].iloc[0] for k in keys}
        row["seeds"] = len(g)
        for c in numeric:
            v = g[c].astype(float).dropna().to_numpy()
            mean = float(v.mean()) if len(v) else float("nan")
            half = (float(student_t.ppf(0.975, len(v) - 1)) * float(v.std(ddof=1))
                    / np.sqrt(len(v)) if len(v) > 1 else 0.0)
            row[c], row[f"{c}.ci95_lo"], row[f"{c}.ci95_hi"] = mean, mean - half, mean + half
        out.append(row)
    return pd.DataFrame.from_records(out)


def write_sweep(result: SweepResult, out: "str | Path | OutputDir", csv: bool = False) -> Path:
    """results.parquet (every row), summary.parquet (means and intervals), CSV copies with
    ``csv``, the base scenario, the sweep spec, sweep.json (points, counts) and plots."""
    import yaml
    from ..sweep_plots import sweep_pngs
    from ..workload import written
    target = out if isinstance(out, OutputDir) else check_output_dir(out)
    sc = result.scenario
    meta_json = {"hetsim": __version__, "scenario": sc.name, "measure": result.spec.measure,
                 "axes": result.axes, "seeds": sorted(set(result.table["seed"])),
                 "points": [{"point": i, **p} for i, p in enumerate(result.points)],
                 "tasks_computed": result.computed, "tasks_cached": result.cached,
                 "wall_s": round(result.wall_s, 3), "argv": sys.argv}

    def fill(tmp: Path) -> None:
        result.table.to_parquet(tmp / "results.parquet", index=False)
        result.summary.to_parquet(tmp / "summary.parquet", index=False)
        if csv:
            result.table.to_csv(tmp / "results.csv", index=False)
            result.summary.to_csv(tmp / "summary.csv", index=False)
        d = sc.to_dict()
        d["workload"] = written(d["workload"])
        (tmp / "scenario.resolved.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
        # runs again from anywhere: the base's file by its absolute path (its relative files
        # resolve there), else the base written above, which holds set: and requests:
        spec = {k: v for k, v in to_dict(result.spec).items() if k != "source_file"}
        if result.spec.scenario != IN_MEMORY:
            spec["scenario"] = str(Path(sc.source_file).resolve())
        else:
            spec.update(scenario="scenario.resolved.yaml", set={}, requests=None)
        (tmp / "sweep.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        (tmp / "sweep.json").write_text(json.dumps(meta_json, indent=2) + "\n")
        sweep_pngs(result.summary, result.axes, result.spec.measure,
                   {"ttft_s": sc.slo.ttft_s, "tpot_s": sc.slo.tpot_s}, sc.name, tmp)
    target.write("sweep", fill)
    return target.path

