"""Issue 19: ``hetsim.run`` keeps per-request records as columns and builds its per-request
DataFrames (``requests``, ``staging``) only when they are first read."""
import pandas as pd

import hetsim
from hetsim.metrics import records_frame, summarize



def test_frames_are_built_on_first_access_and_match_the_summaries(base_dict):
    base_dict["workload"]["warmup"] = {"requests": 20}
    r = hetsim.run(base_dict)
    assert "requests" not in vars(r) and "staging" not in vars(r)   # not built by the run
    assert r.request_count == 2 * 200
    df = r.requests
    assert r.requests is df                                          # built once
    assert len(df) == r.request_count and list(df["placement"].unique()) == ["coloc", "disagg"]
    # each summary is the pure function of the rows the caller sees
    for run, s in zip(r.runs, r.summaries):
        rows = df[df["placement"] == run.name].reset_index(drop=True)
        assert summarize(rows, run.placement, r.scenario.slo, run.sim) == s
        pd.testing.assert_frame_equal(
            rows, records_frame(run.sim.requests, run.name, r.scenario.workload.warmup))
    # staging rows come only from the disaggregated placement's prefill instance
    assert set(r.staging["placement"]) == {"disagg"} and len(r.staging) > 0
    assert "staging" in vars(r)


def test_a_run_without_disaggregation_has_an_empty_staging_frame(base_dict):
    del base_dict["placements"]["disagg"]
    r = hetsim.run(base_dict)
    assert r.staging.empty and list(r.staging.columns) == [
        "placement", "instance", "t_s", "held_blocks", "held_tokens"]
