"""Benchmark semantics of the workload (issue 15 §2): the closed loop's start ramp, and warm-up
requests that run but are left out of the metrics, which are measured over their window."""
import copy
import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import hetsim
from hetsim.api import prepare
from hetsim.check import flatten
from hetsim.cli import main
from hetsim.config import build
from hetsim.engine.sim import Simulation
from hetsim.errors import ConfigError
from hetsim.metrics import (arrival_window, metric_error, percentiles, records_frame, slo_met,
                            summarize)
from hetsim.workload import WorkloadSpec, generate

from .conftest import scenario_from

# Figures the instances and links accumulate: with a warm-up the engine restarts them when the
# first measured request is sent, so they cover that send to the run's end.
ENGINE_WIDE = ("pool_utilization", "decode_step_s", "kv_occupancy", "kv_staging",
               "link_utilization", "preemptions", "kv_conversion_bytes", "bottleneck")
WINDOW = ("warmup_requests", "window_start_s", "window_end_s")


def closed(base_dict, tmp_path, n_clients, requests, placements=("coloc",), **extra):
    d = copy.deepcopy(base_dict)
    d["workload"]["requests"] = requests
    d["workload"]["arrival"] = {"process": "closed", "concurrency": n_clients, **extra}
    d["placements"] = {k: d["placements"][k] for k in placements}
    return d


def with_warmup(d, **warmup):
    d = copy.deepcopy(d)
    d["workload"]["warmup"] = warmup
    return d


def simulate(sc):
    """{placement: (records frame, SimResult)} of scenario ``sc``, as ``hetsim.run`` builds them."""
    model, resolved, reqs = prepare(sc)
    out = {}
    for name, pl in resolved.items():
        res = Simulation(pl, model, reqs, seed=sc.workload.seed).run()
        out[name] = (records_frame(res.requests, name, sc.workload.warmup), res, pl)
    return out


# --- the closed loop's ramp --------------------------------------------------------------------
def test_ramp_starts_client_i_at_i_ramp_over_n(tmp_path, base_dict):
    """Long requests (200 output tokens, ~1 s) outlast the 0.3 s ramp, so ids 0-3 are the four
    clients' first requests; the fifth is sent when the first of them completes."""
    d = closed(base_dict, tmp_path, 4, 12, ramp_s=0.3)
    d["workload"]["output_tokens"] = {"dist": "fixed", "value": 200}
    df = hetsim.run(scenario_from(d, tmp_path)).requests.set_index("id")
    assert df["arrival_s"].iloc[:4].tolist() == [c * 0.3 / 4 for c in range(4)]
    assert df["arrival_s"].iloc[:4].tolist() == pytest.approx([0.0, 0.075, 0.15, 0.225],
                                                              abs=1e-15)
    assert df.loc[3, "arrival_s"] < df.loc[0:3, "last_token_s"].min()   # premise of the test
    assert df.loc[4, "arrival_s"] == df.loc[0:3, "last_token_s"].min()


def test_ramp_spacing_uses_the_configured_clients_when_requests_are_fewer(tmp_path, base_dict):
    d = closed(base_dict, tmp_path, 8, 3, ramp_s=8.0)
    d["workload"]["output_tokens"] = {"dist": "fixed", "value": 1000}    # ~8 s: none ends first
    df = hetsim.run(scenario_from(d, tmp_path)).requests
    assert df["arrival_s"].tolist() == [0.0, 1.0, 2.0]


def test_no_ramp_starts_every_client_at_zero(tmp_path, base_dict):
    d = closed(base_dict, tmp_path, 4, 12)
    df = hetsim.run(scenario_from(d, tmp_path)).requests
    assert (df["arrival_s"] == 0).sum() == 4
    zero = closed(base_dict, tmp_path, 4, 12, ramp_s=0.0)      # explicit 0 = the default
    assert hetsim.run(scenario_from(zero, tmp_path, "z.yaml")).requests.equals(df)


@pytest.mark.parametrize("arrival", [
    {"process": "poisson", "rate_rps": 40.0},
    {"process": "closed", "concurrency": 6, "ramp_s": 0.05, "think_time_s": 0.01},
])
def test_ids_follow_send_order(tmp_path, base_dict, arrival):
    """Warm-up by count relies on it: the first N requests sent are the ids below N."""
    d = copy.deepcopy(base_dict)
    d["workload"]["arrival"] = arrival
    d["workload"]["output_tokens"] = {"dist": "uniform", "min": 1, "max": 40}
    df = hetsim.run(scenario_from(d, tmp_path)).requests
    for _, g in df.groupby("placement"):
        t = g.sort_values("id")["arrival_s"].to_numpy()
        assert (np.diff(t) >= 0).all()
        assert len(np.unique(t)) > len(t) // 2        # not trivially all at one time


def test_ramp_is_refused_outside_a_closed_loop_and_when_negative():
    base = {"input_tokens": {"dist": "fixed", "value": 8},
            "output_tokens": {"dist": "fixed", "value": 8}}
    with pytest.raises(ConfigError, match=r"^workload\.arrival\.ramp_s: ramp_s does not apply "
                                          r"to constant arrivals$"):
        build(WorkloadSpec, {**base, "arrival": {"process": "constant", "rate_rps": 1,
                                                 "ramp_s": 2}}, "workload")
    with pytest.raises(ConfigError, match=r"^workload\.arrival\.ramp_s: must be in \[0"):
        build(WorkloadSpec, {**base, "arrival": {"process": "closed", "concurrency": 2,
                                                 "ramp_s": -0.5}}, "workload")
    ok = build(WorkloadSpec, {**base, "arrival": {"process": "closed", "concurrency": 2,
                                                  "ramp_s": 4}}, "workload")
    assert generate(ok).ramp_s == 4.0


# --- warm-up: which requests -------------------------------------------------------------------
def test_warmup_by_requests_flags_exactly_the_first_n_ids(tmp_path, base_dict):
    r = hetsim.run(scenario_from(with_warmup(base_dict, requests=30), tmp_path))
    df = r.requests
    assert list(df.columns[:3]) == ["placement", "id", "warmup"]
    assert df["warmup"].dtype == bool
    for name, g in df.groupby("placement"):
        assert set(g.loc[g["warmup"], "id"]) == set(range(30)), name
        assert len(g) == 200                       # every request keeps its row
    for s in r.summaries:
        assert (s["requests"], s["warmup_requests"]) == (170, 30)
    from hetsim.report import run_title
    assert "200 requests, 30 of them warm-up (not measured)" in run_title(r)


def test_warmup_by_seconds_flags_the_requests_sent_before(tmp_path, base_dict):
    r = hetsim.run(scenario_from(with_warmup(base_dict, seconds=10.0), tmp_path))
    df = r.requests
    for _, g in df.groupby("placement"):
        want = set(g.loc[g["arrival_s"] < 10.0, "id"])
        assert set(g.loc[g["warmup"], "id"]) == want
        assert want == set(range(len(want))) and 20 < len(want) < 80   # a prefix, ~40 at 4 r/s


def test_closed_loop_warmup_by_seconds_and_by_requests(tmp_path, base_dict):
    d = closed(base_dict, tmp_path, 4, 60, ramp_s=0.2)
    by_s = hetsim.run(scenario_from(with_warmup(d, seconds=1.0), tmp_path)).requests
    assert set(by_s.loc[by_s["warmup"], "id"]) == set(by_s.loc[by_s["arrival_s"] < 1.0, "id"])
    assert 4 < by_s["warmup"].sum() < 60
    by_n = hetsim.run(scenario_from(with_warmup(d, requests=7), tmp_path, "n.yaml")).requests
    assert set(by_n.loc[by_n["warmup"], "id"]) == set(range(7))


def test_warmup_does_not_change_the_simulation(tmp_path, base_dict):
    plain = hetsim.run(scenario_from(base_dict, tmp_path)).requests
    warm = hetsim.run(scenario_from(with_warmup(base_dict, requests=30), tmp_path, "w.yaml"))
    assert warm.requests.drop(columns="warmup").equals(plain)


# --- warm-up: what is measured -----------------------------------------------------------------
@pytest.mark.parametrize("warmup", [{"requests": 50}, {"seconds": 7.5}])
def test_summary_with_warmup_is_the_summary_of_the_measured_requests(tmp_path, base_dict,
                                                                     warmup):
    """Metamorphic: per-request figures equal those of a run whose records are just the
    measured ones and whose end is the window's end (engine-wide ones: the tests below)."""
    d = copy.deepcopy(base_dict)
    d["workload"]["output_tokens"] = {"dist": "uniform", "min": 1, "max": 300}
    plain = simulate(scenario_from(d, tmp_path))
    warm = simulate(scenario_from(with_warmup(d, **warmup), tmp_path, "w.yaml"))
    sc_slo = scenario_from(d, tmp_path).slo
    for name, (df, res, pl) in warm.items():
        s = summarize(df, pl, sc_slo, res)
        m = df[~df["warmup"]].drop(columns="warmup")
        end = float(m["last_token_s"].max())
        by_hand = summarize(m, pl, sc_slo, dataclasses.replace(res, end_s=end))
        p_df, p_res, _ = plain[name]
        whole = summarize(p_df, pl, sc_slo, p_res)
        assert s["window_end_s"] == end
        for k, v in s.items():
            if k not in ENGINE_WIDE:
                assert v == by_hand.get(k, v), (name, k)
        assert s["requests"] < whole["requests"] and s["ttft_s"] != whole["ttft_s"]


def test_engine_figures_restart_at_the_first_measured_send(tmp_path, base_dict):
    """One client in a closed loop runs identical requests back to back, so each takes the
    same busy time and the window (from request N's send) holds exactly the last R - N of
    them: utilisation over the window is busy x (R - N) / R over its span; KV occupancy's mean
    and peak equal the whole run's (every request traces the same profile)."""
    r, n = 12, 5
    d = closed(base_dict, tmp_path, 1, r)
    plain, = simulate(scenario_from(d, tmp_path)).values()
    (df, res, pl), = simulate(scenario_from(with_warmup(d, requests=n), tmp_path,
                                            "w.yaml")).values()
    _, p_res, _ = plain
    t0 = float(df.loc[df["id"] == n, "arrival_s"].item())
    assert res.stats_start_s == t0 > 0 and p_res.stats_start_s is None
    (w,), (whole,) = res.instances["m"], p_res.instances["m"]
    assert w.iterations * r == whole.iterations * (r - n)
    assert w.busy_s == pytest.approx(whole.busy_s * (r - n) / r, rel=1e-12)
    assert w.decode_tokens * r == whole.decode_tokens * (r - n)
    assert w.kv.mean_occupancy == pytest.approx(whole.kv.mean_occupancy, rel=1e-9)
    assert w.kv.peak == whole.kv.peak
    s = summarize(df, pl, scenario_from(d, tmp_path).slo, res)
    assert s["pool_utilization"]["m"] == pytest.approx(w.busy_s / (res.end_s - t0), rel=1e-12)


def test_a_warm_up_burst_is_left_out_of_engine_peaks_and_preemptions(tmp_path, base_dict):
    """A heavy start (40 long prompts together on a small KV cache, vLLM's on-demand KV with
    preemption by recompute) preempts and fills the cache; the measured tail is one client's light requests, which
    neither preempt nor come near that peak."""
    d = copy.deepcopy(base_dict)
    d["workload"] = {"requests": 60, "seed": 1, "warmup": {"requests": 40},
                     "trace": str(tmp_path / "t.csv")}
    rows = ["timestamp_s,input_tokens,output_tokens"]
    rows += ["0.0,4000,400" for _ in range(40)] + [f"{100 + i}.0,100,10" for i in range(20)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    d["placements"] = {"coloc": {"pools": {"m": {
        "role": "mixed", "accelerator": "h100-sxm", "memory_utilization": 0.3,
        "runtime": "vllm"}}}}
    (df, res, pl), = simulate(scenario_from(d, tmp_path)).values()
    plain = copy.deepcopy(d)
    del plain["workload"]["warmup"]
    (_, p_res, _), = simulate(scenario_from(plain, tmp_path, "p.yaml")).values()
    (w,), (whole,) = res.instances["m"], p_res.instances["m"]
    assert whole.preemptions > 0 and w.preemptions == 0            # premise, then the claim
    assert w.kv.peak < whole.kv.peak / 10
    assert res.stats_start_s == 100.0
    assert w.busy_s < whole.busy_s / 10


def test_window_figures_by_hand(tmp_path, base_dict):
    (df, res, pl), = simulate(scenario_from(with_warmup(
        {**base_dict, "placements": {"disagg": base_dict["placements"]["disagg"]}},
        requests=40), tmp_path)).values()
    slo = scenario_from(base_dict, tmp_path).slo
    s = summarize(df, pl, slo, res)
    m = df[df["id"] >= 40]
    done = m[m["state"] == "completed"]
    start, end = float(m["arrival_s"].min()), float(m["last_token_s"].max())
    assert start == df.loc[df["id"] == 40, "arrival_s"].item() > 0
    assert (s["window_start_s"], s["window_end_s"]) == (start, end)
    assert s["duration_s"] == end - start
    assert s["throughput_rps"] == len(done) / (end - start)
    assert s["output_tokens_per_s"] == done["output_tokens"].sum() / (end - start)
    ok = slo_met(m, slo)
    assert s["slo_attainment"] == ok.mean()
    assert s["goodput_rps"] == ok.sum() / arrival_window(m["arrival_s"], end - start)
    assert s["ttft_s"] == percentiles(done["ttft_s"])
    assert s["kv_transfer_bytes"] == m["kv_bytes"].sum() < df["kv_bytes"].sum()
    assert s["usd_per_million_output_tokens"] == pytest.approx(
        s["cost_per_hour_usd"] / (s["output_tokens_per_s"] * 3600) * 1e6, rel=1e-15)


def test_closed_loop_warmup_that_covers_every_send_reports_zero_measured(tmp_path, base_dict):
    """A closed loop's send times are known only once it runs: no error before, an honest
    empty measurement after."""
    d = with_warmup(closed(base_dict, tmp_path, 2, 6), seconds=1e6)
    r = hetsim.run(scenario_from(d, tmp_path))
    s = r.summaries[0]
    assert (s["requests"], s["completed"], s["warmup_requests"]) == (0, 0, 6)
    assert s["window_start_s"] is None and s["window_end_s"] is None
    assert (s["duration_s"], s["throughput_rps"], s["goodput_rps"]) == (0.0, 0.0, 0.0)
    assert s["ttft_s"]["p50"] is None and s["meets_slo"] is False
    assert r.requests["warmup"].all() and (r.requests["state"] == "completed").all()


def test_warmup_that_leaves_nothing_is_refused_before_the_run():
    base = {"requests": 10, "arrival": {"process": "constant", "rate_rps": 1.0},
            "input_tokens": {"dist": "fixed", "value": 8},
            "output_tokens": {"dist": "fixed", "value": 8}}
    with pytest.raises(ConfigError, match=r"^workload\.warmup\.requests: warm-up of 10 "):
        generate(build(WorkloadSpec, {**base, "warmup": {"requests": 10}}))
    with pytest.raises(ConfigError, match=r"^workload\.warmup\.seconds: every request arrives "
                                          r"before the 9\.5 s warm-up ends \(the last at 9 s\)"):
        generate(build(WorkloadSpec, {**base, "warmup": {"seconds": 9.5}}))
    assert len(generate(build(WorkloadSpec, {**base, "warmup": {"requests": 9}}))) == 10
    assert len(generate(build(WorkloadSpec, {**base, "warmup": {"seconds": 9.0}}))) == 10
    with pytest.raises(ConfigError, match="none of the 1000 measured"):    # the default count
        generate(build(WorkloadSpec, {**base, "requests": None, "warmup": {"requests": 1000}}))


def test_warmup_keys_are_metrics_expect_may_bound(tmp_path, base_dict):
    r = hetsim.run(scenario_from(with_warmup(base_dict, requests=20), tmp_path))
    for s in r.summaries:
        roles = {n: p.role for n, p in r.scenario.placements[s["name"]].pools.items()}
        flat = flatten(s)
        assert set(WINDOW) <= set(flat)
        for k, v in flat.items():
            numeric = isinstance(v, (int, float, type(None))) and not isinstance(v, bool)
            assert (metric_error(k, roles) is None) == numeric, k


def test_output_folder_keeps_every_request_with_its_flag(tmp_path, base_dict, capsys):
    import pandas as pd
    f = tmp_path / "w.yaml"
    f.write_text(json.dumps(with_warmup(base_dict, requests=25)))
    assert main(["run", str(f), "--out", str(tmp_path / "res"), "-q"]) == 0
    assert "25 of them warm-up" in capsys.readouterr().out
    csv = pd.read_csv(tmp_path / "res" / "requests.csv")
    assert len(csv) == 400 and csv["warmup"].sum() == 50
    summary = json.loads((tmp_path / "res" / "summary.json").read_text())
    assert [p["warmup_requests"] for p in summary["placements"]] == [25, 25]


def test_goodput_search_scores_only_measured_requests(tmp_path, base_dict):
    from hetsim.executors import Executor
    from hetsim.goodput_search import _evaluator
    from hetsim.resolve import resolve_scenario
    d = with_warmup({**base_dict, "placements": {"coloc": base_dict["placements"]["coloc"]}},
                    requests=60)
    d["slo"] = {"ttft_s": 0.06, "tpot_s": 0.05}      # tight: the attainment is not 1
    sc = scenario_from(d, tmp_path)
    model, resolved = resolve_scenario(sc)
    point = _evaluator(sc, "coloc", [3], 200, Executor())(30.0)
    w = dataclasses.replace(sc.workload, arrival=dataclasses.replace(sc.workload.arrival,
                                                                     rate_rps=30.0))
    res = Simulation(resolved["coloc"], model, generate(w, model=model.name), seed=3).run()
    df = records_frame(res.requests, "coloc")
    ok = slo_met(df, sc.slo)
    assert point.attainment == ok[df["id"] >= 60].mean() != ok.mean()


def test_written_scenario_keeps_the_new_keys_only_when_set(tmp_path, base_dict):
    """scenario.resolved.yaml: without warm-up or ramp, the bytes written before these keys
    existed; with them, a file that runs again to the same warm-up and ramp."""
    import yaml
    from hetsim.report import write_outputs
    plain = hetsim.run(scenario_from(closed(base_dict, tmp_path, 2, 6), tmp_path))
    write_outputs(plain, tmp_path / "a")
    text = (tmp_path / "a" / "scenario.resolved.yaml").read_text()
    assert "warmup" not in text and "ramp_s" not in text and "think_time_s: 0.0" in text
    d = with_warmup(closed(base_dict, tmp_path, 2, 6, ramp_s=0.5), requests=2)
    write_outputs(hetsim.run(scenario_from(d, tmp_path, "w.yaml")), tmp_path / "b")
    again = yaml.safe_load((tmp_path / "b" / "scenario.resolved.yaml").read_text())
    assert again["workload"]["warmup"] == {"requests": 2, "seconds": None}
    assert again["workload"]["arrival"]["ramp_s"] == 0.5
    assert main(["validate", str(tmp_path / "b" / "scenario.resolved.yaml")]) == 0


_value = st.one_of(st.none(), st.booleans(), st.integers(-5, 10 ** 12),
                   st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4))


@settings(max_examples=200, deadline=None)
@given(warmup=st.dictionaries(st.sampled_from(["requests", "seconds", "secs"]), _value,
                              max_size=3),
       ramp=_value)
def test_warmup_and_ramp_load_or_name_their_key(warmup, ramp):
    """Any warm-up mapping and ramp value builds to what was asked (exactly one positive warm-up
    field, a ramp in [0, MAX_TIME_S]) or fails as a one-line ConfigError under its key path."""
    d = {"requests": 10, "arrival": {"process": "closed", "concurrency": 2, "ramp_s": ramp},
         "input_tokens": {"dist": "fixed", "value": 8},
         "output_tokens": {"dist": "fixed", "value": 8}, "warmup": warmup}
    try:
        w = build(WorkloadSpec, d, "workload")
    except ConfigError as e:
        assert e.path.startswith(("workload.warmup", "workload.arrival.ramp_s")), e.path
        assert "\n" not in str(e)
        return
    set_ = {k: v for k, v in vars(w.warmup).items() if v is not None}
    assert len(set_) == 1 and next(iter(set_.values())) > 0
    assert w.arrival.ramp_s is None or 0 <= w.arrival.ramp_s <= 1e9
