"""``goodput`` and ``sweep`` plots from hand-made tables (no simulation): the files that apply
are written as real PNGs, the others are not; the cost-goodput frontier is exactly the
non-dominated rows; ``$`` in names and missing latencies draw without error."""
import itertools
import math

import pandas as pd
import pytest

from hetsim.plots import goodput_pngs
from hetsim.sweep_plots import frontier_rows, operating_points, sweep_pngs

PNG = b"\x89PNG\r\n\x1a\n"
SLO = {"ttft_s": 0.5, "tpot_s": 0.05}
RATE = "workload.arrival.rate_rps"
DECODE = "placements.hetero.pools.decode.instances"
PREC = "placements.hetero.pools.decode.precision"


def _png(path) -> bool:
    return path.read_bytes()[:8] == PNG and path.stat().st_size > 1000


# --- goodput ---------------------------------------------------------------------------------

def _goodput(names=("coloc", "hetero"), percentile=None, nan=False):
    rows, placements = [], []
    for k, name in enumerate(names):
        for rate in (1.0, 2.0, 4.0, 8.0, 6.0, 5.0):          # unsorted, as a search tries them
            ok = rate <= 4 + k
            lat = None if nan and rate >= 6 else 0.1 * rate
            rows.append({"placement": name, "rate_rps": rate,
                         "attainment": 1.0 if ok else 0.6, "passed": ok,
                         "ttft_s_p50": lat, "ttft_s_p99": None if lat is None else 2 * lat,
                         "tpot_s_p50": 0.01 * rate, "tpot_s_p99": float("nan") if nan
                         else 0.02 * rate})
        placements.append({"name": name, "max_goodput_rps": 4.0 + k, "bracketed": k == 0})
    out = {"scenario": "chat", "slo": {**SLO, "attainment": 0.9, "percentile": percentile},
           "placements": placements}
    return pd.DataFrame(rows), out


@pytest.mark.parametrize("percentile", [None, 99.0])
def test_goodput_pngs_write_attainment_and_latency(tmp_path, percentile):
    curves, out = _goodput(percentile=percentile)
    goodput_pngs(curves, out, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attainment.png", "latency.png"]
    assert _png(tmp_path / "attainment.png") and _png(tmp_path / "latency.png")


def test_goodput_pngs_with_dollar_names_and_missing_latencies(tmp_path):
    curves, out = _goodput(names=("$cheap$", "a$b"), nan=True)
    out["scenario"] = "cost $5 $x^2$"
    goodput_pngs(curves, out, tmp_path)
    assert _png(tmp_path / "attainment.png") and _png(tmp_path / "latency.png")


def test_goodput_pngs_with_identical_placements_differ_from_one(tmp_path):
    """Two placements with identical curves are both drawn (and listed): not the one-plot."""
    curves, out = _goodput(names=("a",))
    twin = curves.assign(placement="b")
    out2 = {**out, "placements": out["placements"] + [{**out["placements"][0], "name": "b"}]}
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    goodput_pngs(curves, out, tmp_path / "one")
    goodput_pngs(pd.concat([curves, twin], ignore_index=True), out2, tmp_path / "two")
    for f in ("attainment.png", "latency.png"):
        assert (tmp_path / "one" / f).read_bytes() != (tmp_path / "two" / f).read_bytes()


def test_goodput_pngs_with_no_rates_tried(tmp_path):
    """A placement that tried no rate (no curve rows, not even columns) still gets both plots."""
    _, out = _goodput(names=("a",))
    goodput_pngs(pd.DataFrame([]), out, tmp_path)
    assert _png(tmp_path / "attainment.png") and _png(tmp_path / "latency.png")


# --- sweep -----------------------------------------------------------------------------------

def _sweep(axes_values: dict, measure="run", seeds=1, names=("coloc", "hetero"), nan=False):
    """One row per (point, placement) with plausible metrics; ci95 columns around the mean."""
    rows = []
    combos = list(itertools.product(*axes_values.values()))
    for point, combo in enumerate(combos):
        vals = dict(zip(axes_values, combo))
        rate = vals.get(RATE, 2.0)
        inst = vals.get(DECODE, 2)
        for k, name in enumerate(names):
            cost = 10.0 + 4 * inst + 3 * k
            good = min(rate, 3.0 * inst + k)
            m = {"cost_per_hour_usd": cost}
            if measure == "run":
                ttft = 0.05 * rate / inst
                m |= {"ttft_s.p50": ttft, "ttft_s.p99": 3 * ttft, "tpot_s.p50": 0.01 * rate,
                      "tpot_s.p99": 0.03 * rate, "goodput_rps": good,
                      "goodput_rps_per_dollar_hour": good / cost,
                      "meets_slo": 1.0 if 3 * ttft < SLO["ttft_s"] else 0.0,
                      "slo_attainment": 0.95}
                if nan and point == 0:
                    m["ttft_s.p50"] = m["ttft_s.p99"] = float("nan")
            else:
                m |= {"max_goodput_rps": good, "per_dollar_hour_rps": good / cost,
                      "per_accelerator_rps": good / (inst + 1), "accelerators": inst + 1}
            ci = {}
            for c, v in m.items():
                w = 0.1 * abs(v) if seeds > 1 else 0.0
                ci |= {f"{c}.ci95_lo": v - w, f"{c}.ci95_hi": v + w}
            rows.append({"point": point, **vals, "placement": name, "seeds": seeds, **m, **ci})
    return pd.DataFrame(rows), list(axes_values)


def test_sweep_rate_and_decode_gives_all_three(tmp_path):
    summary, axes = _sweep({RATE: [1.0, 2.0, 4.0, 8.0], DECODE: [1, 2, 4]}, seeds=3)
    names = sweep_pngs(summary, axes, "run", SLO, "chat", tmp_path)
    assert names == ["latency_vs_load.png", "goodput_per_usd.png", "frontier.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    assert all(_png(tmp_path / n) for n in names)


def test_sweep_one_non_rate_axis_gives_only_the_frontier(tmp_path):
    summary, axes = _sweep({DECODE: [1, 2, 4]})
    assert sweep_pngs(summary, axes, "run", SLO, "chat", tmp_path) == ["frontier.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["frontier.png"]


def test_sweep_one_rate_axis_has_no_heatmap(tmp_path):
    summary, axes = _sweep({RATE: [1.0, 2.0, 4.0]})
    assert sweep_pngs(summary, axes, "run", SLO, "chat", tmp_path) == [
        "latency_vs_load.png", "frontier.png"]


def test_sweep_goodput_measure_has_no_latency_plot(tmp_path):
    summary, axes = _sweep({RATE: [1.0, 2.0], DECODE: [1, 2]}, measure="goodput")
    assert sweep_pngs(summary, axes, "goodput", SLO, "chat", tmp_path) == [
        "goodput_per_usd.png", "frontier.png"]
    assert not (tmp_path / "latency_vs_load.png").exists()


def test_sweep_without_cost_or_goodput_columns_writes_no_frontier(tmp_path):
    summary, axes = _sweep({RATE: [1.0, 2.0], DECODE: [1, 2]})
    summary = summary.drop(columns=["goodput_rps"])
    assert "frontier.png" not in sweep_pngs(summary, axes, "run", SLO, "chat", tmp_path)


def test_sweep_three_axes_with_text_values_dollar_names_and_nan(tmp_path):
    """A categorical axis (precision as JSON text), a third axis (best over it), ``$`` in
    scenario, placement and axis values, and a point with no latencies."""
    summary, axes = _sweep({DECODE: [4, 1, 2], PREC: ['"fp8"', '"bf16"', "$x$"],
                            RATE: [1.0, 4.0]},
                           names=("$cheap$", "a$b", "c"), nan=True, seeds=2)
    names = sweep_pngs(summary, axes, "run", SLO, "cost $5 $x^2$", tmp_path)
    assert names == ["latency_vs_load.png", "goodput_per_usd.png", "frontier.png"]
    assert all(_png(tmp_path / n) for n in names)


def test_sweep_boolean_axis_and_single_seed(tmp_path):
    summary, axes = _sweep({"placements.hetero.pools.decode.chunked_prefill": [True, False],
                            RATE: [1.0, 2.0, 3.0]})
    assert len(sweep_pngs(summary, axes, "run", SLO, "chat", tmp_path)) == 3


def test_sweep_identical_placements_are_both_drawn(tmp_path):
    """A second placement identical to the first changes every plot (it is drawn and listed)."""
    one, axes = _sweep({RATE: [1.0, 2.0], DECODE: [1, 2]}, names=("a",))
    two = pd.concat([one, one.assign(placement="b")], ignore_index=True)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    n1 = sweep_pngs(one, axes, "run", SLO, "chat", tmp_path / "one")
    n2 = sweep_pngs(two, axes, "run", SLO, "chat", tmp_path / "two")
    assert n1 == n2
    for f in n1:
        assert (tmp_path / "one" / f).read_bytes() != (tmp_path / "two" / f).read_bytes()


# --- the frontier ----------------------------------------------------------------------------

def _front(points, index=None):
    df = pd.DataFrame(points, columns=["cost", "goodput"], index=index)
    return frontier_rows(df, "cost", "goodput")


def test_frontier_picks_exactly_the_non_dominated_rows():
    pts = [(3.0, 10.0),   # 0: cheapest
           (6.0, 25.0),   # 1: more goodput
           (7.0, 20.0),   # 2: dominated by 1
           (5.0, 8.0),    # 3: dominated by 0
           (9.0, 30.0),   # 4: most goodput
           (8.0, 25.0)]   # 5: same goodput as 1, dearer: dominated
    assert _front(pts) == [0, 1, 4]


def test_frontier_ties():
    # same cost: only the best goodput; same goodput: only the cheapest; exact twins: both
    assert _front([(4.0, 10.0), (4.0, 12.0), (6.0, 12.0), (2.0, 5.0)]) == [3, 1]
    assert _front([(4.0, 10.0), (4.0, 10.0), (5.0, 11.0)]) == [0, 1, 2]
    assert _front([(4.0, 10.0), (4.0, 10.0), (3.0, 10.0)]) == [2]


def test_frontier_skips_missing_and_zero_and_keeps_index_labels():
    pts = [(1.0, 0.0), (2.0, math.nan), (None, 50.0), (3.0, 4.0), (4.0, 6.0)]
    assert _front(pts, index=[10, 11, 12, 13, 14]) == [13, 14]
    assert _front([]) == []


def test_frontier_matches_brute_force():
    import numpy as np
    rng = np.random.default_rng(7)
    df = pd.DataFrame({"cost": rng.integers(1, 6, 60).astype(float),
                       "goodput": rng.integers(1, 6, 60).astype(float)})
    c, g = df["cost"].to_numpy(), df["goodput"].to_numpy()
    brute = [i for i in range(len(df))
             if not any(c[j] <= c[i] and g[j] >= g[i] and (c[j] < c[i] or g[j] > g[i])
                        for j in range(len(df)))]
    assert sorted(frontier_rows(df, "cost", "goodput")) == brute


def test_a_run_that_missed_its_slo_is_no_operating_point():
    """measure: run counts the requests that met the SLO as goodput even in a run past its
    SLO; such a point is drawn but cannot be on the frontier. Goodput rows all can."""
    df = pd.DataFrame({"cost_per_hour_usd": [1.0, 2.0, 2.0],
                       "goodput_rps": [5.0, 8.0, 12.0],
                       "meets_slo": [1.0, 1.0, 0.0]})
    ok = operating_points(df)
    assert list(ok) == [True, True, False]
    assert frontier_rows(df[ok], "cost_per_hour_usd", "goodput_rps") == [0, 1]
    assert frontier_rows(df, "cost_per_hour_usd", "goodput_rps") == [0, 2]
    assert operating_points(df.drop(columns="meets_slo")).all()
