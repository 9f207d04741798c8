"""Planning and checking under failure (hetsim.resilience): the runs ``resilience:`` adds, the
same for ``plan`` and ``check``; a check passes only where every run meets the expectations,
and a pool of one, or a starved cross-site link, fails naming what it lost."""
import copy
import dataclasses

import numpy as np
import pytest
import yaml
from hypothesis import given, settings, strategies as st

import hetsim
from hetsim.check import load_checks, run_check
from hetsim.cli import main
from hetsim.resilience import TIMEOUT_TTFTS, WHOLE_RUN_S, Resilience, variants
from hetsim.scenario import Fault, Recovery

from .conftest import ROOT

EXAMPLE = ROOT / "examples" / "ci" / "resilience.yaml"


def example(**edits) -> dict:
    """The shipped checks file, parsed, with top-level keys replaced."""
    d = yaml.safe_load(EXAMPLE.read_text())
    return {**d, **edits}


def write(tmp_path, d: dict, name="c.yaml"):
    f = tmp_path / name
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    return f


def check_cli(f, capsys, *flags):
    rc = main(["check", str(f), *flags])
    out, err = capsys.readouterr()
    return rc, out, err


# --- the runs --------------------------------------------------------------------------------
def test_variants_are_the_placement_with_one_fault_more_each():
    sc = load_checks(EXAMPLE).scenario
    pl = sc.placements["prfaas"]
    runs = variants("prfaas", pl, Resilience(cross_site_factor=0.25), ttft_s=0.5)
    assert [v.name for v in runs] == ["prfaas without remote/0", "prfaas without local/0",
                                     "prfaas with cross-site x0.25"]
    assert [v.lost for v in runs] == ["remote", "local", "cross-site"]
    for v in runs:
        (f,) = v.placement.faults
        assert f.at_s == 0 and f.down_s == WHOLE_RUN_S and v.cannot is None
        assert v.placement.recovery.request_timeout_s == TIMEOUT_TTFTS * 0.5
        # nothing else about the placement changes
        assert dataclasses.replace(v.placement, faults=[], recovery=None) == pl
    assert [(f.kind, f.target) for v in runs for f in v.placement.faults] == [
        ("crash", "remote/0"), ("crash", "local/0"), ("degrade", "cross-site")]
    assert runs[2].placement.faults[0].factor == 0.25
    # one site: no cross-site run; a pool of one is known to fail; own faults and timeout kept
    hetero = sc.placements["hetero-2p3d"]
    hang = Fault(kind="hang", target="decode/1", at_s=5.0, duration_s=1.0)
    one = dataclasses.replace(hetero, pools={**hetero.pools, "prefill": dataclasses.replace(
        hetero.pools["prefill"], instances=1)}, faults=[hang])
    own = Recovery(request_timeout_s=3.0, retry_limit=1)
    runs = variants("h", one, Resilience(cross_site_factor=0.25), 0.5, own)
    assert [v.name for v in runs] == ["h without prefill/0", "h without decode/0"]
    assert "pool prefill has 1 instance" in runs[0].cannot and runs[1].cannot is None
    assert runs[1].placement.recovery == own             # its own timeout, not ten TTFTs
    assert [f.kind for f in runs[1].placement.faults] == ["hang", "crash"]


def test_a_check_runs_each_placement_and_its_variants_in_order():
    checks = load_checks(EXAMPLE)
    assert list(checks.scenario.placements) == [
        "hetero-2p3d", "prfaas", "hetero-2p3d without prefill/0",
        "hetero-2p3d without decode/0", "prfaas without remote/0", "prfaas without local/0",
        "prfaas with cross-site x0.25"]
    # fault metrics bound at the top level apply to the resilience runs only
    assert set(checks.expects["hetero-2p3d"]) == {"slo_attainment"}
    assert set(checks.expects["prfaas with cross-site x0.25"]) == {
        "slo_attainment", "requests_failed", "fault_windows.slo_attainment"}


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.floats(), st.integers(-3, 3), st.text(max_size=3), st.booleans()))
def test_a_cross_site_factor_loads_only_inside_0_1(f):
    from hetsim.config import build
    from hetsim.errors import ConfigError
    ok = (not isinstance(f, (str, bool))) and 0 < f < 1
    try:
        r = build(Resilience, {"cross_site_factor": f}, "resilience")
    except ConfigError as e:
        assert not ok and e.path == "resilience.cross_site_factor" and "\n" not in str(e)
    else:
        assert ok and r.cross_site_factor == f and r.survive == 1


# --- check -----------------------------------------------------------------------------------
def test_the_shipped_resilience_checks_pass_and_name_every_run(tmp_path, capsys):
    junit = tmp_path / "r.xml"
    rc, out, err = check_cli(EXAMPLE, capsys, "--junit", str(junit))
    assert rc == 0 and err == "" and out.endswith("PASS: 17 checks\n"), out + err
    xml = junit.read_text()
    for run in ("hetero-2p3d without prefill/0", "hetero-2p3d without decode/0",
                "prfaas without remote/0", "prfaas without local/0",
                "prfaas with cross-site x0.25"):
        assert f'name="{run}: bound requests_failed"' in xml and run in out
    assert 'failures="0"' in xml


def test_a_pool_of_one_fails_the_check_naming_it_without_running(tmp_path, capsys):
    d = example()
    d["placements"]["hetero-2p3d"]["pools"]["prefill"]["instances"] = 1
    junit = tmp_path / "r.xml"
    rc, out, err = check_cli(write(tmp_path, d), capsys, "--junit", str(junit))
    assert rc == 1 and err == ""
    assert ("FAIL: 1 of 15 checks; first: hetero-2p3d without prefill/0: pool prefill has 1 "
            "instance: without prefill/0 hetero-2p3d cannot serve") in out
    assert 'failures="1"' in junit.read_text()
    results, metrics = run_check(load_checks(tmp_path / "c.yaml"))
    assert "hetero-2p3d without prefill/0" not in metrics       # nothing ran for it
    (bad,) = [r for r in results if not r.passed]
    assert (bad.kind, bad.metric, bad.value, bad.expected) == (
        "resilience", "pools.prefill.instances", 1, ">= 2")


def n_plus_1_plans():
    """hetsim plan's cheapest plan for a small load, without and with resilience."""
    from hetsim.planner import plan
    workload = {"requests": 300, "seed": 2, "arrival": {"process": "poisson", "rate_rps": 8.0},
                "input_tokens": {"dist": "fixed", "value": 1024},
                "output_tokens": {"dist": "fixed", "value": 150}}
    spec = {"name": "r", "model": "llama-3.1-8b", "workload": workload,
            "slo": {"ttft_s": 0.5, "tpot_s": 0.03}, "inventory": {"h100-sxm": {"max": 8}},
            "tp": [1], "shapes": ["colocated"], "verify": 1, "verify_requests": 300}
    return spec, plan(spec).best, plan({**spec, "resilience": {"survive": 1}}).best


def test_an_n_plus_1_plan_passes_resilience_in_check_and_the_n_plan_fails_it(tmp_path):
    spec, n, n1 = n_plus_1_plans()
    assert [k for _, k in n.pools.values()] == [1] and [k for _, k in n1.pools.values()] == [2]
    d = {k: spec[k] for k in ("name", "model", "workload", "slo")}
    d.update(resilience={"survive": 1}, expect={"slo_attainment": {"min": 0.9},
                                                "requests_failed": {"max": 0}},
             placements={"n": n.placement(), "n+1": n1.placement()})
    results, _ = run_check(write(tmp_path, d))
    failed = {(r.placement, r.metric) for r in results if not r.passed}
    assert failed == {("n without mixed/0", "pools.mixed.instances")}
    assert {r.placement for r in results} == {"n", "n without mixed/0", "n+1",
                                              "n+1 without mixed/0"}


def starved(factor: float) -> dict:
    """The shipped PrfaaS placement alone, its cross-site link at ``factor`` in resilience."""
    d = example(resilience={"survive": 1, "cross_site_factor": factor})
    d["placements"] = {"prfaas": d["placements"]["prfaas"]}
    return d


def test_a_cross_site_factor_that_starves_the_link_fails_by_exactly_the_long_prompts(tmp_path):
    """At 1% of 100 GbE a 2048-token prompt's KV (268 MB) takes over 2 s to cross, four TTFT
    targets: every remote prompt misses and every local one meets the SLO as it does with the
    link healthy, so attainment is exactly the share of short prompts."""
    d = starved(0.01)
    results, metrics = run_check(write(tmp_path, d))
    slow = metrics["prfaas with cross-site x0.01"]
    r = hetsim.run({k: v for k, v in d.items() if k not in ("resilience", "expect")})
    short = float(np.mean(r.requests.input_tokens < 2048))
    assert 0.5 < short < 0.9 and r.summaries[0]["slo_attainment"] == 1.0
    assert slow["slo_attainment"] == pytest.approx(short, abs=1e-12)
    failed = [r for r in results if not r.passed]
    assert {(f.placement, f.metric) for f in failed} == {
        ("prfaas with cross-site x0.01", "slo_attainment"),
        ("prfaas with cross-site x0.01", "fault_windows.slo_attainment")}


def test_resilience_takes_overrides_like_the_scenario():
    checks = load_checks(EXAMPLE, {"resilience.cross_site_factor": 0.01,
                                   "workload.requests": 300})
    assert checks.scenario.workload.requests == 300
    assert [v.name for v in checks.variants][-1] == "prfaas with cross-site x0.01"
    assert "survive: 1" in load_checks(ROOT / "examples" / "ci" / "plan.yaml", {
        "resilience.survive": 1}).variants[0].cannot


def test_a_slower_cross_site_link_never_raises_attainment(tmp_path):
    got = []
    for f in (0.5, 0.25, 0.1, 0.03, 0.01):
        _, metrics = run_check(write(tmp_path, starved(f)))
        got.append(metrics[f"prfaas with cross-site x{f:g}"]["slo_attainment"])
    assert got == sorted(got, reverse=True) and got[0] > got[-1], got


def test_resilience_leaves_the_placements_own_runs_as_they_were(tmp_path):
    plain = copy.deepcopy(example())
    del plain["resilience"]
    for k in ("requests_failed", "fault_windows.slo_attainment"):
        del plain["expect"][k]
    _, without = run_check(write(tmp_path, plain, "a.yaml"))
    _, with_ = run_check(EXAMPLE)
    for name in ("hetero-2p3d", "prfaas"):
        assert with_[name] == without[name]


def test_a_check_bounds_failures_and_attainment_during_scheduled_faults(tmp_path, capsys):
    """Without resilience: fault metrics bound the placements that have faults (the shipped
    decode crash), end to end through the CLI; the N placement fails on attainment during
    the fault only, the N+1 one passes."""
    d = yaml.safe_load((ROOT / "scenarios" / "faults" / "decode-crash.yaml").read_text())
    bounds = {"requests_failed": {"max": 0}, "fault_windows.slo_attainment": {"min": 0.9},
              "availability.decode": {"min": 0.9}}
    for name in ("4d-decode-crash", "5d-decode-crash"):
        d["placements"][name]["expect"] = bounds
    junit = tmp_path / "r.xml"
    rc, out, err = check_cli(write(tmp_path, d), capsys, "--junit", str(junit))
    assert rc == 1 and err == ""
    assert ("FAIL: 1 of 6 checks; first: 4d-decode-crash: fault_windows.slo_attainment = "
            in out and ", expected >= 0.9\n" in out)
    assert 'failures="1"' in junit.read_text()
    (s,) = [s for s in hetsim.run(ROOT / "scenarios" / "faults" / "decode-crash.yaml",
                                  ["5d-decode-crash"]).summaries]
    # the decode pool: five instances over the run, one of them down for 30 s of it
    assert s["availability"]["decode"] == pytest.approx(1 - 30 / (5 * s["duration_s"]),
                                                        rel=1e-9)
    # a bound on a fault metric where the placement has none is refused before anything runs
    d["placements"]["4d-no-fault"]["expect"] = {"requests_failed": {"max": 0}}
    rc, out, err = check_cli(write(tmp_path, d), capsys)
    assert rc == 2 and "placements.4d-no-fault.expect.requests_failed: unknown metric" in err

