import json

import pytest

import hetsim
from hetsim.errors import ConfigError

REQUIRED = ["llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3.1-8b", "llama-3.1-70b",
            "llama-3.1-405b", "qwen3-32b", "opt-13b", "opt-66b", "opt-175b", "bloom-176b",
            "mixtral-8x7b", "deepseek-v3"]


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
