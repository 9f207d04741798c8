"""Calibration on this CPU with torch: a real quick calibration end to end, its CSV round trip,
the all-reduce measurement's guard, and the reference's kernel count. Skipped without torch
(the README's test command installs the CPU build); everything else about calibration is
tested without it (test_calibrate.py, test_calibrate_timing.py)."""
import pytest

import hetsim
from hetsim.calibrate import read_csv
from hetsim.calibrate.__main__ import main as calibrate_main
from hetsim.config import read_yaml
from hetsim.hardware import load_accelerator
from hetsim.perf import PerfModel

torch = pytest.importorskip("torch", reason="install the CPU build: pip install torch==2.13.0")


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """A real quick calibration of this CPU, written with --force: how busy the machine is
    decides whether the gates refuse it and how accurate it is, and neither is what these
    tests check (the gates are tested on synthetic measurements in test_calibrate.py; real figures come from
    benchmarks/calibration_noise.py and benchmarks/accuracy.py)."""
    d = tmp_path_factory.mktemp("cal") / "calibrated"
    out = d / "cpu.yaml"
    assert calibrate_main(["--device", "cpu", "--quick", "--out", str(out), "--check",
                           "--force", "-q"]) == 0
    return out


def test_cpu_calibration_end_to_end_writes_a_loadable_profile(cpu_run):
    acc = load_accelerator("cpu", [cpu_run.parent.parent])
    cal = acc.calibration
    assert cal is not None and cal.torch.startswith("2.") and cal.grid == "quick"
    assert "fp32" in cal.gemm and "fp32" in cal.attention_prefill and "fp32" in cal.attention_decode
    for k in ("gemm", "attention_prefill", "attention_decode", "ref_prefill", "ref_decode"):
        assert k in cal.accuracy and cal.accuracy[k]["n"] >= 1
    assert "interleaved" in cal.notes
    rows = read_csv(cpu_run.with_suffix(".csv"))
    assert {r["op"] for r in rows} >= {"gemm", "attn_prefill", "attn_decode", "copy", "launch",
                                        "probe", "probe_deep", "ref_prefill", "ref_decode"}
    assert all(r["noise"] >= 0 for r in rows)              # every timing says how noisy it was
    # the model can drive a simulation on it (how fast depends on how busy this host was)
    pm = PerfModel(acc, link=None)
    m = hetsim.ModelConfig(name="t", num_layers=2, hidden_size=512, num_heads=8, num_kv_heads=2,
                           ffn_size=1408, vocab_size=4096)
    t = hetsim.StepModel(m, pm, 1, "fp32").prefill_time([256])
    assert 0 < t < float("inf")


def test_from_csv_round_trips(cpu_run, tmp_path):
    out = tmp_path / "again.yaml"
    assert calibrate_main(["--from-csv", str(cpu_run.with_suffix(".csv")), "--accelerator",
                           str(cpu_run), "--out", str(out), "--force", "-q"]) == 0
    a, b = read_yaml(cpu_run), read_yaml(out)
    for k in ("gemm", "gemm_memory", "attention_prefill", "attention_decode",
              "attention_decode_memory", "base_efficiency"):
        assert a["calibration"][k] == b["calibration"][k], k
    assert a["efficiency"] == {**b["efficiency"], "note": a["efficiency"]["note"]}
    assert a["tflops"] == b["tflops"] and a["hbm_bandwidth_tbps"] == b["hbm_bandwidth_tbps"]
    for cls in ("gemm", "attention_prefill", "attention_decode", "ref_prefill", "ref_decode"):
        assert a["calibration"]["accuracy"][cls] == b["calibration"]["accuracy"][cls]
    assert read_csv(cpu_run.with_suffix(".csv")) == read_csv(out.with_suffix(".csv"))


def test_allreduce_is_measured_only_with_several_gpus():
    from hetsim.calibrate import measure
    assert measure.allreduce(torch, "cpu", 2) == []


def test_reference_kernel_count_sees_the_unfused_layer():
    from hetsim.calibrate.reference import PROBE, PROBE_DEEP, Reference, count_kernels
    counts = []
    for cfg in (PROBE, PROBE_DEEP):
        net = Reference(torch, cfg, "cpu", torch.float32)
        cache, x = net.cache(1, 17), torch.randn(1, 1, cfg.hidden)
        with torch.no_grad():
            counts.append(count_kernels(torch, lambda: net.forward(x, cache, 16)))
    per_layer = (counts[1] - counts[0]) / 2
    assert per_layer == int(per_layer) and per_layer > 16    # more than a fused layer's ~16
    assert counts[0] > per_layer                              # plus the final norm and head
