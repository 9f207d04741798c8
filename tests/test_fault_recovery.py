"""Faults and recovery, the engine's second half (issue 17): chunked prefill's lost work,
recomputes that no longer fit, instance degrades, random link faults, a resend around a link
that is down, and faults on layer-wise, push, prefill-side conversion and stepwise handoffs.
Helpers and conventions are tests/test_faults.py's."""
import copy

import numpy as np

import pytest

from .test_faults import (MIXED, PD, _outages_expected, crash, mid, scenario, simulate,
                          simulation)


def _mixed(**pool):
    d = copy.deepcopy(MIXED)
    d["pools"]["mixed"].update(pool)
    return d


# --- lost prefill work with chunked prefill -----------------------------------------------
def test_a_crash_mid_chunked_prefill_loses_the_chunks_run_so_far():
    # one 2000-token prompt in chunks of 512 (512, 512, 512, 464): a crash while chunk k
    # (from 1) runs loses the k chunks started, the one in progress included
    base = scenario(placement=_mixed(max_batch_tokens=512))
    a = simulate(base)[0][0]
    span = a.prefill_end_s - a.prefill_start_s
    seen = []
    for frac in (1e-6, 0.3, 0.55, 0.8, 1 - 1e-6):
        t = a.prefill_start_s + frac * span
        _, _, sim = simulation(base)
        sim.env.process(sim._open_loop())
        sim.env.run(until=t)
        k = sim.instances["mixed"][0].iterations     # iterations started by t: chunks
        recs, res, _ = simulate({**base, "faults": [crash("mixed/0", t)]})
        assert res.faults.lost_prefill_tokens == min(512 * k, 2000)
        assert recs[0].state == "completed" and recs[0].prefill_instance == "mixed/1"
        seen.append(k)
    assert seen[0] == 1 and seen[-1] == 4 and seen == sorted(seen)


# --- a recompute that no longer fits -------------------------------------------------------
def test_a_recompute_too_long_for_the_token_budget_fails_with_its_reason():
    # without chunked prefill a prompt must fit the 2048-token budget: 2000 does, 2000 + g
    # (the tokens generated before the crash) does not once g > 48; a crash earlier completes
    pl = _mixed(runtime={"name": "vllm", "chunked_prefill": False}, max_batch_tokens=2048)
    base = scenario(placement=pl)
    a = simulate(base)[0][0]
    step = (a.last_token_s - a.decode_start_s) / 99
    for g, state, reason in ((20, "completed", ""), (80, "failed", "too_long_after_fault")):
        t = a.decode_start_s + (g - 0.5) * step
        recs, res, s = simulate({**base, "faults": [crash("mixed/0", t)]})
        assert (recs[0].state, recs[0].drop_reason) == (state, reason)
        assert s["requests_failed_by_reason"]["too_long_after_fault"] == (state == "failed")
        assert s["dropped"] == 0


# --- instance degrade ----------------------------------------------------------------------
def _degrade(target, at, factor, seconds):
    return {"at_s": at, "target": target, "kind": "degrade", "factor": factor,
            "duration_s": seconds}


def test_a_degraded_instance_runs_its_iterations_1_over_factor_as_long():
    base = scenario()
    a = simulate(base)[0][0]
    decode, prefill = a.last_token_s - a.decode_start_s, a.prefill_end_s - a.prefill_start_s
    # decode/0 at half speed over the whole run: every decode step takes twice as long
    recs, res, s = simulate({**base, "faults": [_degrade("decode/0", 0.0, 0.5, 100.0)]})
    r = recs[0]
    assert r.last_token_s - r.decode_start_s == pytest.approx(2 * decode, rel=1e-12)
    assert r.prefill_end_s == a.prefill_end_s and r.state == "completed"
    # it stays up: routers keep it, availability counts it up, the fault window shows it
    assert r.decode_instance == "decode/0" and s["availability"]["decode"] == 1.0
    assert s["faults"] == 1 and s["requests_retried"] == 0 and res.faults.degrades == (
        ("decode/0", 0.0, 100.0),)
    assert s["fault_windows"]["seconds"] == r.last_token_s and s["fault_windows"]["requests"] == 1
    # two that overlap multiply (0.5 x 0.5); a pool-wide one strikes prefill/0 too
    recs, _, _ = simulate({**base, "faults": [_degrade("decode/0", 0.0, 0.5, 100.0),
                                             _degrade("decode", 0.0, 0.5, 100.0),
                                             _degrade("prefill", 0.0, 0.25, 100.0)]})
    r = recs[0]
    assert r.last_token_s - r.decode_start_s == pytest.approx(4 * decode, rel=1e-12)
    assert r.prefill_end_s - r.prefill_start_s == pytest.approx(4 * prefill, rel=1e-12)


def test_a_degrade_applies_from_the_next_iteration():
    # one that starts and ends inside a decode step changes nothing (the step in progress
    # keeps its speed, and no step starts while it lasts); one that starts inside a step and
    # lasts slows the later steps only: the run ends later, by less than twice the decode
    base = scenario()
    a = simulate(base)[0][0]
    step = (a.last_token_s - a.decode_start_s) / 99
    t = a.decode_start_s + 10.5 * step
    recs, res, _ = simulate({**base, "faults": [_degrade("decode/0", t, 0.5, step / 10)]})
    assert recs[0] == a._replace() and res.faults.applied == 1
    recs, _, _ = simulate({**base, "faults": [_degrade("decode/0", t, 0.5, 100.0)]})
    late = recs[0].last_token_s - a.last_token_s
    assert 88 * step < late < 89 * step * 1.01


def test_a_degrade_has_its_key_paths_checked():
    from hetsim.errors import ConfigError
    from hetsim.resolve import load_scenario
    for fault, where, says in [
            (_degrade("decod", 1, 0.5, 1), "faults[0].target", "did you mean 'decode'"),
            (_degrade("decode/5", 1, 0.5, 1), "faults[0].target", "has instances 0..1"),
            ({**_degrade("decode", 1, 0.5, 1), "repair_s": 1}, "faults[0].repair_s",
             "takes duration_s"),
            ({"pool": "decode", "kind": "degrade", "mtbf_s": 1, "mttr_s": 1},
             "faults[0].factor", "degrade needs factor"),
            ({"link": "decode.nic", "kind": "crash", "mtbf_s": 1, "mttr_s": 1},
             "faults[0].kind", "a link is down or degrade"),
            ({"link": "decode.nix", "kind": "down", "mtbf_s": 1, "mttr_s": 1},
             "faults[0].link", "did you mean 'decode.nic'"),
            ({"link": "decode.nic", "pool": "decode", "kind": "down", "mtbf_s": 1,
              "mttr_s": 1}, "faults[0].link", "not both"),
            ({**_degrade("decode.nic", 1, 0.5, 1), "link": "decode.nic"}, "faults[0].link",
             "belong to a random fault")]:
        with pytest.raises(ConfigError) as e:
            load_scenario(scenario(faults=[fault]))
        assert e.value.path == where and says in e.value.message, str(e.value)


# --- random link faults --------------------------------------------------------------------
def test_random_link_faults_follow_their_own_stream_and_move_no_other():
    crashes = {"pool": "decode", "kind": "crash", "mtbf_s": 2.0, "mttr_s": 0.5}
    flaky = {"link": "decode.nic", "kind": "down", "mtbf_s": 1.5, "mttr_s": 0.3}
    slow = {"pool": "prefill", "kind": "degrade", "factor": 0.5, "mtbf_s": 3.0, "mttr_s": 1.0}
    d = scenario(requests=300, rate=20.0, process="poisson", seed=7,
                 faults=[crashes, flaky, slow])
    _, res, s = simulate(d)
    end = res.end_s
    got = [(a, b) for g, a, b in res.faults.link_faults if a <= end]
    assert {g for g, _, _ in res.faults.link_faults} == {"decode.nic"}
    # link fault 1 of the scenario: spawn key (3, 0, 1)
    assert got == _outages_expected(7, (0,), 1, 1.5, 0.3, end) and len(got) >= 5
    assert s["transfers_retried"] > 0
    # random degrades: per instance, (3, 0, 2, i); they keep the instances up
    for i in (0, 1):
        slowed = [(a, b) for n, a, b in res.faults.degrades if n == f"prefill/{i}" and a <= end]
        assert slowed == _outages_expected(7, (0, 2), i, 3.0, 1.0, end) and slowed
    assert s["availability"]["prefill"] == 1.0
    # the crashes' streams are where they were without the link fault
    _, alone, _ = simulate({**d, "faults": [crashes]})
    until = min(end, alone.end_s)
    for i in (0, 1):
        ours = [o for o in res.faults.outages[f"decode/{i}"] if o[0] <= until]
        assert ours == [o for o in alone.faults.outages[f"decode/{i}"] if o[0] <= until]
        assert ours == _outages_expected(7, (0, 0), i, 2.0, 0.5, until)


# --- a resend around a link that is down ---------------------------------------------------
TWO_DECODE_POOLS = {"router": "round-robin", "kv_link": "roce-400g", "pools": {
    "prefill": {"role": "prefill", "accelerator": "h100-sxm"},
    "da": {"role": "decode", "accelerator": "h100-sxm"},
    "db": {"role": "decode", "accelerator": "h100-sxm"}}}


def test_kv_cut_off_by_a_link_down_goes_at_once_to_a_decode_whose_path_is_up():
    from hetsim.hardware import load_interconnect
    bw = load_interconnect("roce-400g").bandwidth
    base = scenario(placement=TWO_DECODE_POOLS)
    a = simulate(base)[0][0]
    assert a.decode_instance == "da/0"
    t = a.transfer_start_s + (a.transfer_end_s - a.transfer_start_s) / 3
    down = {"at_s": t, "target": "da.nic", "kind": "down", "duration_s": 5.0}
    recs, res, s = simulate({**base, "faults": [down]})
    r = recs[0]
    # resent to db/0 the moment da's NIC went down, taking what the first attempt took
    assert (r.decode_instance, r.transfer_start_s, r.state) == ("db/0", t, "completed")
    assert r.transfer_end_s - r.transfer_start_s == pytest.approx(
        a.transfer_end_s - a.transfer_start_s, rel=1e-9)
    assert s["transfers_retried"] == 1 and s["recomputed_tokens"] == 0
    # the bytes the cut-off attempt had sent are counted (it ran at the NIC's rate to t)
    sent = a.kv_bytes - (a.transfer_end_s - t) * bw
    assert 0 < sent < a.kv_bytes and s["kv_bytes_resent"] == pytest.approx(sent, rel=1e-9)
    # with the prefill side's NIC down every path is: the resend waits for it (as before),
    # and its bytes before the cut count the same
    down = {**down, "target": "prefill.nic", "duration_s": 0.5}
    recs, _, s = simulate({**base, "faults": [down]})
    assert recs[0].decode_instance == "db/0"      # round-robin's next; its path was down too
    assert recs[0].transfer_end_s == pytest.approx(t + 0.5 + a.kv_bytes / bw, rel=1e-6)
    assert s["kv_bytes_resent"] == pytest.approx(sent, rel=1e-9)


def test_new_handoffs_avoid_a_decode_behind_a_link_that_is_down():
    # da's NIC down from before the first transfer: round-robin alone would send request 0
    # to da/0; every request goes to db/0 while it lasts, and da/0 takes load after
    base = scenario(placement=TWO_DECODE_POOLS, requests=20, rate=10.0, out=10)
    down = {"at_s": 0.0, "target": "da.nic", "kind": "down", "duration_s": 1.0}
    recs, _, s = simulate({**base, "faults": [down]})
    during = [r for r in recs.values() if r.transfer_start_s < 1.0]
    assert during and all(r.decode_instance == "db/0" for r in during)
    assert any(r.decode_instance == "da/0" for r in recs.values())
    assert s["transfers_retried"] == 0 and s["completed"] == 20


# --- faults on every kind of handoff ---------------------------------------------------------
FP8 = {"compute": "bf16", "weights": "bf16", "kv": "fp8"}


def _handoff_layout(**kv_transfer):
    d = copy.deepcopy(PD)
    del d["kv_link"]
    d["kv_transfer"] = {"link": "roce-400g", **kv_transfer}
    return d


HANDOFFS = {
    "layerwise": _handoff_layout(mode="layerwise"),
    "layerwise-push": _handoff_layout(mode="layerwise", handoff="push"),
    "push": _handoff_layout(handoff="push"),
    "push-small-staging": _handoff_layout(handoff="push", staging_fraction=0.02),
    "prefill-conversion": {**_handoff_layout(conversion="prefill"), "pools": {
        **PD["pools"], "decode": {**PD["pools"]["decode"], "precision": FP8}}},
    "layerwise-prefill-conversion": {**_handoff_layout(mode="layerwise", conversion="prefill"),
                                     "pools": {**PD["pools"], "decode": {
                                         **PD["pools"]["decode"], "precision": FP8}}},
    "encoded": _handoff_layout(encoding={"codec": "fp8"}, descriptor_us=1.0),
    "batched": _handoff_layout(batching={"window_ms": 5, "max_bytes_mb": 2000},
                               descriptor_us=0.5),
    "batched-push": _handoff_layout(handoff="push", encoding={"codec": "int4"},
                                    batching={"window_ms": 5, "max_bytes_mb": 500}),
}


def _random_faults(rng, horizon: float) -> list:
    out = []
    for _ in range(int(rng.integers(4, 10))):
        pool = str(rng.choice(["prefill", "decode"]))
        target = pool if rng.random() < 0.3 else f"{pool}/{int(rng.integers(2))}"
        kind = str(rng.choice(["crash", "hang", "degrade"]))
        f = {"at_s": float(rng.uniform(0, horizon)), "target": target, "kind": kind,
             ("repair_s" if kind == "crash" else "duration_s"): float(rng.uniform(0.01, 1.0))}
        if kind == "degrade":
            f["factor"] = 0.3
        out.append(f)
    for _ in range(int(rng.integers(0, 3))):
        out.append({"at_s": float(rng.uniform(0, horizon)),
                    "target": str(rng.choice(["prefill.nic", "decode.nic"])),
                    "kind": "down", "duration_s": float(rng.uniform(0.01, 0.5))})
    return out


@pytest.mark.parametrize("layout", sorted(HANDOFFS))
@pytest.mark.parametrize("case", range(4))
def test_random_faults_on_every_handoff_end_every_request_and_release_every_block(layout, case):
    # the run asserts every request ends and every KV block, staging buffer and held count
    # is back; it repeats exactly
    rng = np.random.default_rng([29, case, sorted(HANDOFFS).index(layout)])
    d = scenario(placement=HANDOFFS[layout], requests=40, rate=30.0, process="poisson",
                 seed=int(rng.integers(100)), faults=_random_faults(rng, 1.5),
                 recovery={"retry_limit": int(rng.integers(1, 4)),
                           **({"request_timeout_s": 2.0} if case % 2 else {})})
    d["workload"]["input_tokens"] = {"dist": "uniform", "min": 100, "max": 6000}
    d["workload"]["output_tokens"] = {"dist": "uniform", "min": 1, "max": 200}
    recs, res, s = simulate(d)
    assert simulate(d)[1].requests == res.requests
    assert s["completed"] + s["dropped"] + s["requests_failed"] == s["requests"] == 40
    assert res.faults.applied >= 4
    for r in recs.values():
        if r.state == "completed":
            assert r.arrival_s <= r.first_token_s <= r.last_token_s


def _trace(layout, **kw):
    """(fault-free record of request 0, its SimResult) on ``layout``."""
    recs, res, _ = simulate(scenario(placement=layout, **kw))
    return recs[0], res


def test_a_prefill_crash_mid_layerwise_stream_restarts_it_and_gives_back_the_decode_room():
    from hetsim.hardware import load_interconnect
    lw = HANDOFFS["layerwise"]
    a, _ = _trace(lw)
    # the stream runs beside the prefill, capped so as not to outrun it
    assert a.transfer_start_s < a.prefill_end_s < a.transfer_end_s
    t = a.transfer_start_s + (a.prefill_end_s - a.transfer_start_s) / 2
    recs, res, s = simulate(scenario(placement=lw, faults=[crash("prefill/0", t)]))
    r = recs[0]
    assert (r.prefill_instance, r.prefill_start_s, r.state) == ("prefill/1", t, "completed")
    assert s["lost_prefill_tokens"] == 2000 and s["transfers_retried"] == 0
    # round-robin's second pick: decode/1; decode/0's room came back (run() asserts it)
    assert r.decode_instance == "decode/1"
    # the bytes sent before the crash: the stream's capped rate from the end of its setup
    sc, pl, sim = simulation(scenario(placement=lw))
    p0, d0 = sim.instances["prefill"][0], sim.instances["decode"][0]
    _, setup = sim.link.path(p0, d0)
    layers = sim.model.num_layers
    cap = a.kv_bytes * (1 - 1 / layers) / (a.prefill_end_s - a.transfer_start_s)
    rate = min(cap, load_interconnect("roce-400g").bandwidth)
    assert s["kv_bytes_resent"] == pytest.approx(rate * (t - a.transfer_start_s - setup),
                                                 rel=1e-9)


def test_a_decode_crash_mid_layerwise_stream_sends_the_kv_whole_after_the_prefill():
    lw = HANDOFFS["layerwise"]
    a, _ = _trace(lw)
    t = a.transfer_start_s + (a.prefill_end_s - a.transfer_start_s) / 2
    recs, res, s = simulate(scenario(placement=lw, faults=[crash("decode/0", t)]))
    r = recs[0]
    # the prefill goes on where it was; the KV then goes whole to decode/1, as one
    # transfer, taking what a whole transfer takes
    assert (r.prefill_instance, r.prefill_end_s) == ("prefill/0", a.prefill_end_s)
    assert (r.decode_instance, r.transfer_start_s, r.state) == (
        "decode/1", a.prefill_end_s, "completed")
    w, _ = _trace(PD)
    assert r.transfer_end_s - r.transfer_start_s == pytest.approx(
        w.transfer_end_s - w.transfer_start_s, rel=1e-9)
    assert s["transfers_retried"] == 1 and s["requests_retried"] == 0
    assert s["lost_prefill_tokens"] == 0 and s["recomputed_tokens"] == 0


def test_a_crash_of_the_push_staging_holder_hands_the_kv_to_another_decode():
    push = HANDOFFS["push"]
    a, _ = _trace(push)
    t = mid(a.transfer_start_s, a.transfer_end_s)
    recs, res, s = simulate(scenario(placement=push, faults=[crash("decode/0", t)]))
    r = recs[0]
    assert (r.decode_instance, r.transfer_start_s, r.state) == ("decode/1", t, "completed")
    assert r.transfer_end_s - r.transfer_start_s == pytest.approx(
        a.transfer_end_s - a.transfer_start_s, rel=1e-9)
    assert s["transfers_retried"] == 1 and s["recomputed_tokens"] == 0
    # after the bytes landed in its staging buffer (the copy into its KV pool running) the
    # copy is lost with it: the request recomputes its prompt
    t = mid(a.transfer_end_s, a.kv_ready_s)
    recs, res, s = simulate(scenario(placement=push, faults=[crash("decode/0", t)]))
    assert s["recomputed_tokens"] == 2000 and recs[0].prefill_start_s == t
    assert recs[0].state == "completed" and recs[0].decode_instance == "decode/1"


def test_a_crash_of_the_encoder_reprefills_and_drops_its_transfer():
    enc = HANDOFFS["encoded"]
    a, res0 = _trace(enc)
    (x,) = res0.transfers
    assert x.encode_s > 0
    t = a.transfer_start_s + x.encode_s / 3       # prefill/0 is encoding the KV
    recs, res, s = simulate(scenario(placement=enc, faults=[crash("prefill/0", t)]))
    r = recs[0]
    assert (r.prefill_instance, r.prefill_start_s, r.state) == ("prefill/1", t, "completed")
    assert s["recomputed_tokens"] == 2000 and s["kv_bytes_resent"] == 0
    (y,) = res.transfers          # only the transfer that ended is logged
    assert y.encode_s == pytest.approx(x.encode_s, rel=1e-12)


def test_a_batch_whose_receiver_crashes_is_never_sent_or_stops_in_flight():
    from hetsim.hardware import load_interconnect
    # four prompts prefill together on one prefill instance; round-robin sends 0 and 2 to
    # decode/0, 1 and 3 to decode/1: two batches (one per pair) in the same 5 ms window
    one_p = copy.deepcopy(HANDOFFS["batched"])
    one_p["pools"]["prefill"]["instances"] = 1
    base = scenario(placement=one_p, requests=4)
    base["workload"]["arrival"] = {"process": "closed", "concurrency": 4}
    recs0, res0, _ = simulate(base)
    assert [(x.id, x.batch) for x in res0.transfers] == [(0, 0), (2, 0), (1, 1), (3, 1)]
    a, kv = recs0[0], res0.transfers[0].wire_bytes
    # decode/0 crashes in the window: its batch is dropped unsent, and its members join the
    # open batch to decode/1: one stream carries all four
    t = a.transfer_start_s + 1e-4
    recs, res, s = simulate({**base, "faults": [crash("decode/0", t)]})
    assert sorted((x.batch, x.id) for x in res.transfers) == [(0, i) for i in range(4)]
    assert {r.decode_instance for r in recs.values()} == {"decode/1"}
    assert s["transfers_retried"] == 2 and s["kv_bytes_resent"] == 0
    # 0.1 ms before its stream ends: the stream stops; what it had sent counts (the two
    # batches share the prefill NIC, each at half its bandwidth); its members resend
    t = a.transfer_end_s - 1e-4
    recs, res, s = simulate({**base, "faults": [crash("decode/0", t)]})
    bw = load_interconnect("roce-400g").bandwidth
    assert s["kv_bytes_resent"] == pytest.approx(2 * kv - 1e-4 * bw / 2, rel=1e-9)
    assert sorted((x.batch, x.id) for x in res.transfers) == [(1, 1), (1, 3), (2, 0), (2, 2)]
    assert s["transfers_retried"] == 2 and {r.decode_instance for r in recs.values()} == {
        "decode/1"}
    assert all(r.state == "completed" for r in recs.values())


def test_a_layerwise_stream_never_ends_before_its_prefill_even_when_a_hang_holds_it():
    # prefill/0 hangs 0.5 s mid-prefill: the stream, capped for the prefill's planned end,
    # has sent its bytes by then; it ends with the prefill (and the KV is released on the
    # prefill side only then: run() asserts every block is back)
    lw = HANDOFFS["layerwise"]
    a, _ = _trace(lw)
    t = mid(a.prefill_start_s, a.prefill_end_s)
    hang = {"at_s": t, "target": "prefill/0", "kind": "hang", "duration_s": 0.5}
    recs, _, s = simulate(scenario(placement=lw, faults=[hang]))
    r = recs[0]
    assert r.prefill_end_s == pytest.approx(a.prefill_end_s + 0.5, abs=1e-9)
    assert r.transfer_end_s == r.prefill_end_s and r.state == "completed"
    assert s["transfers_retried"] == 0


def test_the_shipped_slow_decode_shows_what_the_readme_says():
    import hetsim
    from .conftest import ROOT
    r = {s["name"]: s for s in hetsim.run(ROOT / "scenarios" / "faults" / "slow-decode.yaml"
                                          ).summaries}
    plain, slow, dead = r["no-fault"], r["decode-0-half-speed"], r["decode-0-crash"]
    assert plain["slo_attainment"] > slow["slo_attainment"] > dead["slo_attainment"]
    assert slow["availability"]["decode"] == 1.0 > dead["availability"]["decode"]
    assert slow["requests_retried"] == slow["recomputed_tokens"] == 0
    assert dead["requests_retried"] > 0 and dead["recomputed_tokens"] > 0
    # the requests decoding on the half-speed instance take twice as long per step
    assert 1.8 < slow["tpot_s"]["p99"] / plain["tpot_s"]["p99"] < 2.2
    # README's figures of this run: benchmarks/readme_figures.py (tests/test_readme_figures.py)
