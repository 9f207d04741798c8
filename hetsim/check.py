"""``hetsim check``: CI regression of capacity plans.

Its input is a checks file: a scenario with expectations (not ``hetsim plan``'s spec, which
lives in :mod:`hetsim.planner`). ``expect:`` at the top level applies to every placement,
``expect:`` inside a placement to that one (and wins on the same metric). Metrics are the keys
of the run summary, nested ones dotted (``ttft_s.p99``, ``link_utilization.prefill.nic.max``).
The run is deterministic, so a stored baseline of every numeric metric catches silent model
changes: drift beyond the tolerance fails even while the bounds hold.

``resilience: {survive: 1, cross_site_factor: f}`` (:mod:`hetsim.resilience`, as ``plan``
takes it) runs every placement again without one instance of each pool and, for placements
on several sites, with the cross-site link degraded; each run (``<placement> without
<pool>/0``) must meet the placement's expectations too. A bound on a fault metric
(``requests_failed``, ``fault_windows.slo_attainment``) of a placement without faults applies
to its resilience runs only.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from pathlib import Path
from xml.sax.saxutils import escape

from .config import build, meta, read_json, read_yaml
from .errors import ConfigError, suggest
from .metrics import metric_error
from .overrides import apply_overrides, blame, split_path
from .resilience import Resilience, Variant, spans_sites, variants

if TYPE_CHECKING:
    from .scenario import Scenario

__all__ = ["Bound", "CheckSpec", "CheckResult", "load_checks", "run_check", "flatten",
           "junit_xml", "load_baseline", "baseline_json", "format_results"]


@dataclass(frozen=True)
class Bound:
    min: float | None = field(default=None, metadata=meta("lowest acceptable value"))
    max: float | None = field(default=None, metadata=meta("highest acceptable value"))

    def __post_init__(self):
        if self.min is None and self.max is None:
            raise ConfigError("needs min or max", path="min")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ConfigError(f"min {self.min} > max {self.max}", path="min")


@dataclass(frozen=True)
class CheckSpec:
    """A checks file, read: the scenario and its bounds per placement, ``{placement: {metric:
    (Bound, key path in the file)}}`` (a placement's own bound already wins over the top-level
    one)."""
    scenario: "Scenario"
    expects: dict
    #: resilience runs (placements of ``scenario`` too, but those that ``cannot`` pass),
    #: reported after the placement each varies
    variants: tuple[Variant, ...] = ()


@dataclass
class CheckResult:
    placement: str
    metric: str
    kind: str            # "bound" | "baseline" | "resilience"
    value: float | None
    expected: str
    passed: bool
    message: str = ""


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_checks(path: str | Path, overrides: dict | None = None,
                label: str = "overrides") -> CheckSpec:
    """Read a checks file: the scenario and its expectations, validated (metric names
    included) before anything runs; ``overrides`` ({key path: value}) set on the scenario."""
    from .resolve import load_scenario
    from .scenario import parse_scenario
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError("a checks file must be a mapping (a scenario with expect:)",
                          file=str(path))
    raw = dict(raw)
    top = raw.pop("expect", None)
    own = {k: v for k, v in (overrides or {}).items() if split_path(k)[0] == "resilience"}
    overrides = {k: v for k, v in (overrides or {}).items() if k not in own}
    res = raw.pop("resilience", None)
    res = _resilience({} if res is None else {"resilience": res}, own, label, str(path))
    top = {} if top is None else top
    per = {}
    placements = raw.get("placements")
    if isinstance(placements, dict):
        raw["placements"] = placements = dict(placements)
        for name, pl in placements.items():
            if isinstance(pl, dict) and "expect" in pl:
                pl = dict(pl)
                per[name] = {} if pl.get("expect") is None else pl["expect"]
                pl.pop("expect")
                placements[name] = pl
    # resolved once, by the run (or validate's prepare)
    sc = (load_scenario(raw, overrides, label, file=str(path)) if overrides
          else parse_scenario(raw, path))
    try:
        runs = _variants(sc, res, str(path)) if res else []
    except ConfigError as e:     # a cross_site_factor that --set gave
        if e.path == "resilience.cross_site_factor" and {e.path, "resilience"} & set(own):
            raise ConfigError(f"{e.message} (set by {label})", file=e.file, path=e.path) from None
        raise
    expects = {}
    for name, pl in sc.placements.items():
        merged = _bounds(name, pl, sc, top, per.get(name, {}), res is not None, str(path))
        expects[name] = merged
        expects.update({v.name: merged for v in runs if v.base == name})
        if not (sc.faults or pl.faults):     # fault metrics bound its resilience runs only
            roles = {n: p.role for n, p in pl.pools.items()}
            expects[name] = {m: b for m, b in merged.items()
                             if metric_error(m, roles, False) is None}
    if runs:
        sc = dataclasses.replace(sc, placements={**sc.placements, **{
            v.name: v.placement for v in runs if v.cannot is None}})
    return CheckSpec(sc, expects, tuple(runs))


def _bounds(name: str, pl, sc: "Scenario", top, own, resilience: bool, path: str) -> dict:
    """Placement ``name``'s bounds, {metric: (Bound, key path)}: the top-level ``expect:``
    and its own (which wins on the same metric); fault metrics where it has faults or the
    file has ``resilience:``."""
    roles = {n: p.role for n, p in pl.pools.items()}
    faults = bool(sc.faults or pl.faults) or resilience
    merged = {}
    for where, block in (("expect", top), (f"placements.{name}.expect", own)):
        if not isinstance(block, dict):
            raise ConfigError("must be a mapping of metric: {min, max}", file=path, path=where)
        for metric, b in block.items():
            why = metric_error(str(metric), roles, faults)
            if why:
                raise ConfigError(why, file=path, path=f"{where}.{metric}")
            try:
                merged[metric] = (build(Bound, b, f"{where}.{metric}"), f"{where}.{metric}")
            except ConfigError as e:
                raise e.with_file(path) from None
    return merged


@dataclass(frozen=True)
class _Keys:
    """What a checks file adds to a scenario besides ``expect:`` blocks."""
    resilience: Resilience | None = None


def _resilience(doc: dict, overrides: dict, label: str, path: str) -> Resilience | None:
    """The file's ``resilience:`` with ``overrides`` ({``resilience.…``: value}) set on it."""
    try:
        return build(_Keys, apply_overrides(doc, overrides, _Keys) if overrides else doc
                     ).resilience
    except ConfigError as e:
        e = e.with_file(path)
        if not overrides:
            raise e from None
        raise blame(e, label, lambda: build(_Keys, doc)) from None


def _variants(sc: "Scenario", res: Resilience, path: str) -> list[Variant]:
    """Every placement's resilience runs (:func:`hetsim.resilience.variants`)."""
    if res.cross_site_factor is not None and not any(map(spans_sites, sc.placements.values())):
        raise ConfigError("no placement has pools on two sites (a cross-site link to "
                          "degrade)", file=path, path="resilience.cross_site_factor")
    runs = [v for name, pl in sc.placements.items()
            for v in variants(name, pl, res, sc.slo.ttft_s, pl.recovery or sc.recovery)]
    for v in runs:
        if v.name in sc.placements:
            raise ConfigError(f"is also the name of {v.base}'s resilience run; rename it",
                              file=path, path=f"placements.{v.name}")
    # a run the engine refuses (faults on a layout not modelled yet) is the checks file's
    # resilience: key's doing, not a placement the file names
    from .resolve import resolve_scenario
    ran = {v.name: v for v in runs if v.cannot is None}
    try:     # the file's own placements first: their errors stay theirs
        resolve_scenario(dataclasses.replace(sc, placements={
            **sc.placements, **{n: v.placement for n, v in ran.items()}}))
    except ConfigError as e:
        name = next((n for n in ran if e.path.startswith(f"placements.{n}.")), None)
        if name is None:
            raise
        raise ConfigError(f"{name}: {e.message}", file=path, path="resilience") from None
    return runs


def _order(checks: CheckSpec) -> list[str]:
    """Report order: each placement, then its resilience runs."""
    runs = {v.name for v in checks.variants}
    return [n for base in checks.scenario.placements if base not in runs
            for n in (base, *(v.name for v in checks.variants if v.base == base))]


def _close(a: float, b: float, tol: float) -> bool:
    if a == b:
        return True
    return abs(a - b) <= tol * max(abs(a), abs(b)) + 1e-12


def load_baseline(path: str | Path) -> dict:
    """A stored baseline (``hetsim check --update-baseline`` output), checked for shape."""
    base = read_json(path, missing="baseline not found (create it with --update-baseline)")
    places = base.get("placements") if isinstance(base, dict) else None
    if not isinstance(places, dict) or not places:
        raise ConfigError("not a hetsim baseline (no 'placements' with metrics)", file=str(path))
    for name, metrics in places.items():
        if not isinstance(metrics, dict):
            raise ConfigError("must be a mapping of metric: number", file=str(path),
                              path=f"placements.{name}")
        for metric, v in metrics.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"must be a finite number, got {v!r}", file=str(path),
                                  path=f"placements.{name}.{metric}")
    return base


def run_check(checks: "CheckSpec | str | Path", baseline: dict | None = None,
              tolerance: float = 0.05, progress=None) -> tuple[list[CheckResult], dict]:
    """Run a checks file (a path, or what :func:`load_checks` returned); check bounds and
    drift. Returns (results, metrics per placement)."""
    from .api import run
    if not isinstance(checks, CheckSpec):
        checks = load_checks(checks)
    sc, expects = checks.scenario, checks.expects
    path = sc.source_file
    result = run(sc, progress=progress)
    metrics = {s["name"]: {k: v for k, v in flatten(s).items()
                           if isinstance(v, (int, float)) and not isinstance(v, bool)
                           and (v is None or math.isfinite(v))}
               for s in result.summaries}
    results = []
    by_name = {s["name"]: s for s in result.summaries}
    cannot = {v.name: v for v in checks.variants if v.cannot}
    varied = {v.name for v in checks.variants}
    for name in _order(checks):
        if name in cannot:      # a pool of one: nothing to run
            v = cannot[name]
            results.append(CheckResult(name, f"pools.{v.lost}.instances", "resilience",
                                       v.placement.pools[v.lost].instances, ">= 2", False,
                                       v.cannot))
            continue
        flat = flatten(by_name[name])
        for metric, (b, where) in expects[name].items():
            if metric not in flat:
                raise ConfigError(f"unknown metric {metric!r}" + suggest(metric, flat),
                                  file=str(path), path=where)
            v = flat[metric]
            if v is None and name in varied:     # e.g. nothing completed without the instance
                results.append(CheckResult(name, metric, "bound", None, "a value", False,
                                           f"{metric} has no value in this run"))
                continue
            if v is None:    # e.g. a KV-transfer time in a colocated placement: a checks-file error
                raise ConfigError(f"{metric} has no value for placement {name!r} (nothing it "
                                  f"measures happened); drop the bound there",
                                  file=str(path), path=where)
            want = " and ".join(x for x in (f">= {b.min:g}" if b.min is not None else "",
                                             f"<= {b.max:g}" if b.max is not None else "") if x)
            ok = (b.min is None or v >= b.min) and (b.max is None or v <= b.max)
            results.append(CheckResult(name, metric, "bound", v, want, ok,
                                       "" if ok else f"{metric} = {_fmt(v)}, expected {want}"))
        if baseline is not None:
            base = baseline.get("placements", {}).get(name)
            if base is None:
                results.append(CheckResult(name, "(baseline)", "baseline", None, "present",
                                           False, f"placement {name!r} is not in the baseline"))
                continue
            for metric, bv in base.items():
                v = metrics[name].get(metric)
                ok = v is not None and _close(v, bv, tolerance)
                results.append(CheckResult(
                    name, metric, "baseline", v, f"{_fmt(bv)} ± {tolerance:.0%}", ok,
                    "" if ok else f"{metric} drifted: {_fmt(v)} vs baseline {_fmt(bv)} "
                                  f"({_drift(v, bv)})"))
    return results, metrics


def _fmt(v) -> str:
    return "missing" if v is None else f"{v:.6g}"


def _drift(v, b) -> str:
    if v is None:
        return "missing"
    if b == 0:
        return f"{v:+.3g} absolute"
    return f"{(v - b) / abs(b):+.1%}"


def baseline_json(sc_name: str, metrics: dict, tolerance: float) -> dict:
    return {"scenario": sc_name, "tolerance": tolerance, "placements": metrics}


def format_results(results: list[CheckResult], show_passed_baseline: bool = False) -> str:
    rows = [("placement", "check", "metric", "value", "expected", "status")]
    for r in results:
        if r.kind == "baseline" and r.passed and not show_passed_baseline:
            continue
        rows.append((r.placement, r.kind, r.metric, _fmt(r.value), r.expected,
                     "ok" if r.passed else "FAIL"))
    from .report import text_table
    lines = [text_table(rows)]
    n_base = sum(r.kind == "baseline" for r in results)
    bad_base = sum(r.kind == "baseline" and not r.passed for r in results)
    if n_base:
        lines.append(f"baseline: {n_base - bad_base}/{n_base} metrics within tolerance")
    return "\n".join(lines)


def junit_xml(results: list[CheckResult], suite: str) -> str:
    fails = sum(not r.passed for r in results)
    out = ['<?xml version="1.0" encoding="utf-8"?>',
           f'<testsuites><testsuite name="{escape(suite)}" tests="{len(results)}" '
           f'failures="{fails}" errors="0">']
    for r in results:
        name = escape(f"{r.placement}: {r.kind} {r.metric}", {'"': "&quot;"})
        out.append(f'<testcase classname="{escape(suite)}.{escape(r.placement)}" name="{name}">')
        if not r.passed:
            out.append(f'<failure message="{escape(r.message, {chr(34): "&quot;"})}"/>')
        out.append("</testcase>")
    out.append("</testsuite></testsuites>")
    return "\n".join(out) + "\n"
