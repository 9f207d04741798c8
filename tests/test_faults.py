"""Faults and recovery (hetsim.engine.faults): the schema, each recovery path on an exact
trace, conservation, determinism, metamorphic checks and availability against theory.

Exact traces take their times from the same scenario run without faults: up to the fault the
two runs are the same events, so a crash placed inside a phase of the fault-free run strikes
that phase, and what follows is checked against what the fault-free run says it costs."""
import copy
from dataclasses import replace
import json
import math
import subprocess
import sys

import numpy as np
import pytest

import hetsim
from hetsim.api import prepare
from hetsim.engine.faults import FAULT_STREAM
from hetsim.engine.sim import Simulation
from hetsim.errors import ConfigError
from hetsim.metrics import fault_windows, records_frame, summarize
from hetsim.resolve import load_scenario
from hetsim.scenario import as_scenario

from .conftest import ROOT

PD = {"router": "round-robin", "kv_link": "roce-400g",
      "pools": {"prefill": {"role": "prefill", "accelerator": "h100-sxm", "instances": 2},
                "decode": {"role": "decode", "accelerator": "h100-sxm", "instances": 2}}}
MIXED = {"router": "round-robin",
         "pools": {"mixed": {"role": "mixed", "accelerator": "h100-sxm", "instances": 2}}}


def scenario(placement=PD, faults=(), recovery=None, requests=1, rate=1000.0, inp=2000,
             out=100, process="constant", seed=3):
    d = {"name": "t", "model": "llama-3.1-8b",
         "workload": {"requests": requests, "seed": seed,
                      "arrival": {"process": process, "rate_rps": rate},
                      "input_tokens": {"dist": "fixed", "value": inp},
                      "output_tokens": {"dist": "fixed", "value": out}},
         "slo": {"ttft_s": 1.0, "tpot_s": 0.05},
         "placements": {"p": copy.deepcopy(placement)}}
    if faults:
        d["faults"] = list(faults)
    if recovery:
        d["recovery"] = recovery
    return d


def simulation(d):
    """(Scenario, its one resolved placement, that placement's Simulation, not yet run)."""
    sc = as_scenario(d)
    model, resolved, reqs = prepare(sc)
    (pl,) = resolved.values()
    return sc, pl, Simulation(pl, model, reqs, seed=sc.workload.seed)


def simulate(d):
    """(records by id, SimResult, summary) of the scenario's one placement."""
    sc, pl, sim = simulation(d)
    res = sim.run()
    df = records_frame(res.requests, pl.name)
    return {r.id: r for r in res.requests}, res, summarize(df, pl, sc.slo, res)


def crash(target, at, repair=50.0):
    return {"at_s": at, "target": target, "kind": "crash", "repair_s": repair}


def mid(a, b):
    return a + (b - a) / 3


def strike(target, phase, base=None, **recovery):
    """Crash ``target`` a third into request 0's ``phase`` (start, end record fields) of the
    fault-free run: (its fault-free record, the crash time, then the faulty run's records by
    id, SimResult and summary)."""
    base = base or scenario()
    r0, _, _ = simulate(base)
    a = r0[0]
    t = mid(getattr(a, phase[0]), getattr(a, phase[1]))
    d = {**base, "faults": [crash(target, t)], **({"recovery": recovery} if recovery else {})}
    return (a, t, *simulate(d))


TRANSFER = ("transfer_start_s", "transfer_end_s")
DECODE = ("decode_start_s", "last_token_s")


# --- schema -------------------------------------------------------------------------------
@pytest.mark.parametrize("fault, where, says", [
    ({"at_s": 1, "target": "decod/0", "kind": "crash", "repair_s": 1}, "faults[0].target",
     "unknown pool 'decod'"),
    ({"at_s": 1, "target": "decode/2", "kind": "crash", "repair_s": 1}, "faults[0].target",
     "has instances 0..1"),
    ({"at_s": -1, "target": "decode", "kind": "crash", "repair_s": 1}, "faults[0].at_s",
     "must be >= 0"),
    ({"at_s": 1, "target": "decode", "kind": "crash"}, "faults[0].repair_s", "needs repair_s"),
    ({"at_s": 1, "target": "decode", "kind": "hang", "repair_s": 1}, "faults[0].repair_s",
     "takes duration_s"),
    ({"at_s": 1, "target": "decode", "kind": "crsh", "repair_s": 1}, "faults[0].kind",
     "did you mean 'crash'"),
    ({"at_s": 1, "target": "prefill.nic", "kind": "degrade", "duration_s": 1},
     "faults[0].factor", "degrade needs factor"),
    ({"at_s": 1, "target": "prefill.nic", "kind": "degrade", "factor": 1.5, "duration_s": 1},
     "faults[0].factor", "must be in (0, 1)"),
    ({"at_s": 1, "target": "decode", "kind": "down", "duration_s": 1}, "faults[0].target",
     "unknown link group 'decode'"),
    ({"at_s": 1, "target": "cross-site", "kind": "down", "duration_s": 1}, "faults[0].target",
     "one of prefill.nic, decode.nic"),
    ({"at_s": 1, "target": "decode.nic", "kind": "crash", "repair_s": 1}, "faults[0].target",
     "a link group: degrade and down strike links"),
    ({"pool": "decode", "kind": "down", "mtbf_s": 1, "mttr_s": 1}, "faults[0].kind",
     "not links"),
    ({"pool": "decode", "kind": "crash", "mtbf_s": 10}, "faults[0].mttr_s", "needs pool and"),
    ({"pool": "decode", "kind": "crash", "mtbf_s": 0, "mttr_s": 1}, "faults[0].mtbf_s",
     "must be > 0"),
    ({"pool": "decode/1", "kind": "crash", "mtbf_s": 1, "mttr_s": 1}, "faults[0].pool",
     "names a pool"),
    ({"pool": "decode", "at_s": 3, "kind": "crash", "mtbf_s": 1, "mttr_s": 1},
     "faults[0].at_s", "not at_s"),
])
def test_a_bad_fault_is_one_line_naming_its_key_path(fault, where, says):
    with pytest.raises(ConfigError) as e:
        load_scenario(scenario(faults=[fault]))
    assert e.value.path == where and says in e.value.message, str(e.value)
    assert "\n" not in str(e.value)


def test_placement_faults_and_recovery_are_checked_under_the_placement():
    d = scenario(recovery={"retry_limit": -1})
    with pytest.raises(ConfigError, match="recovery.retry_limit: must be >= 0"):
        load_scenario(d)
    d = scenario()
    d["placements"]["p"]["faults"] = [crash("mixed", 1)]
    with pytest.raises(ConfigError) as e:
        load_scenario(d)
    assert e.value.path == "placements.p.faults[0].target"
    # (faults on every kind of handoff: tests/test_fault_recovery.py)


def test_cli_refuses_a_bad_fault_with_exit_2_and_one_line(tmp_path):
    import yaml
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(scenario(faults=[crash("decode/9", 1)])))
    p = subprocess.run([sys.executable, "-m", "hetsim", "validate", str(f)],
                       capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert f"{f}: faults[0].target:" in p.stderr and "Traceback" not in p.stderr


def test_without_faults_the_scenario_writes_what_it_wrote_before():
    sc = as_scenario(scenario())
    assert "faults" not in sc.to_dict() and "recovery" not in sc.to_dict()
    assert "faults" not in sc.to_dict()["placements"]["p"]


# --- each recovery path on an exact trace -------------------------------------------------
def test_queued_request_is_rerouted_and_the_prefill_in_progress_restarts():
    base = scenario(requests=3)                 # 0 -> prefill/0, 1 -> /1, 2 -> /0 (queued)
    r0, _, _ = simulate(base)
    assert r0[2].prefill_start_s >= r0[0].prefill_end_s     # 2 waited behind 0
    t = mid(r0[2].arrival_s, r0[0].prefill_end_s)
    recs, res, s = simulate({**base, "faults": [crash("prefill/0", t)]})
    f = res.faults
    assert f.applied == 1 and f.retried == 2 and s["requests_retried"] == 2
    assert f.lost_prefill_tokens == 2000 and f.recomputed_tokens == 0
    for i in (0, 2):
        assert recs[i].prefill_instance == "prefill/1" and recs[i].state == "completed"
    # prefill/1 holds request 1 until its prefill ends; then 0 and 2 run there as one batch
    assert recs[0].prefill_start_s == recs[2].prefill_start_s == r0[1].prefill_end_s
    assert [recs[i].state for i in range(3)] == ["completed"] * 3


def test_mid_prefill_restart_starts_at_once_on_an_idle_instance_and_costs_the_same():
    a, t, recs, res, _ = strike("prefill/0", ("prefill_start_s", "prefill_end_s"))
    r = recs[0]
    assert r.prefill_instance == "prefill/1" and r.prefill_start_s == t
    assert r.prefill_end_s - r.prefill_start_s == pytest.approx(
        a.prefill_end_s - a.prefill_start_s, rel=1e-12)
    assert res.faults.lost_prefill_tokens == 2000 and res.faults.kv_bytes_lost == 0


def test_kv_in_flight_goes_to_another_decode_when_the_decode_end_fails():
    a, t, recs, res, s = strike("decode/0", TRANSFER)
    r, f = recs[0], res.faults
    assert f.transfers_retried == 1 and f.recomputed_tokens == 0 and f.kv_bytes_lost == 0
    assert s["transfers_retried"] == 1
    # the prefill is not repeated: its copy was still owned by prefill/0
    assert (r.prefill_instance, r.prefill_end_s) == ("prefill/0", a.prefill_end_s)
    assert r.decode_instance == "decode/1" and r.transfer_start_s == t
    assert r.transfer_end_s - r.transfer_start_s == pytest.approx(
        a.transfer_end_s - a.transfer_start_s, rel=1e-9)
    assert r.kv_bytes == a.kv_bytes and r.state == "completed"


def test_kv_in_flight_reprefills_when_its_owner_fails_and_the_reservation_goes_back():
    a, t, recs, res, _ = strike("prefill/0", TRANSFER)
    r, f = recs[0], res.faults
    assert f.recomputed_tokens == 2000 and f.transfers_retried == 0
    assert r.prefill_instance == "prefill/1" and r.prefill_start_s == t
    # round-robin: the second pick goes to decode/1; decode/0's reserved blocks came back
    # (Simulation.run asserts every pool is empty at the end)
    assert r.decode_instance == "decode/1" and r.state == "completed"
    assert res.instances["decode"][0].kv.used == 0


def test_a_decode_crash_recomputes_prompt_and_generated_tokens_elsewhere():
    a, t, recs, res, s = strike("decode/0", DECODE)
    r, f = recs[0], res.faults
    g = f.recomputed_tokens - 2000          # tokens generated before the crash
    step = (a.last_token_s - a.decode_start_s) / 99     # the fault-free mean step
    assert 1 <= g < 100 and abs((g - 1) - (t - a.decode_start_s) / step) <= 1
    model, resolved, _ = prepare(as_scenario(scenario()))
    mem = resolved["p"].pools["decode"].memory
    assert f.kv_bytes_lost == model.kv_tokens(2000 + g) * mem.kv_bytes_per_token
    # the record keeps what the client asked for and when it first saw a token
    assert (r.input_tokens, r.output_tokens, r.first_token_s) == (2000, 100, a.first_token_s)
    assert r.decode_instance == "decode/1" and r.prefill_instance == "prefill/1"
    assert r.prefill_start_s == t and r.last_token_s > a.last_token_s
    assert s["recomputed_tokens"] == f.recomputed_tokens


def test_a_hang_delays_everything_after_it_by_exactly_its_length():
    base = scenario()
    r0, _, _ = simulate(base)
    a = r0[0]
    for target, t in (("decode/0", mid(a.decode_start_s, a.last_token_s)),
                      ("prefill/0", mid(a.prefill_start_s, a.prefill_end_s))):
        hang = {"at_s": t, "target": target, "kind": "hang", "duration_s": 0.25}
        recs, res, s = simulate({**base, "faults": [hang]})
        r = recs[0]
        assert r.last_token_s - a.last_token_s == pytest.approx(0.25, abs=1e-9)
        assert res.faults.retried == 0 and s["faults"] == 1


def test_colocated_crash_recomputes_on_the_other_instance():
    a, t, recs, res, _ = strike("mixed/0", ("prefill_end_s", "last_token_s"),
                                base=scenario(placement=MIXED))
    r = recs[0]
    assert r.prefill_instance == r.decode_instance == "mixed/1" and r.state == "completed"
    assert res.faults.recomputed_tokens > 2000 and r.prefill_start_s == t


def test_retry_limit_and_timeout_end_a_request_failed_with_its_reason():
    _, _, recs, _, s = strike("decode/0", DECODE, retry_limit=0)
    assert (recs[0].state, recs[0].drop_reason) == ("failed", "retry_limit")
    assert s["requests_failed"] == 1
    assert s["requests_failed_by_reason"] == {"retry_limit": 1, "timeout": 0,
                                           "too_long_after_fault": 0}
    assert s["completed"] + s["dropped"] + s["requests_failed"] == s["requests"]
    # one colocated instance, down 100 s: arrivals wait for it and give up after 5 s
    one = {"pools": {"mixed": {"role": "mixed", "accelerator": "h100-sxm", "instances": 1}}}
    d = scenario(placement=one, requests=20, rate=1.0, out=10,
                 faults=[crash("mixed/0", 2.5, repair=100.0)],
                 recovery={"request_timeout_s": 5})
    recs, _, s = simulate(d)
    for r in recs.values():
        if 2.5 <= r.arrival_s < 100:
            assert (r.state, r.drop_reason) == ("failed", "timeout")
        else:
            assert r.state == "completed"
    assert s["requests_failed_by_reason"] == {"retry_limit": 0, "timeout": 17,
                                           "too_long_after_fault": 0}


def test_routers_skip_a_down_instance_and_use_it_again_after_repair():
    d = scenario(requests=60, rate=10.0, out=20, faults=[crash("decode/0", 1.0, repair=3.0)])
    d["placements"]["p"]["router"] = "least-loaded"
    recs, _, _ = simulate(d)
    during = [r for r in recs.values() if 1.0 <= r.arrival_s < 4.0]
    after = [r for r in recs.values() if r.arrival_s >= 4.0]
    assert during and all(r.decode_instance == "decode/1" for r in during)
    assert any(r.decode_instance == "decode/0" for r in after)


# --- conservation, determinism ------------------------------------------------------------
LAYOUTS = {
    "pd-reserve": PD,
    "pd-on-demand": {**PD, "pools": {**PD["pools"], "decode": {
        **PD["pools"]["decode"], "preemption": "recompute"}}},
    "mixed-vllm": {"router": "least-loaded", "pools": {"mixed": {
        "role": "mixed", "accelerator": "h100-sxm", "instances": 3, "runtime": "vllm"}}},
    "mixed-sglang": {"router": "power-of-two", "pools": {"mixed": {
        "role": "mixed", "accelerator": "h100-sxm", "instances": 3, "runtime": "sglang"}}},
    "prfaas": {"router": {"prefill": "length-threshold", "decode": "least-loaded",
                          "threshold_tokens": 1500}, "kv_link": "roce-400g",
               "pools": {"prefill": {"role": "prefill", "accelerator": "h100-sxm"},
                         "mixed": {"role": "mixed", "accelerator": "h100-sxm",
                                   "instances": 2}}},
}
POOLS = {"pd-reserve": ("prefill", "decode"), "pd-on-demand": ("prefill", "decode"),
         "mixed-vllm": ("mixed",), "mixed-sglang": ("mixed",), "prfaas": ("prefill", "mixed")}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("seed, mtbf, retries, timeout", [(1, 6.0, 2, 30), (2, 6.0, 2, 30),
                                                          (3, 1.5, 1, 4), (4, 1.0, 3, 8)])
def test_conservation_under_random_crashes_and_hangs(layout, seed, mtbf, retries, timeout):
    faults = [{"pool": p, "kind": k, "mtbf_s": mtbf, "mttr_s": 1.5}
              for p in POOLS[layout] for k in ("crash", "hang")]
    if "prefill" in POOLS[layout]:      # and its KV links flapping
        faults += [{"at_s": t, "target": f"{POOLS[layout][i % 2]}.nic",
                    "kind": ("down", "degrade")[i % 2], "duration_s": 0.7,
                    **({"factor": 0.1} if i % 2 else {})}
                   for i, t in enumerate(np.arange(0.5, 12, 1.3 * mtbf / 6))]
    d = scenario(placement=LAYOUTS[layout], requests=300, rate=25.0, process="poisson",
                 out=150, seed=seed, faults=faults,
                 recovery={"retry_limit": retries, "request_timeout_s": timeout})
    d["workload"]["input_tokens"] = {"dist": "lognormal", "mean": 1500, "sigma": 0.8,
                                     "max": 8000}
    d["workload"]["output_tokens"] = {"dist": "lognormal", "mean": 150, "sigma": 0.8,
                                      "max": 1000}
    recs, res, s = simulate(d)     # run() asserts terminal states and every block released
    assert res.faults.applied > 3 and res.faults.retried > 0
    assert s["completed"] + s["dropped"] + s["requests_failed"] == s["requests"] == 300
    assert sum(s["requests_failed_by_reason"].values()) == s["requests_failed"]
    for insts in res.instances.values():
        assert all(i.kv.used == 0 for i in insts)
    for r in recs.values():
        assert r.state in ("completed", "dropped", "failed")
        if r.state == "completed":
            assert r.first_token_s <= r.last_token_s and r.output_tokens >= 1


def _outages_expected(seed, stream, i, mtbf, mttr, until):
    """Outage intervals of instance ``i`` from its own stream, drawn here independently."""
    rng = np.random.default_rng(np.random.SeedSequence(seed,
                                                       spawn_key=(FAULT_STREAM, *stream, i)))
    t, out = 0.0, []
    while True:
        up, down = rng.exponential(mtbf), rng.exponential(mttr)
        if t + up > until:
            return out
        out.append((t + up, t + up + down))
        t = t + up + down      # (t + up) + down, as the clock adds them


def test_random_faults_follow_their_own_stream_the_same_in_every_placement():
    rand = {"pool": "decode", "kind": "crash", "mtbf_s": 2.0, "mttr_s": 0.5}
    d = scenario(requests=300, rate=20.0, process="poisson", faults=[rand], seed=7)
    d["placements"]["q"] = {**copy.deepcopy(PD), "router": "least-loaded"}
    sc = as_scenario(d)
    model, resolved, reqs = prepare(sc)
    runs = {n: Simulation(pl, model, reqs, seed=7).run() for n, pl in resolved.items()}
    end = min(r.end_s for r in runs.values())
    for i in (0, 1):
        want = [o for o in _outages_expected(7, (0, 0), i, 2.0, 0.5, end)]
        for r in runs.values():
            got = [o for o in r.faults.outages[f"decode/{i}"] if o[0] <= end]
            assert got == want and len(want) >= 3
    # the request stream and the routers' streams are the ones a run without faults draws
    plain = hetsim.run({**d, "faults": []})
    assert plain.requests["arrival_s"].tolist() == hetsim.run(d).requests["arrival_s"].tolist()


def test_faulty_runs_are_identical_across_processes():
    d = scenario(placement=LAYOUTS["pd-on-demand"], requests=150, rate=20.0,
                 process="poisson", faults=[{"pool": "decode", "kind": "crash",
                                             "mtbf_s": 3.0, "mttr_s": 1.0}])
    code = ("import json, sys, hetsim; r = hetsim.run(json.loads(sys.argv[1])); "
            "print(r.requests.to_json())")
    outs = {subprocess.run([sys.executable, "-c", code, json.dumps(d)], capture_output=True,
                           text=True, check=True).stdout for _ in range(2)}
    assert len(outs) == 1 and hetsim.run(d).requests.to_json() + "\n" in outs


def test_a_fault_after_the_last_request_changes_nothing():
    d = scenario(requests=50, rate=10.0, process="poisson")
    plain = hetsim.run(d)
    late = hetsim.run({**d, "faults": [crash("decode", 1e6)], "recovery": {"retry_limit": 1}})
    cols = [c for c in plain.requests.columns]
    assert plain.requests[cols].equals(late.requests[cols])
    assert late.summaries[0]["faults"] == 0 and late.summaries[0]["requests_failed"] == 0


# --- metamorphic --------------------------------------------------------------------------
def _met(d) -> int:
    _, _, s = simulate(d)
    return round(s["slo_attainment"] * s["requests"])


@pytest.mark.parametrize("layout", ["pd-reserve", "mixed-vllm"])
def test_more_or_longer_faults_never_raise_attainment(layout):
    """Requests that meet the SLO on identical requests: none fault >= one crash >= a longer
    repair >= that plus a second instance's crash."""
    pool = POOLS[layout][-1]
    d = scenario(placement=LAYOUTS[layout], requests=300, rate=30.0, process="poisson",
                 out=200)
    steps = [[], [crash(f"{pool}/0", 3.0, 2.0)], [crash(f"{pool}/0", 3.0, 5.0)],
             [crash(f"{pool}/0", 3.0, 5.0), crash(f"{pool}/1", 4.0, 3.0)]]
    met = [_met({**d, "faults": f}) for f in steps]
    assert met == sorted(met, reverse=True) and met[0] > met[-1], met


def test_a_repaired_instance_restores_throughput():
    """Long after the repair (the backlog drained) the output rate is the fault-free one."""
    d = scenario(requests=600, rate=12.0, process="poisson", out=100)
    d["placements"]["p"]["router"] = "least-loaded"
    plain, _, _ = simulate(d)
    hit, _, _ = simulate({**d, "faults": [crash("decode/0", 5.0, 5.0)]})

    def rate(recs):     # completions in [30 s, 45 s), by arrival time (the same requests)
        return sum(1 for r in recs.values() if 30 <= r.arrival_s < 45 and
                   r.state == "completed" and r.last_token_s - r.arrival_s < 2)
    assert rate(hit) == rate(plain) > 100
    mid_ = [r for r in hit.values() if 10 <= r.arrival_s < 45]
    assert any(r.decode_instance == "decode/0" for r in mid_)


# --- theory -------------------------------------------------------------------------------
def test_one_instance_availability_matches_mtbf_over_mtbf_plus_mttr():
    """Alternating renewal with Exp(MTBF) up and Exp(MTTR) down times: the long-run up fraction
    is A = MTBF / (MTBF + MTTR), and the fraction measured over T has variance about
    2 a b / ((a + b)^3 T) for rates a = 1/MTBF, b = 1/MTTR (Takacs). Tolerance: 4 sigma."""
    mtbf, mttr = 100.0, 25.0
    one = {"pools": {"mixed": {"role": "mixed", "accelerator": "h100-sxm", "instances": 1}}}
    d = scenario(placement=one, requests=4000, rate=0.02, out=10,
                 faults=[{"pool": "mixed", "kind": "crash", "mtbf_s": mtbf, "mttr_s": mttr}])
    _, res, s = simulate(d)
    T = res.end_s
    a, b = 1 / mtbf, 1 / mttr
    sigma = math.sqrt(2 * a * b / ((a + b) ** 3 * T))
    assert T > 150_000 and 4 * sigma < 0.025
    assert s["availability"]["mixed"] == pytest.approx(mtbf / (mtbf + mttr), abs=4 * sigma)
    assert s["completed"] == 4000         # nobody gave up: they waited for the repairs


def test_the_shipped_decode_crash_shows_what_the_readme_says():
    r = {s["name"]: s for s in hetsim.run(ROOT / "scenarios" / "faults" / "decode-crash.yaml"
                                          ).summaries}
    plain, n, n1 = r["4d-no-fault"], r["4d-decode-crash"], r["5d-decode-crash"]
    assert plain["meets_slo"] and not n["meets_slo"] and n1["meets_slo"]
    assert "faults" not in plain and n["faults"] == n1["faults"] == 1
    assert n["fault_windows"]["slo_attainment"] < 0.5 <= 0.99 <= n1["fault_windows"][
        "slo_attainment"]
    assert n["requests_failed"] == n1["requests_failed"] == 0 and n["recomputed_tokens"] > 0
    assert n["tpot_s"]["p99"] > 0.0135 > n1["tpot_s"]["p99"]
    # README's figures of this run: benchmarks/readme_figures.py (tests/test_readme_figures.py)


def test_expect_names_the_fault_metrics_of_placements_with_faults():
    """Every numeric key a faulty run writes is a metric `expect:` accepts, and only there."""
    from hetsim.check import flatten
    from hetsim.metrics import metric_error
    d = scenario(requests=100, rate=20.0, process="poisson",
                 faults=[crash("decode/0", 1.0, 1.0)], recovery={"retry_limit": 0})
    (s,) = hetsim.run(d).summaries
    roles = {"prefill": "prefill", "decode": "decode"}
    for k, v in flatten(s).items():
        numeric = isinstance(v, (int, float, type(None))) and not isinstance(v, bool)
        assert (metric_error(k, roles, faults=True) is None) == numeric, (k, v)
    assert metric_error("requests_failed", roles) is not None     # no faults: not a metric
    assert s["requests_failed"] > 0 and s["requests_failed_by_reason"]["retry_limit"] > 0


def test_time_to_recover_is_the_first_full_window_back_at_the_target():
    from hetsim.metrics import time_to_recover
    arr = np.arange(0.0, 20.0, 1.0)           # one arrival a second
    ok = np.ones(20, dtype=bool)
    ok[5:9] = False                           # arrivals 5..8 miss
    # windows of 4 s at 90%: [9, 13) is the first after 5 with no miss
    assert time_to_recover(arr, ok, 5.0, 4.0, 0.9) == 4.0
    # at 50%, [7, 11) has 2 of 4 (the first window at 50% or more from 5 on)
    assert time_to_recover(arr, ok, 5.0, 4.0, 0.5) == 2.0
    assert time_to_recover(arr, ok, 0.0, 4.0, 0.9) == 0.0     # [0, 4) never fell below
    ok[5:] = False
    assert time_to_recover(arr, ok, 5.0, 4.0, 0.9) is None    # never back


def test_a_run_with_faults_writes_its_timeline_and_recovery(tmp_path):
    from hetsim.report import write_outputs
    d = scenario(requests=200, rate=20.0, process="poisson", faults=[crash("decode", 2.0, 2.0)],
                 recovery={"recover_window_s": 1.0})
    r = hetsim.run(d)
    (s,) = r.summaries
    assert r.fault_windows == {"p": [(2.0, 4.0)]} and s["availability"]["decode"] < 1
    # both decode instances down 2-4 s: an arrival before 3 s waits over the 1 s TTFT target
    # for a decode instance (the first token comes from the decode side); after 4 s all is well
    ttr = s["time_to_recover_s"]
    assert ttr["unrecovered"] == 0 and 1.0 <= ttr["max"] <= 2.5
    write_outputs(r, tmp_path / "out")
    assert (tmp_path / "out" / "timeline.png").stat().st_size > 0
    write_outputs(hetsim.run({**d, "faults": []}), tmp_path / "plain")
    assert not (tmp_path / "plain" / "timeline.png").exists()



# --- link faults --------------------------------------------------------------------------
def test_a_degraded_nic_slows_the_bytes_by_its_factor():
    from hetsim.hardware import load_interconnect
    base = scenario()
    r0, _, _ = simulate(base)
    a = r0[0]
    slow = {"at_s": a.prefill_start_s, "target": "decode.nic", "kind": "degrade",
            "factor": 0.5, "duration_s": 100}
    recs, res, s = simulate({**base, "faults": [slow]})
    r = recs[0]
    bw = load_interconnect("roce-400g").bandwidth      # one NIC per accelerator, tp 1
    # both NICs carried the flow at bw; now decode's carries bw / 2: B / bw more seconds
    took, took0 = r.transfer_end_s - r.transfer_start_s, a.transfer_end_s - a.transfer_start_s
    assert took - took0 == pytest.approx(a.kv_bytes / bw, rel=1e-9)
    assert s["faults"] == 1 and s["transfers_retried"] == 0 and r.state == "completed"


def test_kv_in_flight_when_its_link_goes_down_is_sent_again_once_it_is_back():
    from hetsim.hardware import load_interconnect
    base = scenario()
    r0, _, _ = simulate(base)
    a = r0[0]
    t = mid(a.transfer_start_s, a.transfer_end_s)
    down = {"at_s": t, "target": "prefill.nic", "kind": "down", "duration_s": 0.5}
    recs, res, s = simulate({**base, "faults": [down]})
    r = recs[0]
    bw = load_interconnect("roce-400g").bandwidth
    assert s["transfers_retried"] == 1 and res.faults.recomputed_tokens == 0
    assert r.transfer_start_s == t and r.prefill_end_s == a.prefill_end_s
    # sent again from the start the moment the link is back (its setup ran while down)
    assert r.transfer_end_s == pytest.approx(t + 0.5 + a.kv_bytes / bw, rel=1e-6)
    assert fault_windows(res) == [(t, t + 0.5)] and r.state == "completed"


def test_the_shipped_flaky_cross_site_shows_what_the_readme_says():
    r = {s["name"]: s for s in hetsim.run(
        ROOT / "scenarios" / "faults" / "flaky-cross-site.yaml").summaries}
    ok, down, slow = r["healthy"], r["down-2s-every-10s"], r["quarter-5s-every-10s"]
    assert ok["slo_attainment"] > down["slo_attainment"] > slow["slo_attainment"]
    assert down["faults"] == slow["faults"] == 4 and down["transfers_retried"] >= 1
    assert down["recomputed_tokens"] == slow["recomputed_tokens"] == 0
    assert ok["ttft_s"]["p99"] < down["ttft_s"]["p99"] < slow["ttft_s"]["p99"]


def test_faults_round_trip_and_take_overrides():
    """A scenario with faults crosses to another process (to_dict) and sweeps set them."""
    d = scenario(faults=[crash("decode/0", 1.0)], recovery={"retry_limit": 1})
    d["placements"]["p"]["faults"] = [{"pool": "prefill", "kind": "hang", "mtbf_s": 5.0,
                                       "mttr_s": 1.0}]
    sc = as_scenario(d)
    assert as_scenario(sc.to_dict()) == sc
    moved = as_scenario(sc, {"faults[0].at_s": 7.5, "recovery.retry_limit": 4})
    assert moved.faults[0].at_s == 7.5 and moved.recovery.retry_limit == 4
    with pytest.raises(ConfigError) as e:
        as_scenario(sc, {"faults[0].repair_s": -1})
    assert e.value.path == "faults[0].repair_s" and "(set by overrides)" in str(e.value)


# --- planning under failure ---------------------------------------------------------------
def test_n_plus_1_plans_survive_every_single_instance_crash():
    """plan with resilience {survive: 1}: every verified plan has at least two instances per
    pool and, run with any one instance of any pool crashed mid-run, still meets its SLO;
    here that is twice the plan without resilience."""
    from hetsim.planner import plan
    sc = scenario(requests=300, rate=8.0, process="poisson", inp=1024, out=150, seed=2)
    spec = {"name": "r", "model": sc["model"], "workload": sc["workload"],
            "slo": {"ttft_s": 0.5, "tpot_s": 0.03}, "inventory": {"h100-sxm": {"max": 8}},
            "tp": [1], "shapes": ["colocated"], "verify": 1, "verify_requests": 300}
    plain_ = plan(spec)
    safe = plan({**spec, "resilience": {"survive": 1}})
    assert safe.best is not None and plain_.best is not None
    # one instance serves the load; surviving the loss of one takes a second
    assert [n for _, n in plain_.best.pools.values()] == [1]
    assert safe.best.cost == 2 * plain_.best.cost
    for c in [c for c in safe.verified if c.verified]:
        placement = c.placement()
        for pool, (_, n) in c.pools.items():
            assert n >= 2
            for i in range(n):
                d = {"name": "x", "model": spec["model"], "workload": spec["workload"],
                     "slo": spec["slo"], "placements": {"p": {**placement, "faults": [
                         crash(f"{pool}/{i}", 10.0, 1e6)]}}}
                (s,) = hetsim.run(d).summaries
                assert s["meets_slo"], (c.name(), pool, i)
    with pytest.raises(ConfigError, match="resilience.survive: must be 1"):
        plan({**spec, "resilience": {"survive": 2}})


def test_conservation_in_a_closed_loop_under_runtime_rules():
    """Closed-loop clients (a request's process is its client's) on vLLM decode rules."""
    d = scenario(requests=300, faults=[
        {"pool": "decode", "kind": "crash", "mtbf_s": 2.0, "mttr_s": 0.5},
        {"pool": "prefill", "kind": "hang", "mtbf_s": 2.0, "mttr_s": 0.5}],
        recovery={"retry_limit": 1, "request_timeout_s": 3}, inp=1000, out=100)
    d["workload"]["arrival"] = {"process": "closed", "concurrency": 16}
    d["placements"]["p"]["pools"]["decode"]["runtime"] = "vllm"
    recs, res, s = simulate(d)
    assert s["completed"] + s["dropped"] + s["requests_failed"] == 300
    assert res.faults.applied > 10 and s["requests_retried"] > 0
    assert sorted(recs) == list(range(300))


# --- review: adversarial fault timing ------------------------------------------------------
def test_a_pool_wide_crash_mid_transfer_moves_the_kv_again_and_then_waits_for_a_repair():
    # "decode" crashes decode/0 and decode/1 at the same instant: the transfer into decode/0
    # is re-handed to decode/1 (still up for that instant), which then crashes too while the
    # request waits for its room there; it waits for a repair and decodes once one is back
    a, t, recs, res, s = strike("decode", TRANSFER)
    r = recs[0]
    assert r.state == "completed" and r.prefill_instance == "prefill/0"
    assert res.faults.transfers_retried == 2 and res.faults.recomputed_tokens == 0
    assert r.transfer_start_s == pytest.approx(t + 50.0)    # the repair, 50 s later


def test_overlapping_hangs_freeze_the_instance_for_their_union_not_their_sum():
    # hangs of 0.25 s at t and t + 0.1 s on one instance: it is down from t to t + 0.35 s
    # (as its outage says), so everything after moves by 0.35 s; and three hangs nested in
    # one another freeze it no longer than the outermost
    base = scenario()
    a = simulate(base)[0][0]
    t = mid(a.decode_start_s, a.last_token_s)
    for hangs, delay in (([(t, 0.25), (t + 0.1, 0.25)], 0.35),
                         ([(t, 0.5), (t + 0.1, 0.1), (t + 0.2, 0.1)], 0.5)):
        faults = [{"at_s": at, "target": "decode/0", "kind": "hang", "duration_s": d}
                  for at, d in hangs]
        recs, res, _ = simulate({**base, "faults": faults})
        assert recs[0].last_token_s - a.last_token_s == pytest.approx(delay, abs=1e-9)


def test_with_a_warm_up_the_fault_metrics_cover_the_measured_requests_and_span():
    # 40 requests at 10/s, the first 30 a warm-up (measured from t = 3 s): a decode crash at
    # t = 0.5 s, repaired at 1 s, moves warm-up requests only, so the measured summary shows
    # no fault, as the same run with the crash moved past its end would; the run's own
    # FaultStats still count it
    d = scenario(requests=40, rate=10.0, out=100, recovery={"retry_limit": 0},
                 faults=[crash("decode/0", 0.5, repair=0.5)])
    d["workload"]["warmup"] = {"requests": 30}
    sc, pl, sim = simulation(d)
    res = sim.run()
    assert res.faults.retried > 0 and res.stats_start_s == pytest.approx(3.0)
    assert all(i < 30 for i, *_ in res.faults.by_request)
    df = records_frame(res.requests, pl.name, sc.workload.warmup)
    s = summarize(df, pl, sc.slo, res)
    assert s["requests"] == 10 and s["faults"] == 0 and s["requests_retried"] == 0
    assert s["recomputed_tokens"] == 0 and s["kv_bytes_lost"] == 0.0
    assert s["availability"] == {"prefill": 1.0, "decode": 1.0}
    assert s["fault_windows"]["seconds"] == 0
    # without the warm-up the same run's summary is its totals
    s = summarize(records_frame(res.requests, pl.name), pl, sc.slo,
                  replace(res, stats_start_s=None))
    assert (s["faults"], s["requests_retried"], s["recomputed_tokens"]) == (
        1, res.faults.retried, res.faults.recomputed_tokens)
    assert s["availability"]["decode"] < 1.0


def test_a_hang_across_the_warm_up_end_is_not_counted_busy():
    # one request a second, the first two a warm-up (measured from t = 2 s); decode/0 hangs
    # from 1.5 s for 30 s with nothing to run: it is idle, not busy, through the window, so
    # its utilization is what the measured requests' decode steps alone make it (well under
    # 1; counting the hang's rest as an iteration made it 1.0)
    pd1 = {"router": "round-robin", "kv_link": "roce-400g",
           "pools": {"prefill": {"role": "prefill", "accelerator": "h100-sxm"},
                     "decode": {"role": "decode", "accelerator": "h100-sxm"}}}
    d = scenario(placement=pd1, requests=4, rate=1.0, inp=200, out=10,
                 faults=[{"at_s": 1.5, "target": "decode/0", "kind": "hang", "duration_s": 30}])
    d["workload"]["warmup"] = {"requests": 2}
    res = simulation(d)[2].run()
    (dec,) = res.instances["decode"]
    steps = sum(r.last_token_s - r.decode_start_s for r in res.requests if r.id >= 2)
    assert res.stats_start_s == pytest.approx(2.0)
    assert 0 < dec.busy_s <= steps + 1e-9


def test_the_shipped_mtbf_hour_shows_what_the_readme_says():
    r = {s["name"]: s for s in hetsim.run(ROOT / "scenarios" / "faults" / "mtbf-hour.yaml"
                                          ).summaries}
    two, three = r["2-decode"], r["3-decode"]
    assert two["requests_failed"] == three["requests_failed"] == 0
    assert two["availability"]["decode"] < three["availability"]["decode"] < 1.0


def test_a_crash_loses_the_host_copies_of_swapped_requests_for_good(monkeypatch):
    # decode pool "da" swaps preempted sequences to a 4 GB host tier, "db" has almost none
    # (its preemptions recompute). Crashing da/0 just after each swap-out of the fault-free
    # run sends the swapped request to db/0; its host copy died with da/0, so a later
    # preemption there must not give back host blocks db/0 never had
    from hetsim.engine.ondemand import OnDemandDecodeInstance

    def dec(cap):
        return {"role": "decode", "accelerator": "h100-sxm", "memory_utilization": 0.22,
                "preemption": "swap", "kv_offload": {"capacity_gb": cap, "link": "pcie-gen5"}}
    pl = {"router": "round-robin", "kv_link": "roce-400g",
          "pools": {"prefill": {"role": "prefill", "accelerator": "h100-sxm"},
                    "da": dec(4.0), "db": dec(0.01)}}
    d = scenario(placement=pl, requests=60, rate=40.0, seed=0)
    d["workload"]["input_tokens"] = {"dist": "uniform", "min": 2000, "max": 8000}
    d["workload"]["output_tokens"] = {"dist": "uniform", "min": 500, "max": 1500}
    swaps, preempt = [], OnDemandDecodeInstance._preempt

    def spy(inst, v):
        preempt(inst, v)
        if v.swapped and inst.name == "da/0":
            swaps.append(inst.env.now)
    with monkeypatch.context() as m:
        m.setattr(OnDemandDecodeInstance, "_preempt", spy)
        simulate(d)
    assert len(swaps) >= 5
    for t in swaps[:5]:
        sim = simulation({**d, "faults": [crash("da/0", t + 1e-6, repair=1000.0)]})[2]
        sim.run()     # asserts every block (host tiers too) is back
        assert sim.faults.recomputed_tokens > 0
        assert sim.struck and not [r.id for r in sim.struck if r.swapped]


RANDOM_LAYOUTS = {
    **LAYOUTS,
    "pd-first-token-decode": {**PD, "kv_link": None, "kv_transfer": {
        "link": "roce-400g", "first_token": "decode"}},
    "pd-pull-trtllm": {**PD, "kv_link": None, "kv_transfer": {
        "link": "roce-400g", "handoff": "pull"},
        "pools": {k: {**v, "runtime": "trtllm"} for k, v in PD["pools"].items()}},
}


def _random_schedule(rng: np.random.Generator, placement: dict, horizon: float) -> list:
    """Scheduled crashes and hangs (some at t = 0, some on a whole pool, overlapping ones on
    one instance) and, with KV links, link faults, at random times."""
    pools = placement["pools"]
    out = []
    for _ in range(int(rng.integers(3, 9))):
        pool = str(rng.choice(sorted(pools)))
        n = pools[pool].get("instances", 1)
        target = pool if rng.random() < 0.4 else f"{pool}/{int(rng.integers(n))}"
        kind = str(rng.choice(["crash", "hang"]))
        at = 0.0 if rng.random() < 0.15 else float(rng.uniform(0, horizon))
        out.append({"at_s": at, "target": target, "kind": kind,
                    ("repair_s" if kind == "crash" else "duration_s"):
                        float(rng.choice([0.01, rng.uniform(0.05, horizon)]))})
    if "prefill" in pools and rng.random() < 0.5:
        kind = str(rng.choice(["down", "degrade"]))
        out.append({"at_s": float(rng.uniform(0, horizon)), "target": "prefill.nic",
                    "kind": kind, "duration_s": float(rng.uniform(0.05, horizon)),
                    **({"factor": 0.2} if kind == "degrade" else {})})
    return out


@pytest.mark.parametrize("case", range(24))
def test_random_fault_schedules_end_every_request_and_repeat_exactly(case):
    # a random schedule on a small random scenario: the run asserts every request ends and
    # every block is back; it is identical run twice; its metrics are consistent
    rng = np.random.default_rng([17, case])
    name = sorted(RANDOM_LAYOUTS)[case % len(RANDOM_LAYOUTS)]
    placement = {k: v for k, v in RANDOM_LAYOUTS[name].items() if v is not None}
    closed = case % 3 == 2
    d = scenario(placement=placement, requests=int(rng.integers(10, 50)), rate=30.0,
                 process="poisson", seed=int(rng.integers(100)),
                 recovery={"retry_limit": int(rng.integers(0, 4)),
                           **({"request_timeout_s": 2.0} if rng.random() < 0.5 else {})},
                 faults=_random_schedule(rng, placement, 2.0))
    d["workload"]["input_tokens"] = {"dist": "uniform", "min": 100, "max": 4000}
    d["workload"]["output_tokens"] = {"dist": "uniform", "min": 1, "max": 300}
    if closed:
        d["workload"]["arrival"] = {"process": "closed", "concurrency": 4}
    recs, res, s = simulate(d)
    again = simulate(d)
    assert again[1].requests == res.requests and again[1].faults == res.faults
    assert s["completed"] + s["dropped"] + s["requests_failed"] == s["requests"]
    assert sum(s["requests_failed_by_reason"].values()) == s["requests_failed"]
    assert all(0.0 <= a <= 1.0 for a in s["availability"].values())
    for r in recs.values():
        if r.state == "completed":
            assert r.arrival_s <= r.first_token_s <= r.last_token_s


def _hang_then_crash():
    """decode/0 hangs from t = 1 s for 10 s and crashes at 2 s (back at 3 s): (the
    Simulation, not yet run, and decode/0)."""
    sim = simulation(scenario(faults=[
        {"at_s": 1.0, "target": "decode/0", "kind": "hang", "duration_s": 10.0},
        crash("decode/0", 2.0, repair=1.0)]))[2]
    return sim, sim.instances["decode"][0]


def test_a_crash_during_a_hang_ends_it_for_the_busy_time_of_the_next_iterations():
    # the hang is over, so an iteration running after the repair counts its rest as to run
    sim, d0 = _hang_then_crash()
    sim.env.run(until=3.5)
    d0._step_end = sim.env.now + 0.25      # as if an iteration of 0.25 s had just started
    assert d0.running_s(sim.env.now) == pytest.approx(0.25)


def test_a_crash_during_a_hang_ends_the_hang_so_the_instance_is_back_at_the_repair():
    # its outages are the hang up to the crash and the crash, and from the repair at 3 s
    # the routers may pick it again
    sim, d0 = _hang_then_crash()
    sim.env.run(until=2.5)
    assert d0.outages == 1
    sim.env.run(until=3.5)
    assert d0.outages == 0
    sim.env.run(until=12.0)
    assert d0.outages == 0
    assert sim.faults.outages["decode/0"] == [(1.0, 2.0), (2.0, 3.0)]
