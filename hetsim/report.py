"""Human-facing outputs: the comparison table, the output folder and its plots."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from .outputs import OutputDir, check_output_dir

__all__ = ["format_table", "run_title", "text_table", "write_outputs", "plan_png"]

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
    n = len(result.requests) // max(1, len(result.summaries))
    clipped = f" ({result.clipped} clipped to the context)" if result.clipped else ""
    form = f"p{slo.percentile:g} within" if slo.percentile else f"{slo.attainment:.0%} within"
    return (f"{result.scenario.name}: {n} requests{clipped}, SLO {form} "
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
    return (f"{title}\n" if title else "") + text_table(rows, numeric=True) + "\n" + last


def _plots(result, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    df = result.requests
    slo = result.scenario.slo
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, col, target in ((axes[0], "ttft_s", slo.ttft_s), (axes[1], "tpot_s", slo.tpot_s)):
        for name, g in df.groupby("placement", sort=False):
            x = np.sort(g[col].dropna().to_numpy())
            if len(x):
                ax.plot(x, np.arange(1, len(x) + 1) / len(x), label=_text(name))
        ax.axvline(target, color="k", ls="--", lw=0.8, label="SLO")
        ax.set_xscale("log")
        ax.set_xlabel(col.replace("_s", " (s)").upper())
        ax.set_ylabel("fraction of requests")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{_text(result.scenario.name)}: latency CDFs")
    fig.tight_layout()
    fig.savefig(out / "latency_cdf.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for s in result.summaries:
        ax.scatter(s["cost_per_hour_usd"], s["goodput_rps"], s=40)
        ax.annotate(_text(s["name"]), (s["cost_per_hour_usd"], s["goodput_rps"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("cost ($/h)")
    ax.set_ylabel("goodput (requests/s within SLO)")
    ax.set_title("cost vs goodput")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "cost_vs_goodput.png", dpi=110)
    plt.close(fig)


def plan_png(res, path) -> None:
    """``hetsim plan``'s cost-vs-goodput scatter with the Pareto frontier."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {"colocated": "C0", "homogeneous-pd": "C1", "heterogeneous-pd": "C2"}
    for c in res.verified:
        if c.goodput_rps is not None:
            ax.scatter(c.cost, c.goodput_rps, color=colors[c.shape], s=30,
                       label=c.shape)
    f = res.frontier
    if f:
        ax.plot([c.cost for c in f], [c.goodput_rps for c in f], "k--", lw=0.8,
                label="Pareto frontier")
    if res.spec.objective == "cost":
        ax.axhline(res.target_rps, color="grey", lw=0.6, ls=":")
    h, lab = ax.get_legend_handles_labels()
    uniq = dict(zip(lab, h))
    ax.legend(uniq.values(), uniq.keys(), fontsize=8)
    ax.set_xlabel("cost ($/h)")
    ax.set_ylabel("goodput (req/s within SLO)")
    ax.set_title(f"{_text(res.spec.name)}: cost vs goodput")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _text(s: str) -> str:
    """A user's name as literal plot text: matplotlib reads $...$ as math (and can fail)."""
    return str(s).replace("$", r"\$")


def write_outputs(result, out: "str | Path | OutputDir") -> Path:
    """Write summary.json, requests.csv, kv_staging.csv (disaggregated placements: KV held on
    the prefill side over time), scenario.resolved.yaml and plots into ``out`` by the rules of
    :mod:`hetsim.outputs` (a plain path must be new, empty or a previous hetsim output)."""
    target = out if isinstance(out, OutputDir) else check_output_dir(out)

    def fill(tmp: Path) -> None:
        (tmp / "summary.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
        result.requests.to_csv(tmp / "requests.csv", index=False)
        if result.staging is not None and len(result.staging):
            result.staging.to_csv(tmp / "kv_staging.csv", index=False)
        (tmp / "scenario.resolved.yaml").write_text(
            yaml.safe_dump(result.scenario.to_dict(), sort_keys=False))
        _plots(result, tmp)
    target.write("run", fill)
    return target.path
