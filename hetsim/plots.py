"""Every PNG hetsim writes: ``run``'s latency CDFs and cost-vs-goodput scatter, ``plan``'s
frontier, ``goodput``'s attainment and latency curves, ``sweep``'s latency-vs-load curves,
goodput-per-$/h heatmaps and cost-goodput frontier. matplotlib is imported inside each function
(on the Agg backend, no display needed), so importing hetsim never pays for it. Imports nothing
from hetsim: results are read by their fields (or table columns) only. Times are drawn in ms."""
from __future__ import annotations

from pathlib import Path

__all__ = ["run_pngs", "latency_cdf_png", "cost_goodput_png", "plan_png", "goodput_pngs",
           "sweep_pngs", "frontier_rows"]

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


# --- hetsim sweep --out --------------------------------------------------------------------------

#: per measure: (goodput column, goodput per $/h column)
_SWEEP_COLUMNS = {"run": ("goodput_rps", "goodput_rps_per_dollar_hour"),
                  "goodput": ("max_goodput_rps", "per_dollar_hour_rps")}


def sweep_pngs(summary, axes: list[str], measure: str, slo: dict, name: str,
               folder: Path) -> list[str]:
    """``hetsim sweep --out``'s plots in ``folder``; returns the file names written, only those
    the data allows: latency_vs_load.png (measure "run" with a ``...rate_rps`` axis),
    goodput_per_usd.png (two axes or more) and frontier.png (cost and goodput columns present).
    ``summary`` has one row per (point, placement), a column per swept path in ``axes``, and
    per metric ``m`` the columns ``m``, ``m.ci95_lo`` and ``m.ci95_hi``."""
    plots = (("latency_vs_load.png", _sweep_latency_png),
             ("goodput_per_usd.png", _sweep_heatmap_png),
             ("frontier.png", _sweep_frontier_png))
    return [fname for fname, draw in plots
            if draw(summary, list(axes), measure, slo, name, folder / fname)]


def _curves_by(summary, keys):
    """(label keys, rows) per curve: one per placement and combination of ``keys``' values."""
    by = ["placement", *keys]
    return summary.groupby(by, sort=False, dropna=False) if len(summary) else []


def _sweep_latency_png(summary, axes, measure, slo, name, path) -> bool:
    rate = next((a for a in axes if str(a).endswith("rate_rps")), None)
    cols = [f"{k}_s.{p}" for k, _ in _LATENCIES for p in ("p50", "p99")]
    if measure != "run" or rate is None or not all(c in summary for c in cols):
        return False
    plt = _pyplot()
    others = [a for a in axes if a != rate]
    groups = list(_curves_by(summary, others))
    labels = [_curve_label(k if isinstance(k, tuple) else (k,), others) for k, _ in groups]
    colors = _colors(labels)
    many = len(groups) > 6                  # then the legend goes below, in three columns
    rows = -(-(len(groups) + 4) // 3)
    fig = plt.figure(figsize=(11, 4.8 + (0.17 * rows if many else 0)), layout="constrained")
    band = min(0.12, 0.6 / max(len(groups), 1))     # overlapping bands stay see-through
    panels = fig.subplots(1, 2)
    for ax, (key, ylabel) in zip(panels, _LATENCIES):
        ys = [_sweep_curve(ax, g, rate, key, colors[lab], _width(i, len(groups)), band)
              for i, (lab, (_, g)) in enumerate(zip(labels, groups))]
        ax.axhline(slo[f"{key}_s"] * _MS, color="k", ls="-.", lw=0.8)
        _scale_axes(ax, [y for pair in ys for y in pair], _numbers(summary[rate]))
        ax.set_xlabel(f"{_short(rate)} (req/s)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    h, lab = _sweep_legend(labels, colors)
    if many:
        fig.legend(h, lab, loc="outside lower center", fontsize=7, ncols=3)
    else:
        panels[0].legend(h, lab, fontsize=7)
    note = " (bands: 95% interval over seeds)" if _seeds(summary) > 1 else ""
    fig.suptitle(f"{_text(name)}: latency vs load{note}")
    _save(plt, fig, path)
    return True


def _curve_label(key: tuple, others) -> str:
    """``hetero · decode.instances=4``: the placement, then the other swept values."""
    values = [f"{_short(a)}={_fmt(v)}" for a, v in zip(others, key[1:])]
    return " · ".join([_text(key[0]), *values])


def _seeds(summary) -> int:
    return int(_numbers(summary["seeds"]).max()) if "seeds" in summary and len(summary) else 1


def _sweep_curve(ax, g, rate, key, color, lw, alpha):
    """p50 (solid) and p99 (dashed) of one curve; 95% bands over seeds; 'x' where fewer than
    half the seeds met the SLO. Returns the two y series in ms."""
    g = g.assign(_x=_numbers(g[rate])).sort_values("_x", kind="stable")
    bad = (_numbers(g["meets_slo"]) < 0.5).to_numpy() if "meets_slo" in g else False
    ys = []
    for pct, ls in (("p50", "-"), ("p99", "--")):
        col = f"{key}_s.{pct}"
        y = _numbers(g[col]) * _MS
        ys.append(y)
        _marked(ax, g["_x"], y, bad, color, ls, lw)
        lo, hi = f"{col}.ci95_lo", f"{col}.ci95_hi"
        if _seeds(g) > 1 and lo in g and hi in g:
            ax.fill_between(g["_x"], _numbers(g[lo]) * _MS, _numbers(g[hi]) * _MS,
                            color=color, alpha=alpha, lw=0)
    return ys


def _sweep_legend(labels, colors):
    from matplotlib.lines import Line2D
    h = [Line2D([], [], color=colors[lab], lw=1.5) for lab in labels]
    h += [Line2D([], [], color="grey", ls="-"), Line2D([], [], color="grey", ls="--"),
          Line2D([], [], color="k", ls="-.", lw=0.8),
          Line2D([], [], color="grey", marker="x", ls="none")]
    return h, [*labels, "p50", "p99", "SLO", "SLO met by < half the seeds"]


def _sweep_heatmap_png(summary, axes, measure, slo, name, path) -> bool:
    value = _SWEEP_COLUMNS[measure][1]
    if len(axes) < 2 or value not in summary or "placement" not in summary:
        return False
    import numpy as np
    plt = _pyplot()
    xk, yk, rest = axes[0], axes[1], axes[2:]
    xs, ys = _levels(summary[xk]), _levels(summary[yk])
    names = list(dict.fromkeys(summary["placement"]))
    grids = [_best_grid(summary[summary["placement"] == n], xk, yk, xs, ys, value)
             for n in names]
    finite = np.concatenate([g[np.isfinite(g)] for g in grids] + [np.array([])])
    vmin, vmax = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
    ncols = min(len(names), 3) or 1
    nrows = -(-len(names) // ncols) or 1
    w, h = max(3.8, 0.7 * len(xs) + 2.2), max(3.0, 0.45 * len(ys) + 2.0)
    fig = plt.figure(figsize=(w * ncols + 1.2, h * nrows + 0.6), layout="constrained")
    grid_axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    im = None
    for ax, n, grid in zip(grid_axes, names, grids):
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", vmin=vmin,
                       vmax=vmax)
        _cell_numbers(ax, grid, vmin, vmax)
        ax.set_xticks(range(len(xs)), [_fmt(v) for v in xs], fontsize=8,
                      rotation=30 if len(xs) > 5 else 0)
        ax.set_yticks(range(len(ys)), [_fmt(v) for v in ys], fontsize=8)
        ax.set_xlabel(_short(xk))
        ax.set_ylabel(_short(yk))
        ax.set_title(_text(n), fontsize=9)
    for ax in grid_axes[len(names):]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=list(grid_axes[:len(names)]),
                     label=r"goodput per \$/h (req/s per \$/h)")
    best = f"\n(each cell: best over {', '.join(_short(a) for a in rest)})" if rest else ""
    fig.suptitle(rf"{_text(name)}: goodput per \$/h{best}")
    _save(plt, fig, path)
    return True


def _best_grid(rows, xk, yk, xs, ys, value):
    """(len(ys), len(xs)) array of the largest ``value`` per cell; NaN where none."""
    import numpy as np
    grid = np.full((len(ys), len(xs)), np.nan)
    xi, yi = {_key(v): i for i, v in enumerate(xs)}, {_key(v): i for i, v in enumerate(ys)}
    for x, y, v in zip(rows[xk], rows[yk], _numbers(rows[value])):
        i, j = yi.get(_key(y)), xi.get(_key(x))
        if i is not None and j is not None and np.isfinite(v):
            grid[i, j] = v if np.isnan(grid[i, j]) else max(grid[i, j], v)
    return grid


def _key(v):
    """An axis value as a dict key that keeps True apart from 1."""
    import numpy as np
    return (isinstance(v, (bool, np.bool_)), v)


def _cell_numbers(ax, grid, vmin, vmax) -> None:
    import numpy as np
    mid = (vmin + vmax) / 2
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=7,
                    color="black" if v > mid else "white")


def frontier_rows(df, cost_col: str, goodput_col: str) -> list:
    """Index labels of the rows on the cost-goodput Pareto frontier, cheapest first: no other
    row costs no more and delivers at least as much, being strictly better in one. Rows with
    identical cost and goodput are all kept (neither beats the other); rows with no cost or
    with no positive goodput are never on it."""
    import math
    cost, good = _numbers(df[cost_col]), _numbers(df[goodput_col])
    ok = cost.notna() & good.notna() & (good > 0)
    order = sorted(df.index[ok.to_numpy()], key=lambda i: (cost[i], -good[i]))
    rows, best, last = [], -math.inf, None
    for i in order:
        if good[i] > best:
            rows.append(i)
            best, last = good[i], (cost[i], good[i])
        elif (cost[i], good[i]) == last:
            rows.append(i)
    return rows


def _sweep_frontier_png(summary, axes, measure, slo, name, path) -> bool:
    gcol = _SWEEP_COLUMNS[measure][0]
    if "cost_per_hour_usd" not in summary or gcol not in summary:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    names = list(dict.fromkeys(summary["placement"])) if "placement" in summary else []
    colors = _colors(names)
    for n in names:
        g = summary[summary["placement"] == n]
        ax.scatter(_numbers(g["cost_per_hour_usd"]), _numbers(g[gcol]), color=colors[n], s=28,
                   alpha=0.8, label=_text(n))
    front = summary.loc[frontier_rows(summary, "cost_per_hour_usd", gcol)]
    if len(front):
        x, y = _numbers(front["cost_per_hour_usd"]), _numbers(front[gcol])
        ax.step(x, y, where="post", color="k", lw=1.0, label="Pareto frontier")
        ax.scatter(x, y, facecolors="none", edgecolors="k", s=70, lw=1.0)
        _annotate_frontier(ax, front, x, y, axes)
    ax.set_xlabel(r"cost (\$/h)")
    ax.set_ylabel("goodput (req/s within SLO)")
    ax.set_title(f"{_text(name)}: cost vs goodput per sweep point")
    if names:
        ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    _save(plt, fig, path)
    return True


def _annotate_frontier(ax, front, x, y, axes) -> None:
    """Each frontier point's placement and swept values; coinciding points share one note (at
    most three lines, then a count); notes on the right half grow leftwards."""
    notes: dict = {}
    keys = [a for a in axes if a in front]
    for i in front.index:
        row = front.loc[i]
        head = _text(row["placement"]) if "placement" in front else ""
        notes.setdefault((x[i], y[i]), []).append(": ".join(t for t in (head, _assign(keys, row))
                                                            if t))
    mid = (x.min() + x.max()) / 2
    for (cx, cy), lines in notes.items():
        text = "\n".join(lines[:3] + ([f"(+{len(lines) - 3} more)"] if len(lines) > 3 else []))
        right = len(notes) > 1 and cx > mid
        ax.annotate(text, (cx, cy), fontsize=7, xytext=(-5 if right else 5, -4),
                    textcoords="offset points", va="top", ha="right" if right else "left")
