"""Exact event traces of each instance kind and of the KV block pool.

A stub step model makes every iteration time a binary fraction (exact in floats): an
iteration costs 1 s, plus 1/8 s per prompt token computed, plus 1/4 s per decode token. The
expected times below are worked out by hand from those rules.
"""
from types import SimpleNamespace

import pytest
import simpy

from hetsim.engine.instances import DecodeInstance, MixedInstance, PrefillInstance
from hetsim.engine.memory import BlockPool
from hetsim.engine.ondemand import OnDemandDecodeInstance
from hetsim.engine.policy import FcfsPolicy
from hetsim.engine.request import RECORD_COLUMNS, Request, RequestRecord, State


class Step:
    pm = SimpleNamespace(iteration_overhead=1.0)
    model = SimpleNamespace(sliding_window=None, linear_attention=None,
                            kv_tokens=lambda n, *fmt: n)
    formats, tp, attn_tp = SimpleNamespace(kv="bf16"), 1, 1
    read_window = 0

    def time(self, chunks=(), n_logits_prefill=0, decode_n=0, decode_ctx=0,
             decode_window_ctx=None):
        return 1.0 + sum(q for q, _ in chunks) / 8 + decode_n / 4

    def decode_time(self, n, ctx, window_ctx=None):
        return self.time(decode_n=n, decode_ctx=ctx, decode_window_ctx=window_ctx)

    def decode_times(self, n, ctx, grow, count, window_ctx=None):
        return [self.decode_time(n, ctx + j * grow, window_ctx) for j in range(1, count + 1)]


def pool(role, kv_blocks=100, max_tokens=64, max_seqs=8, rules=None, **spec):
    s = SimpleNamespace(max_batch_tokens=max_tokens, max_seqs=max_seqs, block_size=4,
                        role=role, prefix_cache=None, preemption_policy="recompute",
                        kv_offload=None, tp=1)
    s.__dict__.update(spec)
    s.attn_tp = s.tp // (spec.get("attention_dp") or 1)     # as scenario.Pool.attn_tp
    return SimpleNamespace(name=role, spec=s, cache_link=None, offload_link=None, rules=rules,
                           memory=SimpleNamespace(kv_blocks=kv_blocks, kv_bytes_per_token=1.0))


def make(kind, role, **kw):
    env = simpy.Environment()
    on_start = kw.pop("on_start", None)
    extra = {"on_start": on_start} if on_start else {}
    if kw.pop("first_token", False):
        extra["first_token"] = True
    return env, kind(env, f"{role}/0", pool(role, **kw), Step(), **extra)


def req(i, prompt, output, t=0.0):
    return Request(i, t, prompt, output)


# --- BlockPool ------------------------------------------------------------------------------
def grants(env, kv, asks):
    """Start one process per (name, blocks, at): it reserves at ``at``; returns the log of
    (name, time) in the order reservations were granted."""
    log = []

    def one(name, n, at):
        yield env.timeout(at)
        yield kv.reserve(n)
        log.append((name, env.now))
    for a in asks:
        env.process(one(*a))
    return log


def test_block_pool_reserves_at_once_while_free():
    env = simpy.Environment()
    kv = BlockPool(env, 10, block_size=16)
    assert (kv.blocks(1), kv.blocks(16), kv.blocks(17), kv.blocks(0)) == (1, 1, 2, 0)
    assert kv.reserve(4).triggered and kv.try_reserve(6)
    assert (kv.used, kv.free, kv.peak, kv.occupancy()) == (10, 0, 10, 1.0)
    assert not kv.try_reserve(1)
    kv.release(3)
    assert (kv.used, kv.peak) == (7, 10)


def test_block_pool_queues_fifo_and_release_wakes_waiters_in_order():
    """8 blocks; a holds 6. b (4) queues; c (1) would fit but must not pass b; d (2) queues.
    Releases: at t=2 a returns 3 (free 5: b goes, then c; d's 2 do not fit in the 0 left), at
    t=5 a returns 3 more (d goes)."""
    env = simpy.Environment()
    kv = BlockPool(env, 8, 4)
    kv.take(6)
    log = grants(env, kv, [("b", 4, 1), ("c", 1, 1), ("d", 2, 1)])

    def releases():
        yield env.timeout(2)
        kv.release(3)
        yield env.timeout(3)
        kv.release(3)
    env.process(releases())
    env.run(until=1.5)
    assert (kv.queued, kv.queued_blocks, kv.free) == (3, 7, 2)
    assert not kv.try_reserve(1)          # someone queues ahead: no overtaking
    env.run()
    assert log == [("b", 2), ("c", 2), ("d", 5)]
    assert (kv.used, kv.queued, kv.peak) == (7, 0, 8)


def test_block_pool_same_time_requests_keep_their_order():
    """Three reservations at the same instant, in process order, none fitting until one
    release frees room for all: they are granted in the order they asked."""
    env = simpy.Environment()
    kv = BlockPool(env, 6, 4)
    kv.take(6)
    log = grants(env, kv, [("x", 2, 0), ("y", 1, 0), ("z", 3, 0)])
    env.timeout(4).callbacks.append(lambda _: kv.release(6))
    env.run()
    assert log == [("x", 4), ("y", 4), ("z", 4)]


def test_block_pool_gate_holds_the_queue_until_opened_and_granted():
    env = simpy.Environment()
    closed = [True]
    kv = BlockPool(env, 4, 4, gate=lambda: not closed[0])
    assert not kv.try_reserve(1)           # gate closed: nothing new is granted
    ev = kv.reserve(1)
    kv.release(0)
    assert not ev.triggered and kv.queued == 1
    kv.take(2)                              # the owner's own admissions pass the gate
    closed[0] = False
    kv.grant()
    assert ev.triggered and kv.used == 3


def test_block_pool_wait_release_and_mean_occupancy():
    """Used 2 of 4 over [0, 1), 4 of 4 over [1, 3): mean (2 + 8) / 12; the next release fires
    the waiter."""
    env = simpy.Environment()
    kv = BlockPool(env, 4, 4)
    kv.take(2)
    woke = []

    def proc():
        yield env.timeout(1)
        kv.take(2)
        ev = kv.wait_release()
        assert kv.wait_release() is ev     # one event per release
        env.timeout(2).callbacks.append(lambda _: kv.release(1))
        yield ev
        woke.append(env.now)
    env.process(proc())
    env.run()
    assert woke == [3]
    assert kv.mean_occupancy(3.0) == pytest.approx(10 / 12, abs=0)
    assert kv.mean_occupancy(3.0) == kv.mean_occupancy(3.0)   # reading changes nothing
    with pytest.raises(AssertionError, match="over-committed"):
        kv.take(2)


# --- prefill --------------------------------------------------------------------------------
def test_prefill_batches_under_the_token_budget_and_holds_kv_until_released():
    """Budget 64 tokens: prompts of 32 + 24 run together (1 + 56/8 = 8 s), the 16-token one
    next (1 + 2 = 3 s, ending at 11). Finished prompts' KV stays held until released."""
    env, p = make(PrefillInstance, "prefill")
    rs = [req(0, 32, 5), req(1, 24, 5), req(2, 16, 5)]
    done = [p.submit(r) for r in rs]
    assert p.load_tokens == 72 and p.n_requests == 3
    env.run()
    assert all(d.triggered for d in done)
    assert [(r.prefill_start_s, r.prefill_end_s, r.first_token_s) for r in rs] == [
        (0, 8, 8), (0, 8, 8), (8, 11, 11)]
    assert [r.state for r in rs] == [State.PREFILLING] * 3
    assert [r.kv_blocks for r in rs] == [8, 6, 4]
    assert p.timeline == [(8, 14), (11, 18)] and p.kv.used == 18
    assert (p.busy_s, p.iterations, p.load_tokens) == (11, 2, 0)
    p.release(8)
    assert (p.held, p.kv.used, p.n_requests) == (10, 10, 2)
    s = p.stats(11.0)
    assert (s.held_peak, s.timeline, s.role, s.iterations) == (
        18, ((8, 14), (11, 18), (11, 10)), "prefill", 2)
    assert s.held_mean == pytest.approx((14 * 3) / 11)


def test_prefill_head_waits_for_kv_and_work_is_fused_into_the_next_iteration():
    """10 blocks: the 32-token prompt (8 blocks) runs 0-5 with 2 s of queued device work fused
    in (1 + 4 + 2 = 7); the 16-token one (4 blocks) waits until blocks are released at 9."""
    env, p = make(PrefillInstance, "prefill", kv_blocks=10)
    work = p.add_work(2.0)
    a, b = req(0, 32, 5), req(1, 16, 5)
    p.submit(a)
    p.submit(b)
    env.timeout(9).callbacks.append(lambda _: p.release(8))
    env.run()
    assert work.triggered and p.work_s == 2.0
    assert (a.prefill_start_s, a.prefill_end_s) == (0, 7)
    assert (b.prefill_start_s, b.prefill_end_s) == (9, 12)
    assert p.add_work(0).triggered    # nothing to do: fires at once


def test_prefill_on_start_routes_as_the_batch_forms_and_its_seconds_join_the_iteration():
    seen = []

    def on_start(inst, r):
        seen.append((r.id, inst.env.now))
        return 0.5
    env, p = make(PrefillInstance, "prefill", on_start=on_start)
    rs = [req(0, 8, 2), req(1, 8, 2)]
    for r in rs:
        r.started = env.event()
        p.submit(r)
    env.run()
    # 1 + 16/8 = 3 s, plus 0.5 s for each prompt's hook
    assert seen == [(0, 0), (1, 0)]
    assert [r.prefill_end_s for r in rs] == [4, 4]
    assert all(r.started.triggered and r.prefill_end_expected == 4 for r in rs)


# --- decode ---------------------------------------------------------------------------------
def test_decode_continuous_batching_trace():
    """max 2 sequences. r0 (2 steps to go) and r1 (1) start at 0; r2 (3) waits for a slot.
    Steps cost 1 + n/4: [0, 1.5) r1 ends; [1.5, 3) r2 joins, r0 ends; 3 -> 4.25 -> 5.5 r2."""
    env, d = make(DecodeInstance, "decode", max_seqs=2)
    rs = [req(0, 8, 3), req(1, 4, 2), req(2, 4, 4)]
    for r in rs:
        r.state = State.TRANSFERRING
        assert d.reserve(r).triggered
    assert [r.kv_blocks for r in rs] == [3, 2, 2] and d.kv.used == 7
    for r in rs:
        d.join(r)
    env.run()
    assert [(r.decode_start_s, r.last_token_s) for r in rs] == [(0, 3), (0, 1.5), (1.5, 5.5)]
    assert all(r.state is State.COMPLETED for r in rs)
    assert (d.step_no, d.decode_tokens, d.decode_token_s) == (4, 6, 8.5)
    assert (d.kv.used, d.ctx_sum, d.running, d.n_requests, d.load_tokens) == (0, 0, 0, 0, 0)
    s = d.stats(5.5)
    assert (s.running, s.kv.used, s.kv.peak, s.decode_tokens) == (0, 0, 7, 6)


def _join_at(env, d, r, at):
    """A process that hands ``r`` (its KV reserved now) to ``d`` at ``at``."""
    r.state = State.TRANSFERRING
    d.reserve(r)

    def go():
        yield env.timeout(at)
        d.join(r)
    env.process(go())


@pytest.mark.parametrize("spans", [True, False])
def test_decode_join_inside_a_span_waits_for_the_iteration_in_progress(spans, monkeypatch):
    """r0 (8 out: 7 steps of 1.25 s) runs alone; r1 (3 out: 2 steps) joins at 3.0, inside
    the third step [2.5, 3.75): it starts at 3.75, the two share steps of 1.5 s to 6.75 (r1
    ends), then r0 runs its last two alone to 9.25. The same with and without spans."""
    monkeypatch.setattr(DecodeInstance, "spans", spans)
    env, d = make(DecodeInstance, "decode")
    r0, r1 = req(0, 8, 8), req(1, 4, 3)
    _join_at(env, d, r0, 0.0)
    _join_at(env, d, r1, 3.0)
    env.run()
    assert (r1.decode_start_s, r1.last_token_s, r0.last_token_s) == (3.75, 6.75, 9.25)
    assert (d.step_no, d.iterations, d.decode_tokens) == (7, 7, 9)
    assert (d.busy_s, d.decode_token_s) == (9.25, 12.25)


def test_decode_span_settles_for_a_reader_inside_it():
    """Statistics read inside a span see every iteration begun by then: at 3.0 (third step of
    1.25 s running) 3 iterations, 3.75 s busy counted whole as they began, 0.75 s of it still
    to run; and the span's event fires at its last step's end, as one iteration's would."""
    env, d = make(DecodeInstance, "decode")
    r0 = req(0, 8, 8)
    _join_at(env, d, r0, 0.0)
    seen = []

    def look():
        yield env.timeout(3.0)
        s = d.stats(env.now)
        seen.append((s.iterations, s.busy_s, d.running_s(env.now), d.step_no, d.generated(r0)))
    env.process(look())
    env.run()
    assert seen == [(3, 3.75, 0.75, 2, 3)]
    assert (r0.last_token_s, d.iterations, d.busy_s) == (8.75, 7, 8.75)


# --- mixed ----------------------------------------------------------------------------------
def test_mixed_chunked_prefill_trace():
    """Budget 16. r0 (24-token prompt, 3 out) is chunked 16 + 8; r1 (8 tokens, 1 out) joins
    the second chunk and ends with it; then r0 decodes its 2 remaining tokens."""
    env, m = make(MixedInstance, "mixed", max_tokens=16, max_seqs=4)
    r0, r1 = req(0, 24, 3), req(1, 8, 1)
    m.submit(r0)
    m.submit(r1)
    env.run()
    # [0, 3): chunk 16 of r0; [3, 6): 8 of r0 + 8 of r1; [6, 7.25), [7.25, 8.5): r0 decodes
    assert (r0.prefill_start_s, r0.first_token_s, r0.decode_start_s, r0.last_token_s) == (
        0, 6, 6, 8.5)
    assert (r1.prefill_start_s, r1.first_token_s, r1.last_token_s) == (3, 6, 6)
    assert r0.prefill_instance == r0.decode_instance == "mixed/0"
    assert (m.iterations, m.decode_tokens, m.busy_s) == (4, 2, 8.5)
    assert m.kv.used == 0 and m.kv.peak == 7 + 3     # blocks for prompt + output: 27, 9


# --- on-demand decode -----------------------------------------------------------------------
def test_on_demand_decode_preempts_the_newest_and_recomputes_it():
    """3 blocks of 4 tokens. r0 and r1 (3-token prompts, 7 out) start with one block each.
    At step 1 both need a second block: r0 takes the last one, r1 (newest) is preempted. r1
    comes back when r0 finishes (step 6, t=7.75) and recomputes 4 tokens (1 + 4/8 - 1 = 0.5 s,
    added to that step), then runs its 5 remaining steps."""
    env, d = make(OnDemandDecodeInstance, "decode", kv_blocks=3, max_seqs=4)
    r0, r1 = req(0, 3, 7), req(1, 3, 7)
    for r in (r0, r1):
        r.state = State.TRANSFERRING
        d.reserve(r)
        d.join(r)
    assert d.kv.used == 2
    env.run()
    # step 0: 1.5 s; steps 1-5 (r0 alone): 1.25 s each -> 7.75; step 6: 1.25 + 0.5 -> 9.5;
    # steps 7-10: 1.25 each -> 14.5
    assert (r0.last_token_s, r1.last_token_s) == (7.75, 14.5)
    assert (r0.preemptions, r1.preemptions) == (0, 1)
    assert (d.preemptions, d.recomputed_tokens, d.preemption_s) == (1, 4, 0.5)
    assert d.decode_tokens == 12 and d.step_no == 11
    assert (d.kv.used, d.kv.peak, d.running, d.ctx_sum) == (0, 3, 0, 0)
    s = d.stats(14.5)
    assert (s.preemptions, s.recomputed_tokens, s.preemption_s, s.kv.peak) == (1, 4, 0.5, 3)


def test_on_demand_victim_list_keeps_running_sequences_not_every_request():
    """The admission order (for LIFO victims) drops the entries of ended sequences as it grows
    (issue 19: it held every request admitted to the end of the run, ~1 KB each): 500
    requests one after another leave at most 64 + 2 x max_seqs + 1 entries, and the running ones
    are all still there."""
    env, d = make(OnDemandDecodeInstance, "decode", kv_blocks=200, max_seqs=4)
    longest = []

    def feed():
        for i in range(500):
            r = req(i, 3, 3 if i % 50 else 200, t=env.now)   # every 50th runs long
            r.state = State.TRANSFERRING
            yield d.reserve(r)
            d.join(r)
            longest.append(len(d.order))
            yield env.timeout(1.0)
    env.process(feed())
    env.run(until=400)
    live = [r for _, r in d.order if r.state is State.DECODING]
    assert d.running == len(live) > 0 and max(longest) <= 64 + 2 * 4 + 1
    env.run()
    assert d.running == 0 and len(d.order) <= 64 + 2 * 4 + 1


def test_on_demand_swap_copies_to_the_host_tier_and_back():
    """As above with swap: r1's 4 held tokens go to the host at 1 B/s (4 s, in step 1) and
    come back on re-admission (4 s: the one host block it holds)."""
    offload = SimpleNamespace(capacity_gb=1e-7)    # 100 bytes: 25 blocks of 4 one-byte tokens
    env = simpy.Environment()
    p = pool("decode", kv_blocks=3, max_seqs=4, preemption_policy="swap", kv_offload=offload)
    p.offload_link = SimpleNamespace(latency=0.0, bandwidth=1.0)
    d = OnDemandDecodeInstance(env, "decode/0", p, Step())
    r0, r1 = req(0, 3, 7), req(1, 3, 7)
    for r in (r0, r1):
        r.state = State.TRANSFERRING
        d.reserve(r)
        d.join(r)
    env.run()
    # step 1 runs 1.25 + 4 (swap out); r0 ends at 7.75 + 4; step 6 adds 4 (swap in)
    assert r0.last_token_s == 11.75
    assert r1.last_token_s == 11.75 + 1.25 + 4 + 4 * 1.25 == 22
    assert (d.preemptions, d.recomputed_tokens, d.swapped_bytes, d.preemption_s) == (1, 0, 4, 8)
    assert d.host.capacity == 25 and d.host.used == 0 and d.host.peak == 1


def test_on_demand_gate_holds_new_reservations_while_a_sequence_is_preempted():
    env, d = make(OnDemandDecodeInstance, "decode", kv_blocks=3, max_seqs=4)
    r0, r1, r2 = req(0, 3, 7), req(1, 3, 7), req(2, 3, 2)
    for r in (r0, r1):
        r.state = State.TRANSFERRING
        d.reserve(r)
        d.join(r)
    granted = []

    def late():
        yield env.timeout(3)              # r1 is preempted; one block is free
        assert d.kv.free == 1
        yield d.reserve(r2)
        granted.append(env.now)
    env.process(late())
    env.run(until=20)
    assert granted == [7.75]              # only once r1 is back in


# --- policy and records ---------------------------------------------------------------------
def test_a_policy_is_replaceable():
    """A policy that runs one prompt per prefill iteration: three 8-token prompts take
    2 s each instead of one 4 s batch."""
    class OneAtATime(FcfsPolicy):
        def prefill_batch(self, inst):
            q = inst.queue
            if not q or not inst.kv.try_reserve(inst.kv.blocks(q[0].input_tokens)):
                return []
            r = q.popleft()
            inst.admit_prompt(r, inst.kv.blocks(r.input_tokens))
            return [r]
    env = simpy.Environment()
    p = PrefillInstance(env, "p/0", pool("prefill"), Step(), policy=OneAtATime())
    rs = [req(i, 8, 2) for i in range(3)]
    for r in rs:
        p.submit(r)
    env.run()
    assert [r.prefill_end_s for r in rs] == [2, 4, 6]


def test_record_is_frozen_and_has_one_field_list():
    r = req(7, 10, 3, t=1.5)
    r.to(State.QUEUED)
    r.drop("too long")
    rec = r.record()
    assert isinstance(rec, RequestRecord) and rec._fields == RECORD_COLUMNS
    assert (rec.id, rec.state, rec.drop_reason, rec.arrival_s) == (7, "dropped", "too long", 1.5)
    assert set(RECORD_COLUMNS) <= set(Request.__slots__)
    with pytest.raises(AttributeError):
        rec.state = "completed"
    with pytest.raises(AssertionError, match="DROPPED -> State.QUEUED"):
        r.to(State.QUEUED)
