"""benchmarks/serving_accuracy.py on synthetic rows laid out as aiconfigurator-core's
silicon_sample.csv (never the shipped file): the held-out filter, row -> scenario, the summary."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hetsim.errors import ConfigError
from hetsim.scenario import parse_scenario

from .conftest import benchmark_module

HELD = ["meta-llama/Llama-3.1-8B", "NVIDIA/Llama-3.3-70B-Instruct-FP8", "deepseek-ai/DeepSeek-V3",
        " nvidia/DeepSeek-R1-FP4", "Meta-Llama/Meta-Llama-3.1-70B", "DEEPSEEK-AI/DeepSeek-R1",
        "/models/meta-llama/Llama-3.1-8B", None]
ALLOWED = ["Qwen/Qwen3-32B", "openai/gpt-oss-120b", "nvidia/Qwen3-32B-NVFP4",
           "MiniMaxAI/MiniMax-M2.5"]


@pytest.fixture(scope="module")
def sa():
    with benchmark_module("serving_accuracy") as mod:
        yield mod


def _row(**kw):
    row = dict(id="r", silicon_data_source="source_file=x.csv", backend="vllm",
               backend_version="0.12.0", model_path="Qwen/Qwen3-32B", system="h100_sxm",
               precision=np.nan, mode="agg", isl=128, osl=8, gemm_quant_mode=np.nan,
               moe_quant_mode=np.nan, batch_size=2, tp_size=2, pp_size=1,
               attention_dp_size=np.nan, moe_tp_size=np.nan, moe_ep_size=np.nan,
               prefill_batch_size=np.nan, prefill_num_workers=np.nan, prefill_tp_size=np.nan,
               prefill_attention_dp_size=np.nan, decode_batch_size=np.nan,
               decode_num_workers=np.nan, decode_tp_size=np.nan,
               decode_attention_dp_size=np.nan, silicon_ttft_ms=50.0, silicon_tpot_ms=10.0)
    row.update(kw)
    return row


@pytest.fixture
def sample(tmp_path):
    rows = [_row(id=f"held{i}", model_path=m) for i, m in enumerate(HELD)]
    rows += [_row(id=f"ok{i}", model_path=m) for i, m in enumerate(ALLOWED)]
    path = tmp_path / "silicon_sample.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_filter_drops_every_held_out_family(sa, sample):
    df = sa.allowed_rows(sample)
    assert sorted(df["id"]) == [f"ok{i}" for i in range(len(ALLOWED))]
    low = df["model_path"].str.strip().str.lower()
    assert not low.str.startswith(("meta-llama/", "nvidia/llama-", "deepseek-ai/",
                                   "nvidia/deepseek-")).any()


def test_filter_is_the_only_reader(sa, sample, monkeypatch):
    """main reads the sample once, through allowed_rows, and simulates no held-out row."""
    reads, seen = [], []
    real_read, real_sim = pd.read_csv, sa.simulate
    monkeypatch.setattr(pd, "read_csv", lambda p, *a, **k: reads.append(str(p)) or
                        real_read(p, *a, **k))
    monkeypatch.setattr(sa, "simulate", lambda row, *a: seen.append(row["model_path"]) or
                        real_sim(row, *a))
    monkeypatch.setattr(sa, "AIC_CSV", sample.parent / "none.csv")
    assert sa.main(["--sample", str(sample), "--model", "qwen3-32b"]) == 0
    assert reads == [str(sample)]
    assert seen and all(m in ALLOWED for m in seen)
    # and no function but allowed_rows names the sample file
    import inspect
    src = {n: inspect.getsource(f) for n, f in vars(sa).items()
           if inspect.isfunction(f) and f.__module__ == sa.__name__}
    assert [n for n, s in src.items() if "SAMPLE" in s and "resources" in s] == ["allowed_rows"]


def test_a_measurement_repeated_by_another_export_counts_once(sa):
    a = _row(id="a", silicon_data_source="source_file=2026-03-25.csv; silicon_concurrency=64",
             batch_size=64, tp_size=4)
    # the 04-06 export's copy: parallelism written squared, the same run to the digit
    b = {**a, "id": "b", "silicon_data_source": a["silicon_data_source"].replace("03-25", "04-06"),
         "tp_size": 16, "batch_size": 16, "attention_dp_size": 4}
    other = {**a, "id": "c", "silicon_ttft_ms": 50.5}       # another run of that configuration
    fewer = {**a, "id": "d", "silicon_data_source": "source_file=x.csv; silicon_concurrency=32"}
    got = sa.measurements(pd.DataFrame([a, b, other, fewer]))
    assert list(got["id"]) == ["a", "c", "d"]
    assert sa.measurements(pd.DataFrame([a]).iloc[:0]).empty


def test_agg_row_maps_to_one_mixed_pool(sa):
    sc = sa.scenario(_row(batch_size=16, tp_size=4))
    pool = sc["placements"]["measured"]["pools"]["mixed"]
    assert pool == {"role": "mixed", "accelerator": "h100-sxm", "tp": 4, "instances": 1,
                    "precision": {"compute": "bf16", "weights": "bf16", "kv": "bf16"},
                    "max_batch_tokens": 8192, "max_seqs": 1024}
    w = sc["workload"]
    assert w["arrival"] == {"process": "closed", "concurrency": 16}
    assert w["requests"] == 160 and w["seed"] == 0
    assert w["input_tokens"]["value"] == 128 and w["output_tokens"]["value"] == 8
    assert sc["model"] == "qwen3-32b"
    parse_scenario(sc, "synthetic")


def test_agg_concurrency_and_workers(sa):
    # batch_size is per attention-DP rank: 16 x 4 ranks = the 64 clients measured
    row = _row(silicon_data_source="x; silicon_concurrency=64", batch_size=16, tp_size=1,
               attention_dp_size=4, backend="trtllm", system="b200_sxm",
               gemm_quant_mode="fp8_block")
    pool = sa.scenario(row)["placements"]["measured"]["pools"]["mixed"]
    assert (pool["tp"], pool["instances"], pool["accelerator"]) == (4, 1, "b200")
    # four attention-DP ranks of TP1 on the worker's 4 GPUs, not one TP4 group
    assert pool["attention_dp"] == 4
    assert pool["precision"]["compute"] == "fp8" and pool["max_seqs"] == 2048
    # twice the clients of one worker's batch: two workers
    row = _row(silicon_data_source="x; silicon_concurrency=8", batch_size=4)
    assert sa.scenario(row)["placements"]["measured"]["pools"]["mixed"]["instances"] == 2
    assert sa.scenario(row)["workload"]["arrival"]["concurrency"] == 8


def test_disagg_row_maps_to_prefill_and_decode_pools(sa):
    row = _row(mode="disagg", batch_size=np.nan, tp_size=np.nan, prefill_batch_size=1,
               prefill_num_workers=2, prefill_tp_size=2, decode_batch_size=32,
               decode_num_workers=1, decode_tp_size=4, gemm_quant_mode="fp8",
               precision="fp8", backend="sglang", system="h200_sxm")
    sc = sa.scenario(row)
    pools = sc["placements"]["measured"]["pools"]
    assert {k: (p["role"], p["tp"], p["instances"]) for k, p in pools.items()} == {
        "prefill": ("prefill", 2, 2), "decode": ("decode", 4, 1)}
    assert sc["workload"]["arrival"]["concurrency"] == 32      # decode batch x workers
    assert pools["decode"]["precision"]["weights"] == "fp8"
    parse_scenario(sc, "synthetic")


def test_precision_and_unknown_names(sa):
    assert sa.precision(_row(gemm_quant_mode="int4_wo"))["weights"] == "int4"
    assert sa.precision(_row(precision="fp8"))["compute"] == "fp8"
    with pytest.raises(ConfigError, match="no hetsim format"):
        sa.precision(_row(gemm_quant_mode="w4a8_weird"))
    with pytest.raises(ConfigError, match="no model"):
        sa.scenario(_row(model_path="someone/NoSuchModel-7B"))
    assert sa.simulate(_row(model_path="someone/NoSuchModel-7B"))["skipped"].startswith(
        "hetsim has no model")


@pytest.mark.parametrize("path, model", [
    ("meta-llama/Meta-Llama-3.1-8B-Instruct", "llama-3.1-8b"),
    ("nvidia/Llama-3.3-70B-Instruct-FP8", "llama-3.1-70b"),   # 3.3 is a post-trained 3.1
    ("deepseek-ai/DeepSeek-V3-0324", "deepseek-v3"),          # "-V3" is the name's
    # NVIDIA's fp4 releases of it, MLA projections bf16 (-FP4 taken off under -v2, -0528)
    ("nvidia/DeepSeek-R1-0528-FP4-v2", "deepseek-v3-nvfp4"),
    ("nvidia/DeepSeek-V3.1-NVFP4", "deepseek-v3-nvfp4"),
    ("nvidia/Llama-3.3-70B-Instruct-FP4", "llama-3.1-70b"),     # no -nvfp4 entry: whole fp4
    ("deepseek-ai/DeepSeek-V3.2", None), ("Qwen/Qwen3-8B", None),
])
def test_a_release_serves_its_catalog_base_model(sa, path, model):
    """A model path the replay has no entry for serves the catalog model its release is of
    (organisation, ``Meta-`` and release suffixes dropped), or none: the judged families and
    future rows replay without a list of every release, and nothing is guessed."""
    assert sa.catalog_model(path) == model
    if model:
        sc = parse_scenario(sa.scenario(_row(model_path=path, gemm_quant_mode="fp8_static")),
                            "t")
        assert sc.model == model
        prec = sc.placements["measured"].pools["mixed"].precision
        assert (prec.compute, prec.weights) == ("fp8", "fp8-static")


@pytest.mark.parametrize("path, config", [
    ("deepseek-ai/DeepSeek-V3.2", "deepseek-ai--DeepSeek-V3.2"),
    ("Qwen/Qwen3-8B", "Qwen--Qwen3-8B"),
    ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "meta-llama--Llama-4-Scout-17B-16E-Instruct"),
    # another organisation's re-release: the publisher's config, the quant suffix taken off
    ("nvidia/Llama-4-Maverick-17B-128E-Instruct-FP8",
     "meta-llama--Llama-4-Maverick-17B-128E-Instruct"),
    ("zhipuai/GLM-5", "zai-org--GLM-5"),
    ("someone/NoSuchModel-7B", None)])
def test_a_model_the_catalog_lacks_serves_its_published_config(sa, path, config):
    got = sa.published_config(path)
    assert (got and Path(got).name) == (config and f"{config}_config.json")
    if config:
        assert sa.model_of(_row(model_path=path)) == got


@pytest.mark.parametrize("path, label, moe, want", [
    # DeepSeek's own fp8 releases are 128x128 blocks whatever the label says
    ("deepseek-ai/DeepSeek-R1-0528", "fp8", np.nan, ("deepseek-v3", "fp8", "fp8-block")),
    # NVIDIA's fp8 re-releases are ModelOpt's per-tensor static-scale checkpoints
    ("nvidia/Llama-3.1-70B-Instruct-FP8", "fp8", np.nan, ("llama-3.1-70b", "fp8", "fp8-static")),
    # a row's MoE label of blocks is the checkpoint's
    ("zhipuai/GLM-5", "fp8", "fp8_block", (None, "fp8", "fp8-block")),
    # an nvfp4 row serves NVIDIA's NVFP4 release, whatever path it names
    ("deepseek-ai/DeepSeek-R1", "nvfp4", "nvfp4", ("deepseek-v3-nvfp4", "fp4", "fp4")),
    ("moonshotai/Kimi-K2.5", "nvfp4", "nvfp4", ("kimi-k2.5-nvfp4", "fp4", "fp4")),
    ("moonshotai/Kimi-K2.5", "int4_wo", "int4_wo", ("kimi-k2.5", "bf16", "bf16")),
    # a publisher's plain fp8 label stays per-tensor dynamic fp8
    ("Qwen/Qwen3-32B", "fp8", "fp8", ("qwen3-32b", "fp8", "fp8")),
    # an NVIDIA release that is not an fp8 one, labelled fp8: dynamic, not ModelOpt's static
    ("nvidia/Llama-3_3-Nemotron-Super-49B-v1", "fp8", np.nan,
     ("nvidia--Llama-3_3-Nemotron-Super-49B-v1", "fp8", "fp8")),
    # the row's fp8_block label wins over the path's organisation
    ("nvidia/Some-Model-FP8", "fp8", "fp8_block", (None, "fp8", "fp8-block")),
    # NVFP4 from NVIDIA's own config.json of the release, experts alone fp4: a bf16 pool
    ("deepseek-ai/DeepSeek-V3.2", "nvfp4", "nvfp4",
     ("nvidia--DeepSeek-V3.2-NVFP4", "bf16", "bf16")),
    ("zai-org/GLM-5", "nvfp4", "nvfp4", ("nvidia--GLM-5-NVFP4", "bf16", "bf16")),
    ("zhipuai/GLM-5", "fp4", "fp4", ("nvidia--GLM-5-NVFP4", "bf16", "bf16")),
    # NVIDIA's release quantizes attention too: an fp4 pool
    ("Qwen/Qwen3-235B-A22B", "nvfp4", "nvfp4", ("nvidia--Qwen3-235B-A22B-NVFP4", "fp4", "fp4"))])
def test_a_row_serves_the_checkpoint_its_publisher_released(sa, monkeypatch, path, label, moe,
                                                            want):
    row = _row(model_path=path, gemm_quant_mode=label, moe_quant_mode=moe)
    if want[0] is None:     # no model of that name: serve Qwen3-32B, read the path's rule
        real = sa.served_model
        monkeypatch.setattr(sa, "served_model", lambda p, lab: real("Qwen/Qwen3-32B", lab))
    prec = sa.precision(row)
    assert (prec["compute"], prec["weights"]) == want[1:]
    if want[0]:
        got = sa.model_of(row)
        assert got == want[0] or Path(got).name == f"{want[0]}_config.json"


@pytest.mark.parametrize("path, label, backend, version, kv", [
    ("nvidia/Llama-3.1-70B-Instruct-FP8", "fp8", "trtllm", "1.0.0rc3", "fp8"),
    ("nvidia/DeepSeek-R1-0528-FP4-v2", "nvfp4", "trtllm", "1.2.0rc6.post1", "fp8"),
    ("deepseek-ai/DeepSeek-R1", "nvfp4", "sglang", "0.5.6.post2", "fp8"),
    ("nvidia/Llama-3.3-70B-Instruct-FP4", "nvfp4", "sglang", "0.5.3", "fp8"),
    ("nvidia/Llama-3.1-70B-Instruct-FP8", "fp8", "sglang", "0.5.3", "bf16"),
    ("nvidia/Llama-3.1-70B-Instruct-FP8", "fp8", "sglang", "nightly-dev", "fp8"),
    ("nvidia/Llama-3.1-70B-Instruct-FP8", "fp8", "sglang", "0.5.1.post1", "bf16"),
    ("nvidia/Llama-3.1-70B-Instruct-FP8", "fp8", "vllm", "0.12.0", "bf16"),
    ("deepseek-ai/DeepSeek-R1", "fp8", "trtllm", "1.0.0rc3", "bf16"),     # not ModelOpt's
    ("meta-llama/Llama-3.1-8B-Instruct", "bf16", "trtllm", "1.0.0rc3", "bf16"),
    # an nvfp4 row is a ModelOpt checkpoint whatever its path; gpt-oss's nvfp4 label is not
    ("Qwen/Qwen3-32B", "nvfp4", "trtllm", "1.2.0rc6.post1", "fp8"),
    ("openai/gpt-oss-120b", "nvfp4", "trtllm", "1.2.0rc6.post1", "bf16"),
    ("Qwen/Qwen3-32B", "fp8_static", "sglang", "0.5.10.post1", "fp8"),
    ("Qwen/Qwen3-32B", "nvfp4", "sglang", "v0.5.4", "fp8"),
    ("Qwen/Qwen3-32B", "nvfp4", "sglang", np.nan, "bf16")])       # no version: not assumed
def test_the_kv_cache_is_fp8_where_the_runtime_keeps_the_checkpoints(sa, path, label, backend,
                                                                     version, kv):
    """NVIDIA's ModelOpt releases name an fp8 KV cache: TRT-LLM keeps it under its default
    "auto", SGLang from 0.5.4 (0.5.3 for FP4 checkpoints), vLLM never."""
    row = _row(model_path=path, gemm_quant_mode=label, backend=backend,
               backend_version=version)
    pools = sa.scenario(row, runtime={})["placements"]["measured"]["pools"]
    assert pools["mixed"]["precision"]["kv"] == kv
    assert sa.scenario(row)["placements"]["measured"]["pools"]["mixed"]["precision"]["kv"] \
        == "bf16"          # the idealised engine has no runtime default to follow


def test_published_config_prefers_the_paths_own_organisation(sa, monkeypatch):
    configs = {"m-7b": [("alpha", "/a/alpha--M-7B_config.json"),
                        ("beta", "/b/beta--M-7B_config.json")]}
    monkeypatch.setattr(sa, "_model_configs", lambda: configs)
    assert sa.published_config("beta/M-7B-Instruct") == "/b/beta--M-7B_config.json"
    assert sa.published_config("gamma/M-7B-FP8") == "/a/alpha--M-7B_config.json"
    assert sa.published_config("alpha/M-8B") is None


def test_gb200_disagg_layout_reading_is_for_mla_models_only(sa):
    """GLM-5's GB200 rows take the DeepSeek-lineage recipes' layout (a lone decode worker of
    32 GPUs: DP + EP); gpt-oss's, another recipe family, keep the row's columns."""
    src = "source_file=2026-03-25.csv; model=GLM-5; silicon_concurrency=5; measured=2026-04-02"
    row = _row(mode="disagg", model_path="zhipuai/GLM-5", system="gb200", backend="trtllm",
               gemm_quant_mode="nvfp4", silicon_data_source=src, batch_size=np.nan,
               tp_size=np.nan, prefill_tp_size=4, prefill_attention_dp_size=1,
               decode_tp_size=32, decode_attention_dp_size=1)
    got = sa.gb200_mla_disagg(row)
    assert (got["prefill_attention_dp_size"], got["decode_attention_dp_size"]) == (4, 32)
    gpt = {**row, "model_path": "openai/gpt-oss-120b"}
    assert sa.gb200_mla_disagg(gpt) == gpt


MINIMAX = dict(model_path="MiniMaxAI/MiniMax-M2.5", isl=1024, tp_size=2)


def _ix(system, quant, image, day, **kw):
    src = f"db-dump/2026-04-27; config_id=1; measured={day}T00:00:00.000Z; vllm/vllm-openai:{image}"
    return _row(**{**MINIMAX, "system": system, "gemm_quant_mode": quant,
                   "silicon_data_source": src, **kw})


@pytest.mark.parametrize("row, knobs", [
    # B200 fp8 before the 2026-04-03 recipe: EP whatever the label, 0.95, bf16 KV
    (_ix("b200_sxm", "fp8", "v0.17.0-cu130", "2026-03-20"),
     {"memory_utilization": 0.95, "moe_ep": 2}),
    # the merged v0.19 recipe: fp8 KV, 2 x ISL per step, 0.90, EP as labelled
    (_ix("b200_sxm", "fp8", "v0.19.0-cu130", "2026-04-10"),
     {"memory_utilization": 0.90, "kv": "fp8", "max_batch_tokens": 2048}),
    (_ix("b300_sxm", "nvfp4", "v0.19.0-cu130", "2026-04-18"),
     {"memory_utilization": 0.90, "kv": "fp8", "max_batch_tokens": 2048}),
    # PR #947's nightly image: fp8 KV, not yet the merged budget
    (_ix("b200_sxm", "fp8", "nightly-5b8c30d62b754b575e043ce2fc0dcbf8a64f6306", "2026-04-03"),
     {"memory_utilization": 0.95, "kv": "fp8"}),
    # H200 from 2026-03-13: TP8 + EP, labelled ep 1
    (_ix("h200_sxm", "fp8", "v0.18.0", "2026-03-28", tp_size=8),
     {"memory_utilization": 0.95, "moe_ep": 8}),
    (_ix("h200_sxm", "fp8", "v0.16.0", "2026-03-01", tp_size=4), {"memory_utilization": 0.95}),
    (_ix("h100_sxm", "fp8", "v0.18.0", "2026-03-28", tp_size=4),
     {"memory_utilization": 0.90, "max_seqs": 256})])
def test_minimax_rows_run_on_the_knobs_their_script_set(sa, row, knobs):
    """docs/inferencex-minimax-kimi-knobs.md §8, one row per script state."""
    assert sa.provenance(row) == "inferencex"
    assert sa.deployment(row, "mixed") == knobs


def test_minimax_knobs_are_inferencex_s_only(sa):
    """A MiniMax row from another campaign (or one whose source names none) keeps the
    runtime's defaults: InferenceX's scripts did not set its knobs."""
    for src in ("source_file=minimax-gap-analysis.csv; silicon_concurrency=4",
                "aic-auto-gap-analysis; silicon_concurrency=4"):
        row = _row(**{**MINIMAX, "system": "b200_sxm", "gemm_quant_mode": "fp8",
                      "silicon_data_source": src})
        assert sa.provenance(row) != "inferencex"
        assert "memory_utilization" not in sa.deployment(row, "mixed")
def test_minimax_checkpoints(sa):
    """fp8 rows serve the block-scaled release; nvfp4 rows NVIDIA's experts-only NVFP4
    release (its config.json, fp4 experts on a bf16 pool)."""
    fp8 = _ix("b200_sxm", "fp8", "v0.19.0-cu130", "2026-04-10")
    assert sa.precision(fp8) == {"compute": "fp8", "weights": "fp8-block", "kv": "bf16"}
    assert sa.model_of(fp8) == "minimax-m2.5"
    fp4 = _ix("b200_sxm", "nvfp4", "v0.19.0-cu130", "2026-04-10")
    assert sa.precision(fp4) == {"compute": "bf16", "weights": "bf16", "kv": "bf16"}
    assert sa.model_of(fp4).endswith("nvidia--MiniMax-M2.5-NVFP4_config.json")


def test_runtime_puts_every_pool_on_the_rows_runtime(sa):
    pool = sa.scenario(_row(backend="sglang"), runtime={"overlap": False})
    pool = pool["placements"]["measured"]["pools"]["mixed"]
    assert pool["runtime"] == {"name": "sglang", "overlap": False}
    assert "max_batch_tokens" not in pool          # the runtime's own sizes
    generic = sa.scenario(_row(backend="sglang"))["placements"]["measured"]["pools"]["mixed"]
    assert "runtime" not in generic and generic["max_batch_tokens"] == 8192


def test_errors_and_summary_arithmetic(sa):
    e = sa.errors([100, 100, 100, 100], [50, 110, 100, 400])
    assert e["n"] == 4 and e["over3x"] == 1 and e["worst"] == 4.0
    assert math.isclose(e["mdape"], 0.3)            # |r - 1| = .5 .1 0 3 -> median .3
    assert math.isclose(e["ratio"], 1.05)           # ratios .5 1.1 1 4 -> median 1.05
    assert math.isclose(e["p90"], np.percentile([0.5, 0.1, 0, 3], 90))
    assert sa.errors([100], [np.nan])["n"] == 0
    df = pd.DataFrame({"backend": ["vllm", "vllm", "trtllm"], "system": ["a", "a", "b"],
                       "silicon_ttft_ms": [100, 200, 100], "hetsim_ttft_ms": [50, 200, 300],
                       "silicon_tpot_ms": [10, 10, 10], "hetsim_tpot_ms": [11, 9, 10],
                       "aic_ttft_ms": [np.nan, 200, 100], "aic_tpot_ms": [np.nan] * 3})
    s = sa.summary(df).set_index("backend")
    assert s.loc["vllm", "hetsim_ttft_n"] == 2 and s.loc["all", "hetsim_ttft_n"] == 3
    assert math.isclose(s.loc["vllm", "hetsim_ttft_mdape"], 0.25)
    assert math.isclose(s.loc["trtllm", "hetsim_ttft_worst"], 3.0)
    assert s.loc["all", "hetsim_ttft_over3x"] == 0        # 3x exactly is not "more than"
    assert s.loc["all", "aic_ttft_n"] == 2 and s.loc["all", "aic_tpot_n"] == 0
    assert "| vllm | a | 2 | 25% |" in sa.table(sa.summary(df))


def test_moe_width_sets_the_tp_group(sa):
    # tp 1 with experts over moe_tp 2 x moe_ep 2: a worker of 4 GPUs, one TP group here
    row = _row(model_path="Qwen/Qwen3-235B-A22B-FP8", tp_size=1, moe_tp_size=2, moe_ep_size=2,
               gemm_quant_mode="fp8", system="h200_sxm")
    pool = sa.scenario(row)["placements"]["measured"]["pools"]["mixed"]
    assert pool["tp"] == 4 and sa.scenario(row)["model"] == "qwen3-235b-a22b"


@pytest.mark.parametrize("label, model, compute, weights", [
    ("int4_wo", "kimi-k2.5", "bf16", "bf16"),        # int4-g32 routed experts come with the model
    ("nvfp4", "kimi-k2.5-nvfp4", "fp4", "fp4")])     # NVIDIA's checkpoint: bf16 attention inside
def test_kimi_rows_serve_the_checkpoint_of_their_label(sa, label, model, compute, weights):
    row = _row(model_path=" moonshotai/Kimi-K2.5", gemm_quant_mode=label, tp_size=8,
               system="h200_sxm" if label == "int4_wo" else "b200_sxm")
    sc = sa.scenario(row)
    pool = sc["placements"]["measured"]["pools"]["mixed"]
    assert sc["model"] == model
    assert pool["precision"] == {"compute": compute, "weights": weights, "kv": "bf16"}
    parse_scenario(sc, "kimi")                      # a valid scenario: the weights fit
    # a label the table has no checkpoint for keeps the path's model and the label's formats
    other = sa.scenario(_row(model_path="moonshotai/Kimi-K2.5", gemm_quant_mode="fp8", tp_size=8,
                             system="h200_sxm"))
    assert other["model"] == "kimi-k2.5"
    assert other["placements"]["measured"]["pools"]["mixed"]["precision"]["compute"] == "fp8"


def test_length_spread(sa):
    w = sa.scenario(_row(isl=1000, osl=10), spread=0.2)["workload"]
    assert w["input_tokens"] == {"dist": "uniform", "min": 800, "max": 1000}
    assert w["output_tokens"] == {"dist": "uniform", "min": 8, "max": 10}
    assert sa.scenario(_row(osl=1), spread=0.2)["workload"]["output_tokens"]["dist"] == "fixed"


def test_stagger_spreads_the_clients_over_one_cycle(sa):
    """--stagger: the clients start evenly over the lock-stepped run's mean end-to-end time, so
    a round's prompts no longer share (and wait for) one prefill step."""
    row = _row(isl=1024, osl=32, batch_size=8, tp_size=2,
               silicon_data_source="source_file=x.csv; silicon_concurrency=8")
    assert "ramp_s" not in sa.scenario(row)["workload"]["arrival"]
    assert sa.scenario(row, ramp_s=1.5)["workload"]["arrival"]["ramp_s"] == 1.5
    together, staggered = (sa.simulate(row, runtime={}, stagger=s) for s in (False, True))
    assert staggered["hetsim_ttft_ms"] < 0.6 * together["hetsim_ttft_ms"]
    assert staggered["burst_ttft_ms"] < 0.6 * together["burst_ttft_ms"]


@pytest.mark.parametrize("quant, system, day, knobs", [
    ("int4_wo", "h200_sxm", "2026-03-10", {"max_seqs": 4, "memory_utilization": 0.95, "moe_ep": 1}),
    ("nvfp4", "b200_sxm", "2026-03-20", {"max_seqs": 4, "memory_utilization": 0.90, "moe_ep": 1}),
    ("nvfp4", "b200_sxm", "2026-04-21", {"max_seqs": 4, "memory_utilization": 0.90, "moe_ep": 1,
                                         "kv": "fp8", "max_batch_tokens": 2048})])
def test_kimi_rows_run_pure_tp_on_their_script_s_knobs(sa, quant, system, day, knobs):
    """docs/inferencex-minimax-kimi-knobs.md §3: max-num-seqs CONC, no EP whatever the label."""
    src = f"source_file=2026-04-06.csv; silicon_concurrency=4; measured={day}; image=vllm/vllm-openai:v0.17.0"
    row = _row(model_path="moonshotai/Kimi-K2.5", system=system, gemm_quant_mode=quant,
               isl=1024, tp_size=4, moe_ep_size=4, silicon_data_source=src)
    assert sa.deployment(row, "mixed") == knobs


@pytest.mark.parametrize("enc, want", [
    # the same measurements in InferenceX's 04-06 export (squared) and its 03-25 export
    ((16, 1, 4, 4), (4, 1, 1, 4)), ((64, 1, 8, 8), (8, 1, 1, 8)), ((1, 16, 4, 4), (1, 4, 1, 4)),
    ((4, 4, 1, 16), (4, 1, 1, 4)), ((2, 2, 1, 4), (2, 1, 1, 2)),
    # not squared: kept
    ((4, 1, 4, 1), (4, 1, 4, 1)), ((8, 1, 8, 1), (8, 1, 8, 1))])
def test_inferencex_squared_parallelism_is_read_as_the_gpus_it_ran_on(sa, enc, want):
    keys = ("tp_size", "attention_dp_size", "moe_tp_size", "moe_ep_size")
    row = _ix("b200_sxm", "fp8", "v0.19.0-cu130", "2026-04-10", **dict(zip(keys, enc)))
    got = sa.parallelism(row)
    assert tuple(_int(got[k]) for k in keys) == want
    pool = sa.scenario(row, runtime={})["placements"]["measured"]["pools"]["mixed"]
    assert pool["tp"] == want[0] * want[1]
    assert pool.get("attention_dp", 1) == want[1]
    # the 03-25 export writes GPUs as they are; so do aic's campaigns
    early = {**row, "silicon_data_source": "source_file=2026-03-25.csv; measured=2026-03-20"}
    assert sa.parallelism(early) is early


def test_squared_attention_dp_rows_keep_every_client_on_one_worker(sa):
    """The 04-06 export's ``batch 16, dp 4, moe 1 x 16`` at 64 clients is the 03-25 export's
    ``batch 64, dp 1, moe 1 x 4``: one TP4 worker serving all 64 clients, not four workers of
    16 (which hid the measured 20 s of KV-bound queueing)."""
    keys = ("tp_size", "attention_dp_size", "moe_tp_size", "moe_ep_size")
    src = "source_file=2026-04-06.csv; silicon_concurrency=64; measured=2026-03-28"
    squared = _row(**{**MINIMAX, **dict(zip(keys, (4, 4, 1, 16))), "batch_size": 16,
                      "silicon_data_source": src})
    plain = {**squared, **dict(zip(keys, (4, 1, 1, 4))), "batch_size": 64,
             "silicon_data_source": src.replace("04-06", "03-25")}
    for row in (squared, plain):
        sc = sa.scenario(row, runtime={})
        pool = sc["placements"]["measured"]["pools"]["mixed"]
        assert (pool["instances"], pool["tp"], pool.get("attention_dp", 1)) == (1, 4, 1)
        assert sc["workload"]["arrival"]["concurrency"] == 64


@pytest.mark.parametrize("conc, day, system, skip", [
    (512, "2025-12-05", "h100_sxm", True), (512, "2025-12-08", "h100_sxm", True),
    (64, "2025-12-05", "h100_sxm", False),     # the slurm twin's rows: CONC on both sides
    (512, "2025-12-05", "b200_sxm", False),    # B200's server cap is 512 (no bug)
    (512, "2026-01-10", "h100_sxm", False)])   # after IX@4e135fd3f
def test_gpt_oss_h100_rows_of_the_client_bug_window_are_not_replayed(sa, conc, day, system, skip):
    src = (f"source_file=2026-04-06.csv; model=GPT-OSS-120B; silicon_concurrency={conc}; "
           f"measured={day}T00:00:00.000Z; wip=False; image=vllm/vllm-openai:v0.11.2")
    row = _row(model_path="openai/gpt-oss-120b", system=system, isl=1024, osl=1024,
               batch_size=conc, silicon_data_source=src)
    assert bool(sa.unreplayable(row)) is skip
    if skip:
        got = sa.simulate(row, runtime={})
        assert "unrecorded CONC" in got["skipped"] and "hetsim_ttft_ms" not in got


def _int(v):
    return 1 if v != v else int(v)


@pytest.mark.parametrize("workers, enc, want", [
    # a lone decode worker ran DP + EP over its GPUs (dep16), however the export wrote it
    (1, (16, 1, 1, 1), (1, 16, 16)), (1, (8, 1, 1, 8), (1, 8, 8)),
    # several decode workers ran TP + EP (tep8, tep4)
    (4, (8, 1, 1, 8), (8, 1, 8)), (5, (4, 1, 1, 1), (4, 1, 4))])
def test_kimi_gb200_disagg_workers_run_as_the_recipes_say(sa, workers, enc, want):
    keys = ("tp_size", "attention_dp_size", "moe_tp_size", "moe_ep_size")
    src = "db-dump/2026-04-27; config_id=759; silicon_concurrency=4; measured=2026-04-18"
    row = _row(mode="disagg", model_path="moonshotai/Kimi-K2.5", system="gb200",
               backend="trtllm", silicon_data_source=src, batch_size=np.nan, tp_size=np.nan,
               prefill_batch_size=1, prefill_num_workers=1, prefill_tp_size=4,
               prefill_attention_dp_size=1, decode_batch_size=4, decode_num_workers=workers,
               **{"decode_" + k: v for k, v in zip(keys, enc)})
    got = sa.gb200_mla_disagg(row)
    assert (got["decode_tp_size"], got["decode_attention_dp_size"],
            got["decode_moe_ep_size"]) == want
    # every prefill worker: attention DP over its 4 GPUs, EP4
    assert (got["prefill_tp_size"], got["prefill_attention_dp_size"],
            got["prefill_moe_ep_size"]) == (1, 4, 4)
    pools = sa.scenario(row, runtime={})["placements"]["measured"]["pools"]
    assert pools["decode"]["tp"] == want[0] * want[1]
    assert pools["decode"].get("attention_dp", 1) == want[1]
    # other campaigns and systems are read as written
    assert sa.gb200_mla_disagg({**row, "system": "b200_sxm"})["decode_tp_size"] == enc[0]


@pytest.mark.parametrize("isl, conc, gpus, want", [
    # (prefill workers, decode workers, decode attention DP, decode max_seqs)
    (8192, 2151, 8, (5, 1, 8, 256)), (1024, 4301, 8, (1, 1, 8, 768)),
    (1024, 4301, 32, (2, 1, 32, 128)), (1024, 55, 4, (1, 5, 1, 8))])
def test_kimi_gb200_trt_rows_without_workers_run_their_recipe(sa, isl, conc, gpus, want):
    """The 03-25 export's wip rows name no workers: the dynamo-trt recipe of their client
    count and decode GPUs gives them (docs/inferencex-minimax-kimi-knobs.md §4.2)."""
    src = (f"source_file=2026-03-25.csv; model=Kimi-K2.5; silicon_concurrency={conc}; "
           "measured=2026-04-02T05:37:55Z; wip=True")
    row = _row(mode="disagg", model_path="moonshotai/Kimi-K2.5", system="gb200",
               backend="trtllm", gemm_quant_mode="nvfp4", silicon_data_source=src, isl=isl,
               osl=1024, batch_size=np.nan, tp_size=np.nan, prefill_tp_size=4,
               prefill_attention_dp_size=1, decode_tp_size=gpus, decode_attention_dp_size=1)
    pools = sa.scenario(row, runtime={})["placements"]["measured"]["pools"]
    p, d = pools["prefill"], pools["decode"]
    assert (p["instances"], d["instances"], d.get("attention_dp", 1), d["max_seqs"]) == want
    assert (p["attention_dp"], p["max_batch_tokens"], p["memory_utilization"]) == (4, 16384, 0.4)
    assert p["runtime"]["overlap"] is False and d["precision"]["kv"] == "fp8"
    # a client count no recipe has keeps the old reading (one worker each)
    other = sa.scenario({**row, "silicon_data_source": src.replace(f"={conc};", "=7;")},
                        runtime={})["placements"]["measured"]["pools"]
    assert other["prefill"]["instances"] == 1 and "max_seqs" not in other["decode"]


@pytest.mark.parametrize("gpus, want", [(4, (4, 1)), (8, (8, 1)), (16, (1, 16)),
                                        (32, (1, 32))])
def test_kimi_gb200_decode_without_a_worker_count(sa, gpus, want):
    """Only 16- and 32-GPU decode workers are surely dep16/dep32; 8 may be tep8 or dep8."""
    src = "db-dump/2026-04-27; config_id=759; silicon_concurrency=4; measured=2026-04-18"
    row = _row(mode="disagg", model_path="moonshotai/Kimi-K2.5", system="gb200",
               backend="trtllm", silicon_data_source=src, prefill_tp_size=4,
               decode_tp_size=gpus, decode_num_workers=np.nan)
    got = sa.gb200_mla_disagg(row)
    assert got["prefill_attention_dp_size"] == 4
    assert (got["decode_tp_size"], sa._int(got["decode_attention_dp_size"])) == want


Q35 = dict(model_path="Qwen/Qwen3.5-397B-A17B", backend="sglang", isl=1024, osl=1024,
           tp_size=4, moe_tp_size=4, moe_ep_size=1, batch_size=64)


def _q35(system, precision, image, day, export="2026-03-25", **kw):
    src = (f"source_file={export}.csv; model=Qwen3.5-397B; silicon_concurrency=64; "
           f"measured={day}T00:00:00Z; wip=False; image=lmsysorg/sglang:{image}")
    return _row(**{**Q35, "system": system, "precision": precision,
                   "silicon_data_source": src, **kw})


def _gap(system, precision, tp, moe_tp, moe_ep):
    return _row(**{**Q35, "system": system, "precision": precision, "tp_size": tp,
                   "moe_tp_size": moe_tp, "moe_ep_size": moe_ep, "silicon_data_source":
                   "source_file=qwen3.5-397b-gap-analysis.csv; silicon_concurrency=64; "
                   "aic_database_mode=SILICON"})


OFF = {"runtime": {"radix_cache": False}}
RECV30 = {"runtime": {"radix_cache": False, "recv_interval": 30}}    # 64 clients: CONC >= 16


@pytest.mark.parametrize("row, knobs", [
    # docs/inferencex-qwen35-knobs.md §2, one row per script; every one disables the radix cache
    (_q35("b200_sxm", "bf16", "nightly-dev-20260216-d3bae71e", "2026-02-20", tp_size=8,
          moe_tp_size=8), {"memory_utilization": 0.82, "max_batch_tokens": 32768,
                           "max_seqs": 128, **RECV30}),
    (_q35("b200_sxm", "fp8", "v0.5.9-cu130-amd64", "2026-03-24", moe_tp_size=1, moe_ep_size=4),
     {"memory_utilization": 0.82, "max_batch_tokens": 32768, "max_seqs": 128, "kv": "fp8",
      **RECV30}),
    (_q35("b200_sxm", "fp4", "nightly-dev-20260402-d7256eb6", "2026-04-08"),
     {"memory_utilization": 0.85, "max_batch_tokens": 32768, "max_seqs": 128, "kv": "fp8",
      **RECV30}),
    # below 16 clients the scripts' receive interval is 10
    (_q35("b200_sxm", "fp4", "nightly-dev-20260402-d7256eb6", "2026-04-08",
          silicon_data_source="db-dump/2026-04-27; config_id=708; silicon_concurrency=8; "
          "measured=2026-04-08T00:00:00.000Z; lmsysorg/sglang:nightly-dev-20260402-d7256eb6"),
     {"memory_utilization": 0.85, "max_batch_tokens": 32768, "max_seqs": 128, "kv": "fp8",
      "runtime": {"radix_cache": False, "recv_interval": 10}}),
    (_q35("h200_sxm", "fp8", "v0.5.9-cu129-amd64", "2026-03-04", tp_size=8, moe_tp_size=1,
          moe_ep_size=8), {"memory_utilization": 0.80, "max_batch_tokens": 16384,
                           "max_seqs": 128, "kv": "fp8", **OFF}),
    # B300 fp8 from 2026-04-17: --max-running-requests CONC, --scheduler-recv-interval 10
    (_q35("b300_sxm", "fp8", "v0.5.10.post1-cu130", "2026-04-17"),
     {"memory_utilization": 0.80, "max_batch_tokens": 16384, "max_seqs": 64, "kv": "fp8",
      "runtime": {"radix_cache": False, "recv_interval": 10}}),
    # B300 rows of 2026-04-03 ran a script the repository does not hold: SGLang's defaults
    (_q35("b300_sxm", "fp8", "v0.5.9-cu130-amd64", "2026-04-03"), {}),
    # aiconfigurator's gap-analysis copies of InferenceX rows run their scripts' knobs
    (_gap("h200_sxm", "fp8", 8, 1, 8), {"memory_utilization": 0.80, "max_batch_tokens": 16384,
                                        "max_seqs": 128, "kv": "fp8", **OFF})])
def test_qwen35_sglang_rows_run_on_the_knobs_their_script_set(sa, row, knobs):
    assert sa.provenance(row) == "inferencex"
    assert sa.deployment(row, "mixed") == knobs


@pytest.mark.parametrize("row, mtp", [
    (_q35("b200_sxm", "fp8", "v0.5.9-cu130", "2026-03-20"), True),
    (_q35("b200_sxm", "fp8", "v0.5.9-cu130", "2026-03-20", export="2026-04-06"), True),
    (_gap("b200_sxm", "fp8", 4, 4, 1), True),
    # the non-MTP config's runs: another image, TP4 with EP4 or TP8
    (_q35("b200_sxm", "fp8", "v0.5.9-cu130-amd64", "2026-03-24", moe_tp_size=1, moe_ep_size=4),
     False),
    (_gap("b200_sxm", "fp8", 4, 1, 4), False), (_gap("b200_sxm", "fp8", 8, 8, 1), False),
    (_q35("b300_sxm", "fp8", "v0.5.9-cu130", "2026-04-03"), False)])
def test_qwen35_b200_mtp_rows_are_not_replayed(sa, row, mtp):
    """InferenceX's qwen3.5-fp8-b200-sglang-mtp runs (docs/inferencex-qwen35-knobs.md §2.3):
    hetsim has no speculative decoding."""
    assert bool(sa.unreplayable(row)) is mtp
    if mtp:
        got = sa.simulate(row, runtime={})
        assert "speculative decoding" in got["skipped"] and "hetsim_ttft_ms" not in got


def test_qwen35_gap_rows_keep_their_parallelism(sa):
    """The gap-analysis file writes TP4 EP4 as tp 4, moe 1 x 4 (the 03-25 export's form), not
    squared: one worker of four GPUs."""
    pool = sa.scenario(_gap("b200_sxm", "fp8", 4, 1, 4), runtime={})
    pool = pool["placements"]["measured"]["pools"]["mixed"]
    assert (pool["instances"], pool["tp"], pool.get("moe_ep")) == (1, 4, 4)
    assert pool["runtime"] == {"name": "sglang", "radix_cache": False, "recv_interval": 30}


def test_decompose_separates_the_decode_step_from_the_per_request_stall(sa):
    """TPOT = step + stall / (osl - 1), recovered exactly for measured and hetsim; a load
    measured at one output length, and a skipped row, give nothing."""
    rows = []
    for osl in (128, 256, 512):
        rows.append(_row(id=f"a{osl}", osl=osl, batch_size=8, skipped="",
                         silicon_tpot_ms=15.0 + 7 * 60.0 / (osl - 1),    # 7 interleaved prefills
                         hetsim_tpot_ms=18.0 + 0.0 / (osl - 1)))          # lock-step: none
    rows.append(_row(id="b", osl=128, batch_size=16, skipped="", hetsim_tpot_ms=20.0))
    rows.append(_row(id="c", osl=64, batch_size=8, skipped="no model", hetsim_tpot_ms=np.nan))
    d = sa.decompose(pd.DataFrame(rows))
    assert len(d) == 1 and d.loc[0, "lengths"] == 3 and d.loc[0, "clients"] == 8
    assert math.isclose(d.loc[0, "measured_step"], 15.0, rel_tol=1e-9)
    assert math.isclose(d.loc[0, "measured_stall"], 420.0, rel_tol=1e-9)
    assert math.isclose(d.loc[0, "hetsim_step"], 18.0, rel_tol=1e-9)
    assert abs(d.loc[0, "hetsim_stall"]) < 1e-6
    assert "| vllm | h100_sxm | Qwen3-32B | 1 | 1.20 | 60 | 0 |" in sa.decomposition_table(d)


def test_decompose_reads_a_csv_the_run_wrote(sa, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(sa.__file__).parent))   # as when run as a script
    rows = [_row(id=f"a{osl}", osl=osl, skipped="", silicon_tpot_ms=10.0 + 100 / (osl - 1),
                 hetsim_tpot_ms=12.0 + 50 / (osl - 1)) for osl in (101, 201)]
    rows.append(_row(id="c", osl=64, skipped="no model", hetsim_tpot_ms=np.nan))
    path = tmp_path / "rows.csv"
    pd.DataFrame(rows).to_csv(path, index=False, float_format="%.4g")
    assert sa.main(["--decompose", str(path)]) == 0
    assert "| vllm | h100_sxm | Qwen3-32B | 1 | 1.20 | 100 | 50 |" in capsys.readouterr().out
    pd.DataFrame([_row()]).to_csv(path, index=False)          # the sample itself: no estimates
    assert sa.main(["--decompose", str(path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1

