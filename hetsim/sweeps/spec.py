"""The sweep file: its schema, the grid x zip expansion, and every point checked before any
runs (names, fit, every seed's request draw, memory)."""
from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..api import check_memory
from ..config import build, meta, positive, read_yaml, to_dict
from ..errors import ConfigError, match_name
from ..goodput_search import _checked
from ..overrides import apply_overrides
from ..resolve import resolve_scenario
from ..scenario import Scenario, as_scenario
from ..workload import DEFAULT_REQUESTS, generate

__all__ = ["SweepSpec", "load_sweep", "expand", "prepare", "scenario_file", "MEASURES",
           "IN_MEMORY", "MAX_SEED"]

#: the tables store seeds as 64-bit integers
MAX_SEED = 2**63 - 1
#: ``scenario:`` of a sweep whose base was given as an object or mapping, not a file
IN_MEMORY = "<scenario>"

MEASURES = ("run", "goodput")


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
                f"seeds must be from 0 to {MAX_SEED}" if min(v) < 0 or max(v) > MAX_SEED
                else None))))
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


def scenario_file(spec: SweepSpec) -> str:
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
            seen = [json.dumps(float(v) if isinstance(v, int) and not isinstance(v, bool)
                               else v, sort_keys=True) for v in values]
            if section == "grid" and len(set(seen)) < len(seen):
                raise ConfigError("a value appears twice: each would be the same point",
                                  file=where, path=f"{section}.{path}")
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


def prepare(spec: SweepSpec, base_raw: dict, file: str, points: list[dict], here: int
             ) -> tuple[Scenario, list[Scenario]]:
    """The base scenario and every point's, each checked as ``run`` checks it (names, fit,
    every seed's request draw, memory for ``here`` simulations at once on this machine)
    before anything runs."""
    # set: (and --set) last, so a command line's workload.requests wins over requests:
    fixed = {**({"workload.requests": spec.requests} if spec.requests else {}), **spec.set}
    both = sorted(set(fixed) & set(spec.axes))
    if both:
        how = ("requests:" if both[0] == "workload.requests" and spec.requests
               and both[0] not in spec.set else "set: or --set")
        raise ConfigError(f"{both[0]} is swept and also given by {how}; give it in one",
                          file=spec.source_file, path=_section(spec, both[0]))
    base = as_scenario(base_raw, fixed, "the sweep's set: or --set", file=file)
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
            if spec.measure == "goodput":
                _checked(sc)
            if sc.workload.seed > MAX_SEED:
                raise ConfigError(f"must be at most {MAX_SEED} (the table stores 64-bit "
                                  f"seeds), got {sc.workload.seed}", path="workload.seed")
            for seed in spec.seeds or [sc.workload.seed]:   # draws fail per seed (context)
                w = dataclasses.replace(sc.workload, seed=seed)
                key = (json.dumps(to_dict(w), sort_keys=True), str(sc.base_dir))
                if key not in drawn:
                    generate(w, sc.base_dir, max_context=model.max_context, model=model.name)
                    drawn.add(key)
        except ConfigError as e:
            culprit = next((p for p in point if e.path == p or e.path.startswith(p + ".")
                            or p.startswith(e.path + ".")), None) if e.path else None
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


