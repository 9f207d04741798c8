"""The command line, and bad input: one line on stderr naming file and key path, exit 2."""
import copy
import json

import pytest
import yaml

from hetsim.cli import main

from .conftest import SCENARIOS


def write(tmp_path, d, name="s.yaml"):
    f = tmp_path / name
    f.write_text(yaml.safe_dump(d, sort_keys=False) if isinstance(d, dict) else d)
    return str(f)


def test_run_prints_table(capsys):
    assert main(["run", str(SCENARIOS / "quickstart.yaml"), "-q"]) == 0
    out = capsys.readouterr().out
    for name in ("colocated-4xh100", "disagg-1p3d-h100", "hetero-h100p-a100d", "TTFT p99",
                 "goodput"):
        assert name in out


def test_json_shape(capsys):
    assert main(["run", str(SCENARIOS / "quickstart.yaml"), "--json", "-q"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["scenario"] == "quickstart"
    keys = {"name", "requests", "completed", "ttft_s", "tpot_s", "e2e_s", "throughput_rps",
            "output_tokens_per_s", "slo_attainment", "goodput_rps", "accelerators",
            "cost_per_hour_usd", "usd_per_million_output_tokens", "goodput_rps_per_dollar_hour",
            "kv_transfer_bytes"}
    for p in d["placements"]:
        assert keys <= set(p)
        assert set(p["ttft_s"]) == {"mean", "p50", "p90", "p99"}
    disagg = [p for p in d["placements"] if p["name"] != "colocated-4xh100"]
    assert all(p["kv_transfer_bytes"] > 0 for p in disagg)


def test_out_dir(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["run", str(SCENARIOS / "quickstart.yaml"), "--out", str(out), "-q"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"summary.json", "requests.csv", "requests.parquet", "scenario.resolved.yaml",
            "latency_cdf.png", "cost_vs_goodput.png"} <= names
    # the resolved scenario runs again
    assert main(["validate", str(out / "scenario.resolved.yaml")]) == 0


def test_validate_and_profiles(capsys):
    assert main(["validate", str(SCENARIOS / "quickstart.yaml")]) == 0
    assert main(["profiles", "list"]) == 0
    out = capsys.readouterr().out
    assert "h100-sxm" in out and "roce-400g" in out and "deepseek-v3" in out
    assert main(["profiles", "show", "mi300x"]) == 0
    assert "hbm_gb: 192" in capsys.readouterr().out
    assert main(["profiles", "show", "mi300"]) == 0   # alias


BAD = [
    # (edit, expected fragment of the one-line error)
    (lambda d: d["placements"]["disagg"]["pools"]["d"].update(tp=3),
     "placements.disagg.pools.d.tp: must be a power of two, got 3"),
    (lambda d: d["placements"]["coloc"]["pools"]["m"].update(acclerator="h100-sxm"),
     "placements.coloc.pools.m.acclerator: unknown key (did you mean 'accelerator'?)"),
    (lambda d: d["placements"]["coloc"]["pools"]["m"].update(accelerator="h100-sx"),
     "placements.coloc.pools.m.accelerator: unknown accelerator 'h100-sx' (did you mean"),
    (lambda d: d["placements"]["coloc"]["pools"]["m"].update(accelerator="a100-sxm",
                                                              precision="fp8"),
     "placements.coloc.pools.m.precision: a100-sxm does not compute in fp8"),
    (lambda d: d.update(model="llama-3.1-405b"),
     "placements.coloc.pools.m: pool 'm': llama-3.1-405b does not fit on h100-sxm at tp=1"),
    (lambda d: d["workload"]["arrival"].update(rate_rps=0),
     "workload.arrival.rate_rps: must be > 0, got 0"),
    (lambda d: d["workload"].update(requests=-5), "workload.requests: must be > 0, got -5"),
    (lambda d: d["placements"]["disagg"].update(kv_link=None, kv_transfer={"conversion": "decoed"}),
     "placements.disagg.kv_transfer.conversion: must be one of prefill, decode, none, got "
     "'decoed' (did you mean 'decode'?)"),
    (lambda d: (d["placements"]["disagg"]["pools"]["d"].update(precision={"compute": "bf16",
                                                                           "kv": "fp8"}),
                d["placements"]["disagg"].update(kv_link=None, kv_transfer={
                    "link": "roce-400g", "conversion": "none"})),
     "placements.disagg.kv_transfer.conversion: pools 'p' and 'd' hold KV in different formats "
     "(dtype bf16 vs fp8) and conversion is none"),
    (lambda d: d["placements"]["disagg"].update(kv_transfer={"engine": "rdma"}, kv_link=None,
                                                pools={**d["placements"]["disagg"]["pools"]},
                                                ) or d["placements"]["disagg"]["pools"]["p"]
     .update(nic="tcp-25g"),
     "placements.disagg.kv_transfer.engine: engine rdma needs GPU-direct NICs; pool 'p' uses "
     "tcp-25g"),
    (lambda d: d["placements"]["disagg"]["pools"]["p"].update(site="remote"),
     "placements.disagg.kv_link: pools are on sites local, remote; KV between sites needs "
     "kv_transfer.cross_site"),
    (lambda d: d["placements"]["disagg"]["pools"]["d"].update(precision={"compute": "fp8",
                                                                           "weights": "bf16"}),
     "placements.disagg.pools.d.precision.weights: weights (bf16) are wider than compute (fp8)"),
    (lambda d: d["placements"]["disagg"]["pools"]["d"].update(preemption="swap"),
     "placements.disagg.pools.d.preemption: preemption: swap needs kv_offload"),
    (lambda d: d["placements"]["disagg"].update(kv_link="roce-40g"),
     "placements.disagg.kv_link: unknown interconnect 'roce-40g' (did you mean 'roce-400g'?)"),
    (lambda d: d.update(model="llama-3-70"), "model: unknown model 'llama-3-70'"),
    (lambda d: d["placements"]["coloc"].update(router="least-load"),
     "placements.coloc.router: unknown router 'least-load' (did you mean 'least-loaded'?)"),
    (lambda d: d["slo"].update(attainment=1.5), "slo.attainment: must be in (0, 1], got 1.5"),
    (lambda d: d["placements"]["coloc"]["pools"]["m"].update(role="mix"),
     "placements.coloc.pools.m.role: unknown role 'mix' (did you mean 'mixed'?)"),
]


@pytest.mark.parametrize("edit,expected", BAD)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, base_dict, edit, expected):
    d = copy.deepcopy(base_dict)
    edit(d)
    f = write(tmp_path, d)
    out = tmp_path / "out"
    assert main(["run", f, "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"hetsim: error: {f}: ")
    assert expected in err
    assert not out.exists()
    assert main(["validate", f]) == 2


def test_yaml_syntax_error_names_line(tmp_path, capsys):
    f = write(tmp_path, "name: x\nplacements: {a: [1, 2\n")
    assert main(["validate", f]) == 2
    err = capsys.readouterr().err
    assert "YAML syntax error at line" in err and err.count("\n") == 1


def test_missing_file(capsys):
    assert main(["run", "no/such.yaml"]) == 2
    assert "no/such.yaml: file not found" in capsys.readouterr().err


def test_console_script_exit_code_in_subprocess(tmp_path, base_dict):
    import subprocess
    import sys
    d = copy.deepcopy(base_dict)
    d["placements"]["coloc"]["pools"]["m"]["tp"] = 3
    f = write(tmp_path, d)
    p = subprocess.run([sys.executable, "-m", "hetsim", "run", f], capture_output=True, text=True)
    assert p.returncode == 2 and p.stdout == "" and p.stderr.count("\n") == 1


def test_unknown_placement_is_a_clean_error(capsys):
    assert main(["run", str(SCENARIOS / "quickstart.yaml"), "--placement", "disagg-1p3d"]) == 2
    err = capsys.readouterr().err
    assert "unknown placement 'disagg-1p3d' (did you mean 'disagg-1p3d-h100'?)" in err
