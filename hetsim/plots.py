"""``run``'s latency CDFs and cost-vs-goodput scatter, ``plan``'s frontier, ``goodput``'s
attainment and latency curves (``sweep``'s plots: :mod:`hetsim.sweep_plots`, on the helpers
here). matplotlib is imported inside each function (on
the Agg backend, no display needed), so importing hetsim never pays for it. Imports nothing from
hetsim: results are read by their fields only."""
from __future__ import annotations

from pathlib import Path

__all__ = ["run_pngs", "latency_cdf_png", "cost_goodput_png", "plan_png", "goodput_pngs",
           "timeline_png"]

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
    if fig.get_layout_engine() is None:     # a constrained-layout figure keeps its own
        fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)


def run_pngs(result, out: Path) -> None:
    """``hetsim run --out``'s plots: latency_cdf.png and cost_vs_goodput.png in ``out``."""
    latency_cdf_png(result, out / "latency_cdf.png")
    cost_goodput_png(result, out / "cost_vs_goodput.png")


def timeline_png(frame, spans: dict, title: str, target: float, path) -> None:
    """Goodput and SLO attainment over time (by arrival bin: ``frame`` from
    ``metrics.timeline``), one line per placement, its fault windows (``spans``: {placement:
    [[start, end], ...]}) shaded in its colour."""
    plt = _pyplot()
    colors = _colors(frame["placement"])
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for name, g in frame.groupby("placement", sort=False):
        c = colors[name]
        axes[0].step(g["t_s"], g["goodput_rps"], where="post", color=c, label=_text(name))
        axes[1].step(g["t_s"], g["slo_attainment"], where="post", color=c)
        for a, b in spans.get(name, ()):
            for ax in axes:
                ax.axvspan(a, b, color=c, alpha=0.12, lw=0)
    axes[1].axhline(target, color="k", ls="--", lw=0.8, label="target")
    axes[0].set_ylabel("goodput (req/s within SLO)")
    axes[1].set_ylabel("SLO attainment")
    axes[1].set_xlabel("arrival time (s); shaded: an instance down")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"{_text(title)}: goodput and SLO attainment over time")
    _save(plt, fig, path)


#: a CDF is drawn through at most this many of its points (evenly spaced ranks, the first
#: and last kept): a longer run's curve looks the same at a fraction of the memory
CDF_POINTS = 100_000


def latency_cdf_png(result, path) -> None:
    """TTFT and TPOT CDFs of every placement (log time axis), with the SLO targets; warm-up
    requests are left out, as from the summary (values from each run's columns)."""
    import numpy as np
    plt = _pyplot()
    slo = result.scenario.slo
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, col, target in ((axes[0], "ttft_s", slo.ttft_s), (axes[1], "tpot_s", slo.tpot_s)):
        for run in result.runs:
            x = np.sort(run.latencies(col))
            y = np.arange(1, len(x) + 1) / len(x)
            if len(x) > CDF_POINTS:
                keep = np.linspace(0, len(x) - 1, CDF_POINTS).round().astype(np.int64)
                x, y = x[keep], y[keep]
            if len(x):
                ax.plot(x, y, label=_text(run.name))
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


# --- shared helpers for the goodput and sweep plots --------------------------------------------

_MS = 1000.0      # seconds -> milliseconds, for drawing only
_LATENCIES = (("ttft", "TTFT (ms)"), ("tpot", "TPOT (ms)"))


def _colors(names) -> dict:
    """A stable colour per name, in order of first appearance (tab20 past ten names)."""
    import matplotlib
    names = list(dict.fromkeys(names))
    if len(names) <= 10:
        return {n: f"C{i}" for i, n in enumerate(names)}
    cmap = matplotlib.colormaps["tab20"]
    return {n: cmap(i % 20) for i, n in enumerate(names)}


def _numbers(col):
    """A column as floats (None and text become NaN)."""
    import pandas as pd
    return pd.to_numeric(col, errors="coerce").astype(float)


def _log_if_wide(ax, values, axis: str = "y", ratio: float = 30.0) -> None:
    """Log scale when the finite positive values span more than ``ratio``."""
    import numpy as np
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v) and v.max() / v.min() > ratio:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def _short(path: str) -> str:
    """A swept key path by its last two segments (``pools.decode.instances`` ->
    ``decode.instances``), as literal text."""
    return _text(".".join(str(path).split(".")[-2:]))


def _fmt(v) -> str:
    """An axis value as short literal text."""
    import numbers
    import numpy as np
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, numbers.Real):
        return f"{v:g}"
    return _text(v)


def _is_numeric(values) -> bool:
    import numbers
    import numpy as np
    return all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
               for v in values)


def _levels(col) -> list:
    """An axis's distinct values: ascending when all numeric, else in order of first appearance."""
    vals = list(dict.fromkeys(v for v in col.tolist() if v is not None and v == v))
    return sorted(vals) if _is_numeric(vals) else vals


def _width(i: int, n: int) -> float:
    """Line width of curve ``i`` of ``n``: earlier curves are wider, so a later curve that
    coincides with one is drawn inside it and both stay visible."""
    return 1.2 + (1.6 * (n - 1 - i) / (n - 1) if n > 1 else 0.0)


def _marked(ax, x, y, bad, color, ls="-", lw=1.2, label=None) -> None:
    """A line through (x, y), its points 'o', or 'x' where ``bad``."""
    import numpy as np
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    bad = np.broadcast_to(np.asarray(bad, dtype=bool), x.shape)
    ax.plot(x, y, color=color, ls=ls, lw=lw, label=label)
    ax.scatter(x[~bad], y[~bad], color=color, marker="o", s=14, zorder=3)
    ax.scatter(x[bad], y[bad], color=color, marker="x", s=40, zorder=3)


def _assign(keys, row) -> str:
    return ", ".join(f"{_short(k)}={_fmt(row[k])}" for k in keys)


# --- hetsim goodput --out ------------------------------------------------------------------------

#: the columns of a goodput curve table, one row per (placement, rate tried)
_CURVE_COLUMNS = ("placement", "rate_rps", "attainment", "passed", "ttft_s_p50", "ttft_s_p99",
                  "tpot_s_p50", "tpot_s_p99")


def goodput_pngs(curves, out: dict, folder: Path) -> None:
    """``hetsim goodput --out``'s plots in ``folder``: attainment.png (SLO attainment against
    the rates tried) and latency.png (TTFT and TPOT p50/p99 against rate). ``curves`` has one
    row per (placement, rate tried); ``out`` is the goodput result's JSON."""
    missing = [c for c in _CURVE_COLUMNS if c not in curves]    # e.g. no placement tried a rate
    curves = curves.reindex(columns=[*curves.columns, *missing])
    _attainment_png(curves, out, folder / "attainment.png")
    _goodput_latency_png(curves, out, folder / "latency.png")


def _placement_order(curves, out: dict) -> list:
    names = [p["name"] for p in out.get("placements", [])] + curves["placement"].tolist()
    return list(dict.fromkeys(names))


def _curve(curves, name):
    """One placement's rows sorted by rate (empty when it tried none)."""
    g = curves[curves["placement"] == name]
    return g.assign(rate_rps=_numbers(g["rate_rps"])).sort_values("rate_rps", kind="stable")


def _failed(g):
    """Which rows failed the SLO (``passed`` False; unknown is not a failure)."""
    return g["passed"].eq(False).to_numpy()


def _attainment_png(curves, out: dict, path) -> None:
    plt = _pyplot()
    slo = out.get("slo", {})
    found = {p["name"]: p for p in out.get("placements", [])}
    names = _placement_order(curves, out)
    colors = _colors(names)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for i, name in enumerate(names):
        g, c = _curve(curves, name), colors[name]
        p = found.get(name, {})
        rps = p.get("max_goodput_rps")
        loose = "" if p.get("bracketed", True) else ", not bracketed"
        label = _text(name) + (f" (goodput {rps:.3g} req/s{loose})" if rps is not None else "")
        _marked(ax, g["rate_rps"], _numbers(g["attainment"]) * 100, _failed(g),
                c, lw=_width(i, len(names)), label=label)
        if rps:
            ax.axvline(rps, color=c, ls=":", lw=1.2)
    title = f"{_text(out.get('scenario', ''))}: SLO attainment vs rate"
    pct = slo.get("percentile")
    if pct is None and slo.get("attainment") is not None:
        ax.axhline(slo["attainment"] * 100, color="k", ls="--", lw=0.8,
                   label=f"SLO target {slo['attainment'] * 100:g}%")
    elif pct is not None:
        title += f"\n(SLO in p{pct:g} form: no attainment target)"
    ax.scatter([], [], color="grey", marker="o", s=14, label="passed")
    ax.scatter([], [], color="grey", marker="x", s=40, label="failed")
    _log_if_wide(ax, _numbers(curves["rate_rps"]), "x", ratio=20)
    ax.set_ylim(-3, 103)
    ax.set_xlabel("arrival rate (req/s)")
    ax.set_ylabel("SLO attainment (%)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    _save(plt, fig, path)


def _goodput_latency_png(curves, out: dict, path) -> None:
    plt = _pyplot()
    slo = out.get("slo", {})
    names = _placement_order(curves, out)
    colors = _colors(names)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, (key, ylabel) in zip(axes, _LATENCIES):
        drawn = []
        for i, name in enumerate(names):
            g, c = _curve(curves, name), colors[name]
            bad = _failed(g)
            for pct, ls in (("p50", "-"), ("p99", "--")):
                col = f"{key}_s_{pct}"
                y = _numbers(g[col]) * _MS
                drawn.append(y)
                _marked(ax, g["rate_rps"], y, bad, c, ls, _width(i, len(names)))
        if slo.get(f"{key}_s") is not None:
            ax.axhline(slo[f"{key}_s"] * _MS, color="k", ls="-.", lw=0.8)
        _legend_proxies(ax, names, colors, slo_line=slo.get(f"{key}_s") is not None)
        _scale_axes(ax, drawn, _numbers(curves["rate_rps"]))
        ax.set_xlabel("arrival rate (req/s)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{_text(out.get('scenario', ''))}: latency vs rate "
                 "(x: rate failed the SLO)")
    _save(plt, fig, path)


def _legend_proxies(ax, names, colors, slo_line: bool) -> None:
    """One legend entry per placement (so coinciding curves are all listed), then the styles."""
    from matplotlib.lines import Line2D
    h = [Line2D([], [], color=colors[n], lw=1.5) for n in names]
    lab = [_text(n) for n in names]
    h += [Line2D([], [], color="grey", ls="-"), Line2D([], [], color="grey", ls="--")]
    lab += ["p50", "p99"]
    if slo_line:
        h.append(Line2D([], [], color="k", ls="-.", lw=0.8))
        lab.append("SLO")
    ax.legend(h, lab, fontsize=7)


def _scale_axes(ax, ys, rates) -> None:
    """Log latency axis when latencies span a wide range, log rate axis likewise."""
    import numpy as np
    if ys:
        _log_if_wide(ax, np.concatenate([np.asarray(y, dtype=float) for y in ys]))
    _log_if_wide(ax, rates, "x", ratio=20)
