import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import hetsim
from hetsim.errors import ConfigError
from hetsim.models import from_hf_config

from .conftest import ROOT

REQUIRED = ["llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3.1-8b", "llama-3.1-70b",
            "llama-3.1-405b", "qwen3-32b", "opt-13b", "opt-66b", "opt-175b", "bloom-176b",
            "mixtral-8x7b", "deepseek-v3", "deepseek-r1", "qwen3-235b-a22b", "qwen3-30b-a3b",
            "gpt-oss-120b", "gpt-oss-20b", "minimax-m2.5", "qwen3.5-397b-a17b"]


def test_issue_example():
    assert hetsim.load_model("llama-3.1-70b").kv_bytes_per_token("bf16") == 327680


@pytest.mark.parametrize("name", REQUIRED)
def test_catalog_loads(name):
    m = hetsim.load_model(name)
    assert m.num_params() > 1e9 and m.kv_bytes_per_token("bf16") > 0


def test_kv_facts_from_validation_reference():
    gib = 2 ** 30
    llama = hetsim.load_model("llama-3.1-70b")
    assert llama.kv_bytes_per_token("bf16") * 128 * 1024 == 40 * gib      # Mooncake: 40 GB ~128k
    opt = hetsim.load_model("opt-66b")
    assert opt.kv_bytes_per_token("fp16") * 512 / gib == pytest.approx(1.125)   # DistServe 1.13
    assert hetsim.load_model("bloom-176b").kv_bytes_per_token("fp16") / 1e6 == pytest.approx(
        4.0, rel=0.01)
    assert llama.kv_bytes_per_token("fp8") == llama.kv_bytes_per_token("bf16") / 2
    assert llama.kv_bytes_per_token("bf16", tp=8) == 327680 / 8           # 1 KV head per rank
    # 8 KV heads on 16 ranks: replicated, each rank still holds one head
    assert llama.kv_bytes_per_token("bf16", tp=16) == 327680 / 8


def test_param_counts_match_names():
    for name, billions in [("llama-3.1-8b", 8.0), ("llama-3.1-70b", 70.6), ("opt-175b", 175),
                           ("llama-3.1-405b", 405.8)]:
        assert hetsim.load_model(name).num_params() / 1e9 == pytest.approx(billions, rel=0.02)
    ds = hetsim.load_model("deepseek-v3")
    assert ds.num_params() / 1e9 == pytest.approx(671, rel=0.02)
    assert ds.num_params(active=True) / 1e9 == pytest.approx(37, rel=0.05)
    mx = hetsim.load_model("mixtral-8x7b")
    assert mx.num_params() / 1e9 == pytest.approx(46.7, rel=0.02)


def test_hf_config(tmp_path):
    cfg = {"model_type": "llama", "num_hidden_layers": 80, "hidden_size": 8192,
           "num_attention_heads": 64, "num_key_value_heads": 8, "intermediate_size": 28672,
           "vocab_size": 128256, "_name_or_path": "my-70b"}
    f = tmp_path / "config.json"
    f.write_text(json.dumps(cfg))
    m = hetsim.load_model(f)
    assert m.kv_bytes_per_token("bf16") == 327680
    assert m.num_params() == hetsim.load_model("llama-3.1-70b").num_params()


def test_unknown_model_suggests():
    with pytest.raises(ConfigError, match="did you mean 'llama-3.1-70b'"):
        hetsim.load_model("llama-3.1-70")


# --- the served models the kernel database covers (issue 14) ----------------------------------
# Published figures: the model cards. Qwen3-235B-A22B "235B in total and 22B activated",
# Qwen3-30B-A3B "30.5B in total and 3.3B activated" (huggingface.co/Qwen/<model>); DeepSeek-V3/R1
# "671B total, 37B activated" (huggingface.co/deepseek-ai/DeepSeek-R1); gpt-oss (OpenAI's gpt-oss
# model card, parameter table): 120b 116.83B total, 5.13B active, MLP 114.71B, checkpoint
# 60.8 GiB; 20b 20.91B, 3.61B, 19.12B, 12.8 GiB. Tolerances: 0.5% on totals (hetsim leaves out
# norms and biases), 2% on active counts published to two digits ("22B" is 21.5-22.5), 0.2% on
# the figures published to two decimals. Qwen3.5-397B-A17B "397B in total and 17B activated"
# (huggingface.co/Qwen/Qwen3.5-397B-A17B; SGLang's Qwen3.5 cookbook, docs.sglang.io/cookbook/
# autoregressive/Qwen/Qwen3.5: "397B total parameters, 17B activated"): 3% on "17B" (16.5-17.5);
# its total includes the 0.4B vision tower hetsim leaves out.
@pytest.mark.parametrize("name, total, active, rel", [
    ("qwen3-235b-a22b", 235, 22, 0.02), ("qwen3-30b-a3b", 30.5, 3.3, 0.02),
    ("qwen3.5-397b-a17b", 397, 17, 0.03),
    ("deepseek-v3", 671, 37, 0.02), ("deepseek-r1", 671, 37, 0.02)])
def test_published_param_counts(name, total, active, rel):
    m = hetsim.load_model(name)
    assert m.num_params() / 1e9 == pytest.approx(total, rel=0.005)
    assert m.num_params(active=True) / 1e9 == pytest.approx(active, rel=rel)


@pytest.mark.parametrize("name, total, active, mlp, gib", [
    ("gpt-oss-120b", 116.83, 5.13, 114.71, 60.8), ("gpt-oss-20b", 20.91, 3.61, 19.12, 12.8)])
def test_gpt_oss_published_counts_and_checkpoint(name, total, active, mlp, gib):
    m = hetsim.load_model(name)
    embedding = m.vocab_size * m.hidden_size
    assert m.num_params() / 1e9 == pytest.approx(total, rel=0.002)
    # OpenAI counts the unembedding as active but not the embedding table (a one-row lookup)
    assert (m.num_params(active=True) - embedding) / 1e9 == pytest.approx(active, rel=0.002)
    assert m.expert_params() / 1e9 == pytest.approx(mlp, rel=0.002)  # MLP = experts + router
    # mxfp4 experts (4 bits + an 8-bit scale per 32 values = 4.25 bits), the rest bf16
    nbytes = m.expert_params() * 4.25 / 8 + (m.num_params() - m.expert_params()) * 2
    assert nbytes / 2 ** 30 == pytest.approx(gib, rel=0.01)


def test_minimax_m2_5_published_counts():
    # MiniMax: "230B total parameters with 10B active" (minimax.io/news/minimax-m2; M2.5 is the
    # same MiniMaxM2ForCausalLM architecture). Like OpenAI, MiniMax leaves the embedding table
    # out of the active count; the three MTP modules are out of both. "230B" and "10B" are
    # rounded: 1% and 5%.
    m = hetsim.load_model("minimax-m2.5")
    assert m.num_params() / 1e9 == pytest.approx(230, rel=0.01)
    assert (m.num_params(active=True) - m.vocab_size * m.hidden_size) / 1e9 == pytest.approx(
        10, rel=0.05)


# Kimi-K2.5's model card (huggingface.co/moonshotai/Kimi-K2.5, README §2 "Model Summary"; the
# same table in github.com/MoonshotAI/Kimi-K2.5 README.md @6edc2543): "Total Parameters 1T",
# "Activated Parameters 32B", of the text model (its 400M MoonViT encoder is listed apart). A
# figure to one significant digit bounds the total to 5%. The active count, like OpenAI's,
# leaves out the embedding table (a one-row lookup): with it hetsim counts 32.86B, which rounds
# to 33B, without it 31.69B, which rounds to the card's 32B.
def test_kimi_k25_published_param_counts():
    m = hetsim.load_model("kimi-k2.5")
    embedding = m.vocab_size * m.hidden_size
    assert m.num_params() / 1e12 == pytest.approx(1.0, rel=0.05)
    assert round((m.num_params(active=True) - embedding) / 1e9) == 32
    assert round(m.num_params(active=True) / 1e9) != 32     # the embedding table is not counted
    # 60 MoE layers x 384 routed experts, the part the int4 checkpoint quantizes
    assert m.expert_params(shared=False) == 60 * 384 * 3 * 7168 * 2048


def test_expert_params():
    ds = hetsim.load_model("deepseek-v3")   # 58 MoE layers x (256 routed + 1 shared) experts
    assert ds.expert_params() == 58 * 257 * 3 * 7168 * 2048
    assert ds.expert_params(active=True) == 58 * (8 + 1) * 3 * 7168 * 2048
    assert ds.num_params() - ds.expert_params() == ds.num_params(True) - ds.expert_params(True)
    assert hetsim.load_model("llama-3.1-8b").expert_params() == 0


# KV bytes per token (bf16, one rank) from the published configs: 2 (K, V) x layers x KV heads
# x head_dim x 2 bytes for GQA; (kv_lora_rank 512 + qk_rope_head_dim 64) x 61 layers x 2 for MLA.
@pytest.mark.parametrize("name, per_token, window", [
    ("qwen3-235b-a22b", 2 * 94 * 4 * 128 * 2, 0),     # 192,512
    ("qwen3-30b-a3b", 2 * 48 * 4 * 128 * 2, 0),       # 98,304
    ("minimax-m2.5", 2 * 62 * 8 * 128 * 2, 0),        # 253,952
    ("deepseek-r1", (512 + 64) * 61 * 2, 0),          # 70,272
    # gpt-oss: 18 (12) full-attention layers grow with the context; 18 (12) windowed layers hold
    # at most 128 tokens each
    ("gpt-oss-120b", 18 * 2 * 8 * 64 * 2, 18 * 128 * 2 * 8 * 64 * 2),   # 36,864; 4,718,592
    ("gpt-oss-20b", 12 * 2 * 8 * 64 * 2, 12 * 128 * 2 * 8 * 64 * 2)])   # 24,576; 3,145,728
def test_published_kv_bytes(name, per_token, window):
    m = hetsim.load_model(name)
    assert m.kv_bytes_per_token("bf16") == per_token
    assert m.kv_window_bytes("bf16") == window
    assert m.kv_bytes(100_000, "bf16") == 100_000 * per_token + window


def test_deepseek_r1_is_an_alias_of_v3():
    # R1's published config.json equals V3's in every architecture key (R1 is V3 post-trained)
    assert hetsim.load_model("deepseek-r1") == hetsim.load_model("deepseek-v3")


def _aic_model_configs() -> Path | None:
    """aiconfigurator-core's copies of the published config.json files (None: not installed)."""
    from hetsim import kerneldb
    try:
        return kerneldb.data_root().parent / "model_configs"
    except ConfigError:
        return None


@pytest.mark.parametrize("name, hf", [
    ("qwen3-235b-a22b", "Qwen--Qwen3-235B-A22B"), ("qwen3-30b-a3b", "Qwen--Qwen3-30B-A3B"),
    ("gpt-oss-120b", "openai--gpt-oss-120b"), ("gpt-oss-20b", "openai--gpt-oss-20b"),
    ("minimax-m2.5", "MiniMaxAI--MiniMax-M2.5"), ("qwen3.5-397b-a17b", "Qwen--Qwen3.5-397B-A17B"),
    ("deepseek-v3", "deepseek-ai--DeepSeek-V3"), ("deepseek-r1", "deepseek-ai--DeepSeek-R1")])
def test_catalog_matches_the_published_config(name, hf):
    """Each catalog file says what the HF importer reads from the model's own config.json (the
    copy aiconfigurator-core ships; skipped without the aic extra)."""
    folder = _aic_model_configs()
    if folder is None or not (folder / f"{hf}_config.json").is_file():
        pytest.skip("aiconfigurator-core (the aic extra) with its model_configs is not installed")
    blank = dict(name="", aliases=[], source="")
    assert (dataclasses.replace(from_hf_config(folder / f"{hf}_config.json"), **blank)
            == dataclasses.replace(hetsim.load_model(name), **blank))


# --- sliding-window layers -------------------------------------------------------------------
def _gpt_oss_like(tmp_path, **over):
    cfg = {"model_type": "gpt_oss", "num_hidden_layers": 4, "hidden_size": 256,
           "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 32,
           "intermediate_size": 512, "vocab_size": 1000, "sliding_window": 16,
           "layer_types": ["sliding_attention", "full_attention"] * 2, **over}
    f = tmp_path / "config.json"
    f.write_text(json.dumps(cfg))
    return f


def test_hf_layer_types_give_the_window(tmp_path):
    m = from_hf_config(_gpt_oss_like(tmp_path))
    assert (m.sliding_window.size, m.sliding_window.layers, m.full_attention_layers) == (16, 2, 2)
    layer = 2 * 2 * 32 * 2                                   # K+V x 2 KV heads x 32 x bf16
    assert m.kv_layer_bytes("bf16") == layer
    assert m.kv_bytes_per_token("bf16") == 2 * layer         # the two full-attention layers
    assert m.kv_bytes(10, "bf16") == 10 * 4 * layer          # inside the window: every layer
    assert m.kv_bytes(1000, "bf16") == 1000 * 2 * layer + 16 * 2 * layer
    assert m.kv_bytes(1000, "bf16", tp=2) == m.kv_bytes(1000, "bf16") / 2


def test_hf_sliding_window_without_layer_types_is_full_attention(tmp_path):
    # Mistral-7B-v0.1 style: no layer_types; read as full attention (KV over-, never
    # under-counted)
    cfg = json.loads(_gpt_oss_like(tmp_path).read_text())
    del cfg["layer_types"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    m = from_hf_config(tmp_path / "config.json")
    assert m.sliding_window is None and m.kv_bytes_per_token() == 4 * m.kv_layer_bytes()


@pytest.mark.parametrize("over, match", [
    ({"layer_types": ["chunked_attention", "full_attention"] * 2},
     "layer_types: layer type 'chunked_attention' is not modelled"),
    ({"layer_types": ["linear_attention", "full_attention"] * 2},
     r"missing key \(one of linear_num_key_heads\)"),
    ({"layer_types": ["sliding_attention", "full_attention"]}, "2 layer types for 4 layers"),
    ({"layer_types": "sliding_attention"}, "layer_types: must be a list"),
    ({"layer_types": ["sliding_attention"] * 4}, "at least one layer must attend to the full"),
    ({"sliding_window": None}, "missing key .one of sliding_window"),
])
def test_hf_layer_types_errors(tmp_path, over, match):
    with pytest.raises(ConfigError, match=match):
        from_hf_config(_gpt_oss_like(tmp_path, **over))


def test_window_must_leave_a_full_attention_layer(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text("name: x\nnum_layers: 2\nhidden_size: 64\nnum_heads: 2\nffn_size: 128\n"
                 "vocab_size: 10\nsliding_window: {size: 8, layers: 2}\n")
    with pytest.raises(ConfigError, match=r"m.yaml: sliding_window.layers: 2 windowed layers"):
        hetsim.load_model(f)


@given(tokens=st.integers(0, 300_000), name=st.sampled_from(["gpt-oss-20b", "llama-3.1-8b"]),
       tp=st.sampled_from([1, 2, 8]))
def test_kv_bytes_bounds(tokens, name, tp):
    """A sequence never holds more KV than every layer at full attention, nor less than its
    full-attention layers; without a window it is exactly tokens x the per-token figure."""
    m = hetsim.load_model(name)
    every_layer = tokens * m.num_layers * m.kv_layer_bytes("bf16", tp)
    got = m.kv_bytes(tokens, "bf16", tp)
    assert tokens * m.kv_bytes_per_token("bf16", tp) <= got <= every_layer
    assert got <= tokens * m.kv_bytes_per_token("bf16", tp) + m.kv_window_bytes("bf16", tp)
    if m.sliding_window is None:
        assert got == tokens * m.kv_bytes_per_token("bf16", tp)


def test_sliding_window_models_load_plan_and_run(tmp_path):
    """gpt-oss runs (tests/test_sliding_window.py checks how): a scenario resolves, a plan
    spec reads, and the step model and memory plan accept it."""
    from hetsim.planner import load_plan_spec
    m, h100 = hetsim.load_model("gpt-oss-20b"), hetsim.load_accelerator("h100-sxm")
    hetsim.StepModel(m, hetsim.PerfModel(h100), 1, "bf16")
    assert hetsim.memory_plan(m, h100, 1, "bf16").kv_tokens > 0
    sc = tmp_path / "s.yaml"
    sc.write_text("name: t\nmodel: gpt-oss-20b\nworkload: {requests: 5, preset: sharegpt-distserve, "
                  "arrival: {process: poisson, rate_rps: 1}}\nslo: {ttft_s: 1, tpot_s: 0.1}\n"
                  "placements:\n  a: {pools: {m: {role: mixed, accelerator: h100-sxm}}}\n")
    assert hetsim.run(hetsim.load_scenario(sc)).summaries[0]["completed"] == 5
    spec = tmp_path / "p.yaml"
    plan = (ROOT / "examples/plan/llama8b-chat.yaml").read_text()
    spec.write_text(plan.replace("model: llama-3.1-8b", "model: gpt-oss-20b"))
    assert load_plan_spec(spec).model == "gpt-oss-20b"


# --- experts-only quantized checkpoints ---------------------------------------------------------
def _modelopt(tmp_path, ignore):
    cfg = {"model_type": "minimax_m2", "num_hidden_layers": 2, "hidden_size": 256,
           "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 32,
           "intermediate_size": 128, "vocab_size": 1000, "num_local_experts": 8,
           "num_experts_per_tok": 2,
           "quantization_config": {"quant_method": "modelopt", "quant_algo": "NVFP4",
                                   "ignore": ignore}}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    return from_hf_config(p)


@pytest.mark.parametrize("ignore, experts", [
    (["lm_head", "model.layers.0.self_attn*", "model.layers.0.block_sparse_moe.gate"], "fp4"),
    (["lm_head"], None),          # every Linear in NVFP4: a pool's precision, not the model's
    ([], None)])
def test_nvfp4_checkpoint_with_attention_left_out_stores_only_experts_in_fp4(
        tmp_path, ignore, experts):
    m = _modelopt(tmp_path, ignore)
    assert m.expert_weights == experts
    if experts:   # 4-bit experts, the rest as the pool stores it
        assert m.weight_bytes("bf16") == pytest.approx(
            (m.num_params() - m.expert_params()) * 2 + m.expert_params() * 0.5)


def test_nvidia_minimax_nvfp4_release_is_the_catalog_model_with_fp4_experts():
    folder = _aic_model_configs()
    if folder is None or not (folder / "nvidia--MiniMax-M2.5-NVFP4_config.json").is_file():
        pytest.skip("aiconfigurator-core (the aic extra) with its model_configs is not installed")
    m = from_hf_config(folder / "nvidia--MiniMax-M2.5-NVFP4_config.json")
    blank = dict(name="", aliases=[], source="", expert_weights=None)
    assert m.expert_weights == "fp4"
    assert (dataclasses.replace(m, **blank)
            == dataclasses.replace(hetsim.load_model("minimax-m2.5"), **blank))


def test_deepseek_nvfp4_release_keeps_the_mla_projections_bf16():
    """NVIDIA's NVFP4 DeepSeek: V3's architecture, every other Linear in fp4 on an fp4 pool,
    the MLA projections bf16 (ModelOpt's recipe disables ``*attn*``)."""
    m, v3 = hetsim.load_model("deepseek-r1-nvfp4"), hetsim.load_model("deepseek-v3")
    blank = dict(name="", aliases=[], source="", attention_weights=None, expert_weights=None)
    assert dataclasses.replace(m, **blank) == dataclasses.replace(v3, **blank)
    assert hetsim.load_model("deepseek-v3.1").name == "deepseek-v3"
    folder = _aic_model_configs()
    if folder is not None and (folder / "nvidia--DeepSeek-V3.1-NVFP4_config.json").is_file():
        v31 = from_hf_config(folder / "nvidia--DeepSeek-V3.1-NVFP4_config.json")
        assert v31.expert_weights == "fp4"      # its hf_quant_config.json excludes self_attn
        assert dataclasses.replace(v31, **blank) == dataclasses.replace(m, **blank)
    assert m.weight_bytes("fp4") == pytest.approx(
        v3.weight_bytes("fp4") + m.mixer_params() * (2 - 0.5))


def test_a_modelopt_quant_file_beside_the_config_is_read(tmp_path):
    """NVIDIA's DeepSeek and GLM NVFP4 releases keep their quantization in
    hf_quant_config.json beside config.json (aiconfigurator-core: <name>_hf_quant_config.json
    beside <name>_config.json); its exclude_modules are the ignore list."""
    cfg = {"model_type": "deepseek_v3", "num_hidden_layers": 2, "hidden_size": 256,
           "num_attention_heads": 8, "intermediate_size": 128, "vocab_size": 1000,
           "n_routed_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 64}
    quant = {"quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": "FP8",
                              "exclude_modules": ["lm_head", "model.layers.0.self_attn.q_a_proj"]}}
    for name, qname in (("config.json", "hf_quant_config.json"),
                        ("x--M_config.json", "x--M_hf_quant_config.json")):
        d = tmp_path / name.partition("_")[0]
        d.mkdir()
        (d / name).write_text(json.dumps(cfg))
        assert from_hf_config(d / name).expert_weights is None     # nothing beside it yet
        (d / qname).write_text(json.dumps(quant))
        assert from_hf_config(d / name).expert_weights == "fp4"
        (d / qname).write_text(json.dumps({"quantization": ["NVFP4"]}))
        with pytest.raises(ConfigError, match="quantization object") as e:
            from_hf_config(d / name)
        assert e.value.file == str(d / qname) and e.value.path == "quantization"


def _llama4(tmp_path, **over):
    text = {"model_type": "llama4_text", "num_hidden_layers": 4, "hidden_size": 256,
            "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 32,
            "intermediate_size": 128, "intermediate_size_mlp": 512, "vocab_size": 1000,
            "num_local_experts": 4, "num_experts_per_tok": 1, **over}
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"model_type": "llama4", "text_config": text}))
    return from_hf_config(p)


@pytest.mark.parametrize("over, dense", [({"interleave_moe_layer_step": 2}, 2), ({}, 0),
                                         ({"moe_layers": [3]}, 3)])
def test_llama4_interleaves_moe_layers_with_a_shared_expert(tmp_path, over, dense):
    """transformers' Llama 4: MoE every interleave_moe_layer_step layers (or moe_layers), each
    with one shared expert of the experts' width; the other layers dense, intermediate_size_mlp
    wide."""
    m = _llama4(tmp_path, **over)
    assert (m.ffn_size, m.moe.expert_ffn_size, m.moe.shared_experts) == (512, 128, 1)
    assert m.moe.first_dense_layers == dense
    per_moe = 3 * 256 * 128 * (4 + 1) + 256 * 4
    assert sum(m.ffn_params(i) for i in range(4)) == dense * 3 * 256 * 512 + (4 - dense) * per_moe


def test_llama4_bad_moe_layers_is_named(tmp_path):
    for bad in ([1, 9], [], [True]):
        with pytest.raises(ConfigError, match="layer indices below 4") as e:
            _llama4(tmp_path, moe_layers=bad)
        assert e.value.path == "moe_layers"


@pytest.mark.parametrize("hf, total, active", [
    # Meta's model cards: 17B active of 400B (Maverick) and of 109B (Scout, with its vision
    # encoder, which the importer leaves out)
    ("meta-llama--Llama-4-Maverick-17B-128E-Instruct", 400e9, 17e9),
    ("meta-llama--Llama-4-Scout-17B-16E-Instruct", 108e9, 17e9)])
def test_llama4_published_configs_have_their_published_sizes(hf, total, active):
    folder = _aic_model_configs()
    if folder is None or not (folder / f"{hf}_config.json").is_file():
        pytest.skip("aiconfigurator-core (the aic extra) with its model_configs is not installed")
    m = from_hf_config(folder / f"{hf}_config.json")
    assert m.num_params() == pytest.approx(total, rel=0.02)
    assert m.num_params(active=True) == pytest.approx(active, rel=0.02)


# --- QK-norm -----------------------------------------------------------------------------------
@pytest.mark.parametrize("over, per_head, per_layer", [
    ({"model_type": "qwen3"}, True, False),                       # architectural: no key says it
    ({"model_type": "qwen3_5_moe_text"}, True, False),
    ({"model_type": "llama"}, False, False),
    ({"model_type": "qwen3", "use_qk_norm": False}, False, False),  # a config that says no
    ({"model_type": "glm4_moe", "use_qk_norm": True}, True, False),
    ({"model_type": "minimax_m2", "use_qk_norm": True, "qk_norm_type": "per_layer"}, False, True),
    ({"model_type": "minimax_m2", "use_qk_norm": False, "qk_norm_type": "per_layer"}, False, False)])
def test_hf_config_reads_the_qk_norm(tmp_path, over, per_head, per_layer):
    cfg = {"num_hidden_layers": 2, "hidden_size": 256, "num_attention_heads": 8,
           "num_key_value_heads": 2, "head_dim": 32, "intermediate_size": 512,
           "vocab_size": 1000, **over}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    m = from_hf_config(tmp_path / "config.json")
    assert (m.qk_norm, m.layer_qk_norm) == (per_head, per_layer)


def test_a_model_norms_q_and_k_one_way(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text("name: x\nnum_layers: 2\nhidden_size: 256\nnum_heads: 8\nffn_size: 512\n"
                 "vocab_size: 1000\nqk_norm: true\nlayer_qk_norm: true\n")
    with pytest.raises(ConfigError, match="layer_qk_norm: a model norms q and k per head"):
        hetsim.load_model(str(f))
