"""``hetsim check``'s input is a checks file (hetsim.check.CheckSpec), named apart from
``hetsim plan``'s spec: what load_checks reads, and that run_check takes it or a path alike."""
import dataclasses

import pytest
import yaml

from hetsim.check import Bound, CheckSpec, load_checks, run_check

from .conftest import ROOT, with_requests

CHECKS = ROOT / "examples" / "ci" / "plan.yaml"


def test_load_checks_reads_the_scenario_and_merges_bounds():
    checks = load_checks(CHECKS)
    assert isinstance(checks, CheckSpec) and checks.scenario.name == "ci-capacity-plan"
    assert set(checks.expects) == set(checks.scenario.placements) == {"hetero-1p2d"}
    mine = checks.expects["hetero-1p2d"]
    assert set(mine) == {"slo_attainment", "ttft_s.p99", "goodput_rps", "cost_per_hour_usd",
                         "usd_per_million_output_tokens"}
    assert mine["slo_attainment"] == (Bound(min=0.9), "expect.slo_attainment")
    assert mine["goodput_rps"] == (Bound(min=7.0), "placements.hetero-1p2d.expect.goodput_rps")
    with pytest.raises(dataclasses.FrozenInstanceError):
        checks.expects = {}


def test_a_placements_own_bound_wins(tmp_path):
    d = yaml.safe_load(CHECKS.read_text())
    d["placements"]["hetero-1p2d"]["expect"]["slo_attainment"] = {"min": 0.5}
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    b, where = load_checks(f).expects["hetero-1p2d"]["slo_attainment"]
    assert b == Bound(min=0.5) and where == "placements.hetero-1p2d.expect.slo_attainment"


def test_run_check_takes_a_checks_spec_or_a_path_alike(tmp_path):
    d = yaml.safe_load(CHECKS.read_text())
    d["workload"]["requests"] = 150
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    by_path = run_check(f)
    checks = load_checks(f)
    by_spec = run_check(checks)
    assert by_path == by_spec
    results, metrics = by_spec
    assert {r.metric for r in results} == set(checks.expects["hetero-1p2d"])
    # a changed scenario in the spec is what runs: fewer requests, other metrics
    fewer = dataclasses.replace(checks, scenario=with_requests(checks.scenario, 60))
    assert run_check(fewer)[1] != metrics
