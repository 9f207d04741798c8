"""Fault fuzzing (not collected by pytest): random fault schedules (scheduled and random crash,
hang, degrade, down) over every handoff kind; each run must end every request, give back
every block (the engine asserts both), leave no router load, flow or open batch, keep the
per-request fault costs summing to the totals, restore the records, and repeat exactly.

    PYTHONPATH=$PWD python -m tests.fuzz_faults ITERATIONS [SEED [LAYOUT]]

WL=1 also varies the workload (closed loop, warm-up)."""
import os
import sys
import traceback

import numpy as np
from tests.test_faults import LAYOUTS, PD, scenario, simulation
from tests.test_fault_recovery import HANDOFFS, _handoff_layout, FP8

VERBOSE = 0
WL = bool(os.environ.get('WL'))
ALL = {**LAYOUTS, **HANDOFFS}
ALL["tcp"] = _handoff_layout(engine="tcp")
ALL["layerwise-tcp-push"] = _handoff_layout(engine="tcp", mode="layerwise", handoff="push")
ALL["decode-conversion"] = {**_handoff_layout(conversion="decode"), "pools": {
    **PD["pools"], "decode": {**PD["pools"]["decode"], "precision": FP8}}}
ALL["push-decode-conversion"] = {**_handoff_layout(conversion="decode", handoff="push"), "pools": {
    **PD["pools"], "decode": {**PD["pools"]["decode"], "precision": FP8}}}
ALL["swap"] = {**PD, "pools": {**PD["pools"], "decode": {**PD["pools"]["decode"],
    "memory_utilization": 0.22, "preemption": "swap",
    "kv_offload": {"capacity_gb": 4, "link": "pcie-gen5"}}}}
ALL["nvlink"] = {**PD, "pools": {"prefill": {**PD["pools"]["prefill"], "scale_up_domain": "n0"},
    "decode": {**PD["pools"]["decode"], "scale_up_domain": "n0"}}}
ALL["cross-site-prfaas"] = {"router": {"prefill": "length-threshold", "decode": "least-loaded",
    "threshold_tokens": 1500}, "pools": {
        "remote": {"role": "prefill", "accelerator": "h100-sxm", "instances": 2, "site": "remote"},
        "local": {"role": "mixed", "accelerator": "h100-sxm", "instances": 2}},
    "kv_transfer": {"link": "roce-400g", "cross_site": {"link": "tcp-100g", "latency_us": 2000}}}
ALL["cross-site-layerwise"] = {"router": "round-robin", "pools": {
        "prefill": {"role": "prefill", "accelerator": "h100-sxm", "instances": 2, "site": "remote"},
        "decode": {"role": "decode", "accelerator": "h100-sxm", "instances": 2}},
    "kv_transfer": {"link": "roce-400g", "mode": "layerwise",
                    "cross_site": {"link": "tcp-100g", "latency_us": 2000}}}
ALL["cross-site-batched"] = {"router": "round-robin", "pools": {
        "prefill": {"role": "prefill", "accelerator": "h100-sxm", "instances": 2, "site": "remote"},
        "decode": {"role": "decode", "accelerator": "h100-sxm", "instances": 2}},
    "kv_transfer": {"link": "roce-400g", "batching": {"window_ms": 5, "max_bytes_mb": 300},
                    "encoding": {"codec": "fp8"},
                    "cross_site": {"link": "tcp-100g", "latency_us": 2000}}}



def _write_through(pl, capacity_gb=40, **offload):
    """``pl`` with its decode pool's host tier a write-through store."""
    dec = {**pl["pools"]["decode"], "kv_offload": {"capacity_gb": capacity_gb,
                                                   "write_through": True, **offload}}
    return {**pl, "pools": {**pl["pools"], "decode": dec}}


ALL["write-through"] = _write_through(ALL["swap"], 3, chunk_tokens=64)   # copies stop
ALL["write-through-3d"] = _write_through({**PD, "pools": {**PD["pools"], "decode": {
    **PD["pools"]["decode"], "instances": 3}}})
ALL["write-through-nvlink"] = _write_through(ALL["nvlink"])
ALL["write-through-tcp"] = _write_through(ALL["tcp"])
ALL["write-through-layerwise-push"] = _write_through(
    _handoff_layout(mode="layerwise", handoff="push"))


def groups(pl):
    sc, p, sim = simulation(scenario(placement=pl))
    if sim.link is None:
        return []
    return sorted({port.group for port in sim.link.ports})


def _with_factor(rng, f):
    """``f`` with a random factor if it is a degrade."""
    if f["kind"] == "degrade":
        f["factor"] = float(rng.uniform(0.05, 0.9))
    return f


def faults_for(rng, pl, horizon):
    pools = sorted(pl["pools"])
    links = groups(pl)
    out = []
    for _ in range(int(rng.integers(2, 12))):
        pool = str(rng.choice(pools))
        n = pl["pools"][pool].get("instances", 1)
        u = rng.random()
        if u < 0.15:   # random instance fault
            kind = str(rng.choice(["crash", "hang", "degrade"]))
            f = {"pool": pool, "kind": kind, "mtbf_s": float(rng.uniform(0.2, 3)),
                 "mttr_s": float(rng.uniform(0.01, 1))}
            out.append(_with_factor(rng, f))
            continue
        if u < 0.3 and links:
            kind = str(rng.choice(["down", "degrade"]))
            f = {"link": str(rng.choice(links)), "kind": kind, "mtbf_s": float(rng.uniform(0.2, 3)),
                 "mttr_s": float(rng.uniform(0.01, 0.5))}
            out.append(_with_factor(rng, f))
            continue
        if u < 0.5 and links:
            kind = str(rng.choice(["down", "degrade"]))
            f = {"at_s": float(np.round(rng.uniform(0, horizon), int(rng.integers(1, 6)))),
                 "target": str(rng.choice(links)), "kind": kind,
                 "duration_s": float(rng.uniform(0.001, 0.6))}
            out.append(_with_factor(rng, f))
            continue
        target = pool if rng.random() < 0.3 else f"{pool}/{int(rng.integers(n))}"
        kind = str(rng.choice(["crash", "hang", "degrade"]))
        at = float(rng.uniform(0, horizon)) if rng.random() < 0.7 else float(np.round(rng.uniform(0, horizon), 1))
        f = {"at_s": at, "target": target, "kind": kind,
             ("repair_s" if kind == "crash" else "duration_s"): float(rng.uniform(0.001, 1.0))}
        if kind == "crash" and rng.random() < 0.3:
            f["host"] = "lost"
        out.append(_with_factor(rng, f))
    return out


def check(name, d):
    sc, pl, sim = simulation(d)
    res = sim.run()
    # every instance's router load back to 0
    for insts in sim.instances.values():
        for i in insts:
            assert i.load_tokens == 0 and i.n_requests == 0, (i.name, i.load_tokens, i.n_requests)
            assert not getattr(i, "queue", ()) and not getattr(i, "pending", ()), i.name
            assert not getattr(i, "waiting", ()) and not getattr(i, "prefilling", []), i.name
    if sim.link is not None:
        assert not sim.link.net._flows, "flows left"
        if sim.link.batcher is not None:
            assert not sim.link.batcher._open
    recs = res.requests
    states = [r.state for r in recs]
    assert all(s in ("completed", "dropped", "failed") for s in states), set(states)
    f = res.faults
    nreq = len(recs)
    assert len({r.id for r in recs}) == nreq
    for r in recs:
        if r.state == "completed":
            assert r.arrival_s <= r.first_token_s <= r.last_token_s, r
    lim = d.get("recovery", {}).get("retry_limit", None)
    if f is not None:
        rows = f.by_request
        assert sum(r[1] > 0 for r in rows) == f.retried, ("retried", f.retried, rows)
        assert sum(r[2] for r in rows) == f.transfers_retried, ("transfers", f.transfers_retried)
        assert sum(r[3] for r in rows) == f.recomputed_tokens, "recomputed"
        assert sum(r[4] for r in rows) == f.lost_prefill_tokens, "lost_prefill"
        assert abs(sum(r[5] for r in rows) - f.kv_bytes_lost) <= 1e-6 * max(1, f.kv_bytes_lost), "kv lost"
        assert abs(sum(r[6] for r in rows) - f.kv_bytes_resent) <= 1e-6 * max(1, f.kv_bytes_resent), "resent"
        assert abs(sum(r[7] for r in rows) - f.kv_bytes_restored) <= 1e-6 * max(1, f.kv_bytes_restored), "restored"
        assert sum(r[7] > 0 for r in rows) == f.restored, "requests restored"
        for row in rows:
            if lim is not None:
                assert row[1] <= lim + 1, ("retries", row, lim)
        for r in recs:
            if r.state == "failed":
                assert r.drop_reason in ("retry_limit", "timeout", "too_long_after_fault"), r.drop_reason
        for n, spans in f.outages.items():
            for a, b in spans:
                assert a <= b
    from hetsim.api import prepare
    from hetsim.scenario import as_scenario
    _, _, rq = prepare(as_scenario(d))
    for r in recs:
        assert r.input_tokens == int(rq.input_tokens[r.id]) and r.output_tokens == int(rq.output_tokens[r.id]), r
    import hetsim
    (summ,) = hetsim.run(d).summaries
    if f is not None:
        for pool, a in summ["availability"].items():
            assert 0 <= a <= 1, ("availability", pool, a)
        fw = summ["fault_windows"]["slo_attainment"]
        assert fw is None or 0 <= fw <= 1
        assert summ["requests_failed"] == sum(summ["requests_failed_by_reason"].values())
        assert summ["faults"] <= f.applied
        if d["workload"].get("warmup") is None:
            assert summ["requests_failed"] == states.count("failed")
            assert summ["faults"] == f.applied
    # determinism
    res2 = simulation(d)[2].run()
    assert res2.requests == res.requests, "nondeterministic"
    if VERBOSE: print(name, len(recs), sorted((s, states.count(s)) for s in set(states)), f.applied if f else None, f.retried if f else None, f.transfers_retried if f else None)
    return res


def main(n, seed0=0, only=None):
    bad = 0
    names = sorted(ALL) if only is None else [only]
    for k in range(n):
        for name in names:
            rng = np.random.default_rng([seed0, k, names.index(name)])
            d = scenario(placement=ALL[name], requests=int(rng.integers(10, 60)),
                         rate=float(rng.uniform(5, 60)), process="poisson",
                         seed=int(rng.integers(100)), faults=faults_for(rng, ALL[name], 2.0),
                         recovery={"retry_limit": int(rng.integers(0, 4)),
                                   **({"request_timeout_s": float(rng.uniform(0.5, 5))}
                                      if rng.random() < 0.5 else {})})
            if WL and rng.random() < 0.4:
                d["workload"]["arrival"] = {"process": "closed", "concurrency": int(rng.integers(1, 9)),
                                            **({"think_time_s": 0.05} if rng.random() < 0.5 else {})}
            if WL and rng.random() < 0.4:
                d["workload"]["warmup"] = {"requests": int(rng.integers(1, 8))}
            d["workload"]["input_tokens"] = {"dist": "uniform", "min": 100, "max": 8000}
            d["workload"]["output_tokens"] = {"dist": "uniform", "min": 1, "max": 300}
            try:
                check(name, d)
            except Exception as e:
                bad += 1
                print("FAIL", name, k, seed0, type(e).__name__, str(e)[:300], flush=True)
                tb = traceback.format_exc().splitlines()
                print("   ", "\n    ".join(tb[-6:]), flush=True)
    print("done, failures:", bad)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0,
         sys.argv[3] if len(sys.argv) > 3 else None)
