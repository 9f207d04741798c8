"""Attention data parallelism (``attention_dp``): the step model's per-rank split, memory per
rank, per-rank scheduler limits, and the keys' checks (DESIGN.md, "Attention data
parallelism").

The hand computations below rebuild each part from a step model WITHOUT attention DP at the
ranks' TP (attention, dense and shared parts run there) and one at the instance's TP (the
routed experts), so they check the composition, not the operator costs.
"""
import math

import pytest
from hypothesis import given, settings, strategies as st

import hetsim
from hetsim import runtimes
from hetsim.engine.instances import DecodeInstance, MixedInstance, PrefillInstance
from hetsim.engine.ondemand import OnDemandDecodeInstance
from hetsim.errors import ConfigError
from hetsim.models import ModelConfig
from hetsim.model_parts import MLA, MoE
from hetsim.perf import PerfModel, StepModel, memory_plan, pool_problem
from hetsim.resolve import resolve_scenario

from .conftest import SCENARIOS
from .test_engine_units import make, req

PM = PerfModel(hetsim.load_accelerator("h100-sxm@datasheet"))
#: a toy MoE: 4 layers, the first dense, GQA 8 KV heads
TOY = ModelConfig(name="toy-moe", num_layers=4, hidden_size=1024, num_heads=16,
                  num_kv_heads=8, ffn_size=4096, vocab_size=32000,
                  moe=MoE(num_experts=16, top_k=2, expert_ffn_size=512, shared_experts=1,
                          first_dense_layers=1))
#: the same with MLA (its latent replicated on every TP rank)
TOY_MLA = ModelConfig(name="toy-mla", num_layers=4, hidden_size=1024, num_heads=16,
                      num_kv_heads=16, head_dim=192, ffn_size=4096, vocab_size=32000,
                      mla=MLA(kv_lora_rank=512, qk_rope_dim=64, qk_nope_dim=128, v_head_dim=128),
                      moe=MoE(num_experts=16, top_k=2, expert_ffn_size=512,
                              first_dense_layers=1))


def _rank(model, atp):
    """One rank at attention TP ``atp`` as a plain step model: every part but the routed
    experts is what an attention-DP rank runs."""
    return StepModel(model, PM, atp)


def _rank_dense(model, atp, n_tok, n_logits):
    """A rank's non-expert layers and LM head on its own ``n_tok`` tokens: the plain model's
    dense part less its MoE layers' routed experts and less one of their two all-reduces
    (the experts' exchange replaces it)."""
    s = _rank(model, atp)
    if not n_tok:
        return s.dense_time(0, n_logits)
    n_moe = model.num_layers - model.moe.first_dense_layers
    ar = PM.allreduce_time(n_tok * model.hidden_size * s.act_bytes, atp)
    return s.dense_time(n_tok, n_logits) - n_moe * (s._routed_analytic(n_tok) + ar)


def _experts(model, tp, n_tok):
    """The routed experts over all ``n_tok`` tokens on tp GPUs, and the all-gather +
    reduce-scatter of the tokens (one all-reduce's worth) over tp."""
    s = StepModel(model, PM, tp)
    n_moe = model.num_layers - model.moe.first_dense_layers
    return n_moe * (s._routed_analytic(n_tok)
                    + PM.allreduce_time(n_tok * model.hidden_size * s.act_bytes, tp))


# --- the step model -----------------------------------------------------------------------
@pytest.mark.parametrize("model", [TOY, TOY_MLA], ids=["gqa", "mla"])
@pytest.mark.parametrize("tp,n", [(8, 8), (8, 2), (4, 4)])
def test_decode_splits_the_batch_evenly_and_runs_the_experts_on_all_tokens(model, tp, n):
    adp = StepModel(model, PM, tp, attention_dp=n)
    atp = tp // n
    batch, ctx = 13, 13 * 1000
    b = math.ceil(batch / n)                     # the busiest rank's sequences
    want = (_rank_dense(model, atp, b, b)
            + _rank(model, atp).decode_attention_time(b, math.ceil(ctx * b / batch))
            + _experts(model, tp, batch) + PM.iteration_overhead)
    assert adp.decode_time(batch, ctx) == pytest.approx(want, rel=1e-9)
    # the general iteration is the same sums in the same order
    assert adp.time(decode_n=batch, decode_ctx=ctx) == adp.decode_time(batch, ctx)


def test_prefill_chunks_stay_whole_largest_first_and_the_step_is_the_slowest_rank():
    tp = n = 2
    adp = StepModel(TOY, PM, tp, attention_dp=n)
    r = _rank(TOY, 1)
    # 1000 -> rank 0, 600 -> rank 1, 500 -> rank 1 (600 < 1000): ranks of 1000 and 1100
    # tokens; the first two chunks finish their prompts (logits), the last does not
    chunks = [(600, 600), (1000, 1000), (500, 900)]
    ranks = {0: ([(1000, 1000)], 1), 1: ([(600, 600), (500, 900)], 1)}
    per = [_rank_dense(TOY, 1, sum(q for q, _ in c), logits) + r.prefill_attention_time(c)
           for c, logits in ranks.values()]
    want = max(per) + _experts(TOY, tp, 2100) + PM.iteration_overhead
    assert adp.time(chunks, n_logits_prefill=2) == pytest.approx(want, rel=1e-9)
    # one long prompt is not split over the ranks: it costs what it costs on one rank
    one = (_rank_dense(TOY, 1, 4096, 1) + r.prefill_attention_time([(4096, 4096)])
           + _experts(TOY, tp, 4096) + PM.iteration_overhead)
    assert adp.prefill_time([4096]) == pytest.approx(one, rel=1e-9)


def test_decodes_fill_the_ranks_before_chunks_are_placed():
    """Decodes 5 over 4 ranks (2, 1, 1, 1); one chunk goes to the first of the least loaded
    ranks (rank 1), whose time is then its chunk plus its one decode."""
    adp = StepModel(TOY, PM, 4, attention_dp=4)
    r = _rank(TOY, 1)
    t = adp.time([(64, 64)], 1, decode_n=5, decode_ctx=5000)
    busy = (_rank_dense(TOY, 1, 65, 2) + r.prefill_attention_time([(64, 64)])
            + r.decode_attention_time(1, 1000))
    two = _rank_dense(TOY, 1, 2, 2) + r.decode_attention_time(2, 2000)
    want = max(busy, two) + _experts(TOY, 4, 69) + PM.iteration_overhead
    assert t == pytest.approx(want, rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(batch=st.integers(0, 2048), ctx=st.integers(0, 1 << 22),
       name=st.sampled_from(["h100-sxm", "h100-sxm@datasheet"]),
       model=st.sampled_from(["qwen3-235b-a22b", "kimi-k2.5", "llama-3.1-8b"]))
def test_attention_dp_1_is_the_plain_model_bit_for_bit(batch, ctx, name, model):
    m, pm = hetsim.load_model(model), PerfModel(hetsim.load_accelerator(name))
    plain, one = StepModel(m, pm, 8), StepModel(m, pm, 8, attention_dp=1)
    assert one.decode_time(batch, ctx) == plain.decode_time(batch, ctx)
    chunks = [(512, 512 + ctx % 4096), (100, 100)]
    assert one.time(chunks, 1, batch, ctx) == plain.time(chunks, 1, batch, ctx)


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 1024), ctx_per=st.integers(1, 8192),
       n=st.sampled_from([2, 4, 8]))
def test_more_sequences_never_make_a_decode_step_faster(batch, ctx_per, n):
    s = StepModel(TOY_MLA, PM, 8, attention_dp=n)
    assert s.decode_time(batch + 1, (batch + 1) * ctx_per) >= s.decode_time(batch,
                                                                           batch * ctx_per)


def test_no_attention_all_reduce_at_attention_tp_1():
    """TP1 ranks reduce nothing after attention; the only collective is the experts'."""
    adp = StepModel(TOY, PM, 8, attention_dp=8)
    assert adp.dense_time(64, 0) == pytest.approx(_rank(TOY, 1).dense_time(64, 0)
                                                  - 3 * _rank(TOY, 1)._routed_analytic(64))


def test_attention_dp_must_divide_tp():
    with pytest.raises(ConfigError, match="attention_dp=3 must divide tp=8"):
        StepModel(TOY, PM, 8, attention_dp=3)


# --- memory ---------------------------------------------------------------------------------
def test_mla_kv_capacity_grows_with_the_ranks_and_weights_replicate():
    acc = hetsim.load_accelerator("h100-sxm")
    one, dp = memory_plan(TOY_MLA, acc, 8, "bf16"), memory_plan(TOY_MLA, acc, 8, "bf16",
                                                                attention_dp=8)
    # MLA's latent is whole on every TP rank: per device the same bytes per token
    assert dp.kv_bytes_per_token == one.kv_bytes_per_token
    # each of the 8 ranks keeps its own requests' KV: 8 x one device's
    per_rank = int(dp.kv_bytes // dp.kv_bytes_per_token) // dp.block_size
    assert dp.kv_blocks == 8 * per_rank and dp.kv_tokens == 8 * per_rank * dp.block_size
    assert one.kv_tokens == int(one.kv_bytes // one.kv_bytes_per_token) // 16 * 16
    # weights: the routed experts sharded 8 ways, everything else whole on every rank
    routed = TOY_MLA.expert_params(shared=False) * 2
    assert dp.weight_bytes == pytest.approx((TOY_MLA.num_params() * 2 - routed) + routed / 8)
    assert one.weight_bytes == pytest.approx(TOY_MLA.num_params() * 2 / 8)


def test_gqa_kv_per_token_is_the_ranks_sharding():
    acc = hetsim.load_accelerator("h100-sxm")
    dp = memory_plan(TOY, acc, 8, "bf16", attention_dp=4)     # attention TP2: 4 of 8 KV heads
    assert dp.kv_bytes_per_token == TOY.kv_bytes_per_token("bf16", 2)


def test_heads_are_checked_at_the_ranks_tp():
    acc = hetsim.load_accelerator("h100-sxm")
    six = ModelConfig(name="tiny-6h", num_layers=2, hidden_size=768, num_heads=6,
                      num_kv_heads=2, ffn_size=2048, vocab_size=32000)
    assert pool_problem(six, acc, 8, "bf16").message.startswith(
        "tp=8 does not divide tiny-6h's 6 heads")
    assert pool_problem(six, acc, 8, "bf16", attention_dp=2).message.startswith(
        "tp / attention_dp = 4 does not divide tiny-6h's 6 heads")
    # a dense model is allowed: TP1 ranks are plain data parallelism inside one instance
    assert pool_problem(six, acc, 8, "bf16", attention_dp=8) is None


# --- scheduling -----------------------------------------------------------------------------
# (the stub step model of test_engine_units: 1 + prompt tokens / 8 + decodes / 4 seconds)
def test_each_rank_is_a_scheduler_the_instance_runs_n_times_its_limits():
    env, m = make(MixedInstance, "mixed", max_tokens=16, max_seqs=3, attention_dp=4)
    assert (m.max_seqs, m.max_tokens, m.chunk_tokens) == (12, 64, 16)
    env, m = make(MixedInstance, "mixed", max_tokens=16, max_seqs=3)
    assert (m.max_seqs, m.max_tokens, m.chunk_tokens) == (3, 16, 16)


@pytest.mark.parametrize("kind, role", [(PrefillInstance, "prefill"), (DecodeInstance, "decode"),
                                        (OnDemandDecodeInstance, "decode"),
                                        (MixedInstance, "mixed")])
def test_a_request_must_fit_one_ranks_kv(kind, role):
    """A request lives on one rank: 100 blocks of 4 tokens over 4 ranks is 25 blocks (100
    tokens) a rank, so a 100-token sequence fits and a 104-token one does not, though the
    instance's pool holds 400 tokens (without attention DP both fit)."""
    fit, over = (req(0, 100, 1), req(1, 104, 1)) if role == "prefill" else (
        req(0, 60, 40), req(1, 60, 44))
    env, i = make(kind, role, kv_blocks=100, attention_dp=4)
    assert i.fits(fit) and not i.fits(over)
    env, i = make(kind, role, kv_blocks=100)
    assert i.fits(fit) and i.fits(over)


def test_a_prompt_chunk_is_at_most_one_ranks_budget():
    """A 40-token prompt on ranks of budget 16 runs in chunks of 16, 16, 8 ([0, 3), [3, 6),
    [6, 8): first token at 8), though the instance's step has 64 tokens; its one decode
    [8, 9.25). Without attention DP at the same instance budget it is one chunk [0, 6)."""
    env, m = make(MixedInstance, "mixed", max_tokens=16, attention_dp=4)
    r = req(0, 40, 2)
    m.submit(r)
    env.run()
    assert (r.first_token_s, r.last_token_s, m.iterations) == (8, 9.25, 4)
    env, m = make(MixedInstance, "mixed", max_tokens=64)
    r = req(0, 40, 2)
    m.submit(r)
    env.run()
    assert (r.first_token_s, r.last_token_s, m.iterations) == (6, 7.25, 2)


def test_cuda_graphs_pad_each_ranks_share():
    rules = runtimes.Rules(
        name="vllm", version="0", max_batch_tokens=16, max_seqs=8, block_size=4,
        chunked_prefill=True, mixed_batches=True, kv_admission="on-demand", cuda_graphs=True,
        graph_sizes=(1, 2, 4, 8), graph_padding=True, overlap=False, first_token_delay_steps=0,
        request_overhead_s=0.0, step_overhead_s=0.0, memory="vllm", memory_fraction=0.9)
    env, d = make(DecodeInstance, "decode", rules=rules, attention_dp=4)
    # 5 sequences over 4 ranks: the busiest holds 2 (captured: 2), so 4 x 2; 9: 4 x pad(3)
    assert [d._padded(n) for n in (1, 4, 5, 9, 32, 33)] == [4, 4, 8, 16, 32, 33]
    env, d = make(DecodeInstance, "decode", rules=rules)
    assert [d._padded(n) for n in (1, 4, 5, 9)] == [1, 4, 8, 9]


# --- a scenario end to end ------------------------------------------------------------------
def test_the_shipped_scenario_holds_n_ranks_of_mla_kv():
    sc = hetsim.load_scenario(SCENARIOS / "design-space" / "attention-dp.yaml")
    _, placements = resolve_scenario(sc)
    tp8, dp8 = (placements[k].pools["mixed"] for k in ("tp8", "tp1-dp8"))
    assert tp8.memory.kv_bytes_per_token == dp8.memory.kv_bytes_per_token   # MLA: whole latent
    # 8 ranks of KV, less what replicated attention weights take from each device
    ratio = dp8.memory.kv_tokens / tp8.memory.kv_tokens
    assert ratio == pytest.approx(8 * dp8.memory.kv_bytes / tp8.memory.kv_bytes, rel=1e-3)
    assert dp8.memory.weight_bytes > tp8.memory.weight_bytes
    assert sc.to_dict()["placements"]["tp1-dp8"]["pools"]["mixed"]["attention_dp"] == 8
    assert "attention_dp" not in sc.to_dict()["placements"]["tp8"]["pools"]["mixed"]


def _disagg(model, requests, prompt, prefill, decode):
    """A one-placement scenario ``p`` of ``prefill`` and ``decode`` pools over roce-400g:
    ``requests`` of ``prompt`` tokens, 4 out."""
    from hetsim.scenario import parse_scenario
    raw = {"name": "adp", "model": model,
           "workload": {"requests": requests, "seed": 1,
                        "arrival": {"process": "poisson", "rate_rps": 1.0},
                        "input_tokens": {"dist": "fixed", "value": prompt},
                        "output_tokens": {"dist": "fixed", "value": 4}},
           "slo": {"ttft_s": 10, "tpot_s": 1},
           "placements": {"p": {"pools": {"prefill": prefill, "decode": decode},
                                "kv_link": "roce-400g"}}}
    return parse_scenario(raw, "adp.yaml")


@pytest.mark.parametrize("decode_dp", [1, 8])
def test_a_sequences_transfer_is_one_rank_groups_kv(decode_dp):
    """A request's KV lives on one attention data-parallel rank (tp / N GPUs): the wire carries
    that group's shards, not the whole instance's. Kimi-K2.5's MLA latent is whole on every
    rank, so TP8 receives 8 copies and 8 DP ranks of TP1 one: bytes = tokens x latent bytes
    per token x layers x attn_tp."""
    dec = {"role": "decode", "accelerator": "b200-sxm", "instances": 1, "tp": 8, "moe_ep": 8}
    if decode_dp > 1:
        dec["attention_dp"] = decode_dp
    pre = {"role": "prefill", "accelerator": "b200-sxm", "instances": 1, "tp": 8, "moe_ep": 8}
    res = hetsim.run(_disagg("kimi-k2.5", 3, 1000, pre, dec))
    m = hetsim.load_model("kimi-k2.5")
    latent = (m.mla.kv_lora_rank + m.mla.qk_rope_dim) * 2 * m.num_layers   # bf16 KV
    want = 1000 * latent * (8 // decode_dp)
    assert res.requests["kv_bytes"].tolist() == pytest.approx([want] * 3)


@pytest.mark.parametrize("prefill_tp, mismatch", [(8, ["tp 8 vs 1"]), (1, [])])
def test_kv_sharding_is_the_ranks_attention_tp(prefill_tp, mismatch):
    """A decode pool of tp 8 as 8 attention-DP ranks keeps each sequence's KV whole on one GPU
    (GQA heads sharded attn_tp = 1 ways): a TP8 prefill's KV must be resharded for it, a TP1
    prefill's arrives as it is held."""
    from hetsim.resolve import kv_mismatch
    pre = {"role": "prefill", "accelerator": "h100-sxm", "instances": 1, "tp": prefill_tp}
    dec = {"role": "decode", "accelerator": "h100-sxm", "instances": 1, "tp": 8,
           "attention_dp": 8}
    _, placements = resolve_scenario(_disagg("llama-3.1-8b", 1, 100, pre, dec))
    pools = placements["p"].pools
    assert kv_mismatch(pools["prefill"], pools["decode"]) == mismatch
