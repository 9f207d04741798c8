"""Faults and recovery: cases an independent review (rv1) found broken, each checked on an
exact schedule. Helpers and conventions are tests/test_faults.py's."""
import pytest

from .test_faults import scenario, simulate


def _hang(target, at, seconds):
    return {"at_s": at, "target": target, "kind": "hang", "duration_s": seconds}


def test_two_hangs_starting_together_then_a_crash_keep_each_hang_apart():
    # decode/0 hangs twice from t = 0.01 (the pool's hang, listed first, for 0.3 s; its own
    # for 0.1 s), then crashes at 0.2 (back at 0.25). The short hang ends at 0.11; the long
    # one is ended by the crash. Two hangs that start together are still two hangs: the
    # short one's end must not end the long one in its place
    d = scenario(requests=20, rate=20.0, faults=[
        _hang("decode", 0.01, 0.3), _hang("decode/0", 0.01, 0.1),
        {"at_s": 0.2, "target": "decode/0", "kind": "crash", "repair_s": 0.05}])
    recs, res, s = simulate(d)
    out = res.faults.outages
    assert out["decode/0"] == ((0.01, 0.11), (0.01, 0.2), (0.2, pytest.approx(0.25)))
    assert out["decode/1"] == ((0.01, pytest.approx(0.31)),)
    assert res.faults.applied == 4
    assert s["completed"] == 20


def test_a_recompute_hits_the_prefix_cache_on_the_clients_prompt_only():
    # prefill/0 serves hit_rate 0.9 of a prompt from its prefix cache (176 of 200 tokens, in
    # 16-token blocks). decode/0 crashes with 320 tokens generated: the request re-prefills
    # 200 + 320 tokens, of which the 320 were generated on the dead instance and are in no
    # cache: still 176 cached, never more than the prompt the record shows
    import copy
    from .test_faults import PD, crash
    pl = copy.deepcopy(PD)
    pl["pools"]["prefill"]["prefix_cache"] = {"hit_rate": 0.9}
    base = scenario(placement=pl, inp=200, out=400)
    a = simulate(base)[0][0]
    assert a.cached_tokens == 176
    t = a.decode_start_s + 0.8 * (a.last_token_s - a.decode_start_s)
    recs, res, s = simulate({**base, "faults": [crash("decode/0", t)]})
    r = recs[0]
    assert r.state == "completed" and r.input_tokens == 200 and s["recomputed_tokens"] > 300
    assert r.cached_tokens == 176 and s["prefix_cached_tokens"] == 176


def test_fault_window_seconds_and_goodput_stop_at_the_end_of_the_run():
    # decode/0 crashes at 0.5 s and is not back before the run ends (a resilience run's
    # whole-run crash is the same, repaired after 1e9 s): the window's seconds are those up
    # to the end of the run, so its goodput is the requests arriving in it that met the SLO
    # over that span, not over 1e9 s
    d = scenario(requests=50, rate=20.0, faults=[
        {"at_s": 0.5, "target": "decode/0", "kind": "crash", "repair_s": 1e9}])
    recs, res, s = simulate(d)
    fw = s["fault_windows"]
    assert fw["seconds"] == res.end_s - 0.5
    inside = [r for r in recs.values() if r.arrival_s >= 0.5]
    assert fw["requests"] == len(inside) > 30 and fw["slo_attainment"] == 1.0
    assert fw["goodput_rps"] == pytest.approx(len(inside) / (res.end_s - 0.5), rel=1e-12)


def test_a_crash_cuts_the_busy_time_of_the_iteration_it_stops():
    # prefill/0 crashes a third into request 0's prefill iteration: it was busy up to the
    # crash, not for the rest of an iteration that never ran (busy_s counts an iteration
    # whole as it starts), so its busy time is what ran
    from .test_faults import crash
    base = scenario()
    a = simulate(base)[0][0]
    t = a.prefill_start_s + (a.prefill_end_s - a.prefill_start_s) / 3
    recs, res, s = simulate({**base, "faults": [crash("prefill/0", t)]})
    p0 = res.instances["prefill"][0]
    assert p0.iterations == 1 and recs[0].prefill_instance == "prefill/1"
    assert p0.busy_s == pytest.approx(t - a.prefill_start_s, rel=1e-12)
    assert res.instances["prefill"][1].busy_s == pytest.approx(
        a.prefill_end_s - a.prefill_start_s, rel=1e-12)


def test_a_pool_down_for_the_whole_run_is_not_available_when_every_request_fails():
    # every decode instance crashes at t = 0 for good; each request waits for one for its
    # 1 s timeout and fails. No token is ever produced (the last token's time is 0), yet the
    # run spans the arrivals: the decode pool was up none of that time
    d = scenario(requests=20, rate=20.0, recovery={"request_timeout_s": 1.0}, faults=[
        {"at_s": 0, "target": "decode", "kind": "crash", "repair_s": 1e9}])
    recs, res, s = simulate(d)
    assert s["requests_failed"] == 20 and res.end_s == 0.0
    assert s["availability"] == {"prefill": 1.0, "decode": 0.0}
