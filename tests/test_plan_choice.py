"""``hetsim plan`` names the best plan among equally cheap ones (issue 12, section 6).

The shipped chat spec used to print "cheapest: colocated:1xmi300x-tp1-bf16" (23 r/s) next to
an fp8 plan at the same $/h with 49 r/s, the only one on the frontier. Among verified plans at
the least cost the one with the most goodput wins (then fewer accelerators, then the name), and
it is always the first point of the frontier.
"""
import numpy as np
import pytest
import yaml

from hetsim.cli import main
from hetsim.planner import Candidate, Option, PlanResult, load_plan_spec, pareto, plan

from .conftest import ROOT

PLAN_SPEC = ROOT / "examples" / "plan" / "llama8b-chat.yaml"


def _cand(precision, goodput, cost=1.71, shape="colocated", acc="mi300x", n=1, tp=1):
    o = Option(acc, tp, precision, cost / n, 20.0)
    return Candidate(shape, {"mixed": (o, n)}, None, cost, 20.0, verified=True,
                     attainment=1.0, goodput_rps=goodput)


@pytest.fixture(scope="module")
def spec():
    return load_plan_spec(PLAN_SPEC)          # only its objective and names are read here


def _result(spec, cands):
    return PlanResult(spec, 20.0, len(cands), 0, len(cands), 0.0, cands, pareto(cands))


def test_equally_cheap_plans_pick_the_most_goodput_and_it_heads_the_frontier(spec):
    bf16, fp8 = _cand("bf16", 23.1), _cand("fp8", 48.8)
    dearer = _cand("bf16", 37.5, cost=3.42, shape="homogeneous-pd")
    res = _result(spec, [bf16, fp8, dearer])        # enumeration order: bf16 first
    assert res.best is fp8
    assert res.frontier and res.frontier[0] is res.best
    assert bf16 not in res.frontier
    first = next(iter(res.scenario_dict()["placements"]))
    assert "fp8" in first                     # plan.yaml lists the chosen plan first


def test_ties_break_on_fewer_accelerators_then_name_and_float_noise_in_cost_ties(spec):
    two = _cand("bf16", 30.0, cost=0.1 + 0.2, n=2)       # 0.30000000000000004
    one_b = _cand("fp8", 30.0, cost=0.3)
    one_a = _cand("bf16", 30.0, cost=0.3)
    for order in ([two, one_b, one_a], [one_a, one_b, two], [one_b, two, one_a]):
        res = _result(spec, order)
        assert res.best is one_a, [c.name() for c in order]
        assert res.frontier[0] is one_a


def test_best_is_always_the_first_point_of_the_frontier(spec):
    rng = np.random.default_rng(12)
    for _ in range(200):
        cands = [_cand(str(rng.choice(["bf16", "fp8"])), float(rng.integers(0, 5)),
                       cost=float(rng.choice([1.0, 2.0, 3.0])), n=int(rng.integers(1, 3)),
                       acc=str(rng.choice(["h100-sxm", "mi300x"])))
                 for _ in range(int(rng.integers(1, 6)))]
        for c in cands:
            c.verified = bool(rng.random() < 0.8)
        res = _result(spec, cands)
        ok = [c for c in cands if c.verified]
        if not ok:
            assert res.best is None and res.frontier == []
            continue
        assert res.best is res.frontier[0]
        cheapest = min(round(c.cost, 6) for c in ok)
        assert res.best.goodput_rps == max(c.goodput_rps for c in ok
                                           if round(c.cost, 6) == cheapest)


def test_plan_cli_names_the_best_equally_cheap_plan_and_sorts_by_cost_then_goodput(
        spec, tmp_path, capsys, monkeypatch):
    bf16, fp8 = _cand("bf16", 23.1), _cand("fp8", 48.8)
    dearer = _cand("bf16", 37.5, cost=3.42, shape="homogeneous-pd")
    res = _result(spec, [dearer, bf16, fp8])
    monkeypatch.setattr("hetsim.planner.plan", lambda spec, progress=None, **kw: res)
    assert main(["plan", str(PLAN_SPEC), "-q", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "cheapest: colocated:1xmi300x-tp1-fp8 at $1.71/h" in out
    rows = [ln.split()[0] for ln in out.splitlines() if ln.startswith(("colocated:",
                                                                       "homogeneous-pd:"))]
    assert rows == [fp8.name(), bf16.name(), dearer.name()]   # cost, then goodput down


@pytest.mark.parametrize("precisions", [["bf16", "fp8"], ["fp8", "bf16"]])
def test_planner_on_a_real_spec_prefers_fp8_at_the_same_price(tmp_path, precisions):
    """The reported case, end to end: one MI300X colocated, bf16 or fp8 compute, same $/h."""
    d = yaml.safe_load(PLAN_SPEC.read_text())
    d.update(inventory={"mi300x": {"max": 1}}, tp=[1], precisions=precisions,
             shapes=["colocated"], verify=2, verify_requests=300, budget_usd_per_hour=None)
    f = tmp_path / "spec.yaml"
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    res = plan(load_plan_spec(f))
    ok = [c for c in res.verified if c.verified]
    assert len(ok) == 2 and ok[0].cost == ok[1].cost
    assert res.best.name().endswith("-fp8")
    assert res.best is res.frontier[0]
    assert res.best.goodput_rps == max(c.goodput_rps for c in ok)
