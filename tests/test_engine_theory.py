"""The engine against queueing theory."""
import numpy as np
import pytest

import hetsim
from hetsim.engine.sim import Simulation
from hetsim.perf import PerfModel, StepModel
from hetsim.resolve import resolve_scenario
from hetsim.workload import generate

from .conftest import scenario_from

PROMPT = 2048


def md1_scenario(tmp_path, rate, n=20000):
    d = {"name": "md1", "model": "llama-3.1-8b",
         "workload": {"requests": n, "seed": 11,
                      "arrival": {"process": "poisson", "rate_rps": rate},
                      "input_tokens": {"dist": "fixed", "value": PROMPT},
                      "output_tokens": {"dist": "fixed", "value": 1}},
         "slo": {"ttft_s": 10, "tpot_s": 1},
         # one server, one request at a time, one iteration per request: deterministic service
         "placements": {"one": {"pools": {"m": {"role": "mixed", "accelerator": "h100-sxm",
                                                "max_seqs": 1}}}}}
    return scenario_from(d, tmp_path)


def service_time():
    m = hetsim.load_model("llama-3.1-8b")
    return StepModel(m, PerfModel(hetsim.load_accelerator("h100-sxm")), 1).time(
        [(PROMPT, PROMPT)], 1)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_md1_waiting_time_matches_pollaczek_khinchine(tmp_path, rho):
    s = service_time()
    lam = rho / s
    r = hetsim.run(md1_scenario(tmp_path, lam))
    df = r.requests
    # every request's service is exactly S
    assert np.allclose(df["prefill_end_s"] - df["prefill_start_s"], s, rtol=1e-9)
    wq = (df["prefill_start_s"] - df["arrival_s"]).mean()
    pk = lam * s * s / (2 * (1 - rho))
    assert wq == pytest.approx(pk, rel=0.08)


def test_littles_law_from_an_independent_observer(tmp_path):
    s = service_time()
    lam = 0.7 / s
    sc = md1_scenario(tmp_path, lam, n=20000)
    model, resolved = resolve_scenario(sc)
    reqs = generate(sc.workload, sc.base_dir)
    sim = Simulation(resolved["one"], model, reqs)
    horizon = float(reqs.arrival_s[-1])
    samples = []
    inst = sim.instances["m"][0]

    def observer():   # samples requests in the system, independently of the records
        dt = s / 7.3
        while sim.env.now < horizon:
            samples.append(inst.n_requests)
            yield sim.env.timeout(dt)
    sim.env.process(observer())
    res = sim.run()
    L = np.mean(samples)
    W = np.mean([r.last_token_s - r.arrival_s for r in res.requests])
    assert L == pytest.approx(lam * W, rel=0.05)


def test_light_load_latency_is_the_bare_service_time(tmp_path):
    s = service_time()
    r = hetsim.run(md1_scenario(tmp_path, 0.001 / s, n=50))
    assert r.requests["ttft_s"].to_numpy() == pytest.approx(s, rel=1e-9)
