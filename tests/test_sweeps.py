"""Sweeps: grid and zip expansion, one tidy table, identical on every executor, cached and
resumable, and bad sweep files refused in one line with nothing written."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hetsim
from hetsim.cli import main
from hetsim.errors import ConfigError
from hetsim.executors import Executor, LocalExecutor, RayExecutor
from hetsim.sweeps import expand, load_sweep, sweep, write_sweep
from pathlib import Path

from .conftest import ROOT

D_INSTANCES = "placements.disagg.pools.d.instances"
RATE = "workload.arrival.rate_rps"
PRECISION = "placements.disagg.pools.d.precision"


@pytest.fixture
def files(tmp_path, base_dict):
    base_dict["workload"]["requests"] = 60
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(base_dict, sort_keys=False))
    spec = {"scenario": "s.yaml", "grid": {D_INSTANCES: [1, 2], RATE: [4, 16]},
            "seeds": [1, 2], "placements": ["disagg"]}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return tmp_path


def test_grid_is_a_product_last_path_fastest_and_zip_goes_together():
    spec = load_sweep({"scenario": "s.yaml", "grid": {"a": [1, 2], "b": ["x", "y", "z"]},
                       "zip": {"c": [1, 2], "d": [3, 4]}})
    points = expand(spec)
    assert len(points) == 2 * 3 * 2
    assert points[:3] == [{"a": 1, "b": "x", "c": 1, "d": 3}, {"a": 1, "b": "x", "c": 2, "d": 4},
                          {"a": 1, "b": "y", "c": 1, "d": 3}]
    assert expand(load_sweep({"scenario": "s", "zip": {"c": [1, 2], "d": [3, 4]}})) == [
        {"c": 1, "d": 3}, {"c": 2, "d": 4}]


@pytest.mark.parametrize("spec, message", [
    ({}, "grid: nothing to sweep"),
    ({"grid": {"a": []}}, "grid.a: empty list"),
    ({"zip": {"a": [1, 2], "b": [1]}}, "zip: zip lists differ in length (a: 2, b: 1)"),
    ({"grid": {"a": [1]}, "zip": {"a": [2]}}, "zip.a: in both grid and zip"),
])
def test_expand_refuses_shapes_that_sweep_nothing_or_disagree(spec, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        expand(load_sweep({"scenario": "s.yaml", **spec}))


def test_table_has_a_row_per_point_seed_placement_and_a_column_per_path(files):
    res = sweep(files / "sweep.yaml", cache=False)
    t = res.table
    assert len(t) == 4 * 2 and list(t.columns[:5]) == ["point", D_INSTANCES, RATE, "seed",
                                                       "placement"]
    assert set(t["placement"]) == {"disagg"} and sorted(set(t["seed"])) == [1, 2]
    assert list(t[D_INSTANCES]) == [1, 1, 1, 1, 2, 2, 2, 2]
    assert list(t[RATE]) == [4, 4, 16, 16] * 2
    # the sweep's values reached the simulation
    assert list(t["accelerators"]) == [2] * 4 + [3] * 4
    assert t.loc[t[RATE] == 16, "throughput_rps"].mean() > t.loc[t[RATE] == 4,
                                                                 "throughput_rps"].mean() * 2
    # the summary: mean over seeds, and a 95% interval around it that is wider with spread
    s = res.summary
    assert len(s) == 4 and (s["seeds"] == 2).all()
    for _, row in s.iterrows():
        g = t[t["point"] == row["point"]]["ttft_s.p99"]
        assert row["ttft_s.p99"] == pytest.approx(g.mean())
        assert row["ttft_s.p99.ci95_lo"] <= row["ttft_s.p99"] <= row["ttft_s.p99.ci95_hi"]
        assert (row["ttft_s.p99.ci95_hi"] > row["ttft_s.p99"]) == (g.nunique() > 1)
    # each point is the run of its own scenario, seed by seed
    one = hetsim.run(files / "s.yaml", ["disagg"], overrides={D_INSTANCES: 2, RATE: 16,
                                                              "workload.seed": 2})
    row = t[(t["point"] == 3) & (t["seed"] == 2)].iloc[0]
    assert row["ttft_s.p99"] == one.summaries[0]["ttft_s"]["p99"]


def test_the_interval_is_students_t(files):
    res = sweep(scenario=files / "s.yaml", grid={RATE: [8]}, seeds=[1, 2, 3, 4],
                placements=["coloc"], cache=False)
    v = res.table["ttft_s.mean"].to_numpy()
    half = res.summary["ttft_s.mean.ci95_hi"].iloc[0] - res.summary["ttft_s.mean"].iloc[0]
    # t(0.975, 3) = 3.182 (any table of Student's t)
    assert half == pytest.approx(3.182 * v.std(ddof=1) / np.sqrt(4), rel=1e-3)


def _bytes(res, tmp_path, name):
    path = tmp_path / f"{name}.parquet"
    res.table.to_parquet(path, index=False)
    return path.read_bytes()


def test_identical_on_every_executor(files, tmp_path):
    serial = sweep(files / "sweep.yaml", cache=False, executor=LocalExecutor(1))
    with LocalExecutor(2) as two:
        parallel = sweep(files / "sweep.yaml", cache=False, executor=two)
    import ray            # the `ray` extra, which the README's test command installs
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with RayExecutor() as rex:
            on_ray = sweep(files / "sweep.yaml", cache=False, executor=rex)
    finally:
        ray.shutdown()
    a = _bytes(serial, tmp_path, "a")
    assert a == _bytes(parallel, tmp_path, "b") == _bytes(on_ray, tmp_path, "c")
    pd.testing.assert_frame_equal(serial.summary, on_ray.summary)


class _Interrupted(Executor):
    """Finishes ``k`` tasks, then stops as a Ctrl-C would."""

    def __init__(self, k):
        self.k = k

    def map(self, fn, items, done=None):
        for i, a in enumerate(items[:self.k]):
            done(i, fn(*a))
        raise KeyboardInterrupt


def test_an_interrupted_sweep_resumes_and_a_repeated_one_is_free(files, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        sweep(files / "sweep.yaml", cache=cache, executor=_Interrupted(3))
    resumed = sweep(files / "sweep.yaml", cache=cache)
    assert (resumed.cached, resumed.computed) == (3, 5)
    again = sweep(files / "sweep.yaml", cache=cache)
    assert (again.cached, again.computed) == (8, 0)
    fresh = sweep(files / "sweep.yaml", cache=False)
    pd.testing.assert_frame_equal(resumed.table, fresh.table)
    pd.testing.assert_frame_equal(again.table, fresh.table)
    # a changed input is a new point: the scenario's text, or a file it reads
    (files / "s.yaml").write_text((files / "s.yaml").read_text().replace("ttft_s: 1.0",
                                                                         "ttft_s: 0.9"))
    changed = sweep(files / "sweep.yaml", cache=cache)
    assert (changed.cached, changed.computed) == (0, 8)


def test_a_changed_profile_folder_invalidates_the_cache(files, tmp_path, base_dict):
    prof = files / "profiles"
    prof.mkdir()
    (prof / "note.yaml").write_text("# v1\n")
    base_dict["hardware_profiles"] = ["profiles"]
    base_dict["workload"]["requests"] = 40
    (files / "s.yaml").write_text(yaml.safe_dump(base_dict, sort_keys=False))
    kw = dict(scenario=files / "s.yaml", grid={RATE: [4]}, placements=["coloc"],
              cache=tmp_path / "c")
    assert sweep(**kw).computed == 1 and sweep(**kw).computed == 0
    (prof / "note.yaml").write_text("# v2\n")
    assert sweep(**kw).computed == 1


def test_mixed_values_become_text_columns_and_the_parquet_schema_holds(files, tmp_path):
    res = sweep(scenario=files / "s.yaml", cache=False, placements=["disagg"],
                grid={PRECISION: ["bf16", {"weights": "fp8", "compute": "bf16", "kv": "fp8"}]})
    assert list(res.table[PRECISION]) == ["bf16", '{"compute":"bf16","kv":"fp8","weights":"fp8"}']
    out = write_sweep(res, tmp_path / "out", csv=True)
    t = pd.read_parquet(out / "results.parquet")
    assert t["point"].dtype == np.int64 and t["seed"].dtype == np.int64
    assert pd.api.types.is_string_dtype(t[PRECISION]) and t["ttft_s.p99"].dtype == np.float64
    assert t["meets_slo"].dtype == bool
    pd.testing.assert_frame_equal(t, res.table)
    s = pd.read_parquet(out / "summary.parquet")
    assert {"ttft_s.p99", "ttft_s.p99.ci95_lo", "ttft_s.p99.ci95_hi", "seeds"} <= set(s.columns)
    assert {"results.csv", "summary.csv", "sweep.json", "sweep.yaml",
            "scenario.resolved.yaml"} <= {p.name for p in out.iterdir()}
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["points"][1][PRECISION] == {"weights": "fp8", "compute": "bf16", "kv": "fp8"}
    # the written sweep runs again from its folder, to the same table
    again = sweep(out / "sweep.yaml", cache=False)
    pd.testing.assert_frame_equal(again.table, res.table)


def test_goodput_measure_reports_each_points_highest_rate(files):
    res = sweep(scenario=files / "s.yaml", cache=False, measure="goodput", tolerance=0.2,
                placements=["disagg"], grid={D_INSTANCES: [1, 2]})
    t = res.table
    assert list(t["accelerators"]) == [2, 3]
    assert (t["per_dollar_hour_rps"] == t["max_goodput_rps"] / t["cost_per_hour_usd"]).all()
    (direct,) = hetsim.goodput(files / "s.yaml", ["disagg"], seeds=1, rel_tol=0.2,
                               overrides={D_INSTANCES: 2})
    assert t["max_goodput_rps"].iloc[1] == direct.max_goodput_rps


def _sweep_file(tmp_path, **spec):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump({"scenario": "s.yaml", **spec}, sort_keys=False))
    return f


@pytest.mark.parametrize("spec, message", [
    ({"grid": {"placements.disagg.pools.d.instanses": [1]}},
     "grid.placements.disagg.pools.d.instanses: unknown key (did you mean 'instances'?)"),
    ({"grid": {"placements.nope.pools.d.instances": [1]}},
     "grid.placements.nope.pools.d.instances: placements.nope: no entry 'nope'"),
    ({"grid": {D_INSTANCES: [1, 0]}},
     f"grid.{D_INSTANCES}: point 1 (instances=0): must be > 0, got 0\n"),
    ({"grid": {RATE: []}}, f"grid.{RATE}: empty list"),
    ({"grid": {RATE: [1]}, "measure": "goodputs"}, "measure: must be one of run, goodput"),
    ({"grid": {RATE: [1]}, "placements": ["colloc"]}, "unknown placement 'colloc'"),
    ({"grid": {RATE: [1]}, "scenario": "missing.yaml"}, "scenario: file not found"),
    ({"grid": {RATE: [1]}, "set": {"slo.ttft": 1}}, "slo.ttft: unknown key"),
])
def test_a_bad_sweep_is_one_line_exit_2_and_writes_nothing(files, tmp_path, capsys, spec,
                                                           message):
    f = _sweep_file(files, **spec)
    cache = tmp_path / "cache"
    assert main(["sweep", str(f), "--out", str(tmp_path / "out"), "--cache-dir", str(cache),
                 "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not cache.exists()


def test_an_unreachable_ray_cluster_is_one_line(files, tmp_path, capsys):
    assert main(["sweep", str(files / "sweep.yaml"), "--executor", "ray", "--address",
                 "ray://127.0.0.1:1", "--out", str(tmp_path / "out"), "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--address: cannot reach a Ray cluster" in err
    assert not (tmp_path / "out").exists()


def test_cli_sweep_writes_the_folder_and_prints_the_table(files, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sweep", str(files / "sweep.yaml"), "--out", str(out), "--jobs", "2",
                 "--cache-dir", str(tmp_path / "c"), "-q"]) == 0
    text = capsys.readouterr().out
    assert "4 points x 2 seeds, measure run; 8 simulated, 0 from the cache" in text
    assert text.count("disagg") == 4
    t = pd.read_parquet(out / "results.parquet")
    assert len(t) == 8
    # again into the same folder (a previous hetsim output): all from the cache
    assert main(["sweep", str(files / "sweep.yaml"), "--out", str(out),
                 "--cache-dir", str(tmp_path / "c"), "-q", "--set",
                 "workload.requests=60"]) == 0
    assert "0 simulated, 8 from the cache" in capsys.readouterr().out


def test_goodput_and_plan_are_identical_on_every_executor(tmp_path):
    """goodput drives one search per placement, each rate's seeds in parallel; plan verifies
    its short list in parallel: neither may change a number."""
    from .test_goodput_check import small_spec
    sc = hetsim.as_scenario(ROOT / "scenarios" / "quickstart.yaml",
                            {"workload.requests": 150})
    serial = [r.to_json() for r in hetsim.goodput(sc, seeds=2, rel_tol=0.1)]
    with LocalExecutor(2) as two:
        assert [r.to_json() for r in hetsim.goodput(sc, seeds=2, rel_tol=0.1,
                                                    executor=two)] == serial
        spec = hetsim.load_plan_spec(small_spec(tmp_path))
        a, b = hetsim.plan(spec), hetsim.plan(spec, executor=two)
    key = [(c.name(), c.cost, c.verified, c.attainment, c.goodput_rps) for c in a.verified]
    assert key == [(c.name(), c.cost, c.verified, c.attainment, c.goodput_rps)
                   for c in b.verified]
    assert a.scenario_dict() == b.scenario_dict()


def test_a_workers_error_arrives_whole_and_the_first_tasks_is_raised():
    """Whichever worker fails first, the lowest-index failure is the one raised."""
    for _ in range(3):
        with LocalExecutor(2) as two, pytest.raises(ConfigError) as e:
            two.map(_fails, [(0.2, "x"), (0.0, "y"), (0.0, "z")])
        assert (e.value.file, e.value.path, e.value.message) == ("f.yaml", "a.b", "bad x")


def _fails(delay, v):
    import time
    time.sleep(delay)
    raise ConfigError(f"bad {v}", file="f.yaml", path="a.b")


def test_a_swept_seed_is_each_points_own_and_seed_lists_are_checked(files):
    res = sweep(scenario=files / "s.yaml", grid={"workload.seed": [1, 2]}, placements=["coloc"],
                cache=False)
    assert list(res.table["seed"]) == [1, 2]
    assert res.table["ttft_s.p99"].nunique() == 2
    with pytest.raises(ConfigError, match="seeds: workload.seed is swept and seeds: is given"):
        sweep(scenario=files / "s.yaml", grid={"workload.seed": [1, 2]}, seeds=[3],
              cache=False)
    for seeds, why in (([], "give at least one seed"), ([1, 1], "a seed appears twice"),
                       ([-1], "seeds must be from 0 to")):
        with pytest.raises(ConfigError, match=f"seeds: {why}"):
            sweep(scenario=files / "s.yaml", grid={RATE: [4]}, seeds=seeds, cache=False)


def test_every_point_is_checked_before_any_runs(files, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(ConfigError, match=r"grid\.workload\.requests: point 1 "
                                          r"\(requests=500000000\): 500,000,000 requests"):
        sweep(scenario=files / "s.yaml", grid={"workload.requests": [50, 500_000_000]},
              cache=cache)
    assert not cache.exists()
    with pytest.raises(ConfigError,
                       match=rf"grid\.{RATE}: {RATE} is swept and also given by set"):
        sweep(scenario=files / "s.yaml", grid={RATE: [4]}, overrides={RATE: 5}, cache=False)


def test_goodput_reads_an_edited_profile_again(tmp_path, base_dict):
    """A notebook edits a profile between two searches: the second sees the edit."""
    prof = tmp_path / "prof" / "accelerators"
    prof.mkdir(parents=True)
    text = (ROOT / "hardware_profiles" / "accelerators" / "h100-sxm.yaml").read_text()
    (prof / "h100-sxm.yaml").write_text(text)
    base_dict["hardware_profiles"] = ["prof"]
    base_dict["workload"]["requests"] = 60
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(base_dict, sort_keys=False))
    (a,) = hetsim.goodput(f, ["coloc"], seeds=1, rel_tol=0.2)
    (prof / "h100-sxm.yaml").write_text(text.replace("hbm_bandwidth_tbps: 3.35",
                                                     "hbm_bandwidth_tbps: 0.3"))
    (b,) = hetsim.goodput(f, ["coloc"], seeds=1, rel_tol=0.2)
    assert b.max_goodput_rps < a.max_goodput_rps


def test_the_cache_key_does_not_depend_on_the_working_folder(files, tmp_path, monkeypatch,
                                                           base_dict):
    from hetsim.sweeps.cache import inputs_digest as _inputs_digest
    (files / "t.csv").write_text("timestamp_s,input_tokens,output_tokens\n0,10,5\n1,10,5\n")
    base_dict["workload"] = {"trace": "t.csv", "seed": 1}
    (files / "s.yaml").write_text(yaml.safe_dump(base_dict, sort_keys=False))
    monkeypatch.chdir(files)
    here = _inputs_digest(hetsim.load_scenario("s.yaml"), {})
    monkeypatch.chdir(tmp_path.parent)
    there = _inputs_digest(hetsim.load_scenario(files / "s.yaml"), {})
    assert here == there
    (files / "t.csv").write_text("timestamp_s,input_tokens,output_tokens\n0,10,5\n1,10,6\n")
    assert _inputs_digest(hetsim.load_scenario(files / "s.yaml"), {}) != there


@pytest.mark.parametrize("args, message", [
    (["--csv"], "--csv: --csv needs --out"),
    (["--no-cache", "--cache-dir", "c"], "--cache-dir: --cache-dir needs the cache"),
    (["--executor", "ray", "--address", "127.0.0.1:1"],
     "--address: cannot reach a Ray cluster at 127.0.0.1:1"),
    (["--executor", "ray", "--address", "auto", "--jobs", "2"], "--jobs: --jobs sizes a local"),
    (["--address", "auto"], "--address: --address is for --executor ray"),
])
def test_flags_that_cannot_apply_are_refused(files, capsys, args, message):
    assert main(["sweep", str(files / "sweep.yaml"), "-q", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


@pytest.mark.parametrize("path", sorted((ROOT / "examples" / "sweeps").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_shipped_sweeps_run(path, tmp_path):
    res = sweep(path, cache=False, overrides={"workload.requests": 60})
    spec = load_sweep(path)
    assert len(res.summary) == len(expand(spec)) * max(len(spec.placements), 1)
    assert res.table["completed"].gt(0).all()


def test_goodput_out_writes_the_search_and_its_curves(files, tmp_path, capsys):
    out = tmp_path / "g"
    assert main(["goodput", str(files / "s.yaml"), "--placement", "disagg", "--seeds", "2",
                 "--requests", "50", "--tolerance", "20%", "--jobs", "2", "--out", str(out),
                 "-q"]) == 0
    assert f"wrote {out}/" in capsys.readouterr().out
    g = json.loads((out / "goodput.json").read_text())
    curves = pd.read_csv(out / "curves.csv")
    (p,) = g["placements"]
    assert len(curves) == len(p["curve"]) and set(curves["placement"]) == {"disagg"}
    assert curves["rate_rps"].tolist() == [c["rate_rps"] for c in p["curve"]]
    assert (curves["ttft_s_p99"] >= curves["ttft_s_p50"]).all()
    assert yaml.safe_load((out / "scenario.resolved.yaml").read_text())["workload"][
        "requests"] == 50
    assert {"attainment.png", "latency.png"} <= {f.name for f in out.iterdir()}
    # a foreign folder is refused before anything runs
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    assert main(["goodput", str(files / "s.yaml"), "--out", str(tmp_path / "mine"), "-q"]) == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "x"


def test_the_cache_key_covers_all_of_hetsims_code_and_data(tmp_path, monkeypatch, base_dict):
    """The model catalog, the engine, anything in the package: an edit is a miss."""
    from hetsim.sweeps import cache
    assert cache.PACKAGE == Path(hetsim.__file__).resolve().parent
    pkg = tmp_path / "pkg"
    (pkg / "catalog").mkdir(parents=True)
    (pkg / "catalog" / "m.yaml").write_text("num_layers: 32\n")
    monkeypatch.setattr(cache, "PACKAGE", pkg)
    sc = hetsim.as_scenario(base_dict)
    before = cache.inputs_digest(sc, {})
    (pkg / "catalog" / "m.yaml").write_text("num_layers: 64\n")
    assert cache.inputs_digest(sc, {}) != before


def test_a_base_given_in_memory_is_written_whole(files, tmp_path):
    sc = hetsim.as_scenario(files / "s.yaml", {RATE: 9, "workload.requests": 40})
    res = sweep(scenario=sc, grid={D_INSTANCES: [1, 2]}, placements=["disagg"], cache=False)
    out = write_sweep(res, tmp_path / "o")
    again = sweep(out / "sweep.yaml", cache=False)
    pd.testing.assert_frame_equal(again.table, res.table)


@pytest.mark.parametrize("spec, message", [
    ({"grid": {"workload.arrival": [{"process": "poisson", "rate_rps": 4},
                                     {"process": "closed", "concurrency": 4}]},
      "measure": "goodput"},
     "grid.workload.arrival: point 1 (arrival={\"process\":\"closed\",\"concurrency\":4}): "
     "goodput search varies the arrival rate"),
    ({"grid": {RATE: [4]}, "seeds": [2**63]}, "seeds: seeds must be from 0 to"),
    ({"grid": {"workload.seed": [2**63]}}, "point 0 (seed=9223372036854775808): must be at most"),
    ({"grid": {RATE: [4, 4.0]}}, f"grid.{RATE}: a value appears twice"),
    ({"grid": {"workload.requests": [40]}, "requests": 50},
     "workload.requests is swept and also given by requests:"),
])
def test_more_bad_sweeps_are_refused_before_anything_runs(files, tmp_path, capsys, spec,
                                                          message):
    f = _sweep_file(files, **spec)
    cache = tmp_path / "cache"
    assert main(["sweep", str(f), "--cache-dir", str(cache), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not cache.exists()


def test_a_cache_folder_that_is_a_file_is_refused_before_simulating(files, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(["sweep", str(files / "sweep.yaml"), "--cache-dir", str(tmp_path / "afile"),
                 "-q"]) == 2
    assert "--cache-dir: the sweep cache" in capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "x"


def test_an_unreachable_ray_address_in_the_environment_is_one_line(files, capsys,
                                                                 monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    assert main(["sweep", str(files / "sweep.yaml"), "--executor", "ray", "--no-cache",
                 "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "$RAY_ADDRESS: cannot reach a Ray cluster" in err


@pytest.mark.parametrize("redirect", ["2>&-", "2>/dev/full"])
def test_closed_or_full_stderr_never_stops_a_search(files, redirect):
    """Progress is never the result: a closed or full stderr silences it, nothing else."""
    import subprocess
    import sys as _sys
    cli = f"{_sys.executable} -m hetsim"
    for cmd in (f"goodput {files / 's.yaml'} --requests 40 --seeds 1 --tolerance 20% --jobs 2",
                f"sweep {files / 'sweep.yaml'} --no-cache --jobs 2"):
        done = subprocess.run(f"{cli} {cmd} {redirect}", shell=True, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0 and "disagg" in done.stdout, (cmd, done.returncode)


_SEGMENTS = ["placements", "disagg", "coloc", "pools", "d", "m", "p", "instances", "tp",
             "precision", "workload", "arrival", "rate_rps", "seed", "requests", "slo",
             "ttft_s", "kv_link", "accelerator", "[0]", "nope"]
_VALUES = st.one_of(st.integers(1, 4), st.floats(0.5, 20), st.none(), st.booleans(),
                    st.integers(-3, 10**12), st.floats(-1, 1e3),
                    st.sampled_from(["bf16", "fp8", "a100-sxm", "h100-sxm", "roce-400g", ""]),
                    st.dictionaries(st.sampled_from(["weights", "kv", "compute", "x"]),
                                    st.sampled_from(["fp8", "bf16", "fp3"]), max_size=2))


_REAL_PATHS = st.sampled_from([D_INSTANCES, RATE, PRECISION, "workload.requests",
                               "placements.coloc.pools.m.accelerator",
                               "placements.disagg.kv_link", "slo.ttft_s"])


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])   # files never mutated
@given(grid=st.dictionaries(
    st.one_of(_REAL_PATHS, st.lists(st.sampled_from(_SEGMENTS), min_size=1, max_size=5)
              .map(".".join)),
    st.lists(_VALUES, min_size=1, max_size=3, unique_by=lambda v: json.dumps(v)),
    min_size=1, max_size=3),
       seeds=st.one_of(st.none(), st.lists(st.integers(0, 5), min_size=1, max_size=3,
                                           unique=True)),
       measure=st.sampled_from(["run", "goodput"]))
def test_any_sweep_file_is_checked_or_refused_with_a_config_error(files, grid, seeds, measure):
    """Sweep files of any shape: every point is checked (nothing simulated) or refused with a
    one-line ConfigError, never another exception."""
    from hetsim.config import read_yaml
    from hetsim.sweeps.spec import prepare, scenario_file
    try:
        spec = load_sweep({"scenario": str(files / "s.yaml"), "grid": grid, "seeds": seeds,
                           "measure": measure})
        points = expand(spec)
        prepare(spec, read_yaml(scenario_file(spec)), scenario_file(spec), points, 1)
    except ConfigError as e:
        assert "\n" not in str(e)
