"""benchmarks/kernel_accuracy.py and kerneldb's held-out split, on small synthetic tables laid
out as aiconfigurator-core lays them out (never the download)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hetsim import kerneldb, load_accelerator
from hetsim.errors import ConfigError
from hetsim.perf import PerfModel

from .conftest import benchmark_module


@pytest.fixture(scope="module")
def ka():
    with benchmark_module("kernel_accuracy") as mod:
        yield mod


def _table(root, system, family, runtime, stem, **cols):
    d = root / "data" / system / family / runtime / "1.0"
    d.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(cols).to_parquet(d / f"{stem}.parquet")


def _gemm(n_shapes=40):
    m = np.arange(1, n_shapes + 1) * 64
    return dict(gemm_dtype=["bfloat16", "fp8"] * (n_shapes // 2), m=m, n=[4096] * n_shapes,
                k=[4096] * n_shapes, kernel_source=["torch"] * n_shapes,
                latency=np.linspace(0.01, 1.0, n_shapes))


@pytest.fixture
def root(tmp_path):
    for system in ("h100_sxm", "x900_sxm"):
        _table(tmp_path, system, "gemm", "vllm", "gemm_perf", **_gemm())
    att = dict(attn_dtype=["bfloat16"] * 4, kv_cache_dtype=["bfloat16", "fp8"] * 2,
               batch_size=[1, 2, 4, 8], isl=[1, 1, 1, 1], num_heads=[32] * 4,
               num_key_value_heads=[8] * 4, head_dim=[128] * 4, step=[127, 1023, 4095, 255],
               window_size=[0, 0, 0, 128], latency=[0.01, 0.02, 0.05, 0.01])
    _table(tmp_path, "h100_sxm", "attention", "vllm", "generation_attention_perf", **att)
    _table(tmp_path, "h100_sxm", "comm", "vllm", "custom_allreduce_perf",
           allreduce_dtype=["bfloat16"] * 4, num_gpus=[2, 2, 8, 8], message_size=[1024] * 4,
           kernel_source=["x_graph", "x_eager"] * 2, backend=["vllm_graph", "vllm_eager"] * 2,
           latency=[0.004, 0.02, 0.006, 0.03])
    return tmp_path


# --- the split ---------------------------------------------------------------------------
def _shapes():
    return pd.DataFrame({"gemm_dtype": ["bf16", "fp8"] * 500, "m": np.arange(1000),
                         "n": 4096, "k": 1024, "latency_s": np.arange(1000) * 1e-6})


def test_split_is_deterministic_by_shape_not_row_order():
    df = _shapes()
    a = kerneldb.held_out(df, "gemm", 0.3, seed=7)
    shuffled = df.sample(frac=1.0, random_state=1)
    b = pd.Series(kerneldb.held_out(shuffled, "gemm", 0.3, seed=7), shuffled.index)
    assert (b.sort_index().to_numpy() == a).all()
    assert (kerneldb.held_out(df.astype({"m": "int32"}), "gemm", 0.3, seed=7) == a).all()
    att = pd.DataFrame({"attn_dtype": ["bf16"] * 50, "batch_size": np.arange(50)})
    assert (kerneldb.split_key(att, "generation_attention") == kerneldb.split_key(
        att.assign(window_size=0, step=0), "generation_attention")).all()   # absent counts as 0
    assert 0.2 < a.mean() < 0.4
    assert (kerneldb.held_out(df, "gemm", 0.3, seed=8) != a).any()   # the seed matters


def test_split_keeps_a_shape_on_one_side_and_nests():
    df = _shapes()
    twice = pd.concat([df, df.assign(latency_s=df.latency_s * 2, kernel_source="other")])
    mask = pd.Series(kerneldb.held_out(twice, "gemm", 0.5), twice.index)
    assert (mask.groupby(level=0).nunique() == 1).all()   # both kernels of a shape together
    small, large = (kerneldb.held_out(df, "gemm", f) for f in (0.2, 0.5))
    assert (small <= large).all() and small.sum() < large.sum()
    assert not kerneldb.held_out(df, "gemm", 0.0).any()
    assert kerneldb.held_out(df, "gemm", 1.0).all()


@pytest.mark.parametrize("args, words", [((1.5, 0), "fraction"), ((0.2, -1), "seed")])
def test_split_refuses_bad_settings(args, words):
    with pytest.raises(ConfigError, match=words):
        kerneldb.held_out(_shapes(), "gemm", *args)


def test_sample_is_capped_per_dtype_and_nested(ka):
    df = _shapes()
    one, two = (ka.held_out_rows(df, "gemm", 0.5, 0, cap) for cap in (1, 2))
    assert one.gemm_dtype.value_counts().to_dict() == {"bf16": 1, "fp8": 1}
    assert set(one.index) < set(two.index) <= set(df.index[kerneldb.held_out(df, "gemm", 0.5)])


# --- scoring -----------------------------------------------------------------------------
def test_mdape_and_p90_on_a_hand_made_example(ka):
    measured = np.ones(11)
    predicted = 1.0 + np.arange(11) / 10          # errors 0, 0.1, ..., 1.0
    n, mdape, p90, ratio = ka.score(measured, predicted)
    assert n == 11 and mdape == pytest.approx(0.5) and p90 == pytest.approx(0.9)
    assert ratio == pytest.approx(1.5)
    n, mdape, p90, ratio = ka.score([2.0, 4.0, 1.0], [1.0, 5.0, np.nan])   # NaN: unscored
    assert n == 2 and mdape == pytest.approx(0.375) and p90 == pytest.approx(0.475)
    assert ratio == pytest.approx(0.875)
    assert ka.score([1.0], [np.nan])[0] == 0


def test_a_predictor_equal_to_the_table_scores_zero(ka, root):
    exact = {op: (lambda df: df["latency_s"].to_numpy()) for op in ka.SCORED}
    row = {op: ka.per_row(lambda r: r["latency_s"]) for op in ka.SCORED}
    results = ka.run(["h100_sxm"], None, lambda s, r: {"table": exact, "per-row": row},
                     ka.Split(fraction=1.0), root)
    assert {r.op for r in results} == {"gemm", "generation_attention", "allreduce"}
    for r in results:
        for n, mdape, p90, ratio in r.scores.values():
            assert n == r.rows > 0 and mdape == 0.0 and p90 == 0.0 and ratio == 1.0


def test_unknown_system_is_one_line(ka, root, capsys):
    assert ka.main(["--system", "h999", "--root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown aiconfigurator system 'h999'" in err


def test_system_without_a_profile_is_reported(ka, root):
    """A system a later aiconfigurator-core adds before hetsim has its profile."""
    results = ka.run(["x900_sxm"], None, ka.generic_models, ka.Split(), root)
    assert [(r.system, r.op) for r in results] == [("x900_sxm", "no profile")]


# --- the tables as scored and the generic model's reading of them ------------------------
def test_prepare_keeps_graph_all_reduce_and_the_fastest_kernel(ka, root):
    t = kerneldb.select("h100_sxm", "vllm", root=root)
    ar, dropped = ka.prepare(kerneldb.read_op(t, "allreduce"), "allreduce")
    assert list(ar.latency_s) == [4e-6, 6e-6] and dropped == {"eager all-reduce": 2}
    eager_only = kerneldb.read_op(t, "allreduce").iloc[[1, 3]]    # a system timed only eagerly
    assert eager_only.backend.str.contains("eager").all()
    ar, dropped = ka.prepare(eager_only, "allreduce")
    assert len(ar) == 2 and dropped == {}
    df = _shapes()
    twice = pd.concat([df.assign(latency_s=df.latency_s + 1e-3), df], ignore_index=True)
    best, dropped = ka.prepare(twice, "gemm")
    assert list(best.latency_s) == list(df.latency_s)
    assert dropped == {"merged: same shape, slower kernel": 1000}


def test_generic_model_maps_rows_to_hetsim_ops(ka, root):
    t = kerneldb.select("h100_sxm", "vllm", root=root)
    pm = PerfModel(load_accelerator("h100-sxm@datasheet"))
    gen, _ = ka.prepare(kerneldb.read_op(t, "generation_attention"), "generation_attention")
    model = ka.OpModel(pm, "generation_attention")
    got = model(gen)
    # the KV length is isl + step; the sliding-window row is not predicted, and says why
    assert got[0] == pm.attention_decode_time(1, 128, 32, 8, 128, "bf16", "bf16")
    assert got[2] == pm.attention_decode_time(4, 4096, 32, 8, 128, "bf16", "bf16")
    assert np.isnan(got[3])
    assert list(model.reasons(gen)) == ["", "", "", "sliding window"]
    ar, _ = ka.prepare(kerneldb.read_op(t, "allreduce"), "allreduce")
    # message_size counts elements (aiconfigurator's CustomAllReduce): bf16 is 2 bytes each
    assert list(ka.OpModel(pm, "allreduce")(ar)) == [pm.allreduce_time(2048, 2),
                                                    pm.allreduce_time(2048, 8)]
    gemm = pd.DataFrame({"gemm_dtype": ["fp8-block", "w4a16-int", "w4a16-mxfp4"],
                         "m": [256] * 3, "n": [1024] * 3, "k": [512] * 3})
    got = ka.OpModel(pm, "gemm")(gemm)
    assert got[0] == pm.gemm_time(256, 1024, 512, "fp8")
    assert got[1] == pm.gemm_time(256, 1024, 512, "bf16", "int4")
    assert np.isnan(got[2])


def test_a_profile_without_the_format_says_so(ka):
    model = ka.OpModel(PerfModel(load_accelerator("a100-sxm")), "gemm")
    gemm = pd.DataFrame({"gemm_dtype": ["bf16", "fp8"], "m": [8, 8], "n": [8, 8], "k": [8, 8]})
    assert list(model.reasons(gemm)) == ["", "a100-sxm has no fp8"]
    assert np.isnan(model(gemm)[1])


def test_generic_models_add_the_torch_calibrated_profile_where_committed(ka):
    assert set(ka.generic_models("h100_sxm", "vllm")) == {"datasheet", "torch-calibrated"}
    assert set(ka.generic_models("a100_sxm", "vllm")) == {"datasheet"}
    assert ka.generic_models("x900_sxm", "vllm") == {}


def test_readme_block_replaces_only_its_region(ka, tmp_path):
    f = tmp_path / "README.md"
    f.write_text("a\n<!-- kernel_accuracy -->\nold\n<!-- /kernel_accuracy -->\nb\n")
    ka.write_readme(f, "new")
    assert f.read_text() == "a\n<!-- kernel_accuracy -->\nnew\n<!-- /kernel_accuracy -->\nb\n"
    f.write_text("no markers\n")
    with pytest.raises(ConfigError, match="no <!-- kernel_accuracy -->"):
        ka.write_readme(f, "new")


def test_gemm_grid_is_fitted_without_the_held_out_rows_and_scores_them(ka, tmp_path):
    """On a table that is a power law of m, n, k, the grid fitted on the rows not held out
    predicts the held-out ones exactly (log-log interpolation), and changing a held-out row's
    measurement changes nothing the grid predicts: it never saw them."""
    ms, ns, ks = [16, 32, 64, 128, 256], [1024, 2048, 4096], [1024, 2048, 4096, 8192]
    grid = np.array(np.meshgrid(ms, ns, ks, indexing="ij")).reshape(3, -1)
    law = 1e-9 * grid[0] ** 0.6 * grid[1] ** 0.9 * grid[2] ** 0.8
    _table(tmp_path, "h100_sxm", "gemm", "vllm", "gemm_perf", gemm_dtype=["bfloat16"] * len(law),
           m=grid[0], n=grid[1], k=grid[2], kernel_source=["torch"] * len(law), latency=law * 1e3)
    split = ka.Split(0.2, 0)
    pred = ka.grid_models(split, tmp_path, "log")("h100_sxm", "vllm")["table grid"]["gemm"]
    df, _ = ka.prepare(kerneldb.read_op(kerneldb.select("h100_sxm", "vllm", root=tmp_path),
                                        "gemm"), "gemm")
    held = df[kerneldb.held_out(df, "gemm", 0.2, 0)]
    inside = held[(held.m > 16) & (held.m < 256) & (held.n > 1024) & (held.n < 4096)
                  & (held.k > 1024) & (held.k < 8192)]
    assert len(inside) >= 2
    np.testing.assert_allclose(pred(inside), inside.latency_s, rtol=1e-9)
    # the held-out rows' measurements never reach the fit: change them and refit
    other = tmp_path / "other"
    out = kerneldb.held_out(df, "gemm", 0.2, 0)
    _table(other, "h100_sxm", "gemm", "vllm", "gemm_perf", gemm_dtype=["bfloat16"] * len(df),
           m=df.m, n=df.n, k=df.k, kernel_source=["torch"] * len(df),
           latency=np.where(out, 7.0, 1.0) * df.latency_s * 1e3)
    for mode in ka.GRID_MODES:
        pred = ka.grid_models(split, tmp_path, mode)("h100_sxm", "vllm")["table grid"]["gemm"]
        refit = ka.grid_models(split, other, mode)("h100_sxm", "vllm")["table grid"]["gemm"]
        assert list(refit(held)) == list(pred(held))


def test_moe_grid_interpolates_held_out_token_counts_and_never_sees_them(ka, tmp_path):
    """MoE is scored by the table grid (no generic model has a MoE op): on a layer whose time
    is a power law of its tokens, the held-out counts inside the measured range are read
    exactly (log-log), past it at the edge's time (no model carries it: a profile's carry is
    the step model's composed experts), and the held-out measurements never reach the fit."""
    tokens = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192])

    def write(root, latency):
        n = len(tokens) * 2
        _table(root, "h100_sxm", "moe", "vllm", "moe_perf", moe_dtype=["fp8"] * n,
               num_tokens=np.tile(tokens, 2), hidden_size=[4096] * n, inter_size=[1536] * n,
               topk=[8] * n, num_experts=[128] * n, moe_tp_size=[1] * n, moe_ep_size=[1] * n,
               distribution=["balanced"] * len(tokens) + ["power_law_1.2"] * len(tokens),
               kernel_source=["k"] * n, latency=latency)
    law = 1e-2 * np.tile(tokens, 2) ** 0.7
    write(tmp_path, law)
    split = ka.Split(0.3, 0)
    models = ka.grid_models(split, tmp_path)("h100_sxm", "vllm")
    assert "moe" not in models["datasheet"]
    pred = models["table grid"]["moe"]
    df, _ = ka.prepare(kerneldb.read_op(kerneldb.select("h100_sxm", "vllm", root=tmp_path),
                                        "moe"), "moe")
    out = kerneldb.held_out(df, "moe", 0.3, 0)
    held, fit = df[out], df[~out]
    span = fit.groupby("distribution").num_tokens.agg(["min", "max"])
    first, last = (held.distribution.map(span[c]) for c in ("min", "max"))
    inside, outside = held[(held.num_tokens > first) & (held.num_tokens < last)], \
        held[(held.num_tokens < first) | (held.num_tokens > last)]
    assert len(inside) >= 3 and len(outside) >= 1
    np.testing.assert_allclose(pred(inside), inside.latency_s, rtol=1e-9)
    edge = fit.set_index(["distribution", "num_tokens"]).latency_s
    for r, p in zip(outside.itertuples(), pred(outside)):
        at = span["max" if r.num_tokens > span["max"][r.distribution] else "min"]
        assert p == pytest.approx(edge[r.distribution, at[r.distribution]], rel=1e-9)
    other = tmp_path / "other"
    write(other, np.where(out, 9.0, 1.0) * law)       # (df is the table's row order)
    refit = ka.grid_models(split, other)("h100_sxm", "vllm")["table grid"]["moe"]
    assert list(refit(held)) == list(pred(held))


def test_attention_grid_reads_kv_as_isl_plus_step_and_interpolates_a_power_law(ka, tmp_path):
    """Decode attention tables give the KV length as isl + step; the grid spans it, and on a
    power law of batch and KV length it predicts held-out shapes exactly."""
    bs, steps = [1, 2, 4, 8, 16, 32], [15, 63, 255, 1023, 4095]
    b, st_ = (x.ravel() for x in np.meshgrid(bs, steps, indexing="ij"))
    law = 1e-6 * b ** 0.7 * (st_ + 1) ** 0.9
    n = len(law)
    _table(tmp_path, "h100_sxm", "attention", "vllm", "generation_attention_perf",
           attn_dtype=["bfloat16"] * n, kv_cache_dtype=["bfloat16"] * n, batch_size=b,
           isl=[1] * n, num_heads=[32] * n, num_key_value_heads=[8] * n, head_dim=[128] * n,
           step=st_, window_size=[0] * n, latency=law * 1e3)
    op = "generation_attention"
    models = ka.grid_models(ka.Split(0.3, 1), tmp_path, "log")
    pred = models("h100_sxm", "vllm")["table grid"][op]
    df, _ = ka.prepare(kerneldb.read_op(kerneldb.select("h100_sxm", "vllm", root=tmp_path),
                                        op), op)
    held = df[kerneldb.held_out(df, op, 0.3, 1)]
    inside = held[held.batch_size.between(2, 16) & held.step.between(63, 1023)]
    assert len(inside) >= 2
    np.testing.assert_allclose(pred(inside), inside.latency_s, rtol=1e-9)


def _scaled_model_table(ka, op, shapes: pd.DataFrame, factor=1.5):
    """A table ``factor`` x the H100 datasheet model at every shape (any smooth or stepped
    law the model has: wave quantization, launch floors); dtypes are read as bf16."""
    pm = PerfModel(load_accelerator("h100-sxm@datasheet"))
    dtypes = ("gemm_dtype", "allreduce_dtype", "attn_dtype", "kv_cache_dtype")
    df = shapes.assign(**{c: "bf16" for c in dtypes if c in shapes})
    return factor * np.array([ka.OpModel(pm, op)._row(r) for r in df.itertuples(index=False)])


@pytest.mark.parametrize("op", ["gemm", "generation_attention", "allreduce"])
def test_ratio_grid_is_exact_on_a_table_that_is_the_model_scaled(ka, tmp_path, op):
    """The ratio grid interpolates log(measured / model): on a table that is 1.5 x the
    datasheet model, held-out shapes inside the grid come back exactly, whatever steps the
    model has; and the held-out rows' measurements never reach the fit."""
    if op == "gemm":
        g = np.array(np.meshgrid([1, 16, 100, 256, 1000], [1024, 3000, 8192], [512, 4096, 7168],
                                 indexing="ij")).reshape(3, -1)
        shapes = pd.DataFrame(dict(gemm_dtype="bfloat16", m=g[0], n=g[1], k=g[2],
                                   kernel_source="torch"))
        where = ("gemm", "gemm_perf")
    elif op == "allreduce":
        shapes = pd.DataFrame(dict(allreduce_dtype="bfloat16", num_gpus=np.repeat([2, 8], 20),
                                   message_size=np.tile(2 ** np.arange(8, 28), 2),
                                   kernel_source="x_graph", backend="x_graph"))
        where = ("comm", "custom_allreduce_perf")
    else:
        b, s = (x.ravel() for x in np.meshgrid([1, 2, 4, 8, 16, 32, 64],
                                               [15, 63, 255, 1023, 4095, 16383], indexing="ij"))
        shapes = pd.DataFrame(dict(attn_dtype="bfloat16", kv_cache_dtype="bfloat16",
                                   batch_size=b, isl=1, num_heads=32, num_key_value_heads=8,
                                   head_dim=128, step=s, window_size=0))
        where = ("attention", "generation_attention_perf")
    t = _scaled_model_table(ka, op, shapes)
    _table(tmp_path, "h100_sxm", where[0], "vllm", where[1], **shapes, latency=t * 1e3)
    split = ka.Split(0.25, 0)
    pred = ka.grid_models(split, tmp_path)("h100_sxm", "vllm")["table grid"][op]
    df, _ = ka.prepare(kerneldb.read_op(kerneldb.select("h100_sxm", "vllm", root=tmp_path),
                                        op), op)
    out = kerneldb.held_out(df, op, 0.25, 0)
    held = df[out]
    assert len(held) >= 3
    np.testing.assert_allclose(pred(held), held.latency_s, rtol=1e-9)
    assert pred.fallback == 0
    # the held-out rows' measurements never reach the fit: change them and refit
    other = tmp_path / "other"
    _table(other, "h100_sxm", where[0], "vllm", where[1], **shapes,
           latency=np.where(out, 7.0, 1.0) * t * 1e3)
    refit = ka.grid_models(split, other)("h100_sxm", "vllm")["table grid"][op]
    assert list(refit(held)) == list(pred(held))


def test_attention_key_without_fit_rows_takes_the_nearest_key_scaled_by_the_model(ka):
    """Attention grids are per exact key; a key with no fit rows borrows the nearest key's
    grid (same dtypes and window), scaled by the model's ratio between the two keys."""
    pm = PerfModel(load_accelerator("h100-sxm@datasheet"))
    op = "generation_attention"
    b, kv = (x.ravel() for x in np.meshgrid([1, 4, 16, 64], [16, 256, 4096], indexing="ij"))
    rows = pd.DataFrame(dict(attn_dtype="bf16", kv_cache_dtype="bf16", batch_size=b, isl=1,
                             step=kv - 1, window_size=0, head_dim=128, num_key_value_heads=8))
    fit = pd.concat([rows.assign(num_heads=h) for h in (8, 32)], ignore_index=True)
    grid = ka.TableGrid(op, fit.assign(latency_s=0.0), ka.OpModel(pm, op))
    fit["latency_s"] = [2.0 * grid.model((r.attn_dtype, r.kv_cache_dtype, r.num_heads, 8, 128,
                                          0))((r.batch_size, r.isl + r.step))
                        for r in fit.itertuples()]
    grid = ka.TableGrid(op, fit, ka.OpModel(pm, op))
    query = rows.assign(num_heads=24).iloc[[4, 5]]
    want = [2.0 * grid.model(("bf16", "bf16", 24, 8, 128, 0))((r.batch_size, r.isl + r.step))
            for r in query.itertuples()]
    np.testing.assert_allclose(grid(query), want, rtol=1e-9)
    assert grid.fallback == 2
    assert ka.TableGrid(op, fit, ka.OpModel(pm, op))._nearest(("bf16", "bf16", 24, 8, 128, 0)
                                                               )[2] == 32


def test_windowed_attention_base_saturates_at_the_window(ka):
    """The op model has no window; the grid's base attends to at most ``window`` tokens, so
    the ratio past a ragged edge is carried flat, as the kernel runs."""
    pm = PerfModel(load_accelerator("h100-sxm@datasheet"))
    op = "generation_attention"
    fit = pd.DataFrame(dict(attn_dtype="bf16", kv_cache_dtype="bf16", batch_size=[1], isl=1,
                            step=[127], window_size=128, head_dim=128, num_heads=32,
                            num_key_value_heads=8, latency_s=[1e-5]))
    grid = ka.TableGrid(op, fit, ka.OpModel(pm, op))
    base = grid.model(("bf16", "bf16", 32, 8, 128, 128))
    assert base((4, 128)) == base((4, 65536)) < grid.model(("bf16", "bf16", 32, 8, 128, 0))(
        (4, 65536))


def test_moe_split_scores_the_rule_s_pick_against_the_measured_split():
    """benchmarks/moe_split.py: each moe_tp > 1 split is paired with the nearest other split of
    the same GPUs (and, for the second column, the farthest), at the tokens both measured."""
    with benchmark_module("moe_split") as ms:
        _moe_split(ms)


def _moe_split(ms):
    layer = dict(moe_dtype="bf16", hidden_size=1, inter_size=1, topk=1, num_experts=8)
    rows = [dict(layer, moe_tp_size=tp, moe_ep_size=ep, num_tokens=n, latency_s=t * n)
            for tp, ep, t in [(4, 1, 1.0), (2, 2, 0.9), (1, 4, 0.5), (1, 2, 7.0)]
            for n in (1, 2)]
    df = pd.DataFrame(rows)
    near, far = ms.pairs(df), ms.pairs(df, -1)
    got = {(r.moe_tp_size, r.moe_ep_size): (r.sub_tp, r.sub_ep) for r in near.itertuples()}
    assert got == {(4, 1): (2, 2), (2, 2): (1, 4)}        # nearest tp; tp 2 ties: the smaller
    assert set(zip(far.moe_tp_size, far.sub_tp)) == {(4, 1), (2, 4)}
    r = near[near.moe_tp_size == 4]
    assert list(r.latency_s_sub / r.latency_s) == pytest.approx([0.9, 0.9])
    block = ms.block(near.assign(system="s", runtime="trtllm"),
                     far.assign(system="s", runtime="trtllm"))
    assert "| trtllm | 4 | 1 | 2 | 10% | 10% | 0.90 | 50% | 50% | 0.50 |" in block
