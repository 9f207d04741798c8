"""The clients' output limit (``workload.max_output_tokens``, OpenAI ``max_tokens``): what a
scheduler that reserves output KV up front reserves, when it cannot know the output a request
will turn out to have. Exact traces on the unit step model (tests/test_engine_units.py:
1 + prompt tokens / 8 + decodes / 4 seconds a step)."""
import copy

import pytest

import hetsim
from hetsim.engine.instances import MixedInstance
from hetsim.engine.ondemand import OnDemandMixedInstance
from hetsim.errors import ConfigError
from hetsim.api import prepare

from .conftest import scenario_from
from .test_engine_units import make, req
from .test_runtime_rules import TRT, arrive, rules


def _limited(r, limit):
    if limit is not None:
        r.reserve_out = limit
    return r


def _pair(kind, limit, r0_out, r1_out, kv_blocks, arrive_at=0.0, **rule):
    env, m = make(kind, "mixed", kv_blocks=kv_blocks, max_tokens=16, rules=rules(**rule))
    r0, r1 = _limited(req(0, 8, r0_out), limit), _limited(req(1, 4, r1_out), limit)
    m.submit(r0)
    if arrive_at:
        arrive(env, m, r1, arrive_at)
    else:
        m.submit(r1)
    env.run()
    return m, r0, r1


def test_trtllm_reserves_the_clients_limit_not_the_output_to_come():
    """5 blocks of 4 tokens. Reserving the true outputs, r0 (8 + 3) and r1 (4 + 2) take 3 + 2
    blocks and share the first step; with max_tokens 8 each reserves prompt + 8 (4 + 3
    blocks), so r1 waits for r0 to end although both would have fitted as they turned out."""
    m, r0, r1 = _pair(MixedInstance, None, 3, 2, 5, **TRT)
    assert r1.prefill_start_s == r0.prefill_start_s == 0 and m.kv.peak == 5
    m, r0, r1 = _pair(MixedInstance, 8, 3, 2, 5, **TRT)
    assert r1.prefill_start_s == r0.last_token_s > 0 and m.kv.peak == 4


def test_vllm_grows_kv_as_tokens_come_so_the_limit_changes_nothing():
    times = []
    for limit in (None, 8):
        m, r0, r1 = _pair(OnDemandMixedInstance, limit, 3, 2, 5)
        times.append([(r.prefill_start_s, r.first_token_s, r.last_token_s) for r in (r0, r1)]
                     + [m.kv.peak, m.preemptions])
    assert times[0] == times[1]


def test_sglang_estimates_admission_from_the_limit():
    """40 tokens of KV. Estimating from the true outputs, r1 (4 + 4) is admitted beside r0
    (8 + 8) as it arrives; with max_tokens 30 r0 is expected to write ~0.7 x 30 more and r1
    to need 4 + 30, so r1 waits for r0 to end (an idle engine then takes it)."""
    sg = dict(name="sglang", kv_admission="estimate", mixed_batches=False)
    m, r0, r1 = _pair(OnDemandMixedInstance, None, 8, 4, 10, arrive_at=2.5, **sg)
    assert r1.prefill_start_s < r0.last_token_s
    m, r0, r1 = _pair(OnDemandMixedInstance, 30, 8, 4, 10, arrive_at=2.5, **sg)
    assert r1.prefill_start_s == r0.last_token_s


def _scenario(base_dict, limit=None, runtime="trtllm", out=None):
    d = copy.deepcopy(base_dict)
    d["workload"] = {"requests": 120, "seed": 5, "arrival": {"process": "closed",
                                                              "concurrency": 48},
                     "input_tokens": {"dist": "fixed", "value": 1024},
                     "output_tokens": out or {"dist": "uniform", "min": 16, "max": 512}}
    if limit is not None:
        d["workload"]["max_output_tokens"] = limit
    d["placements"] = {"m": {"pools": {"m": {"role": "mixed", "accelerator": "h100-sxm",
                                             "runtime": runtime,
                                             "memory_utilization": 0.22}}}}
    return d


def test_a_larger_limit_holds_more_kv_per_request_and_queues_prompts(tmp_path, base_dict):
    # (premise: the KV of 48 requests at their true outputs fits; at 2048 each, it does not)
    s = {lim: hetsim.run(scenario_from(_scenario(base_dict, lim), tmp_path, f"{lim}.yaml"))
         .summary.loc["m"] for lim in (None, 512, 2048)}
    assert s[None]["queue_s.mean"] <= s[512]["queue_s.mean"] < s[2048]["queue_s.mean"]
    assert s[None]["ttft_s.mean"] < s[2048]["ttft_s.mean"]


def test_an_output_over_the_limit_is_an_error_naming_the_key(tmp_path, base_dict):
    with pytest.raises(ConfigError, match="than the clients' limit 256") as e:
        prepare(scenario_from(_scenario(base_dict, 256), tmp_path))
    assert e.value.path == "workload.max_output_tokens"
    with pytest.raises(ConfigError, match="must be > 0"):
        scenario_from(_scenario(base_dict, 0), tmp_path, "z.yaml")


def test_the_limit_is_written_back_only_when_set(tmp_path, base_dict):
    plain = hetsim.run(scenario_from(_scenario(base_dict), tmp_path, "a.yaml"))
    limited = hetsim.run(scenario_from(_scenario(base_dict, 600), tmp_path, "b.yaml"))
    from hetsim.config import to_dict
    from hetsim.workload import written
    assert "max_output_tokens" not in written(to_dict(plain.scenario.workload))
    assert written(to_dict(limited.scenario.workload))["max_output_tokens"] == 600
