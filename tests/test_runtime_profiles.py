"""Runtime profiles from aiconfigurator-core's kernel tables: the builder (synthetic tables laid
out as the package lays them out), ``calibrate --from-aiconfigurator``, ``load_accelerator(...,
runtime=)``, a pool's ``runtime:`` key, and one shipped profile rebuilt byte for byte."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hetsim
from hetsim import kerneldb
from hetsim.calibrate import aic, aic_grids
from hetsim.cli import main
from hetsim.errors import ConfigError
from hetsim.perf.kernels import load_kernels

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "hardware_profiles" / "runtimes"


def _table(root, family, stem, version="0.24.0", **cols):
    d = root / "data" / "h100_sxm" / family / "vllm" / version
    d.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(cols).to_parquet(d / f"{stem}.parquet")


def _grid(**axes):
    """Every combination of the axes' values, as columns."""
    mesh = np.meshgrid(*axes.values(), indexing="ij")
    return {k: m.ravel() for k, m in zip(axes, mesh)}


def tables(root, scale_held: float = 1.0, scale_kept: float = 1.0):
    """A small h100_sxm/vllm data folder. Latencies (ms) grow smoothly with the shape;
    ``scale_held`` / ``scale_kept`` multiply the rows a 30% split holds out / keeps."""
    def lat(df, op, ms):
        df = pd.DataFrame(df)        # split as read_op reads it: in hetsim's dtype names
        for col in df.columns[df.columns.str.endswith("dtype")]:
            df[col] = df[col].map(kerneldb.DTYPES)
        held = kerneldb.held_out(df, op, 0.3)
        return np.where(held, ms * scale_held, ms * scale_kept)

    g = _grid(m=[1, 2, 4, 8, 16, 32], n=[64, 128, 256], k=[64, 128, 512])
    g["gemm_dtype"] = np.array(["bfloat16"] * len(g["m"]))
    g["latency"] = lat(g, "gemm", 0.004 + g["m"] * g["n"] * g["k"] * 1e-9)
    _table(root, "gemm", "gemm_perf", **g)
    c = _grid(batch_size=[1, 2, 4, 8], isl=[16, 64, 256, 1024], step=[0, 32])
    n = len(c["isl"])
    c.update(attn_dtype=["bfloat16"] * n, kv_cache_dtype=["bfloat16"] * n, num_heads=[32] * n,
             num_key_value_heads=[8] * n, head_dim=[128] * n, window_size=[0] * n,
             beam_width=[1] * n)
    c["latency"] = lat(c, "context_attention", 0.01 + c["batch_size"] * c["isl"] ** 2 * 1e-7)
    _table(root, "attention", "context_attention_perf", **c)
    e = _grid(batch_size=[1, 4, 16, 64], step=[1, 100, 1000, 10000])
    n = len(e["step"])
    e.update(isl=[1] * n, attn_dtype=["bfloat16"] * n, kv_cache_dtype=["fp8"] * n,
             num_heads=[32] * n, num_key_value_heads=[8] * n, head_dim=[128] * n,
             window_size=[0] * n, beam_width=[1] * n)
    e["latency"] = lat(e, "generation_attention", 0.008 + e["batch_size"] * e["step"] * 1e-7)
    _table(root, "attention", "generation_attention_perf", **e)
    a = _grid(num_gpus=[2, 4], message_size=[1024, 65536, 1 << 22], backend=["g", "e"])
    n = len(a["num_gpus"])
    a["backend"] = np.where(a["backend"] == "g", "vllm_graph", "vllm_eager")
    a["allreduce_dtype"] = ["bfloat16"] * n
    a["latency"] = lat(a, "allreduce", 0.005 + a["message_size"] * 1e-8
                       + (a["backend"] == "vllm_eager") * 0.01)
    _table(root, "comm", "custom_allreduce_perf", **a)
    # per-rank heads 16 timed as a shard of two models (tp 4 and tp 8): one kernel shape
    mla = _grid(batch_size=[1, 4], isl=[128, 1024], pair=[0, 1, 2])
    n = len(mla["isl"])
    mla.update(num_heads=np.array([128, 16, 16])[mla["pair"]],
               tp_size=np.array([1, 8, 4])[mla["pair"]], mla_dtype=["bfloat16"] * n,
               kv_cache_dtype=["bfloat16"] * n, step=[0] * n)
    mla["latency"] = (0.01 + mla["batch_size"] * mla["isl"] * mla["num_heads"] * 1e-7
                      + (mla["tp_size"] == 4) * 0.001)
    del mla["pair"]
    _table(root, "mla", "context_mla_perf", **mla)
    q = _grid(m=[1, 16, 256, 4096], k=[1024, 4096])
    n = len(q["m"])
    q["quant_dtype"] = ["fp8"] * n
    _table(root, "quantize", "computescale_perf", **q,
           latency=lat(q, "compute_scale", 0.001 + q["m"] * 1e-7))
    _table(root, "quantize", "scale_matrix_perf", **q,
           latency=lat(q, "scale_matrix", 0.002 + q["m"] * q["k"] * 1e-10))
    (root / "query_versions.yaml").write_text("defaults:\n  vllm: {current: '0.24.0'}\n")
    return root


@pytest.fixture
def root(tmp_path):
    return tables(tmp_path / "aic")


def _tables_of(root):
    return kerneldb.select("h100_sxm", "vllm", root=root)


# --- the builder ---------------------------------------------------------------------------
def test_kerneldb_finds_mla_and_quantize_tables(root):
    t = _tables_of(root)
    assert {"context_mla", "compute_scale", "scale_matrix"} <= set(t.tables)
    df = kerneldb.read_op(t, "context_mla")
    assert set(df.mla_dtype) == {"bf16"} and len(df) == 12


def test_grids_reproduce_every_training_point(root):
    t = _tables_of(root)
    for op in ("gemm", "context_attention", "generation_attention", "allreduce", "context_mla",
               "quantize"):
        grids, test = aic.held_out_fit(t, op, 0.0)
        assert len(test) == 0
        every, _, _, _ = aic._op_points(t, op, 0.0, 0)
        by = {g.key: g for g in grids}
        keys, axes = aic.OPS[op]
        for r in every.itertuples(index=False):
            row = r._asdict()
            g = by[tuple(row[k] for k in keys)]
            got = g.grid(tuple(row[a] for a in axes))
            assert got == pytest.approx(row["seconds"], rel=1e-6), (op, row)


def test_shipped_grids_are_rounded_only_to_the_stated_bits(root):
    p = aic.build("h100_sxm", "vllm", root=root, held_out=0.0)
    g = p.kernels.grids("gemm")[0]
    exact, _ = aic.fit_grids("gemm", aic._op_points(_tables_of(root), "gemm", 0.0, 0)[0])
    ratio = g.seconds / exact[0].seconds
    assert np.all(np.abs(ratio - 1) <= 2.0 ** -aic_grids.TIME_BITS)
    assert not np.array_equal(g.seconds, exact[0].seconds)     # rounding did happen


def test_held_out_rows_never_reach_the_fit(tmp_path):
    base = _tables_of(tables(tmp_path / "a"))
    held = _tables_of(tables(tmp_path / "b", scale_held=3.0))
    kept = _tables_of(tables(tmp_path / "c", scale_kept=3.0))
    for op in ("gemm", "context_attention", "generation_attention", "quantize"):
        g0, t0 = aic.held_out_fit(base, op, 0.3)
        g1, t1 = aic.held_out_fit(held, op, 0.3)
        g2, _ = aic.held_out_fit(kept, op, 0.3)
        assert len(t0) and len(t0) == len(t1)
        assert [g.key for g in g0] == [g.key for g in g1]
        for a, b in zip(g0, g1):      # held-out latencies changed: the fit did not
            assert np.array_equal(a.seconds, b.seconds) and all(
                np.array_equal(x, y) for x, y in zip(a.axes, b.axes))
        # the rows kept do reach it (so the comparison above could have failed)
        assert any(not np.array_equal(a.seconds, b.seconds) for a, b in zip(g0, g2))
        # every cell a kept row measured is marked measured, and no other
        _, train, _, _ = aic._op_points(base, op, 0.3, 0)
        marked = sum(g.seconds.size if g.measured is None else int(g.measured.sum())
                     for g in g0)
        assert marked == len(train) and any(g.measured is not None for g in g0)


def test_accuracy_scores_the_held_out_rows(tmp_path):
    a = aic.build("h100_sxm", "vllm", root=tables(tmp_path / "a"), held_out=0.3)
    b = aic.build("h100_sxm", "vllm", root=tables(tmp_path / "b", scale_held=2.0), held_out=0.3)
    for op in ("gemm", "context_attention"):
        acc_a = a.profile["calibration"]["accuracy"][op]
        acc_b = b.profile["calibration"]["accuracy"][op]
        assert acc_a["n"] == acc_b["n"] > 0
        assert acc_a["after_median"] < 0.1
        # measured doubled, prediction unchanged: |p/m - 1| is 0.5 give or take the fit's error
        assert abs(acc_b["after_median"] - 0.5) < 0.1
    assert "before_median" in a.profile["calibration"]["accuracy"]["gemm"]   # datasheet model
    assert "before_median" not in a.profile["calibration"]["accuracy"]["quantize"]


def test_every_row_is_accounted_for(root):
    p = aic.build("h100_sxm", "vllm", root=root)
    tabs = p.profile["calibration"]["tables"]
    ctx = tabs["context_attention"]
    assert ctx["rows read"] == 32 and ctx["points"] == 16
    assert ctx["dropped"] == {"context after a cached prefix (step > 0)": 16}
    assert tabs["allreduce"]["dropped"] == {
        "eager all-reduce (a graph row of the shape exists)": 6}
    mla = tabs["context_mla"]
    assert mla["points"] == 8 and mla["dropped"] == {"merged: same point, slower kernel": 4}
    assert tabs["quantize"]["rows read"] == 16 and tabs["quantize"]["points"] == 8
    for op, v in tabs.items():
        assert v["version"] == "0.24.0" and v["grids dropped"] == 0, op
    # the keys are perf.kernels.OPS' fields, in hetsim's dtype names and per-rank heads
    assert {g.key for g in p.kernels.grids("context_mla")} == {("bf16", "bf16", 16),
                                                               ("bf16", "bf16", 128)}
    assert p.kernels.get("generation_attention", ("bf16", "fp8", 32, 8, 128, 0)) is not None
    assert p.kernels.grids("generation_attention")[0].axes[1].tolist() == [2, 101, 1001, 10001]
    q = p.kernels.get("quantize", ("fp8",))
    assert q.grid((16, 1024)) == pytest.approx((0.001 + 16e-7 + 0.002 + 16 * 1024e-10) / 1e3,
                                               rel=3e-4)
    ar = p.kernels.get("allreduce", ("bf16", 2))
    assert ar.axes[0].tolist() == [2048, 131072, 1 << 23]          # elements x 2 bytes


def test_build_is_deterministic_and_dated_by_the_package(root, tmp_path):
    a, b = (aic.build("h100_sxm", "vllm", root=root) for _ in range(2))
    assert aic.profile_text(a) == aic.profile_text(b)
    a.kernels.save(tmp_path / "a.npz")
    b.kernels.save(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    cal = a.profile["calibration"]
    assert cal["date"] == f"aiconfigurator-core {aic.package_version()}"
    assert a.profile["sources"][-1]["key"] == "AIC"
    assert "h100_sxm/gemm/vllm/0.24.0/gemm_perf.parquet" in a.profile["sources"][-1]["note"]


# --- the CLI -------------------------------------------------------------------------------
@pytest.fixture
def cli_root(root, monkeypatch):
    monkeypatch.setattr(kerneldb, "data_root", lambda: root)
    return root


def _cli(*args):
    return main(["calibrate", *map(str, args)])


def test_cli_writes_a_loadable_runtime_profile(cli_root, tmp_path, capsys):
    out = tmp_path / "profiles" / "runtimes" / "h100-sxm.vllm.yaml"
    assert _cli("--from-aiconfigurator", "h100-sxm", "--runtime", "vllm", "--out", out) == 0
    assert out.with_suffix(".npz").exists()
    assert "grid MdAPE" in capsys.readouterr().out
    acc = hetsim.load_accelerator("H100", [tmp_path / "profiles"], runtime="VLLM")
    assert acc.runtime == "vllm" and acc.name == "h100-sxm"
    assert Path(acc.calibration.kernels) == out.with_suffix(".npz")
    assert len(load_kernels(acc.calibration.kernels)) > 0
    assert hetsim.PerfModel(acc).kernels is not None


def test_cli_refuses_to_overwrite_without_force(cli_root, tmp_path, capsys):
    out = tmp_path / "p.yaml"
    out.write_text("mine\n")
    assert _cli("--from-aiconfigurator", "h100_sxm", "--runtime", "vllm", "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and "--force" in err
    assert out.read_text() == "mine\n" and not out.with_suffix(".npz").exists()
    out.unlink()
    out.with_suffix(".npz").write_bytes(b"x")
    assert _cli("--from-aiconfigurator", "h100_sxm", "--runtime", "vllm", "--out", out) == 2
    assert not out.exists()
    assert _cli("--from-aiconfigurator", "h100_sxm", "--runtime", "vllm", "--out", out,
                "--force") == 0
    assert out.read_text().startswith("# Built by")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no temp left


@pytest.mark.parametrize("args, words", [
    (("h999", "--runtime", "vllm"), "unknown aiconfigurator system 'h999'"),
    (("h100_sxm", "--runtime", "sglang"), "unknown runtime for h100_sxm 'sglang'; one of vllm"),
    (("h100_sxm", "--runtime", "vllm", "--version", "9"), "has 0.24.0"),
    (("h100_sxm",), "needs --runtime"),
    (("h100_sxm", "--runtime", "vllm", "--held-out", "1.5"), "--held-out: must be in [0, 1)"),
    (("h100_sxm", "--runtime", "vllm", "--device", "cpu"), "--device: does not apply"),
])
def test_cli_bad_names_are_one_line_exit_2(cli_root, tmp_path, capsys, args, words):
    assert _cli("--from-aiconfigurator", *args, "--out", tmp_path / "p.yaml") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == [cli_root]


def test_cli_without_the_package_names_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(kerneldb.importlib.util, "find_spec", lambda name: None)
    assert _cli("--from-aiconfigurator", "h100_sxm", "--runtime", "vllm", "--out",
                tmp_path / "p.yaml") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'hetsim[aic]'" in err


def test_runtime_flags_apply_to_from_aiconfigurator_only(tmp_path, capsys):
    assert _cli("--from-csv", tmp_path / "m.csv", "--runtime", "vllm", "--out",
                tmp_path / "p.yaml") == 2
    assert "--runtime: applies to --from-aiconfigurator only" in capsys.readouterr().err


# --- loading and scenarios -----------------------------------------------------------------
def test_load_accelerator_runtime_errors():
    with pytest.raises(ConfigError, match=r"unknown runtime for h100-sxm 'tgi'.*one of sglang, "
                                          r"trtllm, vllm"):
        hetsim.load_accelerator("h100-sxm", runtime="tgi")
    with pytest.raises(ConfigError, match="without @datasheet"):
        hetsim.load_accelerator("h100-sxm@datasheet", runtime="vllm")
    with pytest.raises(ConfigError, match="mi300x has no runtime profiles"):
        hetsim.load_accelerator("mi300x", runtime="vllm")
    with pytest.raises(ConfigError, match="unknown accelerator"):
        hetsim.load_accelerator("h999", runtime="vllm")
    assert hetsim.load_accelerator("h100-sxm").runtime == ""       # unchanged without one


def test_every_system_runtime_is_shipped():
    cat = kerneldb.catalog()
    want = {(kerneldb.SYSTEMS[s], r) for s, r in zip(cat.system, cat.runtime)}
    assert len(want) == 28
    have = hetsim.hardware.list_runtimes()
    assert {(n, r) for n, rs in have.items() for r in rs} == want
    for n, r in sorted(want):
        acc = hetsim.load_accelerator(n, runtime=r)
        assert acc.runtime == r and Path(acc.calibration.kernels).is_file()


SCENARIO = """
name: rt
model: llama-3.1-8b
workload:
  requests: 10
  arrival: {{process: poisson, rate_rps: 1.0}}
  input_tokens: {{dist: fixed, value: 128}}
  output_tokens: {{dist: fixed, value: 8}}
slo: {{ttft_s: 1, tpot_s: 0.1}}
placements:
  one:
    pools:
      decode: {{role: mixed, accelerator: {acc}{extra}}}
"""


def _scenario(tmp_path, acc="h100-sxm", extra=""):
    f = tmp_path / "s.yaml"
    f.write_text(SCENARIO.format(acc=acc, extra=extra))
    return f


def _pool_accelerator(path):
    from hetsim.resolve import resolve_scenario
    from hetsim.scenario import read_scenario
    _, placements = resolve_scenario(read_scenario(path))
    return placements["one"].pools["decode"].accelerator


def test_pool_runtime_loads_the_runtime_profile(tmp_path):
    from hetsim.scenario import read_scenario
    with_rt = _scenario(tmp_path, extra=", runtime: sglang")
    assert _pool_accelerator(with_rt).runtime == "sglang"
    assert read_scenario(with_rt).to_dict()["placements"]["one"]["pools"]["decode"][
        "runtime"] == "sglang"
    plain = _scenario(tmp_path)
    assert _pool_accelerator(plain).runtime == ""
    # unset, it is not written back either (scenario.resolved.yaml as before the key)
    assert "runtime" not in read_scenario(plain).to_dict()["placements"]["one"]["pools"][
        "decode"]


@pytest.mark.parametrize("acc, extra, words", [
    ("h100-sxm", ", runtime: tgi", "placements.one.pools.decode.runtime:"),
    ("h100-sxm", ", runtime: ' '", "placements.one.pools.decode.runtime: must name a runtime"),
    ("mi300x", ", runtime: vllm", "placements.one.pools.decode.runtime: mi300x has no runtime"),
])
def test_pool_runtime_errors_name_the_key(tmp_path, acc, extra, words):
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")) as e:
        hetsim.load_scenario(_scenario(tmp_path, acc, extra))
    assert "\n" not in str(e.value)


def test_gdn_points_sum_the_convolution_and_the_recurrence(root):
    """A gdn_perf table (context: convolution + chunked scan over batch x seq_len; generation:
    convolution update + recurrence over batch) becomes one grid per phase and per-rank shape,
    each point the sum of its two kernels (the faster of two recurrence kernels), the phases
    apart; a point with one kernel only is counted, not built."""
    ctx = _grid(batch_size=[1, 4], seq_len=[16, 256], kernel=[0, 1])
    gen = _grid(batch_size=[1, 8, 64], kernel=[0, 1, 2])
    n, m = len(ctx["seq_len"]), len(gen["batch_size"])
    heads = dict(num_k_heads=2, head_k_dim=128, num_v_heads=8, head_v_dim=128, d_conv=4)
    cols = {k: np.concatenate([np.full(n, v), np.full(m, v)]) for k, v in heads.items()}
    cols.update(
        phase=np.array(["context"] * n + ["generation"] * m),
        kernel_source=np.concatenate([
            np.array(["causal_conv1d_fn", "chunk_gated_delta_rule"])[ctx["kernel"]],
            np.array(["causal_conv1d_update", "recurrent_a", "recurrent_b"])[gen["kernel"]]]),
        batch_size=np.concatenate([ctx["batch_size"], gen["batch_size"]]),
        seq_len=np.concatenate([ctx["seq_len"], np.ones(m, int)]),
        latency=np.concatenate([
            0.001 * (1 + ctx["kernel"]) * ctx["batch_size"] * ctx["seq_len"],
            0.002 * gen["batch_size"] * np.array([1.0, 3.0, 2.0])[gen["kernel"]]]))
    keep = ~((cols["phase"] == "generation") & (cols["batch_size"] == 64)
             & (cols["kernel_source"] != "causal_conv1d_update"))
    _table(root, "linear_attention", "gdn_perf", **{k: np.asarray(v)[keep]
                                                    for k, v in cols.items()})
    p = aic.build("h100_sxm", "vllm", root=root, held_out=0.0)
    key = (2, 128, 8, 128, 4)
    c, g = p.kernels.get("context_gdn", key), p.kernels.get("generation_gdn", key)
    assert c.axes[0].tolist() == [1, 4] and c.axes[1].tolist() == [16, 256]
    assert c.grid((4, 256)) == pytest.approx(0.003 * 4 * 256 / 1e3, rel=3e-4)   # 1 + 2 parts
    assert g.axes[0].tolist() == [1, 8]          # batch 64 has its convolution only
    assert g.grid((8,)) == pytest.approx((0.002 + 0.004) * 8 / 1e3, rel=3e-4)  # conv + faster
    tabs = p.profile["calibration"]["tables"]
    assert tabs["generation_gdn"]["dropped"]["GDN point with one of its two kernels only"] == 1
    assert tabs["context_gdn"]["points"] == 4 and tabs["generation_gdn"]["points"] == 2


# --- the shipped profiles ------------------------------------------------------------------
def test_a_shipped_profile_rebuilds_byte_for_byte(tmp_path):
    """The smallest shipped profile, rebuilt from the installed package by the CLI with torch
    unimportable, is the committed YAML and .npz exactly."""
    name = "a100-sxm.vllm"
    out = tmp_path / f"{name}.yaml"
    code = ("import sys; sys.modules['torch'] = None\n"
            "from hetsim.cli import main\n"
            f"sys.exit(main(['calibrate', '--from-aiconfigurator', 'a100_sxm', '--runtime', "
            f"'vllm', '--out', {str(out)!r}]))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == (SHIPPED / f"{name}.yaml").read_bytes()
    assert out.with_suffix(".npz").read_bytes() == (SHIPPED / f"{name}.npz").read_bytes()


def test_vllm_borrows_sglang_s_mxfp8_moe_grids_for_the_layers_it_lacks(root):
    """vLLM's MXFP8-activation MXFP4 experts are FlashInfer's kernel, which aiconfigurator
    times under SGLang (aic.BORROWED_MOE): a vLLM profile reads SGLang's grid of that format
    for a layer its own table lacks, exactly as fitted, keeps its own where it has one, and
    names the lent table; nothing else is borrowed."""
    def moe(runtime, rows, version):
        g = _grid(num_tokens=[1, 8, 64, 512], layer=list(range(len(rows))))
        layer = g.pop("layer")
        dtype, hidden = (np.array(v)[layer] for v in zip(*rows))
        n = len(hidden)
        d = root / "data" / "h100_sxm" / "moe" / runtime / version
        d.mkdir(parents=True, exist_ok=True)
        scale = {"sglang": 2.0, "vllm": 1.0}[runtime]
        pd.DataFrame(dict(g, moe_dtype=dtype, hidden_size=hidden, inter_size=hidden,
                          topk=[4] * n, num_experts=[128] * n, moe_tp_size=[1] * n,
                          moe_ep_size=[1] * n, distribution=["balanced"] * n,
                          latency=scale * (0.01 + g["num_tokens"] * hidden * 1e-8))
                     ).to_parquet(d / "moe_perf.parquet")
    moe("vllm", [("w4a16_mxfp4", 2880), ("w4a8_mxfp4_mxfp8", 4096)], "0.24.0")
    moe("sglang", [("w4a8_mxfp4_mxfp8", 2880), ("w4a8_mxfp4_mxfp8", 4096),
                   ("w4a16_mxfp4", 1024)], "0.5.14")
    (root / "query_versions.yaml").write_text(
        "defaults:\n  vllm: {current: '0.24.0'}\n  sglang: {current: '0.5.14'}\n")
    p = aic.build("h100_sxm", "vllm", root=root)
    grids = {g.key[:2]: g for g in p.kernels.grids("moe")}
    assert set(grids) == {("w4a16-mxfp4", 2880), ("w4a8-mxfp4", 4096), ("w4a8-mxfp4", 2880)}
    # vLLM's own mxfp8 layer is its own (1x), the lent one SGLang's (2x), every point
    own = grids["w4a8-mxfp4", 4096]
    assert np.allclose(own.seconds, (0.01 + own.axes[0] * 4096 * 1e-8) * 1e-3, rtol=1e-3)
    assert np.allclose(grids["w4a8-mxfp4", 2880].seconds,
                       2 * (0.01 + grids["w4a8-mxfp4", 2880].axes[0] * 2880 * 1e-8) * 1e-3,
                       rtol=1e-3)
    lent = p.profile["calibration"]["tables"]["moe"]["borrowed"]
    assert lent == {"w4a8-mxfp4": {"table": "h100_sxm/moe/sglang/0.5.14/moe_perf.parquet",
                                   "grids": 1}}
    assert "moe/sglang/0.5.14" in p.profile["sources"][-1]["note"]
    assert "borrowed" not in aic.build("h100_sxm", "sglang", root=root).profile[
        "calibration"]["tables"]["moe"]


def test_half_of_a_quantize_pair_is_reported_not_built(root):
    (root / "data/h100_sxm/quantize/vllm/0.24.0/scale_matrix_perf.parquet").unlink()
    p = aic.build("h100_sxm", "vllm", root=root)
    assert p.profile["calibration"]["tables"]["quantize"] == {
        "tables": ["computescale_perf.parquet"],
        "not built": "needs compute_scale and scale_matrix"}
    assert p.kernels.grids("quantize") == [] and "quantize" not in \
        p.profile["calibration"]["accuracy"]


def test_compute_scale_grid_is_the_table_unless_it_is_zero_at_most_shapes(root):
    """The activation-scale computation a static-scale fp8 GEMM saves is the runtime's
    ``computescale`` table; a table that is 0 at most shapes (SGLang's: its quantize kernel
    finds the scale) gives no grid, its stray non-zero rows counted, not taken off GEMMs."""
    p = aic.build("h100_sxm", "vllm", root=root)
    (g,) = p.kernels.grids("compute_scale")
    assert g.key == ("fp8",) and g.seconds.min() > 0
    q = _grid(m=[1, 16, 256, 4096], k=[1024, 4096])
    n = len(q["m"])
    _table(root, "quantize", "computescale_perf", quant_dtype=["fp8"] * n, **q,
           latency=np.where(np.arange(n) < 2, 0.003, 0.0))
    p = aic.build("h100_sxm", "vllm", root=root)
    assert p.kernels.grids("compute_scale") == []
    assert p.profile["calibration"]["tables"]["compute_scale"]["dropped"] == {
        "table 0 at most shapes (the scale is found inside the quantize kernel)": n}


def test_a_profile_whose_grids_are_missing_or_corrupt_is_refused(tmp_path, capsys):
    import shutil
    shipped = Path(hetsim.__file__).resolve().parents[1] / "hardware_profiles" / "runtimes"
    d = tmp_path / "runtimes"
    d.mkdir()
    shutil.copy(shipped / "l40s.vllm.yaml", d)
    with pytest.raises(ConfigError, match=r"l40s\.vllm\.yaml: calibration\.kernels: .*not found"):
        hetsim.load_accelerator("l40s", [tmp_path], runtime="vllm")
    (d / "l40s.vllm.npz").write_bytes((shipped / "l40s.vllm.npz").read_bytes()[:5000])
    from hetsim.perf import PerfModel
    with pytest.raises(ConfigError, match="l40s.vllm.npz: unreadable kernel grids"):
        PerfModel(hetsim.load_accelerator("l40s", [tmp_path], runtime="vllm"))


@pytest.mark.parametrize("name", sorted(hetsim.hardware.list_runtimes()))
def test_shipped_decode_attention_grows_with_kv_past_the_measured_lengths(name):
    """A ragged decode table's far corner (large batch x long KV, never timed) is filled in the
    ratio to the model, so reading twice the KV takes about twice as long there; filled by the
    nearest measurement (the first builds) it stayed flat."""
    from hetsim.models import load_model
    from hetsim.perf import PerfModel, StepModel
    model = load_model("qwen3-32b")
    for runtime in hetsim.hardware.list_runtimes()[name]:
        step = StepModel(model, PerfModel(hetsim.load_accelerator(name, runtime=runtime)), tp=1)
        for batch in (64, 512):
            t = [step.decode_attention_time(batch, batch * ctx) for ctx in (16384, 32768, 65536)]
            assert t[1] >= 1.6 * t[0] and t[2] >= 1.6 * t[1], (name, runtime, batch, t)


# --- host-bound block-fp8 GEMM tables ---------------------------------------------------------
def _gemm_rows(block_factor: float) -> pd.DataFrame:
    """Per-tensor and block fp8 rows of the same shapes, the block ones ``block_factor`` times
    slower (the form read_op gives: hetsim dtype names, seconds)."""
    rows = []
    for m in (1, 8, 64, 1024):
        for n, k in ((4096, 4096), (8192, 2048)):
            t = 1e-5 * (1 + m / 256)
            rows += [("fp8", m, n, k, t), ("fp8-block", m, n, k, t * block_factor)]
    return pd.DataFrame(rows, columns=["gemm_dtype", "m", "n", "k", "latency_s"])


@pytest.mark.parametrize("factor, dropped", [(1.05, False), (2.9, False), (3.1, True), (20, True)])
def test_block_fp8_rows_far_above_per_tensor_fp8_are_host_bound(factor, dropped):
    df = _gemm_rows(factor)
    kept, ratio = aic._host_bound_block_fp8(df)
    assert ratio == pytest.approx(factor)
    assert (set(kept["gemm_dtype"]) == {"fp8"}) is dropped
    assert len(kept) == (len(df) // 2 if dropped else len(df))


def test_block_fp8_rule_needs_both_formats():
    df = _gemm_rows(10)
    only_block = df[df["gemm_dtype"] == "fp8-block"]
    kept, ratio = aic._host_bound_block_fp8(only_block)
    assert np.isnan(ratio) and kept.equals(only_block)


@pytest.mark.parametrize("name", sorted(p.stem for p in SHIPPED.glob("*.yaml")))
def test_shipped_profiles_drop_block_fp8_exactly_where_host_bound(name):
    """aiconfigurator-core 0.12.0's vLLM block-fp8 GEMM tables are host-bound on every system
    that has both formats; no SGLang or TRT-LLM table is (their block kernels run at 0.56-1.05x
    per-tensor fp8): the shipped profiles record the drop, and read fp8 for fp8-block weights."""
    from hetsim.config import read_yaml
    gemm = read_yaml(SHIPPED / f"{name}.yaml")["calibration"]["tables"]["gemm"]
    has = "host-bound block-fp8 rows (HOST_BOUND_RATIO)" in gemm.get("dropped", {})
    assert has == ("block-fp8 small-m / fp8" in gemm)
    if has:
        assert name.endswith(".vllm") and gemm["block-fp8 small-m / fp8"] > aic.HOST_BOUND_RATIO
    if name in ("b200.vllm", "h100-sxm.vllm", "gb200.vllm"):
        assert has


# --- MLA from the whole attention module (vLLM) --------------------------------------------
def _installed_tables(system, runtime):
    return kerneldb.select(system, runtime)


@pytest.mark.parametrize("system, name", [("h100_sxm", "h100-sxm"), ("h200_sxm", "h200-sxm"),
                                          ("b200_sxm", "b200"), ("gb200", "gb200")])
def test_module_less_its_projections_reproduces_the_measured_core(system, name):
    """TRT-LLM has both the whole-module and the core MLA tables: the module less its projection
    GEMMs (read off the same profile's GEMM grids) is the measured core in decode (median
    within 6% where the core takes >= 50 us; below that the module's two norms, a few us, stay
    in), and in context at most 1.5x it, never below (the module's memory-bound RoPE, K/V
    concatenation and cache write are not in the core kernel)."""
    from hetsim.perf import PerfModel
    t = _installed_tables(system, "trtllm")
    pm = PerfModel(hetsim.load_accelerator(name + "@datasheet"))
    gemm = aic._module_gemm(t, pm)
    for op, axis in (("generation_mla", "kv"), ("context_mla", "isl")):
        derived, _ = aic._mla_module(op, kerneldb.read_op(t, aic.MLA_MODULE[op]), gemm, pm)
        core, _ = aic._points(op, kerneldb.read_op(t, op))
        if op == "generation_mla":   # module step s holds s + 1 tokens, the core's step s - 1 s
            derived = derived.assign(kv=derived["kv"] - 1)
        m = derived.merge(core, on=["dtype", "kv_dtype", "heads", "batch", axis])
        m = m[m["seconds_y"] >= 50e-6]
        ratio = float((m["seconds_x"] / m["seconds_y"]).median())
        assert len(m) > 100
        if op == "generation_mla":
            assert abs(ratio - 1) < 0.06, ratio
        else:
            assert 1.0 <= ratio <= 1.5, ratio


@pytest.mark.parametrize("name", sorted(p.stem for p in SHIPPED.glob("*.vllm.yaml")))
def test_vllm_mla_grids_exactly_where_the_module_table_is_not_eager_inflated(name):
    """vLLM has MLA only as a whole module: each shipped vLLM profile that has the module table
    derives its MLA grids from it, unless its small shapes sit above MLA_EAGER_RATIO x the
    datasheet model (collected before aiconfigurator@c56db49fe: in 0.12.0, every system but
    B200); then the reason is recorded and no grid is built."""
    from hetsim.config import read_yaml
    prof = read_yaml(SHIPPED / f"{name}.yaml")["calibration"]
    kernels = load_kernels(SHIPPED / prof["kernels"])
    for op in ("context_mla", "generation_mla"):
        info = prof["tables"].get(op)
        if info is None:
            continue
        built = bool(kernels.grids(op))
        assert built == ("not built" not in info)
        assert (info["small shapes / datasheet"] > aic.MLA_EAGER_RATIO) is not built
        if built:
            assert info["derived"].startswith("module time less")
            assert op in prof["accuracy"]
    if name == "b200.vllm":
        assert {"context_mla", "generation_mla"} <= set(kernels.ops())
    if name in ("h100-sxm.vllm", "h200-sxm.vllm"):
        assert "not built" in prof["tables"]["generation_mla"]


def test_an_eager_floor_on_every_module_row_is_refused(root):
    """The same module table with a 55 us batch-independent floor added (the eager norm/RoPE
    chain c56db49fe names) is refused; without it, it is read."""
    from hetsim.perf import PerfModel
    pm = PerfModel(hetsim.load_accelerator("h100-sxm@datasheet"))
    g = _grid(batch_size=[1, 2, 4, 8, 64], step=[16, 256, 1024, 8192], num_heads=[16, 128])
    n = len(g["step"])
    g.update(isl=[1] * n, mla_dtype=["bfloat16"] * n, kv_cache_dtype=["bfloat16"] * n,
             gemm_type=["bfloat16"] * n, model=["deepseek-ai/DeepSeek-V3"] * n)
    base = pd.DataFrame(g)
    base = base.assign(kv=base["isl"] + base["step"])
    proj = aic._mla_projections(base.rename(columns={"batch_size": "batch", "num_heads": "heads"}),
                                "generation_mla")
    gemm_ms = pd.Series([pm.gemm_time(int(r.m), int(r.n), int(r.k)) for r in proj.itertuples()]
                        ).groupby(proj["point"]).sum().to_numpy() * 1e3
    core_ms = np.array([pm.attention_decode_total_time(b, b * kv, h, 1, 288, "bf16", "bf16", 576)
                        for b, kv, h in zip(base["batch_size"], base["kv"], base["num_heads"])]
                       ) * 1e3
    gemm = aic.fit_grids("gemm", aic._points("gemm", pd.DataFrame({
        "gemm_dtype": "bf16", "m": proj["m"], "n": proj["n"], "k": proj["k"],
        "latency_s": [pm.gemm_time(int(r.m), int(r.n), int(r.k)) for r in proj.itertuples()]})
        )[0], pm)[0]
    for floor_ms, refused in ((0.0, False), (0.055, True)):
        df = base.drop(columns="kv").assign(latency_s=(gemm_ms + 2 * core_ms + floor_ms) / 1e3)
        df["mla_dtype"] = df["kv_cache_dtype"] = df["gemm_type"] = "bf16"
        points, _ = aic._mla_module("generation_mla", df, gemm, pm)
        ratio = aic._mla_eager_ratio("generation_mla", points, pm)
        assert (ratio > aic.MLA_EAGER_RATIO) is refused, ratio
