"""``sweep``'s plots: latency-vs-load curves, goodput-per-$/h heatmaps and the cost-goodput
frontier. As :mod:`hetsim.plots` (whose helpers these use): matplotlib imported inside each
function, tables read by column name only, times drawn in ms."""
from __future__ import annotations

from pathlib import Path

from .plots import (_LATENCIES, _MS, _assign, _colors, _fmt, _levels, _marked, _numbers,
                    _pyplot, _save, _scale_axes, _short, _text, _width)

__all__ = ["sweep_pngs", "frontier_rows", "operating_points"]


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


def operating_points(summary):
    """Rows a plan could run at: with ``measure: run``, those where most seeds met the SLO
    (a run past its SLO still counts the requests that met it as goodput, but is no operating
    point); every row of a goodput sweep (each is already a rate within SLO)."""
    import pandas as pd
    if "meets_slo" not in summary:
        return pd.Series(True, index=summary.index)
    return _numbers(summary["meets_slo"]).fillna(0) >= 0.5


def _sweep_frontier_png(summary, axes, measure, slo, name, path) -> bool:
    gcol = _SWEEP_COLUMNS[measure][0]
    if "cost_per_hour_usd" not in summary or gcol not in summary:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    names = list(dict.fromkeys(summary["placement"])) if "placement" in summary else []
    colors = _colors(names)
    ok = operating_points(summary)
    for n in names:
        g = summary[summary["placement"] == n]
        good = ok.loc[g.index]
        ax.scatter(_numbers(g.loc[good, "cost_per_hour_usd"]), _numbers(g.loc[good, gcol]),
                   color=colors[n], s=28, alpha=0.8, label=_text(n))
        ax.scatter(_numbers(g.loc[~good, "cost_per_hour_usd"]), _numbers(g.loc[~good, gcol]),
                   color=colors[n], s=28, alpha=0.8, marker="x")
    if not ok.all():
        ax.scatter([], [], color="grey", marker="x", label="SLO missed (not on the frontier)")
    front = summary.loc[frontier_rows(summary[ok], "cost_per_hour_usd", gcol)]
    if len(front):
        x, y = _numbers(front["cost_per_hour_usd"]), _numbers(front[gcol])
        ax.step(x, y, where="post", color="k", lw=1.0, label="Pareto frontier")
        ax.scatter(x, y, facecolors="none", edgecolors="k", s=70, lw=1.0)
        _annotate_frontier(ax, front, x, y, axes)
    ax.set_xlabel(r"cost (\$/h)")
    ax.set_ylabel("goodput (req/s within SLO)")
    ax.set_title(f"{_text(name)}: cost vs goodput per sweep point")
    if names:
        ax.legend(fontsize=8, loc="best")
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
    for k, ((cx, cy), lines) in enumerate(notes.items()):
        text = "\n".join(lines[:3] + ([f"(+{len(lines) - 3} more)"] if len(lines) > 3 else []))
        right = len(notes) > 1 and cx > mid
        above = k % 2 == 1        # neighbours alternate above and below, so close ones part
        ax.annotate(text, (cx, cy), fontsize=7, xytext=(-5 if right else 5, 5 if above else -4),
                    textcoords="offset points", va="bottom" if above else "top",
                    ha="right" if right else "left")
    ax.margins(y=0.12)       # room for the notes above the highest point
