"""The planner's enumeration and pruning (hetsim.planner.search), without simulating anything.

Every survivor fits the inventory's caps and the budget; tightening a cap or the budget only
removes candidates; pools are sized to the target; the counts add up; the short lists hold at
most ``verify`` per shape, in the order they promise.
"""
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hetsim.config import build
from hetsim.models import load_model
from hetsim.planner import Candidate, PlanSpec
from hetsim.planner.capacity import Option, options
from hetsim.planner.search import (best_units, candidates, cheapest_layouts, fits_inventory,
                                size)

from .test_plan_capacity import SPEC

KV_BYTES = 1024 * 131072.0     # a 1024-token prompt's KV at 128 KiB per token (llama-3.1-8b)


def spec(**edits) -> PlanSpec:
    return build(PlanSpec, {**SPEC, "interconnects": ["roce-400g", "roce-100g"], **edits})


@pytest.fixture(scope="module")
def model():
    return load_model("llama-3.1-8b")


def search(sp, model, target=10.0, kv_bytes=KV_BYTES):
    return candidates(sp, options(sp, model, 1024, 200), kv_bytes, target)


def used(c: Candidate) -> dict:
    out: dict = {}
    for o, n in c.pools.values():
        out[o.acc] = out.get(o.acc, 0) + o.tp * n
    return out


# --- size ---------------------------------------------------------------------------------------
@given(st.floats(1e-3, 1e3), st.floats(1e-3, 1e4))
def test_size_is_the_fewest_instances_that_serve_the_target(cap, target):
    n = size(cap, target)
    assert n >= 1 and n * cap >= target * (1 - 1e-12)
    assert n == 1 or (n - 1) * cap < target


def test_size_without_capacity_or_target():
    assert size(0.0, 5.0) is None and size(-1.0, None) is None
    assert size(0.5, None) == 1          # a serving unit: one instance


# --- enumeration and pruning --------------------------------------------------------------------
def test_every_survivor_fits_the_caps_and_the_budget(model):
    sp = spec(inventory={"h100-sxm": {"max": 3}, "a100-sxm": {"max": 2}},
              budget_usd_per_hour=12.0)
    cands, considered, pruned = search(sp, model, target=12.0)
    assert cands and considered == pruned + len(cands)
    for c in cands:
        assert c.cost <= 12.0
        u = used(c)
        assert u.get("h100-sxm", 0) <= 3 and u.get("a100-sxm", 0) <= 2, c.name()
        assert fits_inventory(sp, c.pools)


def test_tightening_a_cap_or_the_budget_only_removes_candidates(model):
    loose, n_loose, _ = search(spec(), model)
    capped, n_capped, _ = search(spec(inventory={"h100-sxm": {"max": 2},
                                                 "a100-sxm": {"max": 8, "price_usd_per_hour": 1.6}}),
                                 model)
    budget, n_budget, _ = search(spec(budget_usd_per_hour=8.0), model)
    names = {c.name() for c in loose}
    assert {c.name() for c in capped} < names
    assert {c.name() for c in budget} < names
    assert all(c.cost <= 8.0 for c in budget)
    assert any(c.cost > 8.0 for c in loose)
    assert any(used(c).get("h100-sxm", 0) > 2 for c in loose)
    assert n_loose == n_budget      # the budget prunes candidates already considered


def test_fits_inventory_counts_accelerators_across_pools():
    sp = spec(inventory={"h100-sxm": {"max": 4}, "a100-sxm": {}})
    h2 = Option("h100-sxm", 2, "bf16", 6.0, 1.0)
    a1 = Option("a100-sxm", 1, "bf16", 1.6, 1.0)
    assert fits_inventory(sp, {"prefill": (h2, 1), "decode": (h2, 1)})       # 4 of 4
    assert not fits_inventory(sp, {"prefill": (h2, 1), "decode": (h2, 2)})   # 6 of 4
    assert fits_inventory(sp, {"prefill": (h2, 2), "decode": (a1, 1000)})    # a100: no cap


def test_pools_are_sized_to_the_target(model):
    for target in (5.0, 40.0):
        for c in search(spec(), model, target=target)[0]:
            for o, n in c.pools.values():
                assert n == max(1, math.ceil(target / o.capacity_rps)), c.name()
            assert c.estimate_rps >= target * (1 - 1e-9)


def test_shapes_follow_the_accelerators_and_the_spec(model):
    cands, _, _ = search(spec(), model)
    for c in cands:
        if c.shape == "colocated":
            assert set(c.pools) == {"mixed"} and c.link is None
        else:
            p, d = c.pools["prefill"][0].acc, c.pools["decode"][0].acc
            assert (p == d) == (c.shape == "homogeneous-pd") and c.link
    only, _, _ = search(spec(shapes=["heterogeneous-pd"]), model)
    assert only and {c.shape for c in only} == {"heterogeneous-pd"}


def test_a_link_too_slow_for_the_kv_prunes_every_disaggregated_plan(model):
    cands, considered, pruned = search(spec(), model, kv_bytes=1e15)
    assert cands and {c.shape for c in cands} == {"colocated"}
    assert considered == pruned + len(cands)


def test_units_without_a_target_are_one_instance_per_role(model):
    units, _, _ = search(spec(), model, target=None)
    assert units
    for c in units:
        assert all(n == 1 for _, n in c.pools.values())


# --- short lists --------------------------------------------------------------------------------
def test_cheapest_layouts_are_the_cheapest_distinct_ones_per_shape(model):
    sp = spec(verify=2)
    cands, _, _ = search(sp, model)
    short = cheapest_layouts(sp, cands)
    for shape in sp.shapes:
        mine = [c for c in short if c.shape == shape]
        pool = [c for c in cands if c.shape == shape]
        layouts = {tuple((o.label, n) for o, n in c.pools.values()) for c in mine}
        assert len(mine) == len(layouts) == min(2, len({
            tuple((o.label, n) for o, n in c.pools.values()) for c in pool}))
        assert [c.cost for c in mine] == sorted(c.cost for c in mine)
        if mine:
            assert mine[0].cost == min(c.cost for c in pool)


def test_best_units_rank_by_estimated_rate_per_accelerator(model):
    sp = spec(verify=3)
    units, _, _ = search(sp, model, target=None)
    short = best_units(sp, units)
    for shape in sp.shapes:
        mine = [c for c in short if c.shape == shape]
        pool = [c for c in units if c.shape == shape]
        assert len(mine) == min(3, len(pool))
        per = [c.estimate_rps / c.accelerators for c in mine]
        assert per == sorted(per, reverse=True)
        if mine:
            assert per[0] == max(c.estimate_rps / c.accelerators for c in pool)
