"""Routers, one rule each, on stand-in instances (no SimPy needed)."""
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

from hetsim.engine.routers import ROUTERS, make_router, register


@dataclass
class Inst:
    name: str
    load_tokens: int = 0
    n_requests: int = 0
    role: str = "mixed"
    kv: object = None
    port: object = None

    def settle(self):
        """(An instance's counters brought up to now: nothing to bring here.)"""


@dataclass
class Pool:
    free: int
    capacity: int
    queued_blocks: int = 0


def req(tokens=100):
    return SimpleNamespace(input_tokens=tokens)


def router(name, seed=0, spec=None):
    return make_router(name, np.random.default_rng(seed), spec)


def test_round_robin_cycles_in_order():
    insts = [Inst(n) for n in "abc"]
    r = router("round-robin")
    assert [r.pick(insts, req()).name for _ in range(7)] == list("abcabca")


def test_least_loaded_takes_fewest_outstanding_tokens_first_on_ties():
    insts = [Inst("a", 50), Inst("b", 10), Inst("c", 10)]
    assert router("least-loaded").pick(insts, req()).name == "b"


def test_join_shortest_queue_counts_requests_not_tokens():
    insts = [Inst("a", load_tokens=1, n_requests=5), Inst("b", load_tokens=10 ** 6, n_requests=2)]
    assert router("join-shortest-queue").pick(insts, req()).name == "b"


def test_power_of_two_never_picks_the_heavier_of_its_pair():
    """With distinct loads the most loaded instance loses every pair it is drawn into, so it
    is never picked; the lightest wins every pair it is in; with one instance there is no
    choice; and a seed fixes the sequence."""
    insts = [Inst(str(i), load_tokens=10 * i) for i in range(5)]
    r = router("power-of-two", seed=3)
    picks = [r.pick(insts, req()).name for _ in range(2000)]
    assert "4" not in picks
    counts = {n: picks.count(n) for n in "0123"}
    # P(lightest) = P(drawn) = 2/5; each heavier one is picked less often than the one before
    assert counts["0"] / 2000 == pytest.approx(0.4, abs=0.04)
    assert counts["0"] > counts["1"] > counts["2"] > counts["3"] > 0
    assert router("power-of-two").pick(insts[:1], req()) is insts[0]
    again = router("power-of-two", seed=3)
    assert [again.pick(insts, req()).name for _ in range(2000)] == picks


def test_kv_aware_prefers_free_memory_discounted_by_transfers_in_flight():
    a = Inst("a", kv=Pool(free=600, capacity=1000), port=SimpleNamespace(active=2))  # 0.6/3
    b = Inst("b", kv=Pool(free=300, capacity=1000), port=SimpleNamespace(active=0))  # 0.3
    c = Inst("c", kv=Pool(free=900, capacity=1000, queued_blocks=800))              # 0.1
    assert router("kv-aware").pick([a, b, c], req()).name == "b"


def test_length_threshold_sends_long_prompts_to_prefill_least_loaded_within_a_side():
    spec = SimpleNamespace(threshold_tokens=1000)
    insts = [Inst("m1", 30, role="mixed"), Inst("m2", 20, role="mixed"),
             Inst("p1", 90, role="prefill"), Inst("p2", 80, role="prefill")]
    r = router("length-threshold", spec=spec)
    assert r.pick(insts, req(999)).name == "m2"
    assert r.pick(insts, req(1000)).name == "p2"
    only_prefill = insts[2:]
    assert r.pick(only_prefill, req(10)).name == "p2"   # no local side: the other one


def test_a_router_name_registers_once():
    with pytest.raises(ValueError, match="registered twice"):
        register("round-robin")(type("Again", (), {}))
    assert set(ROUTERS) >= {"round-robin", "least-loaded", "join-shortest-queue",
                            "power-of-two", "kv-aware", "length-threshold"}


def test_join_shortest_queue_breaks_ties_by_list_order_and_ignores_load():
    insts = [Inst("a", load_tokens=900, n_requests=1), Inst("b", load_tokens=5, n_requests=3),
             Inst("c", load_tokens=0, n_requests=1)]
    r = router("join-shortest-queue")
    assert [r.pick(insts, req()).name for _ in range(3)] == ["a"] * 3   # stateless
    insts[0].n_requests = 4
    assert r.pick(insts, req()).name == "c"


def test_power_of_two_with_two_instances_always_takes_the_lighter_and_ties_go_first():
    """Both are drawn every time (without replacement), so the lighter one always wins; on a
    tie the first drawn wins, so both are picked."""
    light, heavy = Inst("light", load_tokens=1), Inst("heavy", load_tokens=2)
    r = router("power-of-two", seed=11)
    assert {r.pick([heavy, light], req()).name for _ in range(200)} == {"light"}
    tied = [Inst("x", 5), Inst("y", 5)]
    picks = {r.pick(tied, req()).name for _ in range(200)}
    assert picks == {"x", "y"}


def test_every_router_is_made_with_its_stream_and_the_placement_settings():
    spec = SimpleNamespace(threshold_tokens=10)
    insts = [Inst("m", 1, role="mixed", kv=Pool(1, 2)), Inst("p", 1, role="prefill")]
    for name in ROUTERS:
        assert router(name, spec=spec).pick(insts[:1], req()) is insts[0]
    assert router("length-threshold", spec=spec).pick(insts, req(10)).name == "p"
    assert router("length-threshold").pick(insts, req(10)).name == "m"   # default 2048
