"""hetsim.kerneldb on small synthetic tables laid out as aiconfigurator-core lays them out."""
from __future__ import annotations

import pandas as pd
import pytest

import hetsim
from hetsim import kerneldb
from hetsim.config import read_yaml
from hetsim.errors import ConfigError


def _table(root, system, family, runtime, version, stem, **cols):
    d = root / "data" / system / family / runtime / version
    d.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(cols).to_parquet(d / f"{stem}.parquet")


@pytest.fixture
def root(tmp_path):
    gemm = dict(gemm_dtype=["bfloat16", "fp8"], m=[1, 2], n=[8, 8], k=[8, 8], latency=[0.5, 2.0])
    _table(tmp_path, "h100_sxm", "gemm", "vllm", "0.9.0", "gemm_perf", **gemm)
    _table(tmp_path, "h100_sxm", "gemm", "vllm", "0.24.0", "gemm_perf", **gemm)
    _table(tmp_path, "h100_sxm", "attention", "vllm", "0.9.0", "context_attention_perf",
           attn_dtype=["bfloat16"], kv_cache_dtype=["fp8"], latency=[1.0])
    _table(tmp_path, "h100_sxm", "gemm", "vllm", "0.30.0", "gemm_perf", **gemm)
    _table(tmp_path, "h100_sxm", "gemm", "nccl", "2.27", "gemm_perf", **gemm)  # not a runtime
    _table(tmp_path, "b200_sxm", "gemm", "trtllm", "1.3.0rc20", "gemm_perf", **gemm)
    (tmp_path / "query_versions.yaml").write_text(
        "defaults:\n  vllm: {current: '0.24.0', previous: null}\n"
        "overrides:\n  b200_sxm:\n    trtllm: {current: '9.9', previous: null}\n")
    return tmp_path


def test_catalog_lists_runtime_tables_only(root):
    cat = kerneldb.catalog(root)
    assert set(cat.runtime) == {"vllm", "trtllm"}
    assert len(cat) == 5
    assert list(cat.columns) == ["system", "op", "runtime", "version", "path"]


def test_select_uses_declared_current_and_backward_fills(root):
    t = kerneldb.select("h100_sxm", "vllm", root=root)
    assert t.version == "0.24.0"  # declared current, not the newer 0.30.0 on disk
    assert t.tables["gemm"][0] == "0.24.0"
    assert t.tables["context_attention"][0] == "0.9.0"  # newest older version that has it


def test_select_versions_sort_numerically_not_as_text(root):
    # "0.30.0" > "0.24.0" > "0.9.0" numerically; as text "0.9.0" would be the newest
    t = kerneldb.select("h100_sxm", "vllm", "0.30.0", root=root)
    assert t.tables["gemm"][0] == "0.30.0"
    t = kerneldb.select("h100_sxm", "vllm", "0.9.0", root=root)
    assert t.tables["gemm"][0] == "0.9.0"


def test_declared_version_absent_falls_back_to_newest_present(root):
    assert kerneldb.select("b200_sxm", "trtllm", root=root).version == "1.3.0rc20"


@pytest.mark.parametrize("args, words", [
    (("h999", "vllm"), "unknown aiconfigurator system 'h999'"),
    (("h100_sxm", "sglang"), "unknown runtime for h100_sxm 'sglang'"),
    (("h100_sxm", "vllm", "0.1"), "has 0.9.0, 0.24.0, 0.30.0"),
])
def test_unknown_names_list_what_exists(root, args, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(".", r"\.")):
        kerneldb.select(*args, root=root)


def test_read_op_converts_units_and_dtypes(root):
    t = kerneldb.select("h100_sxm", "vllm", root=root)
    df = kerneldb.read_op(t, "gemm")
    assert list(df.gemm_dtype) == ["bf16", "fp8"]
    assert list(df.latency_s) == [0.0005, 0.002]
    assert "latency" not in df.columns
    with pytest.raises(ConfigError, match="has no moe table"):
        kerneldb.read_op(t, "moe")


def test_read_op_refuses_unknown_dtype(root):
    _table(root, "h100_sxm", "gemm", "vllm", "0.24.0", "gemm_perf", gemm_dtype=["fp6"],
           m=[1], n=[1], k=[1], latency=[1.0])
    t = kerneldb.select("h100_sxm", "vllm", root=root)
    with pytest.raises(ConfigError, match="unknown dtype 'fp6'"):
        kerneldb.read_op(t, "gemm")


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(kerneldb.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'hetsim\[aic\]'"):
        kerneldb.data_root()


def _unmapped(cat):
    """Systems in a catalog that SYSTEMS does not map to a loadable hetsim profile."""
    bad = []
    for system in sorted(set(cat.system)):
        try:
            hetsim.load_accelerator(kerneldb.SYSTEMS[system])
        except (KeyError, ConfigError):
            bad.append(system)
    return bad


def test_systems_map_synthetic_tables_to_profiles(root):
    assert _unmapped(kerneldb.catalog(root)) == []
    _table(root, "x999_sxm", "gemm", "vllm", "0.24.0", "gemm_perf", gemm_dtype=["bfloat16"],
           m=[1], n=[1], k=[1], latency=[1.0])
    assert _unmapped(kerneldb.catalog(root)) == ["x999_sxm"]
    # each entry names a canonical profile (not an alias), one per system
    names = list(kerneldb.SYSTEMS.values())
    assert len(set(names)) == len(names)
    assert all(hetsim.load_accelerator(n).name == n for n in names)


def test_every_installed_system_maps_to_the_same_part():
    pytest.importorskip("aiconfigurator_core")
    cat = kerneldb.catalog()
    assert len(set(cat.system)) >= 10 and _unmapped(cat) == []
    # the profile is the part the tables were measured on: its dense peaks and power are the
    # system file's (within 1%: AIC rounds some, e.g. H100 fp8 1978 vs 1979)
    root = kerneldb.data_root()
    fields = {"bf16": "bfloat16_tc_flops", "fp8": "fp8_tc_flops", "int8": "int8_tc_flops",
              "fp4": "fp4_tc_flops"}
    for system in sorted(set(cat.system)):
        acc = hetsim.load_accelerator(kerneldb.SYSTEMS[system])
        gpu = read_yaml(root / f"{system}.yaml")["gpu"]
        assert acc.tdp_w == gpu["power"], system
        for precision, key in fields.items():
            if precision in acc.tflops and key in gpu:
                assert acc.peak_flops(precision) == pytest.approx(gpu[key], rel=0.01), \
                    (system, precision)


def test_split_key_is_the_same_for_a_shape_stored_as_float():
    ints = pd.DataFrame({"gemm_dtype": ["bf16"] * 3, "m": [1, 2, 128], "n": [8, 8, 8],
                         "k": [16, 16, 16]})
    floats = ints.astype({"m": float, "n": float})
    assert list(kerneldb.split_key(ints, "gemm")) == list(kerneldb.split_key(floats, "gemm"))


def test_mla_and_quantize_tables_are_found_module_tables_are_not(root):
    mla = dict(mla_dtype=["bfloat16"], kv_cache_dtype=["fp8"], num_heads=[16], tp_size=[8],
               batch_size=[1], isl=[128], step=[0], latency=[0.1])
    _table(root, "h100_sxm", "mla", "vllm", "0.24.0", "context_mla_perf", **mla)
    # vLLM's whole-module tables (projections included) and SGLang's wide-EP ones are not MLA
    _table(root, "h100_sxm", "mla", "vllm", "0.24.0", "mla_generation_module_perf", **mla)
    _table(root, "h100_sxm", "mla", "vllm", "0.24.0", "wideep_generation_mla_perf", **mla)
    q = dict(quant_dtype=["fp8"], m=[1], k=[1024], latency=[0.01])
    _table(root, "h100_sxm", "quantize", "vllm", "0.24.0", "computescale_perf", **q)
    _table(root, "h100_sxm", "quantize", "vllm", "0.24.0", "scale_matrix_perf", **q)
    t = kerneldb.select("h100_sxm", "vllm", root=root)
    assert {"context_mla", "compute_scale", "scale_matrix"} <= set(t.tables)
    assert "generation_mla" not in t.tables
    df = kerneldb.read_op(t, "context_mla")
    assert list(df.mla_dtype) == ["bf16"] and list(df.kv_cache_dtype) == ["fp8"]
    assert list(kerneldb.read_op(t, "scale_matrix").quant_dtype) == ["fp8"]
    # the split ignores which TP shard an MLA kernel was timed as: one shape, one side
    two = pd.concat([df, df.assign(tp_size=4)], ignore_index=True)
    key = kerneldb.split_key(two, "context_mla")
    assert key[0] == key[1]
