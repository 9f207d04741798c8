"""``sweep``: points to tasks (from the cache where stored), tasks to an executor, rows to
tables."""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path


from ..api import plain, run
from ..check import flatten
from ..errors import ConfigError
from ..executors import Executor, check_kind, cpu_count, make_executor
from ..goodput_search import goodput
from ..config import read_yaml
from ..scenario import Scenario, as_scenario, parse_scenario
from . import cache as store
from .spec import IN_MEMORY, SweepSpec, expand, load_sweep, prepare, scenario_file
from .table import SweepResult, build_table, summarize

__all__ = ["SweepResult", "sweep"]

_GOODPUT_COLUMNS = ("max_goodput_rps", "max_goodput_tokens_per_s", "per_accelerator_rps",
                    "per_dollar_hour_rps", "accelerators", "cost_per_hour_usd", "bracketed")


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
            base_sc, scenario = scenario, IN_MEMORY
        elif isinstance(scenario, dict):
            base_sc, scenario = as_scenario(scenario), IN_MEMORY
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
        file = scenario_file(spec)
        try:
            base_raw = read_yaml(file)
        except ConfigError as e:
            raise ConfigError(e.message, file=spec.source_file, path="scenario") from None
    if isinstance(executor, Executor):
        here = executor.here
    else:       # a local Ray instance runs here too; a cluster's memory is its own
        check_kind(executor, address)
        remote = address or os.environ.get("RAY_ADDRESS")
        here = (jobs or 1) if executor == "local" else (1 if remote else jobs or cpu_count())
    base, scenarios = prepare(spec, base_raw, file, points, here)
    folder = None
    if cache:
        folder = store.ready(store.default_cache_dir() / "sweeps" if cache is True
                             else Path(cache))
    names = tuple(spec.placements)
    tasks, keys, rows, order = [], [], {}, []
    memo: dict = {}
    for i, sc in enumerate(scenarios):
        digest = store.inputs_digest(sc, memo)
        for s in spec.seeds or [sc.workload.seed]:
            order.append((i, s))
            seeded = dataclasses.replace(sc, workload=dataclasses.replace(sc.workload, seed=s))
            text, source = plain(seeded)
            key = store.key(text, spec.measure, names, spec.tolerance, digest)
            hit = store.read(folder, key)
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
        store.write(folder, keys[j], result)
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
    table = build_table(spec, points, order, rows)
    return SweepResult(spec, base, points, table, summarize(table, spec.axes),
                       len(tasks), cached, time.monotonic() - t0)


