import contextlib
import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

import hetsim

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"


@contextlib.contextmanager
def benchmark_module(name: str):
    """``benchmarks/<name>.py`` imported as module ``name`` while the block runs."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod          # its dataclasses resolve their module by name
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


def with_requests(sc, n, **arrival):
    """A copy of scenario ``sc`` with ``n`` requests (and arrival fields replaced)."""
    w = sc.workload
    a = dataclasses.replace(w.arrival, **arrival) if arrival else w.arrival
    return dataclasses.replace(sc, workload=dataclasses.replace(w, requests=n, arrival=a))


def scenario_from(d: dict, tmp_path: Path, name="s.yaml"):
    import yaml
    f = tmp_path / name
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    return hetsim.load_scenario(f)


@pytest.fixture
def base_dict():
    return {
        "name": "t",
        "model": "llama-3.1-8b",
        "workload": {"requests": 200, "seed": 3,
                     "arrival": {"process": "poisson", "rate_rps": 4.0},
                     "input_tokens": {"dist": "fixed", "value": 512},
                     "output_tokens": {"dist": "fixed", "value": 64}},
        "slo": {"ttft_s": 1.0, "tpot_s": 0.05},
        "placements": {
            "coloc": {"pools": {"m": {"role": "mixed", "accelerator": "h100-sxm"}}},
            "disagg": {"pools": {"p": {"role": "prefill", "accelerator": "h100-sxm"},
                                 "d": {"role": "decode", "accelerator": "h100-sxm"}},
                       "kv_link": "roce-400g"},
        },
    }
