"""Issue 19: ``hetsim.run`` keeps per-request records as columns and builds its per-request
DataFrames (``requests``, ``staging``) only when they are first read."""
import numpy as np
import pandas as pd
import pytest

import hetsim
from hetsim.metrics import records_frame, summarize, summary_frame

from .conftest import SCENARIOS, with_requests
from .regen_records import scenarios


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


@pytest.mark.parametrize("path", scenarios(), ids=lambda p: str(p.relative_to(SCENARIOS)))
def test_the_summary_frame_gives_the_summary_of_the_whole_frame(path):
    """``hetsim.run`` summarises a slim frame over the record columns (no names, categorical
    states, the float columns not copied); the summary is the one of the whole frame, and the
    slim frame holds no string and no copy of a float record column."""
    sc = with_requests(hetsim.load_scenario(path), 300)
    r = hetsim.run(sc)
    for run, s in zip(r.runs, r.summaries):
        recs, warmup = run.sim.requests, sc.workload.warmup
        whole = records_frame(recs, run.name, warmup)
        assert summarize(whole, run.placement, sc.slo, run.sim) == s
        slim = summary_frame(recs, warmup)
        assert all(isinstance(t, pd.CategoricalDtype) or t.kind in "biuf" for t in slim.dtypes)
        assert np.shares_memory(slim["arrival_s"].to_numpy(), recs.column("arrival_s"))
        for c in slim:     # the same values where the frames share a column
            want = whole[c].astype(str) if c in ("state", "drop_reason") else whole[c]
            got = slim[c].astype(str) if c in ("state", "drop_reason") else slim[c]
            pd.testing.assert_series_equal(got, want, check_dtype=False)
