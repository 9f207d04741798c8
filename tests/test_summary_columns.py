"""Issue 19: ``hetsim.run`` computes each summary from the record columns (``hetsim.summary``)
and ``--out`` streams the per-request tables in chunks; both give exactly what the
per-request frames give (the frame path, ``metrics.summarize`` over ``records_frame``, is the
oracle)."""
import dataclasses
import json
import tracemalloc

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import hetsim
from hetsim import report
from hetsim.metrics import records_frame, summarize, timeline
from hetsim.summary import summarize_records
from hetsim.workload import Warmup

from .conftest import SCENARIOS, with_requests
from .regen_records import scenarios


def _variant(sc, warmup=None, percentile=None):
    if warmup is not None:
        sc = dataclasses.replace(sc, workload=dataclasses.replace(sc.workload, warmup=warmup))
    if percentile is not None:
        sc = dataclasses.replace(sc, slo=dataclasses.replace(sc.slo, percentile=percentile))
    return sc


def _same_summaries(sc):
    r = hetsim.run(sc)
    for run, got in zip(r.runs, r.summaries):
        want = summarize(records_frame(run.sim.requests, run.name, sc.workload.warmup),
                         run.placement, sc.slo, run.sim)
        assert json.dumps(got) == json.dumps(want)      # same keys, order and float bits
        assert got == want
    return r


@pytest.mark.parametrize("path", scenarios(), ids=lambda p: str(p.relative_to(SCENARIOS)))
def test_the_column_summary_is_the_frame_summary(path):
    _same_summaries(with_requests(hetsim.load_scenario(path), 300))


@pytest.mark.parametrize("path, variant", [
    ("quickstart.yaml", {"warmup": Warmup(requests=37)}),
    ("quickstart.yaml", {"warmup": Warmup(seconds=20.0)}),
    ("quickstart.yaml", {"percentile": 90.0}),
    ("faults/decode-crash.yaml", {"warmup": Warmup(requests=50)}),
    ("design-space/kv-serialization.yaml", {"warmup": Warmup(requests=25)}),
    ("runtimes.yaml", {"percentile": 99.0, "warmup": Warmup(requests=10)}),
])
def test_the_column_summary_is_the_frame_summary_with_warmup_and_percentiles(path, variant):
    sc = _variant(with_requests(hetsim.load_scenario(SCENARIOS / path), 400), **variant)
    r = _same_summaries(sc)
    if "warmup" in variant:
        assert all(s["warmup_requests"] > 0 for s in r.summaries)


def test_a_warmup_longer_than_the_run_leaves_an_empty_measured_window(base_dict):
    base_dict["workload"]["arrival"] = {"process": "closed", "concurrency": 4}
    base_dict["workload"]["warmup"] = {"seconds": 1e6}    # a closed loop: known only as it runs
    sc = hetsim.load_scenario(base_dict)
    r = _same_summaries(sc)
    assert all(s["requests"] == 0 and s["window_start_s"] is None for s in r.summaries)


def test_the_summary_holds_about_one_float_column_besides_the_records():
    """Scratch memory while a summary is made: one float64 column, the completed requests'
    values of one latency, and one-byte masks (tracemalloc counts numpy's buffers exactly);
    the slim frame it replaces took ~90 B a request."""
    sc = with_requests(hetsim.load_scenario(SCENARIOS / "quickstart.yaml"), 20_000)
    r = hetsim.run(sc, ["disagg-1p3d-h100"])
    run = r.runs[0]
    n = len(run.sim.requests)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        s = summarize_records(run.sim.requests, run.placement, sc.slo, run.sim)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert s == r.summaries[0]
    assert peak < 24 * n, f"{peak / n:.0f} B a request"


def test_latencies_and_timeline_from_the_columns_are_the_frames(base_dict):
    base_dict["workload"]["warmup"] = {"requests": 20}
    r = hetsim.run(base_dict)
    df = r.requests
    for run in r.runs:
        rows = df[(df["placement"] == run.name) & ~df["warmup"]]
        for col in ("ttft_s", "tpot_s"):
            np.testing.assert_array_equal(run.latencies(col), rows[col].dropna().to_numpy())
    pd.testing.assert_frame_equal(r.timeline(7.5), timeline(df, r.scenario.slo, 7.5))


@pytest.mark.parametrize("path, warmup", [("quickstart.yaml", None),
                                          ("design-space/handoff.yaml", Warmup(requests=9))])
def test_out_streams_exactly_the_frames(path, warmup, tmp_path, monkeypatch):
    """requests.csv and kv_staging.csv hold the bytes the whole frames' ``to_csv`` writes,
    and requests.parquet reads back as the requests frame, written 64 rows at a time (many
    chunks, a row group each, and a last short one)."""
    monkeypatch.setattr(report, "CHUNK_ROWS", 64)
    sc = _variant(with_requests(hetsim.load_scenario(SCENARIOS / path), 300), warmup)
    r = hetsim.run(sc)
    out = report.write_outputs(r, tmp_path / "out")
    assert "requests" not in vars(r) and "staging" not in vars(r)     # no frame was built
    want = r.requests
    assert (out / "requests.csv").read_bytes() == want.to_csv(index=False).encode()
    assert (out / "kv_staging.csv").read_bytes() == r.staging.to_csv(index=False).encode()
    pd.testing.assert_frame_equal(pd.read_parquet(out / "requests.parquet"), want)
    f = pq.ParquetFile(out / "requests.parquet")
    assert f.metadata.num_rows == len(want) and f.metadata.num_row_groups == sum(
        -(-len(run.sim.requests) // 64) for run in r.runs)


def test_out_writes_no_staging_file_without_disaggregation(base_dict, tmp_path):
    del base_dict["placements"]["disagg"]
    out = report.write_outputs(hetsim.run(base_dict), tmp_path / "out")
    assert not (out / "kv_staging.csv").exists() and (out / "requests.parquet").exists()
