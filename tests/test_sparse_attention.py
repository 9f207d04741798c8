"""DeepSeek Sparse Attention (DeepSeek-V3.2, GLM-5): the HF importer, the indexer's keys in KV
memory and its weights, the step model (top-k reads, the indexer's scoring) and the engine's
sums of min(context, top_k)."""
import dataclasses
import json

import pytest
import simpy

import hetsim
from hetsim.engine.instances import DecodeInstance
from hetsim.engine.ondemand import OnDemandDecodeInstance
from hetsim.errors import ConfigError
from hetsim.models import SparseAttention, from_hf_config
from hetsim.perf import PerfModel, StepModel
from hetsim.perf.step import band_pairs

from .test_sliding_window import _pool, run_decode

TOP_K = 256
#: a small DeepSeek-V3.2-like config: its attention's sizes (latent 512 + 64, an indexer of
#: 64 x 128) in 4 narrow MoE layers
CONFIG = {"model_type": "deepseek_v32", "num_hidden_layers": 4, "hidden_size": 1024,
          "num_attention_heads": 32, "num_key_value_heads": 32, "intermediate_size": 2048,
          "moe_intermediate_size": 256, "vocab_size": 4096, "n_routed_experts": 16,
          "num_experts_per_tok": 2, "n_shared_experts": 1, "first_k_dense_replace": 1,
          "kv_lora_rank": 512, "q_lora_rank": 256, "qk_rope_head_dim": 64,
          "qk_nope_head_dim": 128, "v_head_dim": 128, "index_topk": TOP_K, "index_n_heads": 64,
          "index_head_dim": 128}


def _model(tmp_path, **over):
    f = tmp_path / "config.json"
    f.write_text(json.dumps({**CONFIG, **over}))
    return from_hf_config(f)


@pytest.fixture
def dsa(tmp_path):
    return _model(tmp_path)


# --- the model -------------------------------------------------------------------------------
def test_importer_reads_the_indexer(tmp_path, dsa):
    assert dsa.sparse_attention == SparseAttention(top_k=TOP_K, heads=64, head_dim=128)
    assert dsa.indexer_layers == 4
    # GLM-5.2: 'full' layers run an indexer, 'shared' ones reuse an earlier layer's choice
    shared = _model(tmp_path, index_topk_freq=2,
                    indexer_types=["full", "shared", "full", "shared"])
    assert shared.indexer_layers == 2 and shared.sparse_attention.indexer_layers == 2
    assert _model(tmp_path, index_topk=None).sparse_attention is None


@pytest.mark.parametrize("over, key", [
    ({"index_topk_freq": 4}, "index_topk_freq"),      # which layers: not written
    ({"indexer_types": ["full", "shared"]}, "indexer_types"),        # not one per layer
    ({"indexer_types": ["shared"] * 4}, "indexer_types"),            # no indexer at all
    ({"indexer_types": ["full", "x", "full", "full"]}, "indexer_types"),
    ({"index_n_heads": 0}, "index_n_heads")])
def test_importer_refuses_what_it_cannot_read(tmp_path, over, key):
    with pytest.raises(ConfigError) as e:
        _model(tmp_path, **over)
    assert e.value.path == key


def test_sparse_attention_needs_latent_attention():
    with pytest.raises(ConfigError, match="needs mla"):
        dataclasses.replace(hetsim.load_model("llama-3.1-8b"),
                            sparse_attention=SparseAttention(2048, 64, 128))


def test_indexer_keys_are_kv_and_its_projections_are_weights(tmp_path, dsa):
    """Each indexer layer keeps 128 fp8 values and one fp32 scale a token (vLLM's 132 B),
    whatever the latent's format; its projections are weights of every indexer layer."""
    dense = dataclasses.replace(dsa, sparse_attention=None)
    for p in ("bf16", "fp8"):
        assert dsa.kv_layer_bytes(p, 4) - dense.kv_layer_bytes(p, 4) == 132
        assert dsa.kv_bytes_per_token(p) - dense.kv_bytes_per_token(p) == 4 * 132
    shared = _model(tmp_path, indexer_types=["full", "shared", "shared", "shared"])
    assert shared.kv_bytes_per_token("fp8") - dense.kv_bytes_per_token("fp8") == 132
    per = 256 * 64 * 128 + 1024 * (128 + 64)
    assert dsa.num_params() - dense.num_params() == 4 * per
    assert shared.num_params() - dense.num_params() == per
    assert dsa.num_params(active=True) - dense.num_params(active=True) == 4 * per


# --- the step model --------------------------------------------------------------------------
PM = PerfModel(hetsim.load_accelerator("h100-sxm@datasheet"))


def _pair(dsa, tp=2):
    dense = dataclasses.replace(dsa, sparse_attention=None)
    return StepModel(dsa, PM, tp, "fp8"), StepModel(dense, PM, tp, "fp8")


def test_decode_reads_at_most_top_k_and_the_indexer_scores_everything(dsa):
    sparse, dense = _pair(dsa)
    assert sparse.read_window == TOP_K and dense.read_window == 0
    for batch, ctx in ((1, 100), (4, 4 * 200), (8, 8 * 256)):     # every context <= top_k
        scores = 4 * sparse._indexer_scores(batch, ctx, ctx)
        assert sparse.decode_attention_time(batch, ctx, ctx) == pytest.approx(
            dense.decode_attention_time(batch, ctx) + scores, rel=1e-12)
        assert scores > 0
    # past top_k the latent attention reads batch x top_k tokens however long the context
    long = [sparse.decode_attention_time(4, ctx, 4 * TOP_K) - 4 * sparse._indexer_scores(
        4, ctx, ctx) for ctx in (4 * 300, 4 * 3000, 4 * 30000)]
    assert long == pytest.approx([dense.decode_attention_time(4, 4 * TOP_K)] * 3, rel=1e-12)
    times = [sparse.decode_attention_time(4, ctx, 4 * TOP_K) for ctx in (4 * 300, 4 * 30000)]
    assert times[0] < times[1] < dense.decode_attention_time(4, 4 * 30000)
    # the default read sum is the one every context past top_k gives
    assert sparse.decode_time(4, 4 * 3000) == sparse.decode_time(4, 4 * 3000, 4 * TOP_K)
    assert sparse.decode_attention_time(0, 0) == 0.0


def test_indexer_projections_are_replicated_dense_work(dsa):
    """Each layer adds its indexer's projections and writes its keys with the KV (132 B a
    token, in the layer's memory-bound kernels)."""
    for tp in (1, 2, 4):
        sparse, dense = _pair(dsa, tp)
        for n in (1, 64, 1000):
            keys = 4 * n * 132 / PM.bandwidth
            assert sparse.dense_time(n, n) - dense.dense_time(n, n) == pytest.approx(
                4 * sparse._indexer_projections(n) + keys, rel=1e-9)
        # the same work on every rank: TP does not shrink it
        assert sparse._indexer_projections(64) == _pair(dsa, 1)[0]._indexer_projections(64)


def test_prefill_reads_the_band_and_scores_every_causal_pair(dsa):
    sparse, dense = _pair(dsa)
    short = [(200, 200), (50, 250)]              # every query within top_k: dense reads
    scores = 4 * sparse._indexer_scores(250, sum(band_pairs(q, kv, kv) for q, kv in short),
                                        450)
    assert sparse.prefill_attention_time(short) == pytest.approx(
        dense.prefill_attention_time(short) + scores, rel=1e-12)
    long = [(4000, 4000)]
    pairs = band_pairs(4000, 4000, 4000)
    mla = sparse.prefill_attention_time(long) - 4 * sparse._indexer_scores(4000, pairs, 4000)
    ratio = band_pairs(4000, 4000, TOP_K) / pairs
    assert mla == pytest.approx(dense.prefill_attention_time(long) * ratio, rel=1e-12)
    assert mla < dense.prefill_attention_time(long)


# --- the engine ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [DecodeInstance, OnDemandDecodeInstance])
def test_engine_hands_the_step_the_sum_of_min_context_top_k(dsa, kind):
    """Sequences start below, at and above top_k and cross it; every decode step gets the
    exact sum of min(context, top_k) over its running sequences."""
    step, _ = _pair(dsa, 1)
    env = simpy.Environment()
    d = kind(env, "d/0", _pool("decode", 100_000, block_size=16), step)
    seen = []
    orig = step.decode_time

    def checked(n, ctx, read=None):
        live = [r for _, _, gen, r in d.active if r.gen == gen]
        assert n == len(live) and ctx == sum(d._ctx(r) for r in live)
        assert read == sum(min(d._ctx(r), TOP_K) for r in live)
        seen.append(read)
        return orig(n, ctx, read)
    step.decode_time = checked
    reqs = run_decode(env, d, [(10, 300), (250, 20), (256, 5), (600, 40), (100, 200)], 0.05)
    assert all(r.last_token_s == r.last_token_s for r in reqs)      # every one finished
    assert len(seen) > 200 and d.win_sum == d.ctx_sum == d.running == 0


def test_a_sparse_attention_model_runs_from_its_config(tmp_path, dsa):
    f = tmp_path / "config.json"       # written by the fixture
    sc = {"name": "dsa", "model": str(f), "slo": {"ttft_s": 10, "tpot_s": 1},
          "workload": {"requests": 30, "seed": 0,
                       "arrival": {"process": "poisson", "rate_rps": 5},
                       "input_tokens": {"dist": "fixed", "value": 1000},
                       "output_tokens": {"dist": "fixed", "value": 50}},
          "placements": {"p": {"pools": {"mixed": {"role": "mixed", "accelerator": "h100-sxm",
                                                   "tp": 1, "precision": "fp8"}}}}}
    res = hetsim.run(hetsim.load_scenario(sc))
    assert res.summaries[0]["completed"] == 30
