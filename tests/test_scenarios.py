"""Every shipped scenario runs; golden results for quickstart stay bit-for-bit stable."""
import json
import math
from pathlib import Path

import pytest

import hetsim

from .conftest import ROOT, SCENARIOS, with_requests

GOLDEN = Path(__file__).parent / "golden"
ALL = sorted(SCENARIOS.rglob("*.yaml"))


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


SMALL = 300       # requests for the reference scenario's link check


def test_reference_scenario_runs_as_written():
    sc = hetsim.load_scenario(ROOT / "scenarios" / "llama70b-hetero-pd.yaml")
    assert list(sc.placements) == ["colocated-h100", "disagg-h100", "hetero-h100-a100"]
    r = hetsim.run(with_requests(sc, SMALL))
    assert [s["name"] for s in r.summaries] == list(sc.placements)
    by = {s["name"]: s for s in r.summaries}
    assert by["colocated-h100"]["kv_transfer_bytes"] == 0          # nothing crosses a link
    for name in ("disagg-h100", "hetero-h100-a100"):               # every prompt's KV crosses
        assert by[name]["kv_transfer_bytes"] > 0, name




def _finite_and_ordered(s: dict, key: str) -> None:
    """A latency block: every statistic finite and > 0, and p50 <= p90 <= p99."""
    d = s[key]
    assert all(math.isfinite(d[k]) and d[k] > 0 for k in ("mean", "p50", "p90", "p99")), (key, d)
    assert d["p50"] <= d["p90"] <= d["p99"], (key, d)


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_every_shipped_scenario_runs_as_written(path):
    """Each shipped scenario runs exactly as written (its workload, placements, pools and
    SLO), and every placement's results are complete and self-consistent."""
    sc = hetsim.load_scenario(path)
    r = hetsim.run(sc)
    n = r.scenario.workload.requests
    assert [s["name"] for s in r.summaries] == list(sc.placements)
    for s in r.summaries:
        pools = sc.placements[s["name"]].pools.values()
        failed = s.get("requests_failed", 0)     # placements with faults (scenarios/faults/)
        assert s["requests"] == n and s["completed"] + s["dropped"] + failed == n
        assert s["completed"] > 0, s["name"]
        for key in ("ttft_s", "tpot_s", "e2e_s"):
            _finite_and_ordered(s, key)
        # a request's end-to-end time includes its first token, so every quantile does too
        assert s["e2e_s"]["p50"] >= s["ttft_s"]["p50"] and s["e2e_s"]["p99"] >= s["ttft_s"]["p99"]
        assert 0.0 <= s["slo_attainment"] <= 1.0
        assert s["output_tokens_per_s"] > 0 and s["duration_s"] > 0
        assert s["accelerators"] == sum(p.instances * p.tp for p in pools)
        assert s["cost_per_hour_usd"] > 0
        assert set(s["pool_utilization"]) == set(sc.placements[s["name"]].pools)
        assert all(0.0 <= u <= 1.0 + 1e-9 for u in s["pool_utilization"].values()), s["name"]


RUNTIMES = ("vllm", "sglang", "trtllm")
VARIANT_REQUESTS = 120


def _on_runtime(sc, runtime: str):
    """``sc`` with every pool on ``runtime`` (its rules, sizes and kernel profile: the
    idealised defaults a written scenario spells out are left to the runtime)."""
    from hetsim.resolve import scenario_from_dict
    from hetsim.scenario import GENERIC_SIZES
    d = sc.to_dict()
    d["workload"]["requests"] = VARIANT_REQUESTS
    for placement in d["placements"].values():
        for pool in placement["pools"].values():
            for k, v in GENERIC_SIZES.items():
                if pool.get(k) == v:
                    del pool[k]
            pool["runtime"] = runtime
    return scenario_from_dict(d, sc.source_file)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_every_shipped_scenario_runs_under_each_runtime(path, runtime):
    """Issue 15 §5: the runtime variant of each shipped scenario (every pool under vLLM's,
    SGLang's or TRT-LLM's rules) runs: every request completes or is dropped with a reason,
    every latency is finite, and a second run gives identical records."""
    sc = _on_runtime(hetsim.load_scenario(path), runtime)
    r = hetsim.run(sc)
    df = r.requests
    assert len(df) == VARIANT_REQUESTS * len(sc.placements)
    assert set(df["state"]) <= {"completed", "dropped", "failed"}
    dropped = df[df["state"] != "completed"]
    assert (dropped["drop_reason"] != "").all()
    done = df[df["state"] == "completed"]
    assert len(done) > 0
    assert (done["ttft_s"] > 0).all() and (done["e2e_s"] >= done["ttft_s"]).all()
    again = hetsim.run(sc).requests
    assert again.equals(df)


def test_runtimes_scenario_shows_trtllm_refusing_unchunked_long_prompts():
    """scenarios/runtimes.yaml as its comments say: TRT-LLM without chunked context drops the
    prompts over its 8192-token budget, with the reason; with chunking it serves every one;
    every placement runs on the same requests."""
    sc = with_requests(hetsim.load_scenario(SCENARIOS / "runtimes.yaml"), 400)
    df = hetsim.run(sc).requests
    long = df["input_tokens"] > 8192
    assert long.any()
    trt, chunked = df[df["placement"] == "trtllm"], df[df["placement"] == "trtllm-chunked"]
    assert (trt.loc[long, "state"] == "dropped").all()
    assert trt.loc[long, "drop_reason"].str.contains("without chunked prefill").all()
    assert (trt.loc[~long, "state"] == "completed").all()
    assert (chunked["state"] == "completed").all()
    assert df.groupby("placement")["input_tokens"].sum().nunique() == 1   # identical requests
