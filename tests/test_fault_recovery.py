"""Faults and recovery, the engine's second half (issue 17): chunked prefill's lost work,
recomputes that no longer fit, instance degrades, random link faults, a resend around a link
that is down, and faults on layer-wise, push, prefill-side conversion and stepwise handoffs.
Helpers and conventions are tests/test_faults.py's."""
import copy

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
