"""The step model reads measured kernel grids where a profile has them (perf.measured).

A synthetic runtime profile (grids made from simple monotone formulas, saved to tmp and attached
to the H100 datasheet profile) checks: exact values at grid points, the analytical model
carrying the time past a grid's edge, the nearest-key scaling, the analytical fallback where no
grid matches, monotonicity, and the decode fast path against LogGrid.
"""
import dataclasses
import math
import timeit

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hetsim
from hetsim.hardware import Calibration
from hetsim.perf.kernels import KernelGrid, MeasuredKernels
from hetsim.perf.measured import ContextForm, gemm_dtypes, nearest_key, split_keys

L8 = hetsim.load_model("llama-3.1-8b")      # 32 heads, 8 KV heads, head dim 128
MX = hetsim.load_model("mixtral-8x7b")
DS = hetsim.load_model("deepseek-v3")
BASE = hetsim.load_accelerator("h100-sxm@datasheet")

M = np.array([1.0, 8, 64, 512, 4096])
N = np.array([128.0, 1024, 4096, 14336, 32768])
K = np.array([128.0, 1024, 4096, 14336])
BATCH = np.array([1.0, 4, 16, 64, 256])
ISL = np.array([16.0, 128, 1024, 8192])
KV = np.array([16.0, 256, 4096, 32768])
BYTES = np.array([1024.0, 65536, 1 << 22, 1 << 26])
TOKENS = np.array([1.0, 16, 256, 4096])


def _gemm(scale=1.0):
    m, n, k = np.meshgrid(M, N, K, indexing="ij")
    return scale * (4e-6 + 2 * m * n * k / 600e12 + (m * k + n * k + m * n) * 2 / 2.5e12)


def _context(heads):
    b, s = np.meshgrid(BATCH, ISL, indexing="ij")
    return 8e-6 + b * s * s * heads * 256 / 300e12


def _generation(kv_heads):
    b, kv = np.meshgrid(BATCH, KV, indexing="ij")
    return 1.2e-5 + b * kv * kv_heads * 512 / 2.5e12


def kernels(extra=()):
    grids = [KernelGrid("gemm", ("bf16",), (M, N, K), _gemm()),
             KernelGrid("gemm", ("fp8-block",), (M, N, K), _gemm(0.7)),
             KernelGrid("context_attention", ("bf16", "bf16", 32, 8, 128, 0), (BATCH, ISL),
                        _context(32)),
             KernelGrid("context_attention", ("bf16", "bf16", 16, 4, 128, 0), (BATCH, ISL),
                        _context(16)),
             KernelGrid("generation_attention", ("bf16", "bf16", 32, 8, 128, 0), (BATCH, KV),
                        _generation(8)),
             KernelGrid("generation_attention", ("bf16", "bf16", 16, 4, 128, 0), (BATCH, KV),
                        _generation(4)),
             KernelGrid("allreduce", ("bf16", 8), (BYTES,), 6e-6 + BYTES / 150e9),
             KernelGrid("moe", ("bf16", 4096, 14336, 2, 8, 1, 1, "balanced"), (TOKENS,),
                        2e-5 + TOKENS * 3e-7),
             KernelGrid("generation_mla", ("bf16", "bf16", 128), (BATCH, KV), _generation(1)),
             KernelGrid("context_mla", ("bf16", "bf16", 128), (BATCH, ISL), _context(128)),
             *extra]
    return MeasuredKernels(grids, {"source": "synthetic"})


@pytest.fixture(scope="module")
def acc(tmp_path_factory):
    path = tmp_path_factory.mktemp("kernels") / "synthetic.npz"
    kernels().save(path)
    return dataclasses.replace(BASE, calibration=Calibration(device="synthetic",
                                                             kernels=str(path)),
                               runtime="vllm")


@pytest.fixture(scope="module")
def pm(acc):
    return hetsim.PerfModel(acc)


DATASHEET = hetsim.PerfModel(BASE)


# --- GEMM ---------------------------------------------------------------------------------
def test_gemm_reads_the_grid_at_its_points_and_carries_past_its_edges(pm):
    g = _gemm()
    assert pm.gemm_time(64, 4096, 1024) == pytest.approx(g[2, 2, 1], rel=1e-6)
    assert pm.gemm_time(4096, 32768, 14336) == pytest.approx(g[4, 4, 3], rel=1e-6)
    # past the largest m: the edge time grown as the datasheet roofline grows
    edge, past = (4096, 4096, 4096), (16384, 4096, 4096)
    ratio = pm._gemm_work(*past, "bf16", None) / pm._gemm_work(*edge, "bf16", None)
    assert pm.gemm_time(*past) == pytest.approx(g[4, 2, 2] * ratio, rel=1e-6)
    assert 3.5 < ratio < 4.5


def test_gemm_dtype_mapping_and_fallbacks(pm):
    assert gemm_dtypes("fp8", None) == ("fp8", "fp8-block")
    assert gemm_dtypes("bf16", "int4") == ("w4a16-int",)
    # no per-tensor fp8 grid: the block-scaled one serves
    assert pm.gemm_time(64, 4096, 1024, "fp8") == pytest.approx(0.7 * _gemm()[2, 2, 1], rel=1e-6)
    # no grid for int4 weights: today's analytical path, bit for bit
    assert pm.gemm_time(64, 4096, 1024, "bf16", "int4") == \
        DATASHEET.gemm_time(64, 4096, 1024, "bf16", "int4")


def test_static_fp8_gemm_is_the_table_less_its_scale_computation_floored_at_the_roofline(
        tmp_path):
    """``weights: fp8-static`` (a checkpoint with static activation scales) reads the fp8 grid
    less the activation-scale computation at (m, k), never below the GEMM's roofline nor above
    the table, as aiconfigurator derives fp8_static; without a scale grid the time is the
    table's, and ``fp8`` (dynamic) keeps the table's time either way."""
    mk = np.meshgrid(M, K, indexing="ij")
    scale = np.where(mk[1] <= 128, 1e-5, 2e-6) + mk[0] * mk[1] * 1e-14
    path = tmp_path / "fp8.npz"
    kernels([KernelGrid("gemm", ("fp8",), (M, N, K), _gemm(3.0)),
             KernelGrid("compute_scale", ("fp8",), (M, K), scale)]).save(path)
    pm = hetsim.PerfModel(dataclasses.replace(
        BASE, calibration=Calibration(device="synthetic", kernels=str(path)), runtime="trtllm"))
    table = 3.0 * _gemm()
    assert pm.gemm_time(64, 4096, 1024, "fp8") == pytest.approx(table[2, 2, 1], rel=1e-6)
    static = pm.gemm_time(64, 4096, 1024, "fp8", "fp8-static")
    assert static == pytest.approx(table[2, 2, 1] - scale[2, 1], rel=1e-6)
    assert static > pm._gemm_work(64, 4096, 1024, "fp8", "fp8")
    # a small GEMM whose scale computation is most of its time: the roofline floors it
    floor = pm._gemm_work(8, 128, 128, "fp8", "fp8")
    assert table[1, 0, 0] - scale[1, 0] < floor
    assert pm.gemm_time(8, 128, 128, "fp8", "fp8-static") == floor
    # ... but never above the table's own time: a kernel measured below the roofline keeps it
    path = tmp_path / "fast.npz"
    kernels([KernelGrid("gemm", ("fp8",), (M, N, K), _gemm(0.01)),
             KernelGrid("compute_scale", ("fp8",), (M, K), scale)]).save(path)
    fast = hetsim.PerfModel(dataclasses.replace(
        BASE, calibration=Calibration(device="synthetic", kernels=str(path)), runtime="trtllm"))
    assert 0.01 * _gemm()[4, 4, 3] < fast._gemm_work(4096, 32768, 14336, "fp8", "fp8")
    assert fast.gemm_time(4096, 32768, 14336, "fp8", "fp8-static") == \
        pytest.approx(0.01 * _gemm()[4, 4, 3], rel=1e-6)
    # no scale grid (a table that is 0, as SGLang's): the table's time; fp8's dtype mapping
    assert gemm_dtypes("fp8", "fp8-static") == gemm_dtypes("fp8", "fp8")
    path = tmp_path / "noscale.npz"
    kernels([KernelGrid("gemm", ("fp8",), (M, N, K), _gemm(3.0))]).save(path)
    plain = hetsim.PerfModel(dataclasses.replace(
        BASE, calibration=Calibration(device="synthetic", kernels=str(path)), runtime="sglang"))
    assert plain.gemm_time(64, 4096, 1024, "fp8", "fp8-static") == \
        plain.gemm_time(64, 4096, 1024, "fp8")


# --- attention ----------------------------------------------------------------------------
def test_context_attention_exact_key_and_equal_work_rule(pm):
    t = pm.attention_chunks_time([(1024, 1024)] * 16, 32, 8, 128)
    assert t == pytest.approx(_context(32)[2, 2], rel=1e-6)     # times are kept as float32
    # ragged: the grid at the equal-work length, scaled by the analytical ratio
    chunks = [(100, 100), (900, 900)]
    form = pm.context_attention_form(32, 8, 128)
    b, length = form.equivalent(chunks)
    assert b == 2 and 2 * length * (length + 1) == pytest.approx(100 * 101 + 900 * 901)
    ana = DATASHEET.attention_chunks_time
    expect = (pm.kernels.get("context_attention", ("bf16", "bf16", 32, 8, 128, 0)).grid(
        (b, length)) * ana(chunks, 32, 8, 128) / ana([(length, length)] * 2, 32, 8, 128))
    assert pm.attention_chunks_time(chunks, 32, 8, 128) == pytest.approx(expect, rel=1e-12)
    # a chunk after cached context costs more than the same chunk alone, as the model says
    alone, after = (pm.attention_chunks_time([(512, 512)], 32, 8, 128),
                    pm.attention_chunks_time([(512, 4096)], 32, 8, 128))
    assert after / alone == pytest.approx(ana([(512, 4096)], 32, 8, 128)
                                          / ana([(512, 512)], 32, 8, 128), rel=1e-9)


def test_nearest_key_is_read_at_equal_work(pm):
    assert nearest_key([("a", 32, 8), ("a", 16, 4), ("a", 8, 8)], ("a", 8, 2), (0,), (1, 2)) \
        == ("a", 16, 4)                                     # same GQA ratio wins
    assert nearest_key([("a", 32, 8)], ("b", 32, 8), (0,), (1, 2)) is None
    # 8 heads / 2 KV heads per rank (llama-8b at TP4) is not measured: the 16 / 4 grid at half
    # the batch (heads x batch is the kernel's work)
    assert pm.attention_decode_total_time(32, 32 * 4096, 8, 2, 128) == pytest.approx(
        _generation(4)[2, 2], rel=1e-6)
    assert pm.attention_chunks_time([(1024, 1024)] * 8, 8, 2, 128) == pytest.approx(
        _context(16)[1, 2], rel=1e-6)
    # another GQA ratio (32 / 4): the nearest grid (16 / 4) at the batch of equal KV heads x
    # batch, times the analytical model's ratio between the two shapes at the grid's top
    ana = DATASHEET.attention_decode_total_time
    ratio = ana(256, 256 * 32768, 32, 4, 128) / ana(256, 256 * 32768, 16, 4, 128)
    assert pm.attention_decode_total_time(16, 16 * 4096, 32, 4, 128) == pytest.approx(
        _generation(4)[2, 2] * ratio, rel=1e-6)
    assert 1.0 < ratio < 1.2                       # decode reads KV: query heads matter little


def test_no_matching_attention_grid_is_todays_model(pm):
    # head dim 64 and fp8 KV were never measured
    assert pm.attention_chunks_time([(512, 512)], 32, 8, 64) == \
        DATASHEET.attention_chunks_time([(512, 512)], 32, 8, 64)
    assert pm.attention_decode_total_time(8, 8000, 32, 8, 128, "bf16", "fp8") == \
        DATASHEET.attention_decode_total_time(8, 8000, 32, 8, 128, "bf16", "fp8")


def test_decode_fast_path_equals_the_grid(pm):
    form = pm.decode_attention_form(32, 8, 128)
    near = pm.decode_attention_form(8, 2, 128)
    other = pm.decode_attention_form(32, 4, 128)
    assert other.ratio != 1.0 and near.ratio == 1.0 and near.scale == 0.5
    assert form(16, 16 * 4096) == pytest.approx(_generation(8)[2, 2], rel=1e-6)
    for f in (form, near, other):
        for batch in (1, 3, 16, 100, 256, 400, 1000):
            for kv in (1, 10, 16, 300, 4096, 20000, 32768, 100000):
                total = batch * kv + batch // 3
                assert f(batch, total) == pytest.approx(f.slow(batch, total), rel=1e-12)


def test_context_fast_path_equals_the_grid(pm):
    for heads, kv_heads in ((32, 8), (8, 2), (32, 4)):
        form = pm.context_attention_form(heads, kv_heads, 128)
        for chunks in ([(1, 1)], [(16, 16)] * 3, [(100, 100), (3000, 3000)], [(512, 9000)] * 2,
                       [(20000, 20000)] * 2, [(64, 64)] * 700, [(1024, 1024)] * 300):
            assert form(chunks) == pytest.approx(form(chunks, slow=True), rel=1e-12)


def test_decode_fast_path_cost(pm):
    """Report the per-call cost of the measured decode form against today's linear form."""
    step = hetsim.StepModel(L8, pm)
    lin = hetsim.StepModel(L8, DATASHEET)
    n = 20000
    fast = min(timeit.repeat(lambda: step.decode_attention_time(64, 64 * 1500), number=n,
                             repeat=3)) / n
    base = min(timeit.repeat(lambda: lin.decode_attention_time(64, 64 * 1500), number=n,
                             repeat=3)) / n
    print(f"decode attention per call: measured {fast * 1e6:.2f} us, linear {base * 1e6:.2f} us")
    assert fast < 20e-6


# --- all-reduce, MoE, MLA -----------------------------------------------------------------
def test_allreduce_grid_and_fallbacks(pm):
    assert pm.allreduce_time(65536, 8) == pytest.approx(6e-6 + 65536 / 150e9, rel=1e-6)
    big = 1 << 28
    assert pm.allreduce_time(big, 8) == pytest.approx(
        (6e-6 + (1 << 26) / 150e9) * DATASHEET.allreduce_time(big, 8)
        / DATASHEET.allreduce_time(1 << 26, 8), rel=1e-6)
    # below the smallest message: the smallest message's time
    assert pm.allreduce_time(16, 8) == pm.allreduce_time(1024, 8)
    assert pm.allreduce_time(65536, 4) == DATASHEET.allreduce_time(65536, 4)   # unmeasured


def test_moe_grid_replaces_the_routed_experts_only(pm):
    step, base = hetsim.StepModel(MX, pm), hetsim.StepModel(MX, DATASHEET)
    assert step._moe_form is not None and base._moe_form is None
    t = step._layer_dense_time(256, True) - step._layer_dense_time(256, False)
    # the dense layer's FFN is replaced by router + measured experts
    ffn = step._ffn_time(256, MX.ffn_size)
    router = pm.gemm_time(256, 8, MX.hidden_size, "bf16")
    assert t == pytest.approx(router + (2e-5 + 256 * 3e-7) - ffn, rel=1e-6)
    # TP2 (another key) and a skewed distribution are not measured: the GEMM composition
    assert hetsim.StepModel(MX, pm, tp=2)._moe_form is None
    assert hetsim.StepModel(MX, pm, moe_distribution="power_law_1.2")._moe_form is None


def test_an_unmeasured_moe_split_reads_another_split_of_the_same_gpus(tmp_path):
    """Equal-GPU rule: TP2 reads the (tp 1, ep 2) grid; TP4 reads (tp 2, ep 2), the nearest tp,
    not (tp 1, ep 4); a split over other GPU counts is never read."""
    def moe(tp, ep, scale):
        return KernelGrid("moe", ("bf16", 4096, 14336, 2, 8, tp, ep, "balanced"), (TOKENS,),
                          scale * (2e-5 + TOKENS * 3e-7))
    path = tmp_path / "split.npz"
    kernels([moe(1, 2, 0.5), moe(2, 2, 0.3), moe(1, 4, 0.2)]).save(path)
    pm = hetsim.PerfModel(dataclasses.replace(
        BASE, calibration=Calibration(device="synthetic", kernels=str(path)), runtime="vllm"))

    def read(**kw):
        form = hetsim.StepModel(MX, pm, **kw)._moe_form
        return form and form(256.0)
    at = 2e-5 + 256 * 3e-7
    assert read(tp=2) == pytest.approx(0.5 * at, rel=1e-6)
    assert read(tp=4) == pytest.approx(0.3 * at, rel=1e-6)
    assert read(tp=4, moe_ep=4) == pytest.approx(0.2 * at, rel=1e-6)   # measured: itself
    assert read(tp=8) is None
    assert split_keys([("x", 1, 1, 1, 1, 1, 8, "b"), ("x", 1, 1, 1, 1, 4, 2, "b"),
                       ("x", 1, 1, 1, 1, 2, 4, "b"), ("x", 1, 1, 1, 1, 2, 4, "c")],
                      ("x", 1, 1, 1, 1, 8, 1, "b")) == [("x", 1, 1, 1, 1, 4, 2, "b"),
                                                         ("x", 1, 1, 1, 1, 2, 4, "b"),
                                                         ("x", 1, 1, 1, 1, 1, 8, "b")]


def test_balanced_moe_grows_with_tokens_where_the_table_grows_with_its_experts(tmp_path):
    """A balanced table whose time is its reached experts' weights (min(E, n k) of them) plus
    per-token work, read at the experts independent routing reaches: never less for more
    tokens, the table's own time once every expert is reached."""
    model = hetsim.load_model("qwen3-30b-a3b")              # 128 experts, top 8
    tokens = 2.0 ** np.arange(13)
    seconds = 1e-5 + np.minimum(128, 8 * tokens) * 2e-6 + tokens * 1e-8
    path = tmp_path / "moe.npz"
    kernels([KernelGrid("moe", ("bf16", 2048, 768, 8, 128, 1, 1, "balanced"), (tokens,),
                        seconds)]).save(path)
    step = hetsim.StepModel(model, hetsim.PerfModel(dataclasses.replace(
        BASE, calibration=Calibration(device="synthetic", kernels=str(path)), runtime="vllm")))
    times = [step._moe_form(n) for n in range(1, 4097)]
    assert all(b >= a for a, b in zip(times, times[1:]))
    assert times[15] < 0.7 * step._moe_grid(16)              # 82 of 128 experts reached
    assert times[4095] == pytest.approx(seconds[-1], rel=1e-6)   # stored in float32


def test_mla_reads_the_mla_grids(pm):
    fmt = hetsim.Formats("fp8", "fp8", "bf16")       # the grids hold bf16 KV
    step = hetsim.StepModel(DS, pm, tp=1, precision=fmt)
    assert step._decode_form is not None and step._ctx_form is not None
    assert step.decode_attention_time(16, 16 * 4096) == pytest.approx(
        DS.num_layers * _generation(1)[2, 2], rel=1e-6)
    assert step.prefill_attention_time([(1024, 1024)] * 4) == pytest.approx(
        DS.num_layers * _context(128)[1, 2], rel=1e-6)
    # TP8: 16 heads per rank, scaled from the 128-head grid by the analytical model
    tp8 = hetsim.StepModel(DS, pm, tp=8, precision=fmt)
    assert tp8._decode_form.scale == 1.0 and tp8._decode_form.ratio < 1.0    # one latent
    assert tp8._ctx_form.scale == 16 / 128
    assert hetsim.StepModel(DS, pm, tp=1, precision="fp8")._decode_form is None   # fp8 KV


# --- the step model -----------------------------------------------------------------------
def test_profiles_without_kernels_are_unchanged():
    step = hetsim.StepModel(L8, DATASHEET)
    assert step._ctx_form is None and step._decode_form is None and DATASHEET.kernels is None


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8192), st.integers(1, 40000), st.integers(1, 20000),
       st.sampled_from([0, 1, 2]), st.sampled_from(["m", "n", "k"]))
def test_gemm_more_work_never_faster(acc, m, n, k, grow, axis):
    pm = hetsim.PerfModel(acc)
    shape = {"m": m, "n": n, "k": k}
    bigger = dict(shape, **{axis: shape[axis] * (1 + grow) + 1})
    assert pm.gemm_time(**bigger) >= pm.gemm_time(**shape) * (1 - 1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 600), st.integers(1, 20000), st.integers(1, 64), st.integers(1, 4000))
def test_attention_and_decode_steps_never_faster_with_more_work(acc, batch, length, db, dl):
    pm = hetsim.PerfModel(acc)
    step = hetsim.StepModel(L8, pm, tp=1)
    for heads, kv_heads in ((32, 8), (8, 2), (32, 4)):
        def ctx(b, n):
            return pm.attention_chunks_time([(n, n)] * b, heads, kv_heads, 128)
        assert ctx(batch + db, length) >= ctx(batch, length) * (1 - 1e-12)
        assert ctx(batch, length + dl) >= ctx(batch, length) * (1 - 1e-12)
        prior = pm.attention_chunks_time([(length, length + dl)], heads, kv_heads, 128)
        assert prior >= ctx(1, length) * (1 - 1e-12)
    total = batch * length
    t = step.decode_time(batch, total)
    assert step.decode_time(batch + db, (batch + db) * length) >= t * (1 - 1e-12)
    assert step.decode_time(batch, total + dl) >= t * (1 - 1e-12)
    assert step.decode_time(batch, total) == step.time(decode_n=batch, decode_ctx=total)


def test_context_form_reads_uniform_batches_at_the_grid_exactly(pm):
    form = pm.context_attention_form(32, 8, 128)
    assert isinstance(form, ContextForm)
    for i, b in enumerate(BATCH):
        for j, s in enumerate(ISL):
            assert form([(int(s), int(s))] * int(b)) == pytest.approx(_context(32)[i, j],
                                                                      rel=1e-6)
    assert math.isfinite(form([(1, 1)]))
