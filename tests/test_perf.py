import pytest
from hypothesis import example, given, settings, strategies as st

import hetsim
from hetsim.errors import ConfigError

# the datasheet model (the shipped calibrated H100 profile wins for plain "h100-sxm")
H100 = hetsim.PerfModel(hetsim.load_accelerator("h100-sxm@datasheet"))
H100_CAL = hetsim.PerfModel(hetsim.load_accelerator("h100-sxm"))
A100 = hetsim.PerfModel(hetsim.load_accelerator("a100-sxm"))
L70 = hetsim.load_model("llama-3.1-70b")
dims = st.integers(1, 16384)


def prefill(pm, model, tp, prompt_lens, precision="bf16"):
    """One batched prefill iteration over whole prompts (the step model's)."""
    return hetsim.StepModel(model, pm, tp, precision).prefill_time(prompt_lens)


def decode(pm, model, tp, context_lens, precision="bf16"):
    """One decode step for a batch with the given per-request context lengths."""
    return hetsim.StepModel(model, pm, tp, precision).decode_time(len(context_lens),
                                                                   sum(context_lens))


@settings(max_examples=200, deadline=None)
@given(m=dims, n=dims, k=dims, dm=st.integers(0, 4096), cal=st.booleans(),
       p=st.sampled_from(["bf16", "fp16", "fp8"]))
@example(m=321, n=11265, k=491, dm=128, cal=True, p="fp16")
def test_gemm_more_rows_never_faster(m, n, k, dm, cal, p):
    # NOTE: monotone in m holds because tiles are re-chosen per shape and padding only grows;
    # calibrated curves are functions of the padded rows and rise at most linearly. Up to a
    # part in 1e5: where the weights' bytes dominate (the example: k = 491, n = 11265) the
    # calibrated efficiency can rise faster than the added rows' bytes (8.6e-7 of the time)
    pm = H100_CAL if cal else H100
    assert pm.gemm_time(m + dm, n, k, p) >= pm.gemm_time(m, n, k, p) * (1 - 1e-5) or dm == 0


@settings(max_examples=100, deadline=None)
@given(m=dims, n=dims, k=dims)
def test_gemm_between_roofline_bounds(m, n, k):
    t = H100.gemm_time(m, n, k)
    peak = 2 * m * n * k / 989e12
    bytes_ = 2 * (m * k + k * n + m * n) / 3.35e12
    assert t >= max(peak, bytes_)     # never faster than the datasheet roofline
    assert t < 200 * max(peak, bytes_) + 1e-4


def test_large_gemm_reaches_the_measured_ceiling():
    t = H100.gemm_time(8192, 8192, 8192)
    tflops = 2 * 8192 ** 3 / t / 1e12
    assert 700 < tflops <= 0.80 * 989      # MAMF: 794.5 TFLOP/s measured on H100 SXM


@pytest.mark.parametrize("batch", [1, 16, 128])
def test_decode_is_bandwidth_bound(batch):
    # validation.md: batch-1 decode of a 70B bf16 model at TP8 reads ~17.5 GB per GPU per step
    t = decode(H100, L70, 8, [1024] * batch)
    nbytes = 17.5e9 + batch * 1024 * L70.kv_bytes_per_token("bf16", tp=8)   # weights + KV
    assert t > nbytes / 3.35e12                  # never beats the datasheet bandwidth
    assert t < 2 * nbytes / 3.35e12 + 5e-3       # 0.8 of peak plus fixed per-step costs


def test_splitwise_speedup_ratios():
    # validation.md (Splitwise): H100 vs A100 prefill 1.7-2.5x, decode 1.35-1.55x (BLOOM/Llama)
    for name in ("bloom-176b", "llama-2-70b"):
        m = hetsim.load_model(name)
        pre = prefill(A100, m, 8, [1500]) / prefill(H100, m, 8, [1500])
        dec = decode(A100, m, 8, [1500] * 16) / decode(H100, m, 8, [1500] * 16)
        assert 1.7 <= pre <= 2.5, (name, pre)
        assert 1.3 <= dec <= 1.6, (name, dec)


def test_prefill_scales_superlinearly_with_length():
    t1, t8 = (prefill(H100, L70, 8, [n]) for n in (2048, 16384))
    assert t8 > 8 * t1 * 0.95            # attention is quadratic


def test_attention_decode_linear_in_context():
    a = H100.attention_decode_time(32, 1000, 8, 1, 128)
    b = H100.attention_decode_time(32, 2000, 8, 1, 128)
    assert b > a and b < 2 * a + 1e-5


def test_allreduce_alpha_beta():
    assert H100.allreduce_time(1e6, 1) == 0
    small, large = H100.allreduce_time(1e3, 8), H100.allreduce_time(1e9, 8)
    assert small > 6e-6                               # latency floor
    assert large == pytest.approx(2 * 7 / 8 * 1e9 / (450e9 * 0.83), rel=0.01)


def test_fp8_speeds_up_prefill_and_unsupported_precision_errors():
    assert prefill(H100, L70, 8, [4096], "fp8") < prefill(H100, L70, 8, [4096], "bf16")
    with pytest.raises(ConfigError, match="does not compute in fp8"):
        prefill(A100, L70, 8, [512], "fp8")


def test_memory_plan():
    acc = hetsim.load_accelerator("h100-sxm")
    plan = hetsim.memory_plan(L70, acc, 8, "bf16")
    assert plan.weight_bytes == pytest.approx(70.6e9 * 2 / 8, rel=0.01)
    assert plan.kv_tokens * plan.kv_bytes_per_token <= plan.kv_bytes
    fp8 = hetsim.memory_plan(L70, acc, 8, hetsim.Formats("bf16", "fp8", "fp8"))
    assert fp8.kv_tokens > 2 * plan.kv_tokens        # half-size weights and half-size KV
    with pytest.raises(ConfigError, match="does not fit"):
        hetsim.memory_plan(L70, acc, 1, "bf16")


def test_moe_and_mla_models_run():
    ds = hetsim.load_model("deepseek-v3")
    h200 = hetsim.PerfModel(hetsim.load_accelerator("h200-sxm"))
    t_small, t_big = decode(h200, ds, 8, [2000] * 8), decode(h200, ds, 8, [2000] * 256)
    assert 0 < t_small < t_big
    mx = hetsim.load_model("mixtral-8x7b")
    # a batch-1 decode touches 2 of 8 experts: far less than the dense-equivalent weights
    assert decode(H100, mx, 2, [100]) < 0.6 * (mx.num_params() * 2 / 2) / 3.35e12


def test_public_views_are_the_profiles_numbers():
    """What calibration reads off the op model, without its private fields."""
    acc = hetsim.load_accelerator("h100-sxm@datasheet")
    assert H100.bandwidth == acc.hbm_bandwidth * acc.efficiency.hbm
    assert H100.kernel_overhead == acc.efficiency.kernel_overhead_us * 1e-6
    assert H100.memory_time(H100.bandwidth) == pytest.approx(1.0 + H100.kernel_overhead)
    assert H100.calibration is None and H100_CAL.calibration is H100_CAL.acc.calibration
    assert H100_CAL.calibration is not None


def test_op_model_knows_operators_only():
    """Iteration times are the step model's: the op model neither offers them nor imports it."""
    import ast
    import inspect
    from hetsim.perf import ops
    assert not hasattr(hetsim.PerfModel, "prefill_time")
    assert not hasattr(hetsim.PerfModel, "decode_time")
    tree = ast.parse(inspect.getsource(ops))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m and m.endswith("step") for m in imported), imported


@settings(max_examples=200, deadline=None)
@given(batch=st.integers(0, 4096), ctx=st.integers(0, 1 << 24),
       name=st.sampled_from(["h100-sxm", "h100-sxm@datasheet", "a100-sxm"]))
def test_decode_time_is_the_general_iteration_exactly(batch, ctx, name):
    """decode_time is written out for speed; it must equal time() bit for bit (the golden
    result depends on the order of the float sums)."""
    step = hetsim.StepModel(hetsim.load_model("llama-3.1-8b"),
                            hetsim.PerfModel(hetsim.load_accelerator(name)), 1, "bf16")
    assert step.decode_time(batch, ctx) == step.time(decode_n=batch, decode_ctx=ctx)


@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_layer_wide_qk_norm_is_one_small_all_reduce_per_layer_under_tp(tp):
    """A QK-norm over all of a layer's heads (MiniMax-M2, ``qk_norm_type: per_layer``) sums its
    variance over the TP ranks: each layer pays one all-reduce of two fp32 a token on top of
    the same model normed per head, and a TP 1 layer pays nothing more."""
    import dataclasses
    H200 = hetsim.PerfModel(hetsim.load_accelerator("h200-sxm", runtime="vllm"))
    wide = hetsim.load_model("minimax-m2.5")
    assert wide.layer_qk_norm
    local = dataclasses.replace(wide, layer_qk_norm=False, qk_norm=True)
    for n_tok in (1, 8, 300):
        a = hetsim.StepModel(wide, H200, tp).dense_time(n_tok, n_tok)
        b = hetsim.StepModel(local, H200, tp).dense_time(n_tok, n_tok)
        extra = 0.0 if tp == 1 else wide.num_layers * H200.allreduce_time(n_tok * 8, tp)
        assert a - b == pytest.approx(extra, rel=1e-9, abs=1e-15)
        assert tp == 1 or extra > 0


@pytest.mark.parametrize("name", ["qwen3-32b", "qwen3.5-397b-a17b"])
def test_qk_norm_is_one_kernel_and_one_pass_over_q_and_k_per_full_attention_layer(name):
    """Per-head QK-norm (Qwen3, Qwen3.5): every full-attention layer runs one more kernel
    (each runtime's default path fuses the q and k norms into one) that reads and writes q
    and k once more; a linear-attention layer (Qwen3.5's Gated DeltaNet) has none."""
    import dataclasses
    pm = hetsim.PerfModel(hetsim.load_accelerator("h100-sxm", runtime="vllm"))
    normed = hetsim.load_model(name)
    assert normed.qk_norm and not normed.layer_qk_norm
    plain = dataclasses.replace(normed, qk_norm=False)
    for tp, n_tok in ((1, 1), (2, 8), (4, 512)):
        a, b = (hetsim.StepModel(m, pm, tp) for m in (normed, plain))
        heads, kv_heads = normed.num_heads // tp, normed.kv_heads_per_rank(tp)
        qk = n_tok * a.act_bytes * 2 * (heads + kv_heads) * normed.head_dim
        layers = normed.full_attention_layers
        assert layers < normed.num_layers or not normed.linear_attention
        got = a.dense_time(n_tok, n_tok) - b.dense_time(n_tok, n_tok)
        per_layer = pm.kernel_overhead + pm.memory_time(qk) - pm.memory_time(0)
        assert got == pytest.approx(layers * per_layer, rel=1e-9)
