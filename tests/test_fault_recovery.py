"""Faults and recovery, the engine's second half (issue 17): chunked prefill's lost work,
recomputes that no longer fit, instance degrades, random link faults, a resend around a link
that is down, and faults on layer-wise, push, prefill-side conversion and stepwise handoffs.
Helpers and conventions are tests/test_faults.py's."""
import copy

import numpy as np

import pytest

from .test_faults import DECODE, MIXED, PD, crash, simulate, simulation, scenario


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
    assert s["fault_windows"]["seconds"] == 100.0 and s["fault_windows"]["requests"] == 1
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
def _cycles(seed, key, mtbf, mttr, until):
    """(down, up) times of a random fault's own stream ``key``, drawn here independently."""
    from hetsim.engine.faults import FAULT_STREAM
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(FAULT_STREAM, *key)))
    t, out = 0.0, []
    while True:
        up, down = rng.exponential(mtbf), rng.exponential(mttr)
        if t + up > until:
            return out
        out.append((t + up, t + up + down))
        t = t + up + down


def test_random_link_faults_follow_their_own_stream_and_move_no_other():
    crashes = {"pool": "decode", "kind": "crash", "mtbf_s": 2.0, "mttr_s": 0.5}
    flaky = {"link": "decode.nic", "kind": "down", "mtbf_s": 1.5, "mttr_s": 0.3}
    d = scenario(requests=300, rate=20.0, process="poisson", seed=7, faults=[crashes, flaky])
    _, res, s = simulate(d)
    end = res.end_s
    got = [(a, b) for g, a, b in res.faults.link_faults if a <= end]
    assert {g for g, _, _ in res.faults.link_faults} == {"decode.nic"}
    assert got == _cycles(7, (0, 1), 1.5, 0.3, end) and len(got) >= 5
    assert s["transfers_retried"] > 0
    # the crashes' streams are where they were without the link fault
    _, alone, _ = simulate({**d, "faults": [crashes]})
    until = min(end, alone.end_s)
    for i in (0, 1):
        ours = [o for o in res.faults.outages[f"decode/{i}"] if o[0] <= until]
        assert ours == [o for o in alone.faults.outages[f"decode/{i}"] if o[0] <= until]
        assert ours == _cycles(7, (0, 0, i), 2.0, 0.5, until)


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
