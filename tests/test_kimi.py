"""Kimi-K2.5 as published (issue 14/15): the DeepSeek-V3 architecture with Moonshot's
group-scaled int4 routed experts (int4-g32) beside bf16 attention, shared experts and dense MLP;
and the measured MoE table a vLLM pool of that checkpoint reads."""
import dataclasses
import json

import pytest

import hetsim
from hetsim import runtimes
from hetsim.models import from_hf_config
from hetsim.perf import PerfModel, StepModel, memory_plan
from hetsim.precision import PRECISION_BYTES, Precision, unsupported

from .test_models import _aic_model_configs

KIMI = hetsim.load_model("kimi-k2.5")
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
    step = StepModel(KIMI, pm, 8, "bf16", moe_compute=runtimes.moe_compute("vllm", prof))
    e = KIMI.moe
    grid = pm.kernels.get("moe", ("w4a16-int", KIMI.hidden_size, e.expert_ffn_size, e.top_k,
                                  e.num_experts, 8, 1, "balanced"))
    assert grid is not None and step.measured_moe
    assert step._moe_form(64.0) == pytest.approx(grid.grid((64.0,)), rel=1e-9)


def test_catalog_matches_the_published_text_config(tmp_path):
    """The catalog file says what the HF importer reads from the published config's
    ``text_config`` (aiconfigurator-core's copy; skipped without the aic extra), and the
    checkpoint's quantization_config is the int4-g32 of the routed experts only."""
    folder = _aic_model_configs()
    if folder is None or not (folder / "moonshotai--Kimi-K2.5_config.json").is_file():
        pytest.skip("aiconfigurator-core (the aic extra) with its model_configs is not installed")
    text = json.loads((folder / "moonshotai--Kimi-K2.5_config.json").read_text())["text_config"]
    (tmp_path / "config.json").write_text(json.dumps(text))
    blank = dict(name="", aliases=[], source="", expert_weights=None)
    assert (dataclasses.replace(from_hf_config(tmp_path / "config.json"), **blank)
            == dataclasses.replace(KIMI, **blank))
    q = text["quantization_config"]
    w = q["config_groups"]["group_0"]["weights"]
    assert (q["quant_method"], w["type"], w["num_bits"], w["strategy"], w["group_size"],
            w["symmetric"]) == ("compressed-tensors", "int", 4, "group", 32, True)
    assert {"lm_head", "re:.*self_attn.*", "re:.*shared_experts.*"} <= set(q["ignore"])
    assert any("mlp\\." in pat for pat in q["ignore"])          # the dense layer's MLP
