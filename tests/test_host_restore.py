"""A write-through host KV tier that outlives its engine (kv_offload.write_through, issue 17
§2): a request decoding on a crashed instance is restored from its host copy, recomputing
only the tail past the copy; a lost host, a restore link going down or the restore's
destination crashing fall back to recompute. Helpers and conventions are
tests/test_faults.py's: times come from the same scenario run without the fault."""
import copy

import pytest

from hetsim.errors import ConfigError
from hetsim.resolve import load_scenario
from hetsim.scenario import as_scenario

from .test_faults import PD, crash, scenario, simulate, simulation

BS = 16                    # the idealised engine's block size
KV_TOKEN = 131072          # llama-3.1-8b bf16 KV bytes per token (32 layers x 8 x 128 x 2 x 2)


def _pd(capacity_gb=100.0, decodes=2, **offload):
    pl = copy.deepcopy(PD)
    pl["pools"]["decode"]["instances"] = decodes
    pl["pools"]["decode"]["kv_offload"] = {"capacity_gb": capacity_gb, **offload}
    return pl


def _wt(capacity_gb=100.0, decodes=2, **offload):
    return scenario(placement=_pd(capacity_gb, decodes, write_through=True, **offload))


def _context_at(d, t, rid=0):
    """(decode instance, context) of request ``rid`` at time ``t`` of ``d``'s fault-free run."""
    _, _, sim = simulation(d)
    sim.env.process(sim._open_loop())
    sim.env.run(until=t)
    r = sim.live[rid]
    inst = next(i for i in sim.decodes if i.name == r.decode_instance)
    return inst.name, inst._ctx(r)


def _crash_mid_decode(base, frac=0.5, **fault):
    a = simulate(base)[0][0]
    t = a.decode_start_s + frac * (a.last_token_s - a.decode_start_s)
    name, ctx = _context_at(base, t)
    return a, t, name, ctx, {**crash(name, t), **fault}


# --- schema -------------------------------------------------------------------------------
DECODE_KV = "placements.p.pools.decode.kv_offload"


@pytest.mark.parametrize("fault, offload, where, says", [
    ({"at_s": 1, "target": "decode/0", "kind": "hang", "duration_s": 1, "host": "lost"}, {},
     "faults[0].host", "host belongs to a crash"),
    ({**crash("decode/0", 1.0), "host": "gone"}, {}, "faults[0].host", "survives"),
    (None, {"chunk_tokens": 256}, f"{DECODE_KV}.chunk_tokens", "belongs to write_through"),
    (None, {"write_through": True, "chunk_tokens": 100}, f"{DECODE_KV}.chunk_tokens",
     "multiple of the pool's block_size (16)"),
    (None, {"write_thru": True}, f"{DECODE_KV}.write_thru", "did you mean 'write_through'"),
])
def test_a_bad_host_tier_or_host_key_is_one_line_naming_its_key_path(fault, offload, where,
                                                                     says):
    d = scenario(placement=_pd(**offload), faults=[fault] if fault else ())
    with pytest.raises(ConfigError) as e:
        load_scenario(d)
    assert e.value.path == where and says in e.value.message, str(e.value)
    assert "\n" not in str(e.value)


def test_unset_keys_are_not_written_so_resolved_scenarios_stay_as_they_were():
    d = as_scenario({**scenario(placement=_pd()), "faults": [crash("decode/0", 1.0)]}).to_dict()
    assert "host" not in d["faults"][0]
    assert d["placements"]["p"]["pools"]["decode"]["kv_offload"] == {"capacity_gb": 100.0,
                                                                      "link": ""}
    d = as_scenario({**_wt(), "faults": [{**crash("decode/0", 1.0), "host": "lost"}]}).to_dict()
    assert d["faults"][0]["host"] == "lost"
    assert d["placements"]["p"]["pools"]["decode"]["kv_offload"]["write_through"] is True


# --- writes cost nothing and change nothing without a crash --------------------------------
def test_write_through_without_a_crash_changes_no_record_and_counts_the_bytes_written():
    plain = scenario(placement=_pd(), requests=6, rate=20.0)
    wt = scenario(placement=_pd(write_through=True), requests=6, rate=20.0)
    a, ra, _ = simulate(plain)
    b, rb, _ = simulate(wt)
    assert a == b      # NOTE (assumption): the writes overlap compute
    # each request's copy ends at its last full block before its last growth: with 2000 +
    # 100 tokens the blocks taken are 126..132 (growth at contexts 2017, 2033, ..., 2097),
    # the copy then holds (2097 - 1) // 16 * 16 = 2096 tokens, all of them written once
    written = sum(i.host_written_bytes for i in rb.instances["decode"])
    assert written == 6 * 2096 * KV_TOKEN
    assert all(i.host_written_bytes == 0 for i in ra.instances["decode"])


# --- the restore path on an exact trace ----------------------------------------------------
def test_a_crash_mid_decode_restores_the_full_blocks_and_recomputes_only_the_tail():
    base = _wt()
    a, t, name, ctx, fault = _crash_mid_decode(base)
    recs, res, s = simulate({**base, "faults": [fault]})
    r = recs[0]
    stored = (ctx - 1) // BS * BS
    nbytes = stored * KV_TOKEN
    assert res.faults.restored == 1 and res.faults.kv_bytes_restored == nbytes
    assert s["requests_restored"] == 1 and s["kv_bytes_restored"] == nbytes
    # only the tail is recomputed (the KV of ctx tokens: stored restored + the rest computed)
    assert res.faults.recomputed_tokens == ctx - stored and 0 < ctx - stored <= BS
    assert res.faults.kv_bytes_lost == (ctx - stored) * KV_TOKEN
    # the copy crosses the crashed host's link, its NIC and the live decode's NIC: setup =
    # host-link latency + NIC latency + per-transfer overhead; rate = the tightest port
    _, pl, _ = simulation(base)
    host, nic = pl.pools["decode"].offload_link, pl.transfer.nics["decode"]
    rate = min(host.bandwidth, nic.bandwidth)     # (tp 1)
    setup = host.latency + nic.latency + nic.per_transfer_overhead
    other = "decode/1" if name == "decode/0" else "decode/0"
    assert r.decode_instance == other and r.state == "completed"
    assert r.decode_start_s == pytest.approx(t + setup + nbytes / rate, rel=1e-12)
    # the prefill pool never sees it again: its record keeps the prompt's handoff
    assert (r.prefill_start_s, r.prefill_end_s, r.transfer_end_s, r.first_token_s) == (
        a.prefill_start_s, a.prefill_end_s, a.transfer_end_s, a.first_token_s)
    assert r.input_tokens == 2000 and r.output_tokens == 100
    free = simulate(base)[1].instances["prefill"]
    assert [(i.busy_s, i.iterations) for i in res.instances["prefill"]] == [
        (i.busy_s, i.iterations) for i in free]


def test_the_restored_request_ends_before_the_recomputed_one():
    base = _wt()
    _, _, _, _, fault = _crash_mid_decode(base)
    restored = simulate({**base, "faults": [fault]})[0][0]
    recomputed = simulate({**base, "faults": [{**fault, "host": "lost"}]})[0][0]
    assert restored.last_token_s < recomputed.last_token_s


def test_the_restored_tail_costs_one_recompute_chunk_in_the_first_step():
    # the tail but the token the first step writes (ctx - 1 - stored tokens) is recomputed
    # inside the new instance's next iteration: its prefill time (StepModel.time, less the
    # one iteration overhead the step already pays) on top of the step's own
    base = _wt()
    a, t, name, ctx, fault = _crash_mid_decode(base)
    _, _, sim = simulation({**base, "faults": [fault]})
    dec = {i.name: i for i in sim.decodes}
    seen = []
    other = "decode/1" if name == "decode/0" else "decode/0"
    inst = dec[other]
    orig = inst._restart

    def spy(r):
        extra = inst._extra
        orig(r)
        seen.append(inst._extra - extra)
    inst._restart = spy
    sim.run()
    stored = (ctx - 1) // BS * BS
    n = ctx - 1 - stored
    step = inst.step
    want = step.time([(n, ctx - 1)]) - step.pm.iteration_overhead if n else 0.0
    assert n > 0 and seen == [pytest.approx(want, rel=1e-12)]


@pytest.mark.parametrize("chunk, frac", [(None, 0.2), (256, 0.2), (256, 0.8)])
def test_a_copy_holds_the_chunks_filled_by_the_crash(chunk, frac):
    base = _wt(**({"chunk_tokens": chunk} if chunk else {}))
    _, _, _, ctx, fault = _crash_mid_decode(base, frac)
    _, res, _ = simulate({**base, "faults": [fault]})
    size = chunk or BS
    stored = (ctx - 1) // size * size
    assert res.faults.kv_bytes_restored == stored * KV_TOKEN
    assert res.faults.recomputed_tokens == ctx - stored


# --- the host tier's capacity: copies that do not fit ---------------------------------------
def _blocks_gb(n):
    return (n + 0.5) * BS * KV_TOKEN / 1e9


@pytest.mark.parametrize("blocks, stored", [
    (100, 0),              # the prompt's 124 full blocks do not fit: no copy at all
    (126, 126 * BS),       # they do; the copy grows to 126 blocks, then stops for good
    (200, None),           # room for every block: the copy is the full blocks at the crash
])
def test_a_copy_grows_while_the_tier_has_room_then_stays_a_prefix(blocks, stored):
    base = _wt(capacity_gb=_blocks_gb(blocks))
    _, _, _, ctx, fault = _crash_mid_decode(base, 0.5)
    stored = (ctx - 1) // BS * BS if stored is None else stored
    recs, res, _ = simulate({**base, "faults": [fault]})
    assert res.faults.kv_bytes_restored == stored * KV_TOKEN
    assert res.faults.restored == (stored > 0)
    assert res.faults.recomputed_tokens == ctx - stored
    assert recs[0].state == "completed"


# --- fallbacks to recompute ----------------------------------------------------------------
def test_a_lost_host_recomputes_exactly_as_swap_space_does():
    base = _wt()
    _, _, _, ctx, fault = _crash_mid_decode(base)
    lost = simulate({**base, "faults": [{**fault, "host": "lost"}]})
    plain = simulate({**scenario(placement=_pd()), "faults": [fault]})
    assert lost[0] == plain[0]
    assert lost[1].faults.restored == 0 and lost[1].faults.recomputed_tokens == ctx
    assert lost[2]["requests_restored"] == 0


def _restore_span(base, fault):
    recs, _, _ = simulate({**base, "faults": [fault]})
    return fault["at_s"], recs[0].decode_start_s, recs[0].decode_instance


def test_a_restore_link_going_down_falls_back_to_recompute():
    base = _wt()
    _, _, _, ctx, fault = _crash_mid_decode(base)
    t0, t1, _ = _restore_span(base, fault)
    down = {"at_s": (t0 + t1) / 2, "target": "decode.nic", "kind": "down", "duration_s": 0.05}
    recs, res, s = simulate({**base, "faults": [fault, down]})
    r = recs[0]
    assert r.state == "completed" and res.faults.restored == 0
    assert res.faults.recomputed_tokens == ctx       # the tail, then the copy's tokens
    assert res.faults.by_request[0][1] == 2           # two moves: the restore, its fallback
    assert r.prefill_start_s > t0                     # re-prefilled
    assert 0 < res.faults.kv_bytes_resent < ((ctx - 1) // BS * BS) * KV_TOKEN


def test_the_restore_destination_crashing_falls_back_to_recompute():
    base = _wt(decodes=3)
    _, _, _, ctx, fault = _crash_mid_decode(base)
    t0, t1, dest = _restore_span(base, fault)
    recs, res, _ = simulate({**base, "faults": [fault, crash(dest, (t0 + t1) / 2, 1.0)]})
    r = recs[0]
    assert r.state == "completed" and res.faults.restored == 0
    assert res.faults.recomputed_tokens == ctx
    assert r.decode_instance not in (dest, fault["target"])


def test_a_restore_past_the_retry_limit_fails_and_lets_its_copy_go():
    base = {**_wt(), "recovery": {"retry_limit": 0}}
    _, _, _, _, fault = _crash_mid_decode(base)
    recs, res, _ = simulate({**base, "faults": [fault]})     # (the run asserts no leak)
    assert recs[0].state == "failed" and recs[0].drop_reason == "retry_limit"


# --- conservation under load ---------------------------------------------------------------
@pytest.mark.parametrize("capacity_gb, host", [(2.0, None), (40.0, None), (40.0, "lost")])
def test_random_crashes_with_host_copies_leak_nothing(capacity_gb, host):
    faults = [{"pool": "decode", "kind": "crash", "mtbf_s": 2.0, "mttr_s": 0.5,
               **({"host": host} if host else {})},
              {"link": "decode.nic", "kind": "down", "mtbf_s": 3.0, "mttr_s": 0.05}]
    d = {**scenario(placement=_pd(capacity_gb, decodes=3, write_through=True), requests=120,
                    rate=30.0, process="poisson", out=300),
         "faults": faults, "recovery": {"retry_limit": 6}}
    recs, res, s = simulate(d)     # the run asserts: every block back, host tiers included
    states = [r.state for r in recs.values()]
    assert len(states) == 120 and set(states) <= {"completed", "failed"}
    assert s["completed"] + s["requests_failed"] == 120
    if host == "lost":
        assert res.faults.restored == 0
    else:
        assert res.faults.restored > 0
        assert s["kv_bytes_restored"] == res.faults.kv_bytes_restored > 0
    assert s["kv_bytes_written_through"] > 0
    # the per-request costs add up to the run's (the warm-up summary sums them)
    rows = res.faults.by_request
    assert sum(r[3] for r in rows) == res.faults.recomputed_tokens
    assert sum(r[7] for r in rows) == pytest.approx(res.faults.kv_bytes_restored, rel=1e-12)
    assert sum(r[7] > 0 for r in rows) == res.faults.restored


def test_restores_are_deterministic():
    d = {**scenario(placement=_pd(40.0, decodes=3, write_through=True), requests=60,
                    rate=30.0, process="poisson", out=300),
         "faults": [{"pool": "decode", "kind": "crash", "mtbf_s": 2.0, "mttr_s": 0.5}]}
    a, ra, _ = simulate(d)
    b, rb, _ = simulate(d)
    assert repr(a) == repr(b) and repr(ra.faults) == repr(rb.faults)    # (NaN-safe)
