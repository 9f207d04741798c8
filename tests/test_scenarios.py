"""Every shipped scenario runs; golden results for quickstart stay bit-for-bit stable."""
import json
from pathlib import Path

import pytest

import hetsim

from .conftest import ROOT, SCENARIOS

GOLDEN = Path(__file__).parent / "golden"
ALL = sorted(SCENARIOS.rglob("*.yaml"))


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_every_shipped_scenario_runs(path):
    r = hetsim.run(path)
    assert len(r.summaries) == len(r.scenario.placements)
    for s in r.summaries:
        assert s["completed"] + s["dropped"] == s["requests"] == r.scenario.workload.requests
        assert s["completed"] > 0


def _flat(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def test_quickstart_golden():
    """Regenerate on purpose with: python -m tests.regen_golden"""
    got = hetsim.run(SCENARIOS / "quickstart.yaml").to_json()
    want = json.loads((GOLDEN / "quickstart.json").read_text())
    for g, w in zip(got["placements"], want["placements"], strict=True):
        gf, wf = dict(_flat(g)), dict(_flat(w))
        assert gf.keys() == wf.keys()
        for k, v in wf.items():
            if isinstance(v, float):
                assert gf[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
            else:
                assert gf[k] == v, k


def test_distserve_disaggregation_does_not_lose(tmp_path):
    """DistServe: on the same GPUs, prefill TP2 + decode TP1 beats colocated on TTFT."""
    r = {s["name"]: s for s in hetsim.run(SCENARIOS / "distserve-opt13b.yaml").summaries}
    assert r["disagg-p2-d1"]["ttft_s"]["p90"] < r["colocated-3xa100"]["ttft_s"]["p90"]
    assert r["disagg-p2-d1"]["tpot_s"]["p90"] < r["colocated-3xa100"]["tpot_s"]["p90"]


def test_reference_scenario_runs_as_written():
    sc = hetsim.load_scenario(ROOT / "scenarios" / "llama70b-hetero-pd.yaml")
    assert list(sc.placements) == ["colocated-h100", "disagg-h100", "hetero-h100-a100"]
