"""Linear-attention (Gated DeltaNet) layers, Qwen3.5's: the model schema, the constant
per-sequence state in KV memory, admission and transfers, and the step model's recurrence
(DESIGN.md, "Linear-attention layers")."""
import dataclasses
from types import SimpleNamespace

import pytest
import simpy
from hypothesis import given
from hypothesis import strategies as st

import hetsim
from hetsim.engine.instances import DecodeInstance
from hetsim.engine.loop import kv_state_blocks
from hetsim.engine.memory import BlockPool
from hetsim.engine.ondemand import OnDemandDecodeInstance
from hetsim.engine.request import Request, State
from hetsim.perf import PerfModel, StepModel
from hetsim.perf.linear import GDN_CHUNK

from .conftest import ROOT

Q35 = hetsim.load_model("qwen3.5-397b-a17b")
H200 = hetsim.load_accelerator("h200-sxm")
#: the same model with every layer full attention (the linear layers' dims gone)
ALL_FULL = dataclasses.replace(Q35, linear_attention=None)


# --- the model ---------------------------------------------------------------------------------
def test_state_and_kv_from_the_published_config():
    """Per linear layer and rank: 64/tp value heads of 128 x 128 float32 state, and the causal
    convolution's last 3 inputs of its 2 x 16 x 128 + 64 x 128 channels in bf16 (the formula
    aiconfigurator-core 0.12.0's qwen35.py sizes SGLang's mamba pool with). KV grows in the 15
    full-attention layers only: K and V of 2 KV heads of 256, bf16."""
    for tp in (1, 2, 4, 8):
        ssm = 64 // tp * 128 * 128 * 4
        conv = (2 * 16 * 128 + 64 * 128) // tp * 3 * 2
        assert Q35.state_bytes(tp) == 45 * (ssm + conv)
    assert Q35.full_attention_layers == 15
    assert Q35.kv_bytes_per_token("bf16") == 15 * 2 * 2 * 256 * 2
    assert ALL_FULL.state_bytes(8) == 0 and ALL_FULL.kv_tokens(100, "bf16", 8) == 100


@given(n=st.integers(0, 300_000), tp=st.sampled_from([1, 2, 4, 8, 16]),
       fmt=st.sampled_from(["bf16", "fp8"]))
def test_kv_tokens_times_per_token_is_kv_bytes(n, tp, fmt):
    """The one sum: a sequence's bytes are its tokens' KV plus the constant state, and
    kv_tokens counts the state in tokens of the KV format at that TP."""
    per_token = Q35.kv_bytes_per_token(fmt, tp)
    assert Q35.kv_bytes(n, fmt, tp) == n * per_token + Q35.state_bytes(tp)
    assert Q35.kv_tokens(n, fmt, tp) * per_token == pytest.approx(Q35.kv_bytes(n, fmt, tp),
                                                                  rel=1e-12)
    # fp8 KV halves the tokens' bytes, not the (float32) state's: more tokens stand for it
    assert Q35.kv_tokens(0, "fp8", tp) == pytest.approx(2 * Q35.kv_tokens(0, "bf16", tp))


def test_gated_attention_doubles_the_query_projection():
    h, H, d = 4096, 32, 256
    ungated = dataclasses.replace(Q35, attention_gate=False)
    assert Q35.attention_params() - ungated.attention_params() == h * H * d


def test_attention_weights_cover_the_projections_the_step_model_computes_in_them():
    """A hybrid checkpoint that keeps its mixers in bf16 (as NVIDIA's Qwen3.5 NVFP4 release
    ignores self_attn and linear_attn) on an fp4 pool: the bf16 bytes are exactly the weights
    of the GEMMs the step model runs in ``attention_weights`` (each full-attention layer's
    projections, each linear layer's projections) plus the linear layers' depthwise
    convolutions, counted from the step model's shapes at TP 1."""
    kept = dataclasses.replace(Q35, attention_weights="bf16")
    step = StepModel(kept, PerfModel(hetsim.load_accelerator("b200")), 1, "fp4")
    assert step.attn_gemm == ("bf16", "bf16")
    a = Q35.linear_attention
    full = sum(n * k for n, k in step._layer_gemms)
    linear = sum(n * k for n, k in step.linear.gemms) + a.conv_dim * a.conv_kernel
    bf16 = Q35.full_attention_layers * full + a.layers * linear
    assert kept.weight_bytes("fp4") - Q35.weight_bytes("fp4") == bf16 * (2.0 - 0.5)
# --- KV blocks and admission ---------------------------------------------------------------------
def _step(state_tokens):
    """A stub step (1 s per iteration) of a model whose every sequence's state takes
    ``state_tokens`` tokens of KV."""
    model = SimpleNamespace(sliding_window=None, linear_attention=object(),
                            kv_tokens=lambda n, *fmt: n + state_tokens)
    return SimpleNamespace(model=model, formats=SimpleNamespace(kv="bf16"), tp=1, attn_tp=1,
                           pm=SimpleNamespace(iteration_overhead=1.0), read_window=0,
                           time=lambda *a, **k: 1.0, decode_time=lambda *a, **k: 1.0,
                           decode_times=lambda n, ctx, grow, count, w=None: [1.0] * count)


def _pool(kv_blocks):
    s = SimpleNamespace(max_batch_tokens=64, max_seqs=8, block_size=4, role="decode",
                        prefix_cache=None, preemption_policy="recompute", kv_offload=None, tp=1)
    return SimpleNamespace(name="decode", spec=s, cache_link=None, offload_link=None,
                           rules=None,
                           memory=SimpleNamespace(kv_blocks=kv_blocks, kv_bytes_per_token=1.0))


def test_state_blocks_are_the_state_rounded_up():
    assert kv_state_blocks(_step(9), 4) == 3 and kv_state_blocks(_step(8), 4) == 2
    kv = BlockPool(simpy.Environment(), 100, 4, state=3)
    assert [kv.blocks(n) for n in (0, 1, 4, 5)] == [3, 4, 4, 5]
    assert kv.fixed_blocks(1000) == 3


def _decode(kind, kv_blocks, state_tokens, requests):
    """Run ``requests`` [(prompt, output)] through one decode instance of ``kind`` (all arrive
    at 0, KV reserved in order); their (decode start, last token) times and the peak blocks."""
    env = simpy.Environment()
    d = kind(env, "decode/0", _pool(kv_blocks), _step(state_tokens))
    rs = [Request(i, 0.0, p, o) for i, (p, o) in enumerate(requests)]

    def go(r):
        r.state = State.TRANSFERRING
        yield d.reserve(r)
        d.join(r)
    for r in rs:
        env.process(go(r))
    env.run()
    assert d.kv.used == 0
    return [(r.decode_start_s, r.last_token_s) for r in rs], d.kv.peak


@given(tokens=st.integers(0, 5000), size=st.integers(1, 512), layers=st.integers(1, 8),
       full=st.integers(1, 8), bs=st.sampled_from([1, 4, 16, 64]), state=st.integers(0, 50),
       whole=st.booleans())
def test_blocks_add_the_state_to_tokens_and_window(tokens, size, layers, full, bs, state,
                                                   whole):
    """A sequence's blocks are its full-attention tokens', its window's and its state's: the
    state adds the same count at every length, and is never part of what grows."""
    env = simpy.Environment()
    kv = BlockPool(env, 10, bs, window=(size, layers, full), whole_window=whole, state=state)
    bare = BlockPool(env, 10, bs, window=(size, layers, full), whole_window=whole)
    assert kv.blocks(tokens) == bare.blocks(tokens) + state
    assert kv.fixed_blocks(tokens) == kv.window_blocks(tokens) + state
    assert kv.blocks(tokens) - kv.fixed_blocks(tokens) == -(-tokens // bs)


def test_the_state_is_held_for_the_whole_request():
    """Two requests of 8 prompt + 4 output tokens (3 decode steps of 1 s): 3 blocks of KV each.
    With a state of 2 blocks each needs 5, so a 9-block decode instance runs them in turn:
    the first frees its 5 blocks only after its last token (t=3)."""
    two = [(8, 4), (8, 4)]
    assert _decode(DecodeInstance, 9, 0, two) == ([(0, 3), (0, 3)], 6)     # 3 + 3: together
    assert _decode(DecodeInstance, 9, 8, two) == ([(0, 3), (3, 6)], 5)     # 5 + 5 > 9: in turn


def test_on_demand_growth_leaves_the_state_alone():
    """vLLM-style growth: admitted with blocks for prompt + 1 token and the state's 2; the KV
    grows a block per 4 tokens and the state never does, so a 6 + 10 request peaks at
    ceil(16 / 4) + 2 blocks (its last token's KV is never written: 15 tokens, still 4 blocks)."""
    assert _decode(OnDemandDecodeInstance, 100, 8, [(6, 10)])[1] == 4 + 2
    assert _decode(OnDemandDecodeInstance, 100, 0, [(6, 10)])[1] == 4
    # two of them need 2 x 6 blocks at their ends: 12 hold both; in 11, when both need their
    # 4th KV block (context 13, after 6 steps) the newer is preempted and runs its last 3
    # steps after the first ends (its recompute costs 0 with this stub); without the state
    # they need 8
    two = [(6, 10), (6, 10)]
    assert _decode(OnDemandDecodeInstance, 12, 8, two) == ([(0, 9), (0, 9)], 12)
    assert _decode(OnDemandDecodeInstance, 11, 8, two) == ([(0, 9), (0, 12)], 11)
    assert _decode(OnDemandDecodeInstance, 8, 0, two) == ([(0, 9), (0, 9)], 8)


# --- the step model ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def steps():
    pm = PerfModel(H200)
    return StepModel(Q35, pm, 8, "fp8"), StepModel(ALL_FULL, pm, 8, "fp8")


def test_decode_context_cost_is_the_full_layers_only(steps):
    """A decode step's cost grows with the context in the 15 full-attention layers only: a
    quarter of the same model with all 60 layers full attention."""
    hybrid, full = steps
    for batch in (1, 16, 256):
        grow_h = hybrid.decode_time(batch, batch * 20_000) - hybrid.decode_time(batch, batch * 2000)
        grow_f = full.decode_time(batch, batch * 20_000) - full.decode_time(batch, batch * 2000)
        assert grow_h == pytest.approx(grow_f * 15 / 60, rel=1e-9)


def test_decode_recurrence_streams_the_state(steps):
    """Each decode token reads and writes its sequence's whole state in every linear layer: at
    a large batch the linear layers' recurrence is memory-bound at 2 x the state's bytes (the
    q/k/v and conv traffic is 1-2% more)."""
    hybrid, _ = steps
    pm = hybrid.pm
    batch = 512
    state = 45 * 8 * 128 * 128 * 4                        # all linear layers, one rank
    floor = batch * 2 * state / pm.bandwidth
    t = hybrid.linear.decode_time(batch)
    assert floor < t < 1.03 * floor + 45 * 2 * pm.kernel_overhead


def test_prefill_recurrence_is_linear_in_new_tokens(steps):
    """A linear layer's prefill cost depends on the chunk's new tokens, not on the context
    before it (that is the state), and is linear in them up to the per-chunk state traffic."""
    hybrid, _ = steps
    lin = hybrid.linear.prefill_time
    assert lin([(2048, 2048)]) == lin([(2048, 100_000)])
    one = lin([(GDN_CHUNK * 16, GDN_CHUNK * 16)])
    assert lin([(GDN_CHUNK * 16, GDN_CHUNK * 16)] * 2) == pytest.approx(
        2 * one - 45 * 2 * hybrid.pm.kernel_overhead, rel=1e-9)
    # the full-attention layers still see the context: a late chunk costs more in total
    assert hybrid.prefill_attention_time([(2048, 100_000)]) > hybrid.prefill_attention_time(
        [(2048, 2048)])


def test_hybrid_costs_less_than_all_full_attention_at_long_context(steps):
    hybrid, full = steps
    assert hybrid.decode_time(64, 64 * 32_000) < full.decode_time(64, 64 * 32_000)
    assert hybrid.prefill_time([32_000]) < full.prefill_time([32_000])


# --- end to end -------------------------------------------------------------------------------------
def test_scenario_sends_the_state_and_runs():
    """The shipped scenario: every transfer carries the prompt's full-attention KV plus the
    state (kv_tokens at the decode pool's format and TP), and every request completes."""
    from .conftest import with_requests
    sc = with_requests(hetsim.load_scenario(ROOT / "scenarios" / "qwen3.5-397b.yaml"), 60)
    r = hetsim.run(sc)
    rq = r.requests
    for s in r.summaries:
        assert s["completed"] == 60
    disagg = rq[(rq["placement"] == "disagg") & (rq["output_tokens"] > 1)]
    tp = 8
    wire = Q35.kv_bytes_per_token("fp8", tp) * tp
    want = [Q35.kv_tokens(n, "fp8", tp) * wire for n in disagg["input_tokens"]]
    assert list(disagg["kv_bytes"]) == pytest.approx(want, rel=1e-12)
    assert min(disagg["kv_bytes"]) > Q35.state_bytes(tp) * tp


@pytest.mark.parametrize("conversion", ["decode", "prefill"])
def test_a_converted_transfer_sends_the_state_s_own_bytes(conversion):
    """bf16 KV on the prefill pool, fp8 on the decode pool: the wire carries the prompt's KV in
    the wire's format (bf16 when the decode side converts, fp8 when the prefill side does) and
    the linear layers' state in its own bytes (fp32 matrices, bf16 convolution inputs), the
    same either way."""
    from hetsim.scenario import parse_scenario
    raw = {"name": "q", "model": "qwen3.5-397b-a17b",
           "workload": {"requests": 12, "seed": 3, "arrival": {"process": "poisson",
                                                              "rate_rps": 4.0},
                        "input_tokens": {"dist": "uniform", "min": 100, "max": 3000},
                        "output_tokens": {"dist": "fixed", "value": 4}},
           "slo": {"ttft_s": 2.0, "tpot_s": 0.05},
           "placements": {"disagg": {"pools": {
               "prefill": {"role": "prefill", "accelerator": "h200-sxm", "instances": 1,
                           "tp": 8, "precision": {"compute": "fp8", "kv": "bf16"}},
               "decode": {"role": "decode", "accelerator": "h200-sxm", "instances": 1,
                          "tp": 8, "precision": "fp8"}},
               "kv_transfer": {"link": "roce-400g", "conversion": conversion}}}}
    rq = hetsim.run(parse_scenario(raw, "q.yaml")).requests
    assert (rq["state"] == "completed").all()
    tp, fmt = 8, {"decode": "bf16", "prefill": "fp8"}[conversion]
    kv = [n * Q35.kv_bytes_per_token(fmt, tp) * tp for n in rq["input_tokens"]]
    want = [k + Q35.state_bytes(tp) * tp for k in kv]
    assert list(rq["kv_bytes"]) == pytest.approx(want, rel=1e-12)
    # the conversion pass casts the KV only (on the side that converts), never the state
    pm = PerfModel(hetsim.load_accelerator("h200-sxm"))
    conv = [pm.kv_convert_time(n * Q35.kv_bytes_per_token("bf16", tp),
                               n * Q35.kv_bytes_per_token("fp8", tp), Q35.num_layers)
            for n in rq["input_tokens"]]
    assert list(rq["conversion_s"]) == pytest.approx(conv, rel=1e-12)
# --- measured GDN kernels -----------------------------------------------------------------------
def test_step_reads_the_measured_gdn_grids():
    """On a runtime profile with GDN grids (aiconfigurator-core's gdn_perf, SGLang 0.5.14 on
    H200), a linear layer's decode is the generation grid at the batch and its prefill the
    context grid at (chunks, new tokens each); a shape the tables never timed keeps the
    roofline."""
    acc = hetsim.load_accelerator("h200-sxm", runtime="sglang")
    pm = PerfModel(acc)
    step = StepModel(Q35, pm, 8, "fp8")
    key = (2, 128, 8, 128, 4)                 # 16 / 8 key heads, 64 / 8 value heads per rank
    gen, ctx = pm.kernels.get("generation_gdn", key), pm.kernels.get("context_gdn", key)
    assert step.linear.decode_time(64) == 45 * gen.grid((64,))
    assert step.linear.prefill_time([(2048, 2048)] * 4) == pytest.approx(
        45 * ctx.grid((4, 2048)), rel=1e-12)
    # measured: the convolution and the chunked scan cost several times the roofline's
    roof = step.linear.shape.prefill_time(pm, [(8192, 8192)], step.attn_precision)
    assert ctx.grid((1, 8192)) > 2 * roof
    odd = dataclasses.replace(Q35, linear_attention=dataclasses.replace(
        Q35.linear_attention, head_k_dim=96))
    s2 = StepModel(odd, pm, 8, "fp8")
    assert s2.linear._gen is None
    assert s2.linear.decode_time(64) == 45 * s2.linear.shape.decode_time(pm, 64,
                                                                          s2.attn_precision)
