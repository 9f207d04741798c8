"""Every PNG hetsim writes: ``run``'s latency CDFs and cost-vs-goodput scatter, ``plan``'s
frontier. matplotlib is imported inside each function (on the Agg backend, no display needed),
so importing hetsim never pays for it. Imports nothing from hetsim: results are read by their
fields only."""
from __future__ import annotations

from pathlib import Path

__all__ = ["run_pngs", "latency_cdf_png", "cost_goodput_png", "plan_png"]

_DPI = 110
_SHAPE_COLORS = {"colocated": "C0", "homogeneous-pd": "C1", "heterogeneous-pd": "C2"}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _text(s: str) -> str:
    """A user's name as literal plot text: matplotlib reads $...$ as math (and can fail)."""
    return str(s).replace("$", r"\$")


def _save(plt, fig, path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)


def run_pngs(result, out: Path) -> None:
    """``hetsim run --out``'s plots: latency_cdf.png and cost_vs_goodput.png in ``out``."""
    latency_cdf_png(result, out / "latency_cdf.png")
    cost_goodput_png(result, out / "cost_vs_goodput.png")


def latency_cdf_png(result, path) -> None:
    """TTFT and TPOT CDFs of every placement (log time axis), with the SLO targets; warm-up
    requests are left out, as from the summary."""
    import numpy as np
    plt = _pyplot()
    df = result.requests
    if "warmup" in df:
        df = df[~df["warmup"]]
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
    _save(plt, fig, path)


def cost_goodput_png(result, path) -> None:
    """One point per placement: cost per hour against goodput."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for s in result.summaries:
        ax.scatter(s["cost_per_hour_usd"], s["goodput_rps"], s=40)
        ax.annotate(_text(s["name"]), (s["cost_per_hour_usd"], s["goodput_rps"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("cost ($/h)")
    ax.set_ylabel("goodput (requests/s within SLO)")
    ax.set_title("cost vs goodput")
    ax.grid(alpha=0.3)
    _save(plt, fig, path)


def plan_png(res, path) -> None:
    """``hetsim plan``'s cost-vs-goodput scatter with the Pareto frontier."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for c in res.verified:
        if c.goodput_rps is not None:
            ax.scatter(c.cost, c.goodput_rps, color=_SHAPE_COLORS[c.shape], s=30,
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
    _save(plt, fig, path)
