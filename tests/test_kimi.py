"""Kimi-K2.5 as published (issue 14/15): the DeepSeek-V3 architecture with Moonshot's
group-scaled int4 routed experts (int4-g32) beside bf16 attention, shared experts and dense MLP;
the measured MoE table a vLLM pool of that checkpoint reads; and NVIDIA's NVFP4 checkpoint, fp4
everywhere but its bf16 attention projections (attention_weights)."""
import dataclasses
import json

import pytest

import hetsim
from hetsim import runtimes
from hetsim.errors import ConfigError
from hetsim.models import from_hf_config
from hetsim.perf import PerfModel, StepModel, memory_plan
from hetsim.precision import PRECISION_BYTES, Precision, unsupported

from .test_models import _aic_model_configs

KIMI = hetsim.load_model("kimi-k2.5")
NVFP4 = hetsim.load_model("kimi-k2.5-nvfp4")
H200 = hetsim.load_accelerator("h200-sxm")


def test_int4_g32_is_4_5_bits_and_a_storage_format():
    assert PRECISION_BYTES["int4-g32"] == 0.5625              # (4 + 16 / 32) / 8
    assert unsupported(H200, "int4-g32") is not None            # no device computes in it
    assert Precision("bf16", weights="int4-g32").formats().weights == "int4-g32"


def test_only_the_routed_experts_are_int4():
    """The checkpoint's ignore list keeps attention, shared experts, the dense MLP and the LM
    head in bf16: the weights are the routed experts at 4.5 bits and the rest at 16."""
    routed = KIMI.expert_params(shared=False)
    shared = KIMI.expert_params() - routed
    assert shared == 60 * 3 * 7168 * 2048                        # one shared expert per layer
    assert KIMI.weight_bytes("bf16") == routed * 0.5625 + (KIMI.num_params() - routed) * 2.0
    assert memory_plan(KIMI, H200, 8, "bf16").weight_bytes * 8 == pytest.approx(
        KIMI.weight_bytes("bf16"), rel=1e-12)
    # a narrower pool format wins for the experts (an NVFP4 re-quantization's pool)
    assert KIMI.expert_format("fp4") == "fp4" and KIMI.expert_format("fp8") == "int4-g32"


def test_shared_experts_read_the_pool_s_format():
    """Only the routed experts take the checkpoint's format: what the shared expert adds to a
    step is the same whatever the routed experts are stored in (bf16 on a bf16 pool), and the
    routed experts' 4.5 bits cost more than plain int4's 4 and less than bf16 in a
    weight-bound decode step."""
    pm = PerfModel(H200)
    no_shared = dataclasses.replace(KIMI.moe, shared_experts=0)

    def shared_cost(expert_weights):
        m = dataclasses.replace(KIMI, expert_weights=expert_weights)
        with_, without = (StepModel(x, pm, 8, "bf16")
                          for x in (m, dataclasses.replace(m, moe=no_shared)))
        return with_.dense_time(64, 0) - without.dense_time(64, 0)
    assert shared_cost("int4-g32") == pytest.approx(shared_cost(None), rel=1e-12)
    assert shared_cost("int4-g32") > 0
    t = {w: StepModel(dataclasses.replace(KIMI, expert_weights=w), pm, 8, "bf16")
         .decode_time(4, 4 * 2000) for w in ("int4", "int4-g32", None)}
    assert t["int4"] < t["int4-g32"] < t[None]


@pytest.mark.parametrize("acc", ["h200-sxm", "b200"])
def test_vllm_reads_the_int4_weight_only_moe_table(acc):
    """vLLM serves the compressed-tensors W4A16 experts with a weight-only int4 MoE kernel
    (bf16 activations): a bf16 pool reads aiconfigurator's ``int4_wo`` table for exactly
    Kimi's layer (hidden 7168, experts 384 of 2048, top 8), its TP 8 grid."""
    prof = hetsim.load_accelerator(acc, runtime="vllm")
    pm = PerfModel(prof)
    step = StepModel(KIMI, pm, 8, "bf16",
                     moe_compute=runtimes.moe_compute(runtimes.rules("vllm", prof, 8), prof))
    e = KIMI.moe
    grid = pm.kernels.get("moe", ("w4a16-int", KIMI.hidden_size, e.expert_ffn_size, e.top_k,
                                  e.num_experts, 8, 1, "balanced"))
    assert grid is not None and step.measured_moe
    assert step._moe_grid(64.0) == pytest.approx(grid.grid((64.0,)), rel=1e-9)


def test_catalog_matches_the_published_text_config(tmp_path):
    """The catalog file says what the HF importer reads from the published config's
    ``text_config`` (aiconfigurator-core's copy; skipped without the aic extra), and the
    checkpoint's quantization_config is the int4-g32 of the routed experts only."""
    folder = _aic_model_configs()
    if folder is None or not (folder / "moonshotai--Kimi-K2.5_config.json").is_file():
        pytest.skip("aiconfigurator-core (the aic extra) with its model_configs is not installed")
    text = json.loads((folder / "moonshotai--Kimi-K2.5_config.json").read_text())["text_config"]
    (tmp_path / "config.json").write_text(json.dumps(text))
    blank = dict(name="", aliases=[], source="")
    assert (dataclasses.replace(from_hf_config(tmp_path / "config.json"), **blank)
            == dataclasses.replace(KIMI, **blank))         # int4-g32 routed experts included
    q = text["quantization_config"]
    w = q["config_groups"]["group_0"]["weights"]
    assert (q["quant_method"], w["type"], w["num_bits"], w["strategy"], w["group_size"],
            w["symmetric"]) == ("compressed-tensors", "int", 4, "group", 32, True)
    assert {"lm_head", "re:.*self_attn.*", "re:.*shared_experts.*"} <= set(q["ignore"])
    assert any("mlp\\." in pat for pat in q["ignore"])          # the dense layer's MLP


#: Moonshot's quantization_config (its config.json's text_config) as the importer reads it
INT4_G32 = {"quant_method": "compressed-tensors", "format": "pack-quantized",
            "config_groups": {"group_0": {
                "targets": ["Linear"], "input_activations": None,
                "weights": {"type": "int", "num_bits": 4, "strategy": "group", "group_size": 32,
                            "symmetric": True, "dynamic": False}}},
            "ignore": ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*"]}


def _group(**weights):
    g = INT4_G32["config_groups"]["group_0"]
    return {**INT4_G32, "config_groups": {"group_0": {**g, "weights": {**g["weights"],
                                                                       **weights}}}}


@pytest.mark.parametrize("q, experts", [
    (INT4_G32, "int4-g32"),
    (_group(group_size=128), None),                  # another group size: not int4-g32
    (_group(symmetric=False), None),
    ({**INT4_G32, "ignore": ["lm_head"]}, None),     # attention int4 too: a pool's precision
    ({**INT4_G32, "config_groups": {"group_0": {**INT4_G32["config_groups"]["group_0"],
                                                "input_activations": {"num_bits": 8}}}}, None)])
def test_hf_importer_reads_the_int4_g32_routed_experts(tmp_path, q, experts):
    """The importer reads a config.json with Moonshot's compressed-tensors int4 (groups of 32,
    attention left out) as the catalog's kimi-k2.5 stores it: expert_weights int4-g32."""
    cfg = {"model_type": "kimi_k2", "num_hidden_layers": 2, "hidden_size": 256,
           "num_attention_heads": 8, "intermediate_size": 512, "vocab_size": 1000,
           "n_routed_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 64,
           "n_shared_experts": 1, "first_k_dense_replace": 1, "quantization_config": q}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    m = from_hf_config(tmp_path / "config.json")
    assert m.expert_weights == experts
    if experts:
        routed = m.expert_params(shared=False)
        assert m.weight_bytes("bf16") == routed * 0.5625 + (m.num_params() - routed) * 2.0
# --- NVIDIA's NVFP4 checkpoint: attention_weights ------------------------------------------
def test_nvfp4_checkpoint_is_kimi_with_bf16_attention():
    blank = dict(name="", source="", expert_weights=None, attention_weights=None)
    assert dataclasses.replace(NVFP4, **blank) == dataclasses.replace(KIMI, **blank)
    assert NVFP4.attention_weights == "bf16" and NVFP4.expert_weights is None
    attn = KIMI.num_layers * KIMI.attention_params()
    assert NVFP4.weight_bytes("fp4") == attn * 2.0 + (NVFP4.num_params() - attn) * 0.5
    assert memory_plan(NVFP4, hetsim.load_accelerator("b200"), 4, "fp4").weight_bytes * 4 \
        == pytest.approx(NVFP4.weight_bytes("fp4"), rel=1e-12)


def test_attention_projections_run_in_the_checkpoint_s_format():
    """The fp4 pool of the NVFP4 checkpoint differs from the same pool with fp4 attention by
    exactly the five attention GEMMs per layer, each bf16 instead of fp4."""
    pm = PerfModel(hetsim.load_accelerator("b200", runtime="vllm"))
    ck = StepModel(NVFP4, pm, 4, Precision("fp4", kv="bf16").formats())
    fp4 = StepModel(dataclasses.replace(NVFP4, attention_weights=None), pm, 4,
                    Precision("fp4", kv="bf16").formats())
    assert ck.attn_gemm == ("bf16", "bf16") and fp4.attn_gemm == ("fp4", "fp4")
    for n in (4, 8192):
        gap = sum(pm.gemm_time(n, a, b, "bf16", "bf16") - pm.gemm_time(n, a, b, "fp4", "fp4")
                  for a, b in ck._layer_gemms)
        assert ck.dense_time(n, 0) - fp4.dense_time(n, 0) == pytest.approx(
            KIMI.num_layers * gap, rel=1e-9)


def test_attention_weights_errors(tmp_path):
    with pytest.raises(ConfigError, match="attention_weights: unknown precision 'bf61'"):
        hetsim.load_model(_yaml(tmp_path, "attention_weights: bf61"))
    m = hetsim.load_model(_yaml(tmp_path, "attention_weights: fp8"))
    with pytest.raises(ConfigError, match="a100-sxm does not compute in fp8"):
        StepModel(m, PerfModel(hetsim.load_accelerator("a100-sxm")), 8, "bf16")


def _yaml(tmp_path, extra):
    f = tmp_path / "m.yaml"
    f.write_text("name: m\nnum_layers: 2\nhidden_size: 256\nnum_heads: 4\nffn_size: 512\n"
                 f"vocab_size: 1000\n{extra}\n")
    return f


def test_catalog_matches_the_published_nvfp4_config():
    """NVIDIA's config excludes exactly every layer's self_attn and the LM head (besides the
    vision tower and projector) from NVFP4 (skipped without the aic extra)."""
    folder = _aic_model_configs()
    if folder is None or not (folder / "nvidia--Kimi-K2.5-NVFP4_config.json").is_file():
        pytest.skip("aiconfigurator-core (the aic extra) with its model_configs is not installed")
    c = json.loads((folder / "nvidia--Kimi-K2.5-NVFP4_config.json").read_text())
    q = c["quantization_config"]
    assert (q["quant_method"], q["quant_algo"]) == ("modelopt", "NVFP4")
    g = q["config_groups"]["group_0"]
    assert g["weights"]["num_bits"] == g["input_activations"]["num_bits"] == 4   # W4A4
    attn = {f"language_model.model.layers.{i}.self_attn*" for i in range(NVFP4.num_layers)}
    assert set(q["ignore"]) == attn | {"language_model.lm_head", "mm_projector*",
                                       "vision_tower*"}
    text = c["text_config"]
    assert (text["num_hidden_layers"], text["n_routed_experts"], text["num_attention_heads"],
            text["kv_lora_rank"]) == (NVFP4.num_layers, NVFP4.moe.num_experts, NVFP4.num_heads,
                                      NVFP4.mla.kv_lora_rank)
