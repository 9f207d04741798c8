"""Nothing lost, nothing silent: output folders, strict reading, workloads as written, names,
exit codes and metrics that do not mislead (issue 12)."""
import json
from pathlib import Path

import numpy as np
import pytest

import hetsim
from hetsim.api import memory_estimate
from hetsim.cli import EXIT_INTERNAL, main
from hetsim.config import build, read_yaml
from hetsim.errors import ConfigError
from hetsim.hardware import load_accelerator
from hetsim.metrics import records_frame, summarize
from hetsim.outputs import MANIFEST
from hetsim.workload import WorkloadSpec, generate

from .conftest import SCENARIOS

TINY = """name: tiny
model: llama-3.1-8b
workload:
  requests: 30
  seed: 1
  arrival: {process: poisson, rate_rps: 5}
  input_tokens: {dist: fixed, value: 256}
  output_tokens: {dist: fixed, value: 16}
slo: {ttft_s: 1.0, tpot_s: 0.1}
placements:
  one: {pools: {m: {role: mixed, accelerator: h100-sxm}}}
"""


@pytest.fixture
def tiny(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(TINY)
    return p


def snapshot(root: Path) -> dict:
    return {str(f.relative_to(root)): (f.read_bytes(), f.stat().st_mtime_ns)
            for f in sorted(root.rglob("*")) if f.is_file()}


# --- output folders ---------------------------------------------------------------------------
def test_out_fills_a_new_folder_and_writes_a_manifest(tiny, tmp_path, capsys):
    out = tmp_path / "a" / "b"
    assert main(["run", str(tiny), "--out", str(out), "-q"]) == 0
    files = list(json.loads((out / MANIFEST).read_text())["written"])
    assert "summary.json" in files and sorted(p.name for p in out.iterdir()) == sorted(
        files + [MANIFEST])
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]   # no temp left


def test_out_refuses_a_folder_it_did_not_write_and_touches_nothing(tiny, tmp_path, capsys):
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    assert main(["run", str(tiny), "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err and "notes.txt" in err and "--force" in err
    assert snapshot(tmp_path) == before


def test_force_replaces_only_hetsims_own_files(tiny, tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "summary.json").write_text("stale")
    assert main(["run", str(tiny), "--out", str(out), "--force", "-q"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "summary.json").read_text())["scenario"] == "tiny"


def test_a_previous_output_is_replaced_and_user_files_beside_it_survive(tiny, tmp_path):
    out = tmp_path / "results"
    assert main(["run", str(tiny), "--out", str(out), "-q"]) == 0
    (out / "latency_cdf.png").unlink()            # hetsim's own file, gone: still ours
    assert main(["run", str(tiny), "--out", str(out), "-q"]) == 0
    assert (out / "latency_cdf.png").exists()
    (out / "notes.txt").write_text("mine")        # a user's file added to an output folder
    for name in ("kv_staging.csv", "plan.yaml", "edited.csv"):
        (out / name).write_text(f"old {name}")
    manifest = json.loads((out / MANIFEST).read_text())

    def wrote(name, command):
        st = (out / name).stat()
        manifest["written"][name] = {"command": command, "size": st.st_size,
                                     "mtime_ns": st.st_mtime_ns}
    wrote("kv_staging.csv", "run")      # the previous run wrote it, this one does not
    wrote("plan.yaml", "plan")          # another command's output
    wrote("edited.csv", "run")          # hetsim's, then edited by the user
    (out / "edited.csv").write_text("the user's edit, now longer")
    (out / MANIFEST).write_text(json.dumps(manifest))
    assert main(["run", str(tiny), "--out", str(out), "-q"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "kv_staging.csv").exists()
    assert (out / "plan.yaml").read_text() == "old plan.yaml"
    assert (out / "edited.csv").read_text() == "the user's edit, now longer"
    written = json.loads((out / MANIFEST).read_text())["written"]
    assert written["plan.yaml"]["command"] == "plan" and "edited.csv" not in written


def test_a_forged_manifest_cannot_make_hetsim_delete_a_file_it_did_not_write(tiny, tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / MANIFEST).write_text(json.dumps(
        {"command": "run", "written": {"notes.txt": {"command": "run"}}}))   # no stamp
    assert main(["run", str(tiny), "--out", str(out), "-q"]) == 0
    assert (out / "notes.txt").read_text() == "mine"


def test_out_into_a_mount_point_or_symlinked_folder_never_moves_the_folder(tiny, tmp_path):
    """An existing folder is written into, never renamed: a mount point or a link to another
    filesystem cannot be moved, and the folder keeps its mode."""
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o751)
    link = tmp_path / "link"
    link.symlink_to(real)
    inode = real.stat().st_ino
    assert main(["run", str(tiny), "--out", str(link), "-q"]) == 0
    assert link.is_symlink() and real.stat().st_ino == inode
    assert (real / "summary.json").exists() and oct(real.stat().st_mode & 0o777) == "0o751"
    assert not [p for p in real.iterdir() if p.name.startswith(".")]   # staging cleaned up


def test_a_dangling_link_as_out_is_refused(tiny, tmp_path, capsys):
    (tmp_path / "dl").symlink_to(tmp_path / "nowhere")
    assert main(["run", str(tiny), "--out", str(tmp_path / "dl"), "-q"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_two_writers_racing_for_a_new_folder_both_land(tmp_path):
    """The second writer finds the folder made by the first and writes file by file."""
    from hetsim.outputs import check_output_dir
    out = tmp_path / "race"
    a, b = check_output_dir(out), check_output_dir(out)

    def fill_b(tmp):
        (tmp / "b.txt").write_text("b")
        a.write("run", lambda t: (t / "a.txt").write_text("a"))   # lands meanwhile
    b.write("check", fill_b)
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt", MANIFEST]


def test_out_dot_never_removes_the_working_directory(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "s.yaml", "--out", ".", "-q"]) == 2      # s.yaml is there: refused
    assert (tmp_path / "s.yaml").exists()
    assert main(["run", "s.yaml", "--out", ".", "--force", "-q"]) == 0
    assert (tmp_path / "s.yaml").read_text() == TINY and (tmp_path / "summary.json").exists()
    assert main(["run", "s.yaml", "--out", ".", "-q"]) == 0       # now a previous output
    assert Path.cwd() == tmp_path and (tmp_path / "s.yaml").exists()


@pytest.mark.parametrize("argv, where", [
    (["run", "{s}", "--out", "{f}"], "--out"),
    (["run", "{s}", "--out", "{f}/sub"], "--out"),
    (["plan", str(Path(__file__).parents[1] / "examples/plan/llama8b-chat.yaml"), "--out",
      "{f}"], "--out"),
    (["check", "{s}", "--junit", "{d}"], "--junit"),
    (["check", "{s}", "--junit", "{f}/r.xml"], "--junit"),
    (["check", "{s}", "--update-baseline", "--baseline", "{f}/b.json"], "--baseline"),
])
def test_output_paths_are_checked_before_anything_runs(argv, where, tiny, tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    d = tmp_path / "folder"
    d.mkdir()
    before = snapshot(tmp_path)
    argv = [a.format(s=tiny, f=f, d=d) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and where in err and "Traceback" not in err
    assert snapshot(tmp_path) == before


def test_unwritable_out_is_refused(tiny, tmp_path, monkeypatch, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    # root writes anywhere, so the permission check is what is exercised here
    monkeypatch.setattr("hetsim.outputs.os.access", lambda p, mode: Path(p) != ro)
    assert main(["run", str(tiny), "--out", str(ro / "x"), "-q"]) == 2
    assert "not writable" in capsys.readouterr().err
    assert list(ro.iterdir()) == []


# --- strict reading ---------------------------------------------------------------------------
@pytest.mark.parametrize("text, lines", [
    ("a: 1\nb: 2\na: 3\n", "lines 1 and 3"),
    ("p:\n  x: {k: 1}\n  x: {k: 8}\n", "lines 2 and 3"),
    ("s: {t: 1, t: 2}\n", "lines 1 and 1"),
])
def test_duplicate_keys_name_both_lines(tmp_path, text, lines):
    p = tmp_path / "d.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=lines):
        read_yaml(p)


def test_a_second_slo_block_is_refused_not_merged(tiny, tmp_path, capsys):
    tiny.write_text(TINY + "slo: {ttft_s: 100, tpot_s: 100}\n")
    assert main(["validate", str(tiny)]) == 2
    assert "duplicate key 'slo' at lines 9 and 12" in capsys.readouterr().err


def test_merge_keys_still_override(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text("base: &b {tp: 1, instances: 2}\npool: {<<: *b, tp: 4}\n")
    assert read_yaml(p)["pool"] == {"tp": 4, "instances": 2}


def test_numbers_as_people_write_them(tmp_path):
    """YAML 1.2 core schema: exponent floats, decimal leading zeros, no sexagesimal, only
    true/false as booleans."""
    p = tmp_path / "n.yaml"
    p.write_text("a: 5e0\nb: 1e-3\nc: 2.5E+3\nd: '5e0'\ne: 1e3x\nf: 0x10\ng: 0100\n"
                 "h: 1:30\non: yes\ni: True\nj: .inf\n")
    assert read_yaml(p) == {"a": 5.0, "b": 0.001, "c": 2500.0, "d": "5e0", "e": "1e3x",
                            "f": 16, "g": 100, "h": "1:30", "on": "yes", "i": True,
                            "j": float("inf")}
    import yaml
    assert yaml.safe_load("a: 5e0\nb: 0100") == {"a": "5e0", "b": 64}   # yaml's own: untouched


def test_keys_that_collide_as_names_are_refused(tiny, capsys):
    tiny.write_text(TINY.replace("placements:\n", "placements:\n  1: {pools: {m: {role: mixed, "
                                 "accelerator: h100-sxm}}}\n  '1': {pools: {m: {role: mixed, "
                                 "accelerator: a100-sxm}}}\n"))
    assert main(["validate", str(tiny)]) == 2
    assert "placements.1: keys 1 and '1' both mean '1'" in capsys.readouterr().err


def test_a_device_or_endless_file_is_read_only_up_to_the_limit(capsys):
    assert main(["validate", "/dev/zero"]) == 2
    assert "larger than the 10 MiB limit" in capsys.readouterr().err


def test_a_huge_value_quoted_back_is_cut(tiny, capsys):
    tiny.write_text(TINY.replace("name: tiny", "name: [" + ", ".join(["x"] * 5000) + "]"))
    assert main(["validate", str(tiny)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 2100 and err.rstrip().endswith("(cut)")


@pytest.mark.parametrize("data, words", [
    (b"a: \xff\n", "not UTF-8"),
    (b"a: 1\x00\n", "binary"),
    (b"a: " + b"[" * 200 + b"]" * 200 + b"\n", "nest"),
    (b"# " + b"x" * (10 * 1024 * 1024 + 1), "MiB limit"),
])
def test_unreadable_files_are_one_line_errors(tmp_path, data, words):
    p = tmp_path / "x.yaml"
    p.write_bytes(data)
    with pytest.raises(ConfigError, match=words) as e:
        read_yaml(p)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


# --- workloads run as written -----------------------------------------------------------------
def spec(**kw):
    base = {"requests": 200, "seed": 3, "arrival": {"process": "poisson", "rate_rps": 2.0},
            "input_tokens": {"dist": "uniform", "min": 100, "max": 4000},
            "output_tokens": {"dist": "fixed", "value": 200}}
    return build(WorkloadSpec, {**base, **kw})


def test_requests_longer_than_the_context_are_refused_unless_clipping_is_asked_for():
    with pytest.raises(ConfigError, match=r"of 200 requests are longer than m's 2048-token "
                                          r"context \(input \+ output up to 4\d\d\d tokens\)"):
        generate(spec(), max_context=2048, model="m")
    r = generate(spec(clip_to_context=True), max_context=2048)
    want = int((generate(spec()).input_tokens + 200 > 2048).sum())
    assert r.clipped == want > 0
    assert (r.input_tokens + r.output_tokens).max() <= 2048


def test_clipped_requests_are_reported_by_run_and_validate(tiny, capsys):
    tiny.write_text(TINY.replace("value: 256", "value: 131070").replace(
        "requests: 30", "requests: 4\n  clip_to_context: true"))
    assert main(["validate", str(tiny)]) == 0
    assert "4 clipped to the context" in capsys.readouterr().out
    assert hetsim.run(tiny).to_json()["clipped_requests"] == 4


def test_a_trace_replays_every_row_unless_told_fewer(tmp_path):
    rows = "".join(f"{i * 0.5},{10 + i},{5}\n" for i in range(1500))
    (tmp_path / "t.csv").write_text("timestamp_s,input_tokens,output_tokens\n" + rows)
    assert len(generate(build(WorkloadSpec, {"trace": "t.csv"}), tmp_path)) == 1500
    assert len(generate(build(WorkloadSpec, {"trace": "t.csv", "requests": 7}), tmp_path)) == 7
    with pytest.raises(ConfigError, match="requests: 2000 but the trace"):
        generate(build(WorkloadSpec, {"trace": "t.csv", "requests": 2000}), tmp_path)


@pytest.mark.parametrize("row, col, got", [
    ("1.0,nan,5", "input_tokens", "'nan'"),
    ("1.0,-3,5", "input_tokens", "'-3'"),
    ("1.0,3.5,5", "input_tokens", "'3.5'"),
    ("1.0,3,0", "output_tokens", "'0'"),
    ("-1,3,4", "timestamp_s", "'-1'"),
    ("abc,3,4", "timestamp_s", "'abc'"),
    ("0.5,3,4", "timestamp_s", "back in time"),
])
def test_bad_trace_values_name_file_row_and_column(tmp_path, row, col, got):
    (tmp_path / "t.csv").write_text(f"timestamp_s,input_tokens,output_tokens\n0,1,1\n2,2,2\n{row}\n")
    with pytest.raises(ConfigError) as e:
        generate(build(WorkloadSpec, {"trace": "t.csv"}), tmp_path)
    msg = str(e.value)
    assert f"t.csv:4: {col}:" in msg and got in msg


def test_seed_must_be_a_non_negative_integer(tiny, capsys):
    tiny.write_text(TINY.replace("seed: 1", "seed: -1"))
    assert main(["validate", str(tiny)]) == 2
    assert "workload.seed: must be >= 0" in capsys.readouterr().err


def test_a_run_that_cannot_fit_in_memory_is_refused_up_front(tiny, capsys):
    tiny.write_text(TINY.replace("requests: 30", "requests: 100000000000"))
    assert main(["validate", str(tiny)]) == 2
    err = capsys.readouterr().err
    assert "workload.requests" in err and "GB of memory" in err
    assert memory_estimate(2000, 2) > memory_estimate(1000, 2) > memory_estimate(1000, 1)


# --- names ------------------------------------------------------------------------------------
def test_an_alias_loads_exactly_its_canonical_profile():
    assert load_accelerator("h100") == load_accelerator("h100-sxm")
    assert load_accelerator("H100-SXM") == load_accelerator("h100-sxm")
    assert load_accelerator("h100@datasheet") == load_accelerator("h100-sxm@datasheet")
    assert load_accelerator("h100-sxm").calibration is not None


def test_names_match_ignoring_case_and_suggest_otherwise(tiny, capsys):
    tiny.write_text(TINY.replace("h100-sxm", "H100-SXM").replace("llama-3.1-8b", "Llama-3.1-8B"))
    assert main(["validate", str(tiny)]) == 0
    tiny.write_text(TINY.replace("h100-sxm", "h100-sxn"))
    assert main(["validate", str(tiny)]) == 2
    assert "did you mean 'h100-sxm'" in capsys.readouterr().err


# --- exit codes -------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [["goodput", "{s}", "--seeds", "0"],
                                  ["goodput", "{s}", "--requests", "0"],
                                  ["goodput", "{s}", "--tolerance", "-1"],
                                  ["check", "{s}", "--tolerance", "-1"],
                                  ["run", "{s}", "--nope"]])
def test_bad_cli_numbers_are_one_line_exit_2(argv, tiny, capsys):
    assert main([a.format(s=tiny) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hetsim: error:")


def test_a_crash_is_never_mistaken_for_a_regression_or_bad_input(tiny, monkeypatch, capsys):
    def boom(*a, **k):
        raise RuntimeError("boom")
    monkeypatch.setattr(hetsim.api, "run", boom)
    assert main(["check", str(tiny)]) == EXIT_INTERNAL
    assert "internal error" in capsys.readouterr().err


# --- metrics ----------------------------------------------------------------------------------
def test_goodput_at_an_attained_rate_is_that_rate():
    """Constant arrivals at 5 r/s, all within SLO: goodput is 5 r/s however long the drain."""
    sc = hetsim.load_scenario(SCENARIOS / "quickstart.yaml")
    from dataclasses import replace
    w = build(WorkloadSpec, {"requests": 50, "arrival": {"process": "constant", "rate_rps": 5},
                             "input_tokens": {"dist": "fixed", "value": 512},
                             "output_tokens": {"dist": "fixed", "value": 400}})
    res = hetsim.run(replace(sc, workload=w))
    for s in res.summaries:
        assert s["slo_attainment"] == 1.0 and s["meets_slo"]
        assert s["goodput_rps"] == pytest.approx(5.0, rel=1e-9)
        assert s["throughput_rps"] < 5.0                 # the drain still counts there


def test_summarize_is_pure():
    from hetsim.api import prepare
    from hetsim.engine.sim import Simulation
    sc = hetsim.load_scenario(SCENARIOS / "quickstart.yaml")
    model, resolved, reqs = prepare(sc)
    pl = resolved["disagg-1p3d-h100"]
    res = Simulation(pl, model, reqs, seed=0).run()
    df = records_frame(res.requests, pl.name)
    timeline = [list(i.timeline) for insts in res.instances.values()
                for i in insts if hasattr(i, "timeline")]
    a, b = summarize(df, pl, sc.slo, res), summarize(df, pl, sc.slo, res)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert timeline == [list(i.timeline) for insts in res.instances.values()
                        for i in insts if hasattr(i, "timeline")]


def test_table_ranks_goodput_per_dollar_only_where_the_slo_is_met(tiny, capsys):
    tiny.write_text(TINY.replace("tpot_s: 0.1", "tpot_s: 0.0001"))
    assert main(["run", str(tiny), "-q"]) == 0
    out = capsys.readouterr().out
    assert "missed" in out and "no placement meets the SLO" in out
    row = next(line for line in out.splitlines() if line.startswith("one "))
    assert row.split()[-2] == "-"           # goodput/$h column, before the bottleneck


def test_arrival_window_counts_n_gaps():
    import pandas as pd
    from hetsim.metrics import arrival_window
    assert arrival_window(pd.Series(np.arange(11) * 0.2), 99.0) == pytest.approx(2.2)
    assert arrival_window(pd.Series([3.0]), 7.0) == 7.0


def test_the_metric_schema_that_validates_expect_matches_what_summarize_writes():
    from hetsim.check import flatten
    from hetsim.metrics import metric_error
    for f in ("quickstart.yaml", "design-space/prefix-cache.yaml",
              "design-space/kv-offload.yaml"):
        res = hetsim.run(SCENARIOS / f)
        for s in res.summaries:
            roles = {n: p.role for n, p in res.scenario.placements[s["name"]].pools.items()}
            for k, v in flatten(s).items():
                numeric = isinstance(v, (int, float, type(None))) and not isinstance(v, bool)
                assert (metric_error(k, roles) is None) == numeric, (f, k, v)
    assert "did you mean 'slo_attainment'" in metric_error("slo_atainment", {})
    assert "did you mean 'pool_utilization.m'" in metric_error("pool_utilization.n",
                                                                {"m": "mixed"})


def test_validate_rejects_a_check_plan_whose_bounds_cannot_apply(tiny, capsys):
    tiny.write_text(TINY + "expect:\n  slo_atainment: {min: 0.9}\n")
    assert main(["validate", str(tiny)]) == 2
    assert "expect.slo_atainment: unknown metric" in capsys.readouterr().err
    tiny.write_text(TINY + "expect:\n  kv_transfer_s.mean: {max: 1}\n")   # colocated: no KV
    assert main(["validate", str(tiny)]) == 0
    assert main(["check", str(tiny)]) == 2
    assert "has no value for placement 'one'" in capsys.readouterr().err


@pytest.mark.parametrize("text, where", [
    ("0,1,1\n\n\n1,3.5,1\n", "t.csv:5: input_tokens"),        # blank lines still count
    ("0,1,1,7\n", "t.csv:2: more fields than the header's 3"),  # would shift into the index
    ("0,1,1\n1,2,2,9\n", "line 3"),
])
def test_trace_errors_name_the_files_own_line(tmp_path, text, where):
    (tmp_path / "t.csv").write_text("timestamp_s,input_tokens,output_tokens\n" + text)
    with pytest.raises(ConfigError, match=where):
        generate(build(WorkloadSpec, {"trace": "t.csv"}), tmp_path)


def test_calibration_csv_errors_name_the_files_own_line(tmp_path):
    from hetsim.calibrate.csvio import read_csv
    (tmp_path / "m.csv").write_text("op, precision ,m,n,k,seconds\ngemm,bf16,1,2,3,0.1\n\n"
                                    "gemm,bf16,1,2,3,-1\n")
    with pytest.raises(ConfigError, match=r"m.csv:4: seconds: must be > 0"):
        read_csv(tmp_path / "m.csv")


@pytest.mark.parametrize("change, where, words", [
    ({"arrival": {"process": "poisson", "rate_rps": 5, "cv": 3}}, "cv",
     "does not apply to poisson arrivals"),
    ({"arrival": {"process": "closed", "concurrency": 4, "rate_rps": 5}}, "rate_rps",
     "does not apply to closed arrivals"),
    ({"arrival": {"trace": "t.csv", "rate_rps": 5}}, "rate_rps", "a trace sets the arrivals"),
    ({"input_tokens": {"dist": "fixed", "value": 5, "mean": 9}}, "mean",
     "does not apply to fixed lengths"),
    ({"input_tokens": {"preset": "azure-conv-2023", "dist": "uniform"}}, "dist",
     "a preset fills the distribution"),
])
def test_a_field_the_workload_would_ignore_is_an_error(change, where, words):
    with pytest.raises(ConfigError, match=words) as e:
        spec(**change)
    assert e.value.path.endswith(where)


@pytest.mark.parametrize("override, key, words", [
    ({"max_position_embeddings": 0}, "max_position_embeddings", "whole number >= 1"),
    ({"tie_word_embeddings": "false"}, "tie_word_embeddings", "true or false"),
    ({"hidden_size": 4100}, "num_attention_heads", "not a multiple of 32 heads"),
    ({"num_key_value_heads": 5}, "num_key_value_heads", "not a multiple"),
])
def test_hf_config_errors_name_the_json_key(tmp_path, override, key, words):
    from hetsim.models import from_hf_config
    cfg = {"model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32,
           "num_hidden_layers": 2, "intermediate_size": 8192, "vocab_size": 1000,
           **override}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=words) as e:
        from_hf_config(tmp_path / "config.json")
    assert e.value.path == key and e.value.file.endswith("config.json")


def test_a_reader_that_leaves_early_is_not_a_crash():
    """`hetsim run s.yaml | head`: the pipe closes before the table is printed; hetsim stops
    quietly with the shell's SIGPIPE status, no traceback, no "internal error"."""
    import subprocess
    import sys
    from hetsim.cli import EXIT_PIPE
    done = subprocess.run(f"{sys.executable} -m hetsim run {SCENARIOS / 'quickstart.yaml'} -q "
                          f"| head -c 0; exit ${{PIPESTATUS[0]}}", shell=True,
                          executable="/bin/bash", capture_output=True, text=True, timeout=300)
    assert done.returncode == EXIT_PIPE and done.stderr == ""


def test_the_memory_check_counts_the_transfer_log_of_stepwise_placements(tmp_path, monkeypatch):
    """A stepwise placement keeps a TransferRecord per transfer (13 Python numbers in a
    namedtuple) to the end: the estimate adds at least their size, so a run that fits only
    without them is refused."""
    import dataclasses
    import sys

    from hetsim import api
    from hetsim.engine.kvsteps import TransferRecord
    rec = TransferRecord(10**6, 3, *[1.5e9] * 2, 10**4, *[0.25] * 8)
    deep = sys.getsizeof(rec) + sum(sys.getsizeof(x) for x in rec)
    assert memory_estimate(1000, 1, stepwise=1) - memory_estimate(1000, 1) >= 1000 * deep
    sc = hetsim.load_scenario(SCENARIOS / "design-space/kv-serialization.yaml")
    n, names = 10_000, ["25g-int4-batch"]
    have = (memory_estimate(n, 1) + memory_estimate(n, 1, stepwise=1)) / 2
    monkeypatch.setattr(api, "_available_memory", lambda: have)
    with pytest.raises(ConfigError, match="GB of memory"):
        api.prepare(dataclasses.replace(sc, workload=dataclasses.replace(sc.workload,
                                                                         requests=n)), names)
    plain = hetsim.load_scenario(SCENARIOS / "quickstart.yaml")   # one stream per transfer
    api.prepare(dataclasses.replace(plain, workload=dataclasses.replace(plain.workload,
                                                                        requests=n)),
                ["disagg-1p3d-h100"])     # fits
