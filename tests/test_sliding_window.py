"""gpt-oss as published: mxfp4 experts beside bf16 weights, and sliding-window layers in the
step model, the memory plan, the engine's KV blocks, transfers and the decode-step sums."""
import dataclasses
import json
from types import SimpleNamespace

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

import hetsim
from hetsim.engine.instances import DecodeInstance, MixedInstance
from hetsim.engine.memory import BlockPool
from hetsim.engine.ondemand import OnDemandDecodeInstance
from hetsim.engine.request import Request, State
from hetsim.errors import ConfigError
from hetsim.models import SlidingWindow, from_hf_config
from hetsim.perf import PerfModel, StepModel, memory_plan, model_problem
from hetsim.perf.step import band_pairs
from hetsim.precision import PRECISION_BYTES, Precision, unsupported

from .conftest import ROOT

H100 = hetsim.load_accelerator("h100-sxm")
H200 = hetsim.load_accelerator("h200-sxm")
OSS = hetsim.load_model("gpt-oss-120b")
OSS20 = hetsim.load_model("gpt-oss-20b")
GIB = 2 ** 30


def _window(model, size):
    return dataclasses.replace(model, sliding_window=SlidingWindow(size,
                                                                   model.sliding_window.layers))


# --- mxfp4 experts ---------------------------------------------------------------------------
def test_mxfp4_is_4_25_bits_and_a_storage_format():
    assert PRECISION_BYTES["mxfp4"] == 0.53125                  # (4 + 8 / 32) / 8
    assert unsupported(H100, "mxfp4") is not None                 # no device computes in it
    assert Precision("bf16", weights="mxfp4").formats().weights == "mxfp4"   # weight-only


# gpt-oss model card (arXiv:2508.10925, table 1): 116.83B / 20.91B total parameters, checkpoint
# 60.8 / 12.8 GiB. hetsim leaves out biases, sinks and norms (0.04%), so 0.5% and 1%.
@pytest.mark.parametrize("model, total, gib", [(OSS, 116.83, 60.8), (OSS20, 20.91, 12.8)])
def test_weights_as_published(model, total, gib):
    assert model.expert_weights == "mxfp4"
    assert model.num_params() / 1e9 == pytest.approx(total, rel=0.005)
    assert model.weight_bytes("bf16") / GIB == pytest.approx(gib, rel=0.01)
    # the memory plan holds exactly that, sharded over TP
    for tp in (1, 2):
        assert memory_plan(model, H200, tp, "bf16").weight_bytes * tp == pytest.approx(
            model.weight_bytes("bf16"), rel=1e-12)
    # the experts are the mxfp4 part; the rest (attention, router, embeddings) bf16
    experts = model.expert_params()
    assert model.weight_bytes("bf16") == (experts * 0.53125
                                          + (model.num_params() - experts) * 2.0)


def test_gpt_oss_120b_fits_one_80gb_gpu():
    # OpenAI: "gpt-oss-120b ... runs on a single 80 GB GPU"
    plan = memory_plan(OSS, H100, 1, "bf16")
    assert 60e9 < plan.weight_bytes < 70e9 and plan.kv_tokens > 100_000


def test_expert_format_is_the_narrower_of_checkpoint_and_pool():
    assert OSS.expert_format("bf16") == "mxfp4" and OSS.expert_format("fp8") == "mxfp4"
    assert OSS.expert_format("int4") == "int4"                  # a narrower pool format wins
    dense = hetsim.load_model("llama-3.1-8b")
    assert dense.expert_format("bf16") == "bf16"
    assert dense.weight_bytes("bf16") == dense.num_params() * 2.0


def test_expert_weights_need_experts_and_a_known_format(tmp_path):
    f = tmp_path / "m.yaml"
    base = "name: x\nnum_layers: 2\nhidden_size: 64\nnum_heads: 2\nffn_size: 128\nvocab_size: 10\n"
    f.write_text(base + "expert_weights: mxfp4\n")
    with pytest.raises(ConfigError, match="m.yaml: expert_weights: only a model with experts"):
        hetsim.load_model(f)
    f.write_text(base + "moe: {num_experts: 4, top_k: 1, expert_ffn_size: 32}\n"
                 "expert_weights: mxfp5\n")
    with pytest.raises(ConfigError, match="expert_weights: unknown precision 'mxfp5'"):
        hetsim.load_model(f)


def test_hf_mxfp4_quantization_config_marks_the_experts(tmp_path):
    cfg = {"model_type": "gpt_oss", "num_hidden_layers": 2, "hidden_size": 64,
           "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
           "intermediate_size": 64, "vocab_size": 100, "num_local_experts": 4,
           "num_experts_per_tok": 2, "quantization_config": {"quant_method": "mxfp4"}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert from_hf_config(tmp_path / "config.json").expert_weights == "mxfp4"
    cfg["quantization_config"] = {"quant_method": "fp8"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert from_hf_config(tmp_path / "config.json").expert_weights is None


def test_mxfp4_experts_stream_fewer_bytes_than_bf16():
    """Decode is weight-bandwidth-bound: the experts read in mxfp4 make a step faster, and a
    prefill-sized step pays the dequantization on top of bf16 compute (w4a16)."""
    pm = PerfModel(H100)
    bf16 = StepModel(dataclasses.replace(OSS, expert_weights=None), pm, 2, "bf16")
    mx = StepModel(OSS, pm, 2, "bf16")
    assert mx.expert_weights == "mxfp4" and bf16.expert_weights == "bf16"
    assert mx.decode_time(16, 16 * 2000) < 0.7 * bf16.decode_time(16, 16 * 2000)
    assert mx.dense_time(8192, 1) > bf16.dense_time(8192, 1)    # dequantization, compute-bound


# --- KV bytes --------------------------------------------------------------------------------
def test_kv_bytes_of_a_known_context():
    layer = 2 * 8 * 64 * 2                                      # K+V x 8 KV heads x 64 x bf16
    assert OSS.kv_layer_bytes("bf16") == layer == 2048
    assert OSS.kv_bytes_per_token("bf16") == 18 * layer == 36_864
    # 8192 tokens: 18 full layers hold all of them, 18 windowed layers the last 128
    assert OSS.kv_bytes(8192, "bf16") == 18 * layer * 8192 + 18 * layer * 128 == 306_708_480
    assert OSS.kv_tokens(8192) == 8192 + 128 and OSS.kv_tokens(100) == 200
    assert OSS.kv_bytes(100, "bf16") == 36 * layer * 100         # inside the window: every layer
    assert OSS.kv_bytes(8192, "fp8", tp=2) == 306_708_480 / 4    # 4 KV heads per rank, 1 byte


@given(n=st.integers(0, 200_000))
def test_kv_tokens_times_per_token_is_kv_bytes(n):
    for m in (OSS, OSS20):
        assert m.kv_tokens(n) * m.kv_bytes_per_token("bf16") == m.kv_bytes(n, "bf16")


# --- step model ------------------------------------------------------------------------------
def test_band_pairs_counts_every_query_key_pair_in_the_band():
    for w in (1, 3, 8):
        for kv in range(0, 20):
            for q in range(0, kv + 1):
                brute = sum(min(p, w) for p in range(kv - q + 1, kv + 1))
                assert band_pairs(q, kv, w) == brute


def _steps(acc=H100, tp=2, model=OSS):
    pm = PerfModel(acc)
    return (StepModel(model, pm, tp, "bf16"),
            StepModel(dataclasses.replace(model, sliding_window=None), pm, tp, "bf16"))


@pytest.mark.parametrize("acc", [H100, hetsim.load_accelerator("h100-sxm@datasheet")])
def test_windowed_decode_lies_between_no_attention_and_all_full_attention(acc):
    win, full = _steps(acc)
    for batch, ctx in ((1, 50), (8, 4000), (64, 30_000), (256, 2000)):
        total, in_window = batch * ctx, batch * min(ctx, 128)
        none = win.dense_time(batch, batch) + win.pm.iteration_overhead
        t = win.decode_time(batch, total, in_window)
        assert none < t <= full.decode_time(batch, total)
        if ctx <= 128:   # the window holds everything: the same reads as full attention
            assert t == pytest.approx(full.decode_time(batch, total), rel=1e-12)


def test_windowed_prefill_lies_between_no_attention_and_all_full_attention():
    win, full = _steps()
    for chunks in ([(8192, 8192)], [(100, 100)], [(512, 4096), (1, 9000)], [(2048, 2048)] * 4):
        t = win.prefill_attention_time(chunks)
        assert 0 < t <= full.prefill_attention_time(chunks)
    assert win.prefill_attention_time([(100, 100)]) == pytest.approx(
        full.prefill_attention_time([(100, 100)]), rel=1e-12)
    # long prompts: the windowed half costs little, so attention is about half of full's
    long = win.prefill_attention_time([(32768, 32768)]) / full.prefill_attention_time(
        [(32768, 32768)])
    assert 0.5 < long < 0.55


def test_decode_time_is_time_with_window_sums():
    win, _ = _steps()
    for b, total, inw in ((1, 300, 128), (64, 64 * 900, 64 * 120), (0, 0, 0)):
        assert win.decode_time(b, total, inw) == win.time(decode_n=b, decode_ctx=total,
                                                         decode_window_ctx=inw)
    # no window sum given: the bound min(total, batch x window) (exact when all fill it)
    assert win.decode_time(8, 8000) == win.decode_time(8, 8000, 8 * 128)


@settings(max_examples=40, deadline=None)
@given(w1=st.integers(1, 4096), dw=st.integers(0, 4096),
       ctxs=st.lists(st.integers(1, 20_000), min_size=1, max_size=16),
       chunks=st.lists(st.tuples(st.integers(1, 4096), st.integers(0, 8192)), min_size=1,
                       max_size=4))
def test_a_smaller_window_never_costs_more(w1, dw, ctxs, chunks):
    """Metamorphic: shrinking the window never makes a step slower nor a sequence's KV larger."""
    pm = PerfModel(H100)
    small, big = (StepModel(_window(OSS, w), pm, 2, "bf16") for w in (w1, w1 + dw))
    chunks = [(q, q + prior) for q, prior in chunks]
    # NOTE: 1 ns: where the calibrated H100 decode-attention memory curve levels off, a layer's
    # time falls by up to ~2e-12 s as its KV grows (an op-model property, not the window's)
    tol = 1e-9
    assert small.prefill_attention_time(chunks) <= big.prefill_attention_time(chunks) + tol
    b, total = len(ctxs), sum(ctxs)
    assert small.decode_time(b, total, sum(min(c, w1) for c in ctxs)) <= big.decode_time(
        b, total, sum(min(c, w1 + dw) for c in ctxs)) + tol
    for c in ctxs:
        assert small.model.kv_bytes(c) <= big.model.kv_bytes(c)


# --- engine ----------------------------------------------------------------------------------
class WindowStep:
    """A stub step model over a windowed model that checks, at every decode step, that the
    instance's window sum equals sum of min(context, window) over its live sequences."""
    pm = SimpleNamespace(iteration_overhead=1.0)

    def __init__(self, size, layers=1, full=1):
        self.model = SimpleNamespace(
            sliding_window=SimpleNamespace(size=size, layers=layers), full_attention_layers=full,
            linear_attention=None, kv_tokens=lambda n, *fmt: n + min(n, size) * layers / full)
        self.formats, self.tp, self.attn_tp = SimpleNamespace(kv="bf16"), 1, 1
        self.read_window = size
        self.inst, self.steps = None, 0

    def _check(self, n, ctx, win):
        inst = self.inst
        live = [r for _, _, gen, r in inst.active if r.gen == gen]
        assert n == len(live) and ctx == sum(inst._ctx(r) for r in live)
        assert win == sum(min(inst._ctx(r), self.model.sliding_window.size) for r in live)
        self.steps += 1

    def time(self, chunks=(), n_logits_prefill=0, decode_n=0, decode_ctx=0,
             decode_window_ctx=None):
        if decode_n:
            self._check(decode_n, decode_ctx, decode_window_ctx)
        return 1.0 + sum(q for q, _ in chunks) / 8 + decode_n / 4

    def decode_time(self, n, ctx, window_ctx=None):
        return self.time(decode_n=n, decode_ctx=ctx, decode_window_ctx=window_ctx)


def _pool(role, kv_blocks=1000, **spec):
    s = SimpleNamespace(max_batch_tokens=64, max_seqs=8, block_size=4, role=role,
                        prefix_cache=None, preemption_policy="recompute", kv_offload=None, tp=1)
    s.__dict__.update(spec)
    return SimpleNamespace(name=role, spec=s, cache_link=None, offload_link=None, rules=None,
                           memory=SimpleNamespace(kv_blocks=kv_blocks, kv_bytes_per_token=1.0))


def run_decode(env, d, shapes, gap: float) -> list[Request]:
    """Requests of (prompt, output) ``shapes`` reserve and join decode instance ``d`` one every
    ``gap`` seconds, their KV already there; runs ``env`` to the end."""
    reqs = [Request(i, 0.0, p, o) for i, (p, o) in enumerate(shapes)]

    def arrive(r, at):
        yield env.timeout(at)
        r.state = State.TRANSFERRING
        yield d.reserve(r)
        yield d.join(r)
    for i, r in enumerate(reqs):
        env.process(arrive(r, i * gap))
    env.run()
    return reqs


@pytest.mark.parametrize("kind", [DecodeInstance, OnDemandDecodeInstance])
def test_decode_keeps_the_window_sum_exact(kind):
    """Sequences start below, at and above the window, cross it, finish and (on-demand, with
    few blocks) are preempted; the window sum is right at every step."""
    env = simpy.Environment()
    step = WindowStep(size=10)
    blocks = 1000 if kind is DecodeInstance else 30
    d = step.inst = kind(env, "d/0", _pool("decode", blocks), step)
    reqs = run_decode(env, d, [(1, 30), (3, 5), (9, 12), (10, 4), (25, 8), (2, 40), (6, 2),
                               (40, 15)], 2.5)
    assert all(r.last_token_s is not None for r in reqs)
    assert step.steps > 20 and d.win_sum == d.ctx_sum == d.n_below == d.running == 0
    assert d.kv.used == 0
    if kind is OnDemandDecodeInstance:
        assert d.preemptions > 0


def test_mixed_keeps_the_window_sum_exact():
    env = simpy.Environment()
    step = WindowStep(size=6)
    m = step.inst = MixedInstance(env, "m/0", _pool("mixed"), step)
    reqs = [Request(i, 0.0, p, o) for i, (p, o) in enumerate([(3, 9), (20, 5), (5, 3), (1, 12)])]
    for r in reqs:
        m.submit(r)
    env.run()
    assert all(r.last_token_s is not None for r in reqs) and step.steps > 5
    assert m.win_sum == m.n_below == 0


@given(tokens=st.integers(0, 100_000), size=st.integers(1, 4096), layers=st.integers(1, 40),
       full=st.integers(1, 40), bs=st.sampled_from([1, 16, 32]))
def test_window_blocks_are_bounded(tokens, size, layers, full, bs):
    """A sequence's windowed layers never hold more than one window's blocks, however long it
    grows; exactly its KV bytes rounded up to blocks of full-attention KV."""
    kv = BlockPool(simpy.Environment(), 10, bs, window=(size, layers, full))
    cap = -(-size * layers // (full * bs))
    assert kv.window_blocks(tokens) <= cap
    assert kv.blocks(tokens) == -(-tokens // bs) + kv.window_blocks(tokens)
    assert kv.window_blocks(tokens) * bs * full >= min(tokens, size) * layers
    whole = BlockPool(simpy.Environment(), 10, bs, window=(size, layers, full), whole_window=True)
    assert whole.window_blocks(tokens) == cap
    assert BlockPool(simpy.Environment(), 10, bs).blocks(tokens) == -(-tokens // bs)


# --- end to end ------------------------------------------------------------------------------
def test_gpt_oss_is_no_longer_refused():
    # (a scenario and a plan spec of it load: tests/test_models.py)
    assert model_problem(OSS) is None and model_problem(OSS20) is None


def test_gpt_oss_scenario_sends_and_holds_only_the_window():
    """The shipped scenario: every prompt's transfer carries the full layers' KV plus only the
    window's of the windowed ones, and the H100 pool's KV blocks never over-commit."""
    from .conftest import with_requests
    sc = with_requests(hetsim.load_scenario(ROOT / "scenarios" / "gpt-oss-120b.yaml"), 120)
    r = hetsim.run(sc)
    rq = r.requests
    disagg = rq[rq["placement"] == "disagg-h200-h100"]
    per_token = OSS.kv_bytes_per_token("bf16")      # tp x (per-rank bytes at tp) = per_token
    want = [OSS.kv_tokens(n) * per_token for n in disagg["input_tokens"]]
    sent = disagg[disagg["output_tokens"] > 1]
    assert list(sent["kv_bytes"]) == pytest.approx(
        [w for w, o in zip(want, disagg["output_tokens"]) if o > 1], rel=1e-12)
    for s in r.summaries:
        assert s["completed"] == 120


def test_window_attention_study_runs():
    """benchmarks/window_attention.py (DESIGN's measured figures) on one system; it reads
    aiconfigurator-core's tables, so it is skipped without the aic extra."""
    pytest.importorskip("aiconfigurator_core")
    from .conftest import benchmark_module
    with benchmark_module("window_attention") as wa:
        r = wa.study("h100_sxm", "vllm", "generation_attention", 1)
    # measured windowed kernels save less than the ideal band the model charges
    assert r["shapes"] > 100 and r["model_1k"] < r["measured_1k"] < 1


def test_measured_windowed_layers_do_not_grow_with_the_context_before_a_chunk():
    """With a runtime profile's window-128 grid, a windowed layer reads at most q + w - 1 keys:
    a chunk after 32k tokens of context costs its windowed layers what one after 4k does."""
    from hetsim import load_accelerator
    from hetsim.models import load_model
    step = StepModel(load_model("gpt-oss-120b"), PerfModel(load_accelerator("h100-sxm",
                                                                           runtime="vllm")))
    assert step._ctx_win_form is not None and step._ctx_form is not None
    full = step.model.full_attention_layers
    near, far = [(512, 4096)], [(512, 32768)]
    grew = step.prefill_attention_time(far) - step.prefill_attention_time(near)
    assert grew == pytest.approx(full * (step._ctx_form(far) - step._ctx_form(near)), rel=1e-9)
    assert grew > 0
