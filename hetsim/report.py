"""Human-facing outputs: the comparison table and the output folder (plots: :mod:`.plots`)."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from .outputs import OutputDir, check_output_dir, stream_csv, stream_parquet
from .plots import goodput_pngs, run_pngs, timeline_png
from .workload import written

__all__ = ["format_table", "run_title", "text_table", "write_outputs", "goodput_curves",
           "write_goodput"]

# (header, getter, format)
COLUMNS = [
    ("placement", lambda s: s["name"], "{}"),
    ("accel", lambda s: s["accelerators"], "{}"),
    ("$/h", lambda s: s["cost_per_hour_usd"], "{:.2f}"),
    ("done", lambda s: f'{s["completed"]}/{s["requests"]}', "{}"),
    ("TTFT p50", lambda s: s["ttft_s"]["p50"], "{:.3f}"),
    ("TTFT p99", lambda s: s["ttft_s"]["p99"], "{:.3f}"),
    ("TPOT p50", lambda s: s["tpot_s"]["p50"], "{:.4f}"),
    ("TPOT p99", lambda s: s["tpot_s"]["p99"], "{:.4f}"),
    ("tok/s", lambda s: s["output_tokens_per_s"], "{:.0f}"),
    ("SLO att.", lambda s: s["slo_attainment"], "{:.1%}"),
    ("SLO", lambda s: "met" if s["meets_slo"] else "missed", "{}"),
    ("goodput r/s", lambda s: s["goodput_rps"], "{:.2f}"),
    ("$/M tok", lambda s: s["usd_per_million_output_tokens"], "{:.2f}"),
    # ranked only where the SLO is met: goodput per $ of a placement that misses it misleads
    ("goodput/$h", lambda s: s["goodput_rps_per_dollar_hour"] if s["meets_slo"] else None,
     "{:.4f}"),
    ("bottleneck", lambda s: s["bottleneck"], "{}"),
]


def _cell(get, fmt, s) -> str:
    v = get(s)
    return "-" if v is None else fmt.format(v)


def text_table(rows, numeric: bool = False) -> str:
    """Aligned plain-text table: the first row is the header, a rule under it. ``numeric``
    right-aligns every column but the first."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    line = lambda r: "  ".join(c.rjust(w) if numeric and i else c.ljust(w)  # noqa: E731
                               for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(rows[0]), "  ".join("-" * w for w in widths)]
                     + [line(r) for r in rows[1:]])


def run_title(result) -> str:
    """The line above ``hetsim run``'s table: scenario, requests per placement and the SLO."""
    slo = result.scenario.slo
    n = result.request_count // max(1, len(result.summaries))
    clipped = f" ({result.clipped} clipped to the context)" if result.clipped else ""
    # a closed loop's warm-up in seconds may cover a different count in each placement
    warm = sorted({s["warmup_requests"] for s in result.summaries if "warmup_requests" in s})
    warmup = f", {'/'.join(map(str, warm))} of them warm-up (not measured)" if warm else ""
    form = f"p{slo.percentile:g} within" if slo.percentile else f"{slo.attainment:.0%} within"
    return (f"{result.scenario.name}: {n} requests{clipped}{warmup}, SLO {form} "
            f"TTFT<={slo.ttft_s}s TPOT<={slo.tpot_s}s")


def format_table(summaries: list[dict], title: str = "") -> str:
    """The comparison table, and which placement gives the most goodput per $/h among those
    that meet the SLO."""
    rows = [[h for h, _, _ in COLUMNS]] + [[_cell(g, f, s) for _, g, f in COLUMNS]
                                           for s in summaries]
    best = max((s for s in summaries if s["meets_slo"] and s["goodput_rps_per_dollar_hour"]),
               key=lambda s: s["goodput_rps_per_dollar_hour"], default=None)
    last = (f"most goodput per $/h within SLO: {best['name']}" if best
            else "no placement meets the SLO")
    notes = [fault_line(s) for s in summaries if "faults" in s]
    return ((f"{title}\n" if title else "") + text_table(rows, numeric=True) + "\n"
            + "".join(f"{n}\n" for n in notes) + last)


def fault_line(s: dict) -> str:
    """One line on what faults cost a placement (only placements with faults have one)."""
    failed = ", ".join(f"{n} {why}" for why, n in s["requests_failed_by_reason"].items()
                       if n) or "none"
    avail = ", ".join(f"{p} {a:.1%}" for p, a in s["availability"].items())
    w = s["fault_windows"]
    att = "-" if w["slo_attainment"] is None else f"{w['slo_attainment']:.1%}"
    return (f"faults in {s['name']}: {s['faults']} applied, {s['requests_retried']} requests "
            f"retried, failed: {failed}, {s['recomputed_tokens']} tokens recomputed, "
            + (f"{s['requests_restored']} restored from host ({s['kv_bytes_restored'] / 1e9:.2f}"
               f" GB), " if s.get("requests_restored") else "")
            + f"{s['transfers_retried']} transfers retried; availability {avail}; SLO attainment "
            f"of the {w['requests']} requests arriving during faults {att}")


#: rows per frame (and Parquet row group) when ``--out`` streams the per-request tables
CHUNK_ROWS = 65_536


def write_outputs(result, out: "str | Path | OutputDir") -> Path:
    """Write summary.json, requests.csv and requests.parquet (the same rows), kv_staging.csv
    (disaggregated placements: KV held on the prefill side over time),
    scenario.resolved.yaml and plots into ``out`` by the rules of :mod:`hetsim.outputs` (a
    plain path must be new, empty or a previous hetsim output).

    NOTE: the per-request tables are streamed from the record columns, ``CHUNK_ROWS`` rows at
    a time (issue 19): the files hold ``result.requests`` and ``result.staging`` exactly, and
    neither frame is built."""
    target = out if isinstance(out, OutputDir) else check_output_dir(out)

    def fill(tmp: Path) -> None:
        (tmp / "summary.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
        stream_csv(result.request_chunks(CHUNK_ROWS), tmp / "requests.csv")
        stream_parquet(result.request_chunks(CHUNK_ROWS), tmp / "requests.parquet")
        if not stream_csv(result.staging_chunks(CHUNK_ROWS), tmp / "kv_staging.csv"):
            (tmp / "kv_staging.csv").unlink()   # no disaggregated placement: no file
        sc = result.scenario.to_dict()
        sc["workload"] = written(sc["workload"])
        (tmp / "scenario.resolved.yaml").write_text(yaml.safe_dump(sc, sort_keys=False))
        run_pngs(result, tmp)
        spans = result.fault_windows
        if spans:      # runs with faults: timeline.png
            sc = result.scenario
            span = max(float(r.sim.requests.column("arrival_s").max(initial=0.0))
                       for r in result.runs) or 1.0
            timeline_png(result.timeline(max(span / 60, 1e-3)), spans, sc.name,
                         sc.slo.attainment, tmp / "timeline.png")
    target.write("run", fill)
    return target.path


def goodput_curves(out: dict):
    """One row per (placement, rate tried) of a goodput result's JSON (``goodput.json``)."""
    import pandas as pd
    return pd.DataFrame([{"placement": p["name"], **pt} for p in out["placements"]
                         for pt in p["curve"]])


def write_goodput(out: dict, scenario, target: OutputDir) -> Path:
    """``hetsim goodput --out``: goodput.json, curves.csv (every rate tried), the scenario as
    searched and the attainment and latency plots."""
    curves = goodput_curves(out)

    def fill(tmp: Path) -> None:
        (tmp / "goodput.json").write_text(json.dumps(out, indent=2) + "\n")
        curves.to_csv(tmp / "curves.csv", index=False)
        sc = scenario.to_dict()
        sc["workload"] = written(sc["workload"])
        (tmp / "scenario.resolved.yaml").write_text(yaml.safe_dump(sc, sort_keys=False))
        goodput_pngs(curves, out, tmp)
    target.write("goodput", fill)
    return target.path
