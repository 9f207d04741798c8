"""Design-space sweeps: a scenario, key paths to vary, seeds; one tidy table out.

A sweep file names a base scenario and the values to try::

    scenario: ../scenarios/quickstart.yaml
    grid:                                  # cartesian product, the last path varying fastest
      placements.hetero-h100p-a100d.pools.decode.instances: [1, 2, 3]
      workload.arrival.rate_rps: [4, 8]
    zip: {}                                # paths varied together (equal-length lists)
    seeds: [1, 2, 3]
    measure: run                           # or goodput

Every point (grid x zip) is checked before anything runs: a path the schema does not have, an
empty list or a value that fails validation at some point is one error naming the point.
Each (point, seed) is one task, a pure function of the point's scenario, so the table is
identical on every executor, in any order. Finished tasks are kept in a cache keyed by the hash
of the point's scenario and of everything it reads (hetsim's code and data, profile folders,
workload files), so an interrupted sweep resumes where it stopped and a repeated one is free.

``table``: one row per (point, seed, placement), a column per swept path and per metric.
``summary``: one row per (point, placement), each metric's mean over seeds and a 95% Student-t
interval (``m.ci95_lo``, ``m.ci95_hi``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from . import __version__
from .api import check_memory, plain, run
from .check import flatten
from .config import build, meta, positive, read_yaml, to_dict
from .errors import ConfigError, match_name
from .executors import Executor, cpu_count, make_executor
from .goodput_search import _checked, goodput
from .hardware import profile_dirs
from .outputs import OutputDir, check_output_dir, write_text_atomic
from .overrides import apply_overrides
from .resolve import resolve_scenario
from .scenario import Scenario, as_scenario, parse_scenario
from .workload import DEFAULT_REQUESTS, generate

__all__ = ["SweepSpec", "SweepResult", "sweep", "load_sweep", "write_sweep", "expand",
           "default_cache_dir"]

MEASURES = ("run", "goodput")
#: goodput's scalar results kept per row
_GOODPUT_COLUMNS = ("max_goodput_rps", "max_goodput_tokens_per_s", "per_accelerator_rps",
                    "per_dollar_hour_rps", "accelerators", "cost_per_hour_usd", "bracketed")
@dataclass(frozen=True)
class SweepSpec:
    scenario: str = field(metadata=meta("the base scenario file (relative to the sweep file)"))
    grid: dict[str, list[Any]] = field(default_factory=dict, metadata=meta(
        "key path -> values; every combination is a point"))
    zip: dict[str, list[Any]] = field(default_factory=dict, metadata=meta(
        "key path -> values, equal lengths: the i-th values go together (times the grid)"))
    seeds: list[int] | None = field(default=None, metadata=meta(
        "request-stream seeds per point (default: each point's workload.seed)",
        lambda v: "give at least one seed" if not v else (
            "a seed appears twice" if len(set(v)) < len(v) else (
                "seeds must be >= 0" if min(v) < 0 else None))))
    measure: Literal["run", "goodput"] = field(default="run", metadata=meta(
        "run: simulate each point at its rate | goodput: search each point's highest rate "
        "within SLO"))
    placements: list[str] = field(default_factory=list, metadata=meta(
        "only these placements (default: all)"))
    set: dict[str, Any] = field(default_factory=dict, metadata=meta(
        "key path -> value set on the base scenario before the grid"))
    requests: int | None = field(default=None, metadata=meta(
        "requests per simulation (default: the scenario's)", positive))
    tolerance: float = field(default=0.02, metadata=meta(
        "goodput: stop bisecting at this relative width", lambda v: None if 0 < v < 1 else
        f"must be in (0, 1), got {v}"))
    name: str | None = None
    source_file: str | None = field(default=None, metadata=meta("(set by the loader)"))

    @property
    def axes(self) -> list[str]:
        return [*self.grid, *self.zip]


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


def load_sweep(path: str | Path | dict, overrides: dict | None = None) -> SweepSpec:
    """A sweep spec from a file (or a mapping as one parses); ``overrides`` are added to its
    ``set:``."""
    file = None if isinstance(path, dict) else str(path)
    raw = path if isinstance(path, dict) else read_yaml(path)
    try:
        spec = build(SweepSpec, raw)
    except ConfigError as e:
        raise e.with_file(file) from None
    return dataclasses.replace(spec, source_file=file, set={**spec.set, **(overrides or {})})


def _scenario_file(spec: SweepSpec) -> str:
    base = Path(spec.source_file).parent if spec.source_file else Path(".")
    return str(base / spec.scenario)


def expand(spec: SweepSpec) -> list[dict]:
    """Every point's {path: value}: the grid's product (last path fastest) times the zip."""
    where = spec.source_file
    if not spec.grid and not spec.zip:
        raise ConfigError("nothing to sweep: give grid: or zip: key paths with values",
                          file=where, path="grid")
    for section in ("grid", "zip"):
        for path, values in getattr(spec, section).items():
            if not values:
                raise ConfigError("empty list: give at least one value", file=where,
                                  path=f"{section}.{path}")
    both = set(spec.grid) & set(spec.zip)
    if both:
        raise ConfigError("in both grid and zip; give it in one", file=where,
                          path=f"zip.{sorted(both)[0]}")
    lengths = {len(v) for v in spec.zip.values()}
    if len(lengths) > 1:
        sizes = ", ".join(f"{p}: {len(v)}" for p, v in spec.zip.items())
        raise ConfigError(f"zip lists differ in length ({sizes})", file=where, path="zip")
    zipped = list(zip(*spec.zip.values())) if spec.zip else [()]
    return [dict(zip(spec.axes, (*g, *z)))
            for g in itertools.product(*spec.grid.values()) for z in zipped]


def _describe(point: dict) -> str:
    return ", ".join(f"{p.rsplit('.', 1)[-1]}={json.dumps(v, separators=(',', ':'))}"
                     for p, v in point.items())


def _prepare(spec: SweepSpec, base_raw: dict, file: str, points: list[dict], here: int
             ) -> tuple[Scenario, list[Scenario]]:
    """The base scenario and every point's, each checked as ``run`` checks it (names, fit,
    every seed's request draw, memory for ``here`` simulations at once on this machine)
    before anything runs."""
    # set: (and --set) last, so a command line's workload.requests wins over requests:
    fixed = {**({"workload.requests": spec.requests} if spec.requests else {}), **spec.set}
    both = sorted(set(fixed) & set(spec.axes))
    if both:
        raise ConfigError(f"{both[0]} is swept and also set (set: or --set); give it in one",
                          file=spec.source_file, path=_section(spec, both[0]))
    base = as_scenario(base_raw, fixed, "the sweep's set: or --set", file=file)
    if spec.measure == "goodput":
        try:
            _checked(base)
        except ConfigError as e:
            raise ConfigError(f"{e.path}: {e.message} (in {file})", file=spec.source_file,
                              path="measure") from None
    if spec.seeds and "workload.seed" in spec.axes:
        raise ConfigError("workload.seed is swept and seeds: is given; sweep one of them",
                          file=spec.source_file, path="seeds")
    raw = base.to_dict()
    for path in spec.axes:          # unknown paths first, named by where they are given
        try:
            apply_overrides(raw, {path: (spec.grid.get(path) or spec.zip[path])[0]}, Scenario)
        except ConfigError as e:
            raise ConfigError(f"{e.message} (in {file})" if e.path == path else
                              f"{e.path}: {e.message} (in {file})",
                              file=spec.source_file, path=_section(spec, path)) from None
    out, drawn = [], set()
    for i, point in enumerate(points):
        try:
            sc = as_scenario(raw, point, "the sweep", file=file)
            model, resolved = resolve_scenario(sc)
            names = [match_name(n, resolved, "placement") for n in spec.placements]
            check_memory(sc.workload.requests or DEFAULT_REQUESTS,
                         len(names or resolved) * here)
            for seed in spec.seeds or [sc.workload.seed]:   # draws fail per seed (context)
                w = dataclasses.replace(sc.workload, seed=seed)
                key = (json.dumps(to_dict(w), sort_keys=True), str(sc.base_dir))
                if key not in drawn:
                    generate(w, sc.base_dir, max_context=model.max_context, model=model.name)
                    drawn.add(key)
        except ConfigError as e:
            culprit = next((p for p in point if e.path == p or e.path.startswith(p + ".")),
                           None)
            inner = "" if not e.path or e.path == culprit else f"{e.path}: "
            raise ConfigError(f"point {i} ({_describe(point)}): {inner}"
                              + e.message.removesuffix(" (set by the sweep)"),
                              file=spec.source_file, path=_section(spec, culprit)) from None
        out.append(sc)
    return base, out


def _section(spec: SweepSpec, path: str | None) -> str:
    """Where a swept path is given (``grid.PATH``, ``zip.PATH``); ``grid``/``zip`` without one."""
    if path is None:
        return "grid" if spec.grid else "zip"
    if path in spec.grid:
        return f"grid.{path}"
    return f"zip.{path}" if path in spec.zip else "set"


def _task(text: str, source: str | None, measure: str, placements: tuple, tolerance: float
          ) -> list[dict]:
    """One (point, seed): a row of metrics per placement (an executor's task)."""
    sc = parse_scenario(json.loads(text), source)
    names = list(placements) or None
    if measure == "run":
        return [{"placement": s["name"], **{k: v for k, v in flatten(s).items() if k != "name"}}
                for s in run(sc, names).summaries]
    rows = []
    for r in goodput(sc, names, seeds=1, rel_tol=tolerance):
        j = r.to_json()
        knee = j["attainment_at_goodput"]
        rows.append({"placement": j["name"], **{k: j[k] for k in _GOODPUT_COLUMNS},
                     "attainment": None if knee is None else knee["mean"]})
    return rows


# -- the cache ------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """``$HETSIM_CACHE_DIR``, else ``$XDG_CACHE_HOME/hetsim``, else ``~/.cache/hetsim``."""
    env = os.environ.get("HETSIM_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hetsim"


def _tree_digest(folder: str) -> str:
    """Hash of every file's path and content under ``folder`` (hetsim's code and data)."""
    h = hashlib.sha256()
    root = Path(folder)
    for f in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def _inputs_digest(sc: Scenario, memo: dict) -> str:
    """What a point reads besides its own text: hetsim's package and shipped profiles, every
    profile folder searched, files the scenario names (workload traces, model files; hashed
    by the name as written and their content). ``memo`` keeps folder and file digests for one
    sweep."""
    import simpy

    def digest(kind: str, path: Path) -> str:
        key = (kind, str(path.resolve()))
        if key not in memo:
            memo[key] = (_tree_digest(key[1]) if kind == "tree"
                         else hashlib.sha256(path.read_bytes()).hexdigest())
        return memo[key]
    h = hashlib.sha256(f"{__version__} {np.__version__} {pd.__version__} {simpy.__version__} "
                       f"{platform.python_version()}".encode())
    here = Path(__file__).resolve().parent
    for d in [here, *profile_dirs([sc.base_dir / d for d in sc.hardware_profiles])]:
        if d.is_dir():
            h.update(digest("tree", d).encode())

    def named(v):
        if isinstance(v, dict):
            for x in v.values():
                yield from named(x)
        elif isinstance(v, list):
            for x in v:
                yield from named(x)
        elif isinstance(v, str) and (sc.base_dir / v).is_file():
            yield v
    for v in sorted(set(named(sc.to_dict()))):
        h.update(v.encode() + b"\0" + digest("file", sc.base_dir / v).encode())
    return h.hexdigest()


def _key(text: str, measure: str, placements: tuple, tolerance: float, inputs: str) -> str:
    return hashlib.sha256(json.dumps([text, measure, list(placements), tolerance, inputs]
                                     ).encode()).hexdigest()


def _cache_read(folder: Path | None, key: str) -> list[dict] | None:
    if folder is None:
        return None
    try:
        return json.loads((folder / key[:2] / f"{key}.json").read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        return None       # absent or unreadable: computed again


def _cache_write(folder: Path | None, key: str, rows: list[dict]) -> None:
    if folder is None:
        return
    (folder / key[:2]).mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / key[:2] / f"{key}.json",
                      json.dumps({"hetsim": __version__, "rows": rows}, allow_nan=True))


# -- the sweep ------------------------------------------------------------------------------

def sweep(spec: "str | Path | dict | SweepSpec | None" = None, *,
          scenario: "str | Path | dict | Scenario | None" = None,
          grid: dict | None = None, zip: dict | None = None, seeds: list[int] | None = None,
          measure: str = "run", placements: list[str] | None = None,
          requests: int | None = None, tolerance: float = 0.02,
          overrides: dict | None = None, executor: "str | Executor" = "local",
          jobs: int | None = None, address: str | None = None,
          cache: "bool | str | Path" = True, progress=None) -> SweepResult:
    """Run a sweep: a sweep file or mapping (``spec``), or a ``scenario`` (path, mapping or
    Scenario) with ``grid``/``zip``/``seeds``/``measure`` given here. ``overrides`` are set
    on the base scenario first. ``executor``: "local" (``jobs`` processes), "ray"
    (``address``) or an :class:`~hetsim.executors.Executor`. ``cache``: True (the default
    folder, :func:`default_cache_dir`), False, or a folder. ``progress(label, done, total)``."""
    t0 = time.monotonic()
    base_sc = None
    if spec is None:
        if scenario is None:
            raise ConfigError("give a sweep spec, or a scenario with grid= or zip=")
        if isinstance(scenario, Scenario):
            base_sc, scenario = scenario, "<scenario>"
        elif isinstance(scenario, dict):
            base_sc, scenario = as_scenario(scenario), "<scenario>"
        spec = load_sweep({"scenario": str(scenario), "grid": grid or {}, "zip": zip or {},
                           "seeds": seeds, "measure": measure, "placements": placements or [],
                           "requests": requests, "tolerance": tolerance}, overrides)
    elif not isinstance(spec, SweepSpec):
        spec = load_sweep(spec, overrides)
    elif overrides:
        spec = dataclasses.replace(spec, set={**spec.set, **overrides})
    points = expand(spec)
    if base_sc is not None:
        file, base_raw = base_sc.source_file, base_sc.to_dict()
    else:
        file = _scenario_file(spec)
        try:
            base_raw = read_yaml(file)
        except ConfigError as e:
            raise ConfigError(e.message, file=spec.source_file, path="scenario") from None
    if isinstance(executor, Executor):
        here = executor.here
    else:       # a local Ray instance runs here too; a cluster's memory is its own
        here = (jobs or 1) if executor == "local" else (0 if address else jobs or cpu_count())
    base, scenarios = _prepare(spec, base_raw, file, points, max(here, 1))
    folder = None
    if cache:
        folder = default_cache_dir() / "sweeps" if cache is True else Path(cache)
    names = tuple(spec.placements)
    tasks, keys, rows, order = [], [], {}, []
    memo: dict = {}
    for i, sc in enumerate(scenarios):
        digest = _inputs_digest(sc, memo)
        for s in spec.seeds or [sc.workload.seed]:
            order.append((i, s))
            seeded = dataclasses.replace(sc, workload=dataclasses.replace(sc.workload, seed=s))
            text, source = plain(seeded)
            key = _key(text, spec.measure, names, spec.tolerance, digest)
            hit = _cache_read(folder, key)
            if hit is not None:
                rows[(i, s)] = hit
            else:
                tasks.append(((i, s), (text, source, spec.measure, names, spec.tolerance)))
                keys.append(key)
    cached, total = len(rows), len(order)
    if progress and cached:
        progress("sweep", cached, total)

    def done(j: int, result: list[dict]) -> None:
        rows[tasks[j][0]] = result
        _cache_write(folder, keys[j], result)
        if progress:
            progress("sweep", len(rows), total)
    if tasks:
        own = not isinstance(executor, Executor)
        ex = make_executor(executor, jobs, address) if own else executor
        try:
            ex.map(_task, [t for _, t in tasks], done=done)
        finally:
            if own:
                ex.close()
    table = _table(spec, points, order, rows)
    return SweepResult(spec, base, points, table, summarize(table, spec.axes),
                       len(tasks), cached, time.monotonic() - t0)


def _column(values: list) -> list:
    """A swept path's column: the values themselves when they are scalars of one kind, else
    their compact JSON text (Parquet columns hold one type)."""
    kinds = {bool if isinstance(v, bool) else (float if isinstance(v, (int, float)) else type(v))
             for v in values}
    if len(kinds) == 1 and kinds <= {bool, float, str}:
        return values
    return [v if isinstance(v, str) else json.dumps(v, sort_keys=True, separators=(",", ":"))
            for v in values]


def _table(spec: SweepSpec, points: list[dict], order: list[tuple], rows: dict
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
    from .plots import sweep_pngs
    from .workload import written
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
        if sc.source_file:
            spec["scenario"] = str(Path(sc.source_file).resolve())
        else:
            spec.update(scenario="scenario.resolved.yaml", set={}, requests=None)
        (tmp / "sweep.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        (tmp / "sweep.json").write_text(json.dumps(meta_json, indent=2) + "\n")
        sweep_pngs(result.summary, result.axes, result.spec.measure,
                   {"ttft_s": sc.slo.ttft_s, "tpot_s": sc.slo.tpot_s}, sc.name, tmp)
    target.write("sweep", fill)
    return target.path
