"""Decode spans (issue 19: quiet decode iterations run as one event) change nothing: the same
records, instance statistics and fault accounting as one event per iteration, on random fault
schedules (crashes, hangs and degrades striking inside spans) over the handoff kinds, on
decode pools that reserve KV and on ones that take it on demand (growth inside spans,
preemption at their ends, vLLM's and SGLang's schedulers, the KV-aware router reading free
memory inside them), and the step model's batched decode times are the very floats of its
one-step form."""
import numpy as np
import pytest

import hetsim
from hetsim.engine.instances import DecodeInstance
from hetsim.models import load_model
from hetsim.perf import PerfModel, StepModel

from .fuzz_faults import ALL, faults_for
from .test_faults import PD, scenario, simulation


def _decode(**kw):
    return {**PD, "pools": {**PD["pools"], "decode": {**PD["pools"]["decode"], **kw}}}


# on-demand decode (its KV grows inside spans) at a memory where growth preempts, under each
# runtime that takes KV on demand, and read by the KV-aware router
ON_DEMAND = {
    "on-demand-tight": _decode(preemption="recompute", memory_utilization=0.22),
    "vllm": {**_decode(runtime="vllm", memory_utilization=0.22), "router": "kv-aware"},
    "sglang": _decode(runtime="sglang", memory_utilization=0.22),
}
LAYOUTS = ["pd-reserve", "push", "layerwise", "layerwise-push", "batched", "tcp", "nvlink",
           "decode-conversion", "cross-site-batched", "pd-on-demand", "swap", *ON_DEMAND]


def _run(d, spans: bool, monkeypatch):
    monkeypatch.setattr(DecodeInstance, "spans", spans)
    counted = []
    if spans:
        orig = DecodeInstance._span_from

        def span_from(self, t):
            end = orig(self, t)
            counted.append(end is not None)
            return end
        monkeypatch.setattr(DecodeInstance, "_span_from", span_from)
    _, _, sim = simulation(d)
    res = sim.run()
    stats = {p: [i.stats(sim.env.now) for i in insts] for p, insts in sim.instances.items()}
    f = res.faults
    return (res.requests, stats, None if f is None else (f.by_request, f.outages)), sum(counted)


@pytest.mark.parametrize("case", range(2 * len(LAYOUTS)))
def test_spans_give_the_records_of_one_event_per_iteration(case, monkeypatch):
    name = LAYOUTS[case % len(LAYOUTS)]
    rng = np.random.default_rng([19, case])
    pl = ON_DEMAND.get(name) or ALL[name]
    d = scenario(placement=pl, requests=int(rng.integers(20, 60)),
                 rate=float(rng.uniform(5, 60)), process="poisson",
                 seed=int(rng.integers(100)), faults=faults_for(rng, pl, 2.0),
                 recovery={"retry_limit": int(rng.integers(1, 4))})
    d["workload"]["input_tokens"] = {"dist": "uniform", "min": 100, "max": 8000}
    d["workload"]["output_tokens"] = {"dist": "uniform", "min": 1, "max": 300}
    if case >= len(LAYOUTS):
        d["workload"]["warmup"] = {"requests": 5}     # statistics snapshot inside spans
    on, spans = _run(d, True, monkeypatch)
    off, none = _run(d, False, monkeypatch)
    assert spans > 0 and none == 0      # spans really ran
    assert on == off


@pytest.mark.parametrize("model,kw", [
    ("llama-3.1-8b", {"tp": 1}),                    # the linear form
    ("gpt-oss-120b", {"tp": 1}),                    # sliding-window layers
    ("qwen3.5-397b-a17b", {"tp": 8}),               # linear-attention layers
    ("deepseek-v3", {"tp": 8, "attention_dp": 8}),  # attention DP
])
def test_decode_times_are_the_one_step_floats(model, kw):
    m = load_model(model)
    step = StepModel(m, PerfModel(hetsim.load_accelerator("h100-sxm")), **kw)
    for batch, ctx, grow, window in [(1, 100, 1, None), (37, 50_000, 37, 20_000),
                                     (256, 1_000_000, 255, None)]:
        w = window if m.sliding_window else None
        want = [step.decode_time(batch, ctx + j * grow, w) for j in range(1, 17)]
        assert step.decode_times(batch, ctx, grow, 16, w) == want
