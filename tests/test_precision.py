"""Numeric formats, the one precision-support check and the one pool-feasibility check: each
reason, its wording, and that every layer that checks (performance model, step model, memory
plan, resolution, calibration) says the same thing."""
import dataclasses

import pytest
import yaml

import hetsim
from hetsim.errors import ConfigError
from hetsim.perf import PerfModel, PoolProblem, StepModel, memory_plan, pool_problem
from hetsim.precision import PRECISION_BYTES, Formats, Precision, unknown_precision, unsupported

from .conftest import scenario_from

A100 = hetsim.load_accelerator("a100-sxm")
H100 = hetsim.load_accelerator("h100-sxm")
L8 = hetsim.load_model("llama-3.1-8b")
L405 = hetsim.load_model("llama-3.1-405b")
A100_FP8 = "a100-sxm does not compute in fp8 (supports fp32, tf32, bf16, fp16, int8)"


# --- formats -------------------------------------------------------------------------------
def test_byte_table_is_the_one_every_layer_reads():
    import hetsim.hardware
    import hetsim.models
    import hetsim.perf.ops
    assert hetsim.hardware.PRECISION_BYTES is PRECISION_BYTES
    assert hetsim.models.PRECISION_BYTES is PRECISION_BYTES
    assert hetsim.perf.ops.PRECISION_BYTES is PRECISION_BYTES
    assert PRECISION_BYTES["bf16"] == 2.0 and PRECISION_BYTES["fp4"] == 0.5


def test_formats_of_a_name_is_that_format_for_every_role():
    assert Formats.of("fp8") == Formats("fp8", "fp8", "fp8")
    f = Formats("bf16", "int4", "fp8")
    assert Formats.of(f) is f
    assert Formats() == Formats.of("bf16")
    assert hetsim.Formats is Formats


def test_precision_section_defaults_weights_and_kv_to_compute():
    assert Precision("fp8").formats() == Formats("fp8", "fp8", "fp8")
    assert Precision("bf16", kv="fp8").formats() == Formats("bf16", "bf16", "fp8")
    assert Precision("bf16", weights="int4").formats() == Formats("bf16", "int4", "bf16")


@pytest.mark.parametrize("kwargs,key,text", [
    ({"compute": "bf61"}, "compute", "unknown precision 'bf61' (did you mean 'bf16'?)"),
    ({"kv": "fp9"}, "kv", "unknown precision 'fp9'"),
    ({"compute": "fp8", "weights": "bf16"}, "weights", "weights (bf16) are wider than compute"),
])
def test_precision_section_rejects_unknown_and_wider_weights(kwargs, key, text):
    with pytest.raises(ConfigError) as e:
        Precision(**kwargs)
    assert e.value.path == key and text in e.value.message


def test_unknown_precision_names_the_closest():
    assert unknown_precision("fp8") is None
    assert unknown_precision("bf61") == "unknown precision 'bf61' (did you mean 'bf16'?)"
    with pytest.raises(ConfigError, match="unknown precision 'bf61'"):
        L8.kv_bytes_per_token("bf61")


# --- precision support: one check, one wording everywhere -----------------------------------
def test_unsupported_says_what_the_device_computes_in():
    assert unsupported(A100, "bf16") is None and unsupported(H100, "fp8") is None
    assert unsupported(A100, "fp8") == A100_FP8


def test_every_layer_words_an_unsupported_precision_alike():
    pm = PerfModel(A100)
    checks = [lambda: pm.peak("fp8"), lambda: pm.gemm_time(8, 8, 8, "fp8"),
              lambda: StepModel(L8, pm, 1, "fp8"),
              lambda: StepModel(L8, pm, 1, Formats("fp8", "fp8", "bf16"))]
    for check in checks:
        with pytest.raises(ConfigError) as e:
            check()
        assert e.value.message == A100_FP8
    # narrower weights or KV only are fine: the check is on the compute format
    StepModel(L8, pm, 1, Formats("bf16", "fp8", "fp8"))


def test_calibration_refuses_rows_in_a_format_the_base_cannot_compute():
    from hetsim.calibrate import fit_profile
    from hetsim.config import read_yaml
    from hetsim.hardware import _index, profile_dirs
    raw = read_yaml(_index("accelerator", profile_dirs(), calibrated=False)["a100-sxm"])
    rows = [{"op": "gemm", "precision": "fp8", "m": 64, "n": 4096, "k": 4096, "seconds": 1e-4}]
    with pytest.raises(ConfigError) as e:
        fit_profile(raw, rows)
    assert e.value.message == A100_FP8 + "; measured gemm rows in it"


def test_peak_is_the_datasheet_peak_of_a_supported_format():
    pm = PerfModel(H100)
    assert pm.peak("bf16") == H100.peak_flops("bf16") == H100.tflops["bf16"] * 1e12


# --- pool feasibility: each reason, its key, and the first one wins -------------------------
TINY = hetsim.ModelConfig(name="tiny-12h", num_layers=2, hidden_size=768, num_heads=12,
                          num_kv_heads=4, ffn_size=2048, vocab_size=32000)


@pytest.mark.parametrize("model,acc,tp,fmt,key,text", [
    (L8, A100, 1, "fp8", "precision", A100_FP8),
    (L8, A100, 1, Formats("fp8", "fp8", "bf16"), "precision", A100_FP8),
    (L8, H100, 16, "bf16", "tp", "tp=16 exceeds h100-sxm's scale-up domain of 8"),
    (TINY, H100, 8, "bf16", "tp", "tp=8 does not divide tiny-12h's 12 heads"),
    (L405, H100, 1, "bf16", "", "llama-3.1-405b does not fit on h100-sxm at tp=1"),
])
def test_each_reason_a_pool_cannot_run(model, acc, tp, fmt, key, text):
    p = pool_problem(model, acc, tp, fmt)
    assert isinstance(p, PoolProblem) and p.key == key and p.message.startswith(text), p


def test_a_pool_that_runs_has_no_problem():
    assert pool_problem(L8, H100, 1, "bf16") is None
    assert pool_problem(L405, H100, 8, "fp8") is None          # fp8 halves the weights
    assert pool_problem(TINY, H100, 4, "bf16") is None


def test_the_first_problem_is_reported():
    # unsupported format, too wide for the domain, and too big: the format comes first
    assert pool_problem(L405, A100, 16, "fp8").key == "precision"
    assert pool_problem(L405, H100, 16, "bf16").key == "tp"


def test_memory_problem_uses_the_pools_sizes():
    """A pool that fits at 90% memory utilization does not fit at 30%: the memory check sees
    the same sizes memory_plan does."""
    l70 = hetsim.load_model("llama-3.1-70b")
    assert pool_problem(l70, H100, 2, "bf16") is None
    tight = pool_problem(l70, H100, 2, "bf16", memory_utilization=0.3)
    assert tight.key == "" and "does not fit" in tight.message
    with pytest.raises(ConfigError) as e:
        memory_plan(l70, H100, 2, "bf16", memory_utilization=0.3)
    assert e.value.message == tight.message


def test_no_scale_up_means_no_domain_limit():
    solo = dataclasses.replace(H100, scale_up=None)
    assert pool_problem(L8, solo, 16, "bf16") is None


# --- resolution raises the problem at the pool's key path -----------------------------------
def coloc(base_dict, **pool):
    d = dict(base_dict)
    d["placements"] = {"coloc": {"pools": {"m": {"role": "mixed", "accelerator": "h100-sxm",
                                                 **pool}}}}
    return d


@pytest.mark.parametrize("pool,model,expected", [
    ({"accelerator": "a100-sxm", "precision": "fp8"}, None,
     f"placements.coloc.pools.m.precision: {A100_FP8}; pool 'm'"),
    ({"tp": 16}, None,
     "placements.coloc.pools.m.tp: tp=16 exceeds h100-sxm's scale-up domain of 8"),
    ({"tp": 8}, "tiny", "placements.coloc.pools.m.tp: tp=8 does not divide tiny-12h's 12 heads"),
    ({"memory_utilization": 0.05}, None,
     "placements.coloc.pools.m: pool 'm': llama-3.1-8b does not fit on h100-sxm at tp=1"),
])
def test_resolution_names_the_key_of_each_problem(base_dict, tmp_path, pool, model, expected):
    d = coloc(base_dict, **pool)
    if model:
        (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(
            {k: v for k, v in dataclasses.asdict(TINY).items()
             if k in ("name", "num_layers", "hidden_size", "num_heads", "num_kv_heads",
                      "ffn_size", "vocab_size")}))
        d["model"] = "tiny.yaml"
    with pytest.raises(ConfigError) as e:
        scenario_from(d, tmp_path)
    assert str(e.value).startswith(f"{tmp_path / 's.yaml'}: {expected}"), str(e.value)
