"""The design space at the prefill/decode boundary: each mechanism's direction and size.

Precision per role, KV representation and conversion, transfer engine and timing, ownership
(pull/push), residency (offload, prefix cache), sites and scale-up domains, routing, pressure.
"""
import copy

import numpy as np
import pytest
import simpy

import hetsim
from hetsim.engine import instances as inst_mod
from hetsim.engine import loop
from hetsim.engine.network import Network, Port
from hetsim.errors import ConfigError
from hetsim.hardware import load_accelerator
from hetsim.models import load_model
from hetsim.perf import PerfModel, StepModel, memory_plan

from .conftest import SCENARIOS, scenario_from, with_requests

DS = SCENARIOS / "design-space"


def run(sc, n=None, **kw):
    sc = sc if not isinstance(sc, str) else hetsim.load_scenario(DS / sc)
    if n is not None:
        sc = with_requests(sc, n, **kw)
    r = hetsim.run(sc)
    return {s["name"]: s for s in r.summaries}, r


def disagg(base_dict, tmp_path, placements: dict, **workload):
    """Scenario from ``base_dict`` whose placements are edits of its 'disagg' placement."""
    d = copy.deepcopy(base_dict)
    d["workload"].update(workload)
    d["placements"] = {}
    for name, edit in placements.items():
        pl = copy.deepcopy(base_dict["placements"]["disagg"])
        edit(pl)
        d["placements"][name] = pl
    return scenario_from(d, tmp_path)


def pools(**pool_fields):
    """An edit setting fields of pools 'p' and 'd' (``p_x=..``, ``d_x=..``) and of the
    placement (``kv_transfer=..``)."""
    def edit(pl):
        for k, v in pool_fields.items():
            if k[:2] in ("p_", "d_"):
                pl["pools"][k[0]][k[2:]] = v
            else:
                pl.pop("kv_link", None) if k == "kv_transfer" else None
                pl[k] = v
    return edit


# --- 1. precision per role ------------------------------------------------------------------
def test_weight_only_is_allowed_where_compute_is_not():
    acc = load_accelerator("a100-sxm")
    pm = PerfModel(acc)
    # fp8 compute on A100 errors; fp8 weights computed in bf16 run
    with pytest.raises(ConfigError):
        pm.gemm_time(8, 8192, 8192, "fp8")
    small_bf16, small_w8 = pm.gemm_time(8, 8192, 8192, "bf16"), pm.gemm_time(8, 8192, 8192,
                                                                             "bf16", "fp8")
    big_bf16, big_w8 = (pm.gemm_time(8192, 8192, 8192, "bf16"),
                        pm.gemm_time(8192, 8192, 8192, "bf16", "fp8"))
    assert small_w8 < 0.6 * small_bf16           # decode-sized: half the weight bytes
    assert big_bf16 < big_w8 < 1.15 * big_bf16   # prefill-sized: dequantization costs a bit


def test_same_low_bit_format_acts_differently_per_side():
    m, acc = load_model("llama-3.1-70b"), load_accelerator("h100-sxm")
    pm = PerfModel(acc)
    bf16, fp8 = StepModel(m, pm, 4, "bf16"), StepModel(m, pm, 4, "fp8")
    # prefill: fp8 raises usable FLOP/s
    assert fp8.prefill_time([4096]) < 0.7 * bf16.prefill_time([4096])
    # decode: fp8 weights + KV halve the bytes per step (not the fixed per-step costs: kernel
    # launches, the engine's scheduling), and fp8 KV doubles KV capacity
    assert fp8.decode_time(32, 32 * 2048) < 0.75 * bf16.decode_time(32, 32 * 2048)
    kv16 = memory_plan(m, acc, 4, "bf16")
    kv8 = memory_plan(m, acc, 4, hetsim.Formats("bf16", "bf16", "fp8"))
    assert kv8.kv_tokens == pytest.approx(2 * kv16.kv_tokens, rel=0.01)


def test_fp8_prefill_cuts_ttft_in_shipped_scenario():
    s, _ = run("precision-prefill-fp8.yaml", n=120)
    assert s["prefill-fp8"]["ttft_s"]["p50"] < 0.75 * s["prefill-bf16"]["ttft_s"]["p50"]
    assert s["prefill-fp8"]["tpot_s"]["p50"] == pytest.approx(s["prefill-bf16"]["tpot_s"]["p50"],
                                                              rel=0.05)


# --- 2. KV representation -------------------------------------------------------------------
def test_fp8_kv_halves_transferred_bytes(tmp_path, base_dict):
    sc = disagg(base_dict, tmp_path, {
        "bf16": pools(),
        "fp8": pools(p_precision={"compute": "bf16", "kv": "fp8"},
                     d_precision={"compute": "bf16", "kv": "fp8"})})
    s, _ = run(sc)
    assert s["fp8"]["kv_transfer_bytes"] == pytest.approx(s["bf16"]["kv_transfer_bytes"] / 2)
    assert s["fp8"]["kv_conversion_s_total"] == 0.0


def test_conversion_only_when_formats_differ_and_on_the_chosen_side(tmp_path, base_dict):
    fp8kv = {"compute": "bf16", "kv": "fp8"}
    sc = disagg(base_dict, tmp_path, {
        "same": pools(kv_transfer={"link": "roce-400g", "conversion": "none"}),
        "same-block-only": pools(d_block_size=32, kv_transfer={"link": "roce-400g"}),
        "on-prefill": pools(p_precision=fp8kv, kv_transfer={"link": "roce-400g",
                                                            "conversion": "prefill"}),
        "on-decode": pools(p_precision=fp8kv, kv_transfer={"link": "roce-400g",
                                                           "conversion": "decode"})},
        input_tokens={"dist": "fixed", "value": 4096})
    s, r = run(sc)
    assert s["same"]["kv_conversion_s_total"] == 0 and s["same"]["kv_conversion_bytes"] == 0
    # re-blocking alone is a conversion (a memory pass), with dtype unchanged
    assert s["same-block-only"]["kv_conversion_s_total"] > 0
    # the wire carries the format of the side that has not converted yet
    assert s["on-prefill"]["kv_transfer_bytes"] == pytest.approx(s["same"]["kv_transfer_bytes"])
    assert s["on-decode"]["kv_transfer_bytes"] == pytest.approx(s["same"]["kv_transfer_bytes"] / 2)
    df = r.requests.set_index(["placement", "id"])
    conv = df.loc["on-prefill", "conversion_s"]
    assert (conv > 0).all()
    # prefill-side conversion is fused into the prefill iteration: it lengthens TTFT
    assert (df.loc["on-prefill", "prefill_end_s"] - df.loc["on-prefill", "prefill_start_s"]
            > df.loc["same", "prefill_end_s"] - df.loc["same", "prefill_start_s"]).all()


def test_tp_resharding_is_a_mismatch(tmp_path, base_dict):
    d = copy.deepcopy(base_dict)
    pl = d["placements"]["disagg"]
    pl["pools"]["p"]["tp"] = 2
    pl.pop("kv_link")
    pl["kv_transfer"] = {"link": "roce-400g", "conversion": "none"}
    with pytest.raises(ConfigError, match=r"\(tp 2 vs 1\)"):
        scenario_from(d, tmp_path)


# --- 3. transfer mechanics ------------------------------------------------------------------
def test_layerwise_hides_transfer_over_fast_link_not_over_slow():
    s, _ = run("transfer-mode.yaml", n=60)
    exp = {k: v["kv_transfer_exposed_s"]["mean"] for k, v in s.items()}
    assert exp["layerwise-local"] < 0.2 * exp["whole-local"]               # mostly hidden
    assert exp["layerwise-remote-25g"] > 0.5 * exp["whole-remote-25g"]     # mostly exposed
    assert exp["whole-remote-25g"] > 10 * exp["whole-local"]


def test_tcp_is_slower_than_rdma_on_the_same_link(tmp_path, base_dict):
    sc = disagg(base_dict, tmp_path, {
        e: pools(kv_transfer={"link": "roce-100g", "engine": e}) for e in ("rdma", "tcp")},
        input_tokens={"dist": "fixed", "value": 4096})
    s, r = run(sc)
    df = r.requests
    t = {e: df[df["placement"] == e]["transfer_s"].to_numpy() for e in ("rdma", "tcp")}
    assert (t["tcp"] > t["rdma"]).all()
    assert s["tcp"]["kv_transfer_exposed_s"]["mean"] > 1.5 * s["rdma"]["kv_transfer_exposed_s"]["mean"]
    assert "p.tcp-stack" in s["tcp"]["link_utilization"]


def test_rate_cap_and_uncap_keep_max_min_fairness():
    env = simpy.Environment()
    net = Network(env)
    nic = Port("nic", 10.0)
    times = {}
    capped = net.transfer((nic,), 40.0, 0.0, cap=2.0)   # a layer-wise stream: <= 2 B/s
    other = net.transfer((nic,), 40.0, 0.0)
    capped.callbacks.append(lambda _: times.__setitem__("capped", env.now))
    other.callbacks.append(lambda _: times.__setitem__("other", env.now))
    env.timeout(4.0).callbacks.append(lambda _: net.uncap(capped))
    env.run()
    # 0-4 s: capped 2 B/s (8 B), other 8 B/s (32 B); then 5 B/s each: other has 8 B left
    # -> done at 5.6 s; capped then has 40-8-8 = 24 B at 10 B/s -> 8.0 s
    assert times["other"] == pytest.approx(5.6)
    assert times["capped"] == pytest.approx(8.0)


def test_same_scale_up_domain_uses_nvlink(tmp_path, base_dict):
    sc = disagg(base_dict, tmp_path, {
        "roce": pools(),
        "nvlink": pools(p_scale_up_domain="n0", d_scale_up_domain="n0")},
        input_tokens={"dist": "fixed", "value": 4096})
    s, _ = run(sc)
    nv = s["nvlink"]["link_utilization"]
    assert nv["p.scale-up"]["max"] > 0 and nv["p.nic"]["max"] == 0
    assert s["nvlink"]["kv_transfer_s"]["mean"] < s["roce"]["kv_transfer_s"]["mean"] / 5


def test_scale_up_domain_must_fit(tmp_path, base_dict):
    d = copy.deepcopy(base_dict)
    for k, tp in (("p", 8), ("d", 2)):
        d["placements"]["disagg"]["pools"][k].update(tp=tp, scale_up_domain="n0")
    with pytest.raises(ConfigError, match="holds 10 accelerators, more than"):
        scenario_from(d, tmp_path)


def test_cross_site_link_is_shared(tmp_path, base_dict):
    fabric = {"link": "roce-400g", "cross_site": {"link": "tcp-25g"}}
    sc = disagg(base_dict, tmp_path, {
        "local": pools(p_instances=2, kv_transfer={"link": "roce-400g"}),
        "remote": pools(p_instances=2, p_site="far", kv_transfer=fabric)},
        input_tokens={"dist": "fixed", "value": 4096})
    s, _ = run(sc)
    assert s["remote"]["link_utilization"]["cross-site"]["max"] > 0.3
    assert s["remote"]["kv_transfer_s"]["mean"] > 10 * s["local"]["kv_transfer_s"]["mean"]


# --- ownership ------------------------------------------------------------------------------
def test_pull_never_admits_more_kv_than_decode_holds(tmp_path, base_dict, monkeypatch):
    """The invariant is checked at every decode iteration the loop begins (a span's first:
    its sequences and their blocks stay until it ends), on a run that fills decode memory."""
    seen = []
    orig = loop.Instance._iterate

    def checked(self, t, end=None):
        if isinstance(self, inst_mod.DecodeInstance):
            assert self.kv.used <= self.kv.capacity
            seen.append(self.kv.used / self.kv.capacity)
        return orig(self, t, end)
    monkeypatch.setattr(loop.Instance, "_iterate", checked)
    sc = disagg(base_dict, tmp_path, {"pull": pools(d_memory_utilization=0.25)},
                requests=300, arrival={"process": "poisson", "rate_rps": 20.0},
                input_tokens={"dist": "fixed", "value": 2048},
                output_tokens={"dist": "fixed", "value": 256})
    s, r = run(sc)
    assert max(seen) > 0.9                       # memory really was the constraint
    assert s["pull"]["kv_wait_s"]["p99"] > 0     # and KV sat waiting on the prefill side
    assert s["pull"]["kv_staging"]["p"]["peak"] > 0
    assert (r.requests["state"] == "completed").all()


def test_push_frees_prefill_memory_sooner():
    s, r = run("handoff.yaml", n=300)
    assert s["push"]["kv_staging"]["prefill"]["mean"] < s["pull"]["kv_staging"]["prefill"]["mean"]
    assert s["push"]["kv_wait_s"]["mean"] < s["pull"]["kv_wait_s"]["mean"]
    assert r.staging is not None and set(r.staging["placement"]) == {"pull", "push"}


# --- 4. residency -----------------------------------------------------------------------------
def test_swap_beats_recompute_on_fast_host_link_and_loses_on_slow():
    s, _ = run("kv-offload.yaml", n=300)
    dev = {k: v["preemptions"]["device_s"] for k, v in s.items()}
    assert s["reserve"]["preemptions"]["count"] == 0
    assert min(s[k]["preemptions"]["count"] for k in ("recompute", "swap-pcie5")) > 0
    assert s["swap-pcie5"]["preemptions"]["swapped_bytes"] > 0
    assert s["recompute"]["preemptions"]["recomputed_tokens"] > 0
    assert dev["swap-pcie5"] < dev["recompute"] < dev["swap-slow-link"]


def test_preemption_conserves_decode_tokens(tmp_path, base_dict):
    """Every decode step produces one token per running sequence: preempted sequences resume
    where they stopped, so the total equals sum(output - 1) exactly."""
    sc = disagg(base_dict, tmp_path, {
        p: pools(d_memory_utilization=0.24, d_preemption=p,
                 **({"d_kv_offload": {"capacity_gb": 50}} if p == "swap" else {}))
        for p in ("recompute", "swap")},
        requests=200, arrival={"process": "poisson", "rate_rps": 20.0},
        input_tokens={"dist": "uniform", "min": 500, "max": 3000},
        output_tokens={"dist": "uniform", "min": 100, "max": 900})
    import hetsim.engine.sim as sim_mod
    from hetsim.resolve import resolve_scenario
    from hetsim.workload import generate
    model, resolved = resolve_scenario(sc)
    reqs = generate(sc.workload, sc.base_dir)
    for name, pl in resolved.items():
        res = sim_mod.Simulation(pl, model, reqs, seed=1).run()
        dec = res.instances["d"][0]
        assert dec.preemptions > 0, name
        assert dec.decode_tokens == int(np.sum(reqs.output_tokens - 1)), name
        assert dec.kv.used == 0 and dec.running == 0


def test_prefix_cache_cuts_ttft_host_residency_costs_a_fetch():
    s, r = run("prefix-cache.yaml", n=200)
    t = {k: v["ttft_s"]["mean"] for k, v in s.items()}
    assert t["cache-hbm"] < t["cache-host"] < t["no-cache"]
    assert s["cache-hbm"]["prefix_cached_tokens"] > 0.45 * r.requests.query(
        "placement == 'cache-hbm'")["input_tokens"].sum()


# --- 5. routing -------------------------------------------------------------------------------
def test_length_threshold_sends_only_long_prompts_remote():
    _, r = run("cross-site-prfaas.yaml", n=200)
    df = r.requests[r.requests["placement"] == "length-threshold"]
    remote = df["prefill_instance"].str.startswith("remote")
    assert (df.loc[remote, "input_tokens"] >= 4096).all()
    assert (df.loc[~remote, "input_tokens"] < 4096).all()
    assert remote.any() and (~remote).any()
    # KV only crosses sites for the long ones
    assert (df.loc[~remote, "kv_bytes"] == 0).all() and (df.loc[remote, "kv_bytes"] > 0).all()


def test_kv_aware_router_balances_kv_on_unequal_decode_instances():
    s, _ = run("routing.yaml", n=400)
    occ = {k: v["kv_occupancy"] for k, v in s.items()}
    spread = {k: abs(o["decode-h100"]["mean"] - o["decode-a100"]["mean"]) for k, o in occ.items()}
    assert spread["kv-aware"] < spread["round-robin"]


def test_unknown_router_and_mixed_plus_prefill_need_length_threshold(tmp_path, base_dict):
    d = copy.deepcopy(base_dict)
    d["placements"]["disagg"]["pools"]["d"]["role"] = "mixed"
    with pytest.raises(ConfigError, match="length-threshold"):
        scenario_from(d, tmp_path)


# --- 6. stage pressure ------------------------------------------------------------------------
def test_bottleneck_names_the_stage_under_pressure():
    pressure = {
        ("precision-prefill-fp8.yaml", "prefill-bf16"): "prefill-bound",
        ("precision-decode-kv.yaml", "decode-bf16"): "decode-bound",
        ("transfer-mode.yaml", "whole-remote-25g"): "transfer-bound",
        ("handoff.yaml", "pull"): "memory-bound",
    }
    for (f, placement), want in pressure.items():
        sc = hetsim.load_scenario(DS / f)
        s = {x["name"]: x for x in hetsim.run(sc, placements=[placement]).summaries}
        assert s[placement]["bottleneck"] == want, (f, placement)


def test_preempted_sequences_go_before_new_reservations(tmp_path, base_dict, monkeypatch):
    """vLLM's order: while a preempted sequence waits, no incoming transfer gets KV blocks."""
    from hetsim.engine.memory import BlockPool
    seen = {"blocked": 0, "granted": 0}
    orig = BlockPool.grant

    def grant(self):
        before = self.queued
        closed = self.gate is not None and not self.gate()
        orig(self)
        if closed:
            assert self.queued == before, "granted a reservation past a preempted one"
            seen["blocked"] += before > 0
        elif self.gate is not None:
            seen["granted"] += before - self.queued
    monkeypatch.setattr(BlockPool, "grant", grant)
    sc = disagg(base_dict, tmp_path, {
        "recompute": pools(d_memory_utilization=0.24, d_preemption="recompute")},
        requests=200, arrival={"process": "poisson", "rate_rps": 20.0},
        input_tokens={"dist": "uniform", "min": 500, "max": 3000},
        output_tokens={"dist": "uniform", "min": 100, "max": 900})
    s, r = run(sc)
    assert s["recompute"]["preemptions"]["count"] > 0
    assert (r.requests["state"] == "completed").all()
    assert seen["blocked"] > 0 and seen["granted"] > 0   # the gate was exercised both ways
