"""Overrides: ``--set PATH=VALUE`` and ``overrides={path: value}`` on run, goodput, check, plan.

A path is checked against the schema (a wrong one is a one-line error with a suggestion), the
value against the field, and the user's file is never touched."""
import copy
import json

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hetsim
from hetsim.cli import main
from hetsim.errors import ConfigError
from hetsim.overrides import apply_overrides, parse_assignment, split_path
from hetsim.scenario import Scenario, as_scenario

from .conftest import ROOT


@pytest.fixture
def f(tmp_path, base_dict):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(base_dict, sort_keys=False))
    return path


def test_split_path_reads_names_and_indices():
    assert split_path("a.b[2].c") == ["a", "b", 2, "c"]
    assert split_path("placements.x-y_1.pools.decode.tp") == ["placements", "x-y_1", "pools",
                                                               "decode", "tp"]
    for bad in ("", "a..b", "a.", ".a", "[1]x", "a b", "a[-1]"):
        with pytest.raises(ConfigError, match="not a key path"):
            split_path(bad)


def test_parse_assignment_reads_the_value_as_yaml():
    assert parse_assignment("workload.requests=40") == ("workload.requests", 40)
    assert parse_assignment("a.b=fp8") == ("a.b", "fp8")
    assert parse_assignment("a={weights: fp8, kv: fp8}") == ("a", {"weights": "fp8", "kv": "fp8"})
    assert parse_assignment("a=true") == ("a", True)
    assert parse_assignment("a=null") == ("a", None)
    assert parse_assignment("a=x=y") == ("a", "x=y")
    for bad, why in (("a", "PATH=VALUE"), ("=3", "PATH=VALUE"), ("a=", "no value"),
                     ("a={x: 1, x: 2}", "duplicate key")):
        with pytest.raises(ConfigError, match=why):
            parse_assignment(bad)


def test_overrides_set_nested_keys_and_leave_the_input_alone(f, base_dict):
    before = copy.deepcopy(base_dict)
    sc = as_scenario(base_dict, {
        "workload.arrival.rate_rps": 7,
        "placements.disagg.pools.d.instances": 3,
        "placements.disagg.pools.d.precision": {"weights": "fp8", "compute": "bf16", "kv": "fp8"},
        "placements.coloc.pools.m.precision": "fp8",
    })
    assert base_dict == before
    assert sc.workload.arrival.rate_rps == 7.0
    d = sc.placements["disagg"].pools["d"]
    assert d.instances == 3 and d.precision.weights == "fp8" and d.precision.kv == "fp8"
    assert sc.placements["coloc"].pools["m"].precision == "fp8"
    # a key inside a nested mapping set alone, and a later path overriding an earlier one
    sc = as_scenario(sc, {"placements.disagg.pools.d.precision.kv": "bf16",
                          "workload.arrival.rate_rps": 9})
    assert sc.placements["disagg"].pools["d"].precision.kv == "bf16"
    assert sc.placements["disagg"].pools["d"].precision.weights == "fp8"
    assert sc.workload.arrival.rate_rps == 9.0


def test_null_restores_the_default_and_a_bare_runtime_becomes_a_section(base_dict):
    base_dict["placements"]["coloc"]["pools"]["m"].update(tp=2, runtime="vllm")
    sc = as_scenario(base_dict, {"placements.coloc.pools.m.tp": None,
                                 "placements.coloc.pools.m.runtime.cuda_graphs": False})
    pool = sc.placements["coloc"].pools["m"]
    assert pool.tp == 1
    assert pool.runtime.name == "vllm" and pool.runtime.cuda_graphs is False


def test_a_list_item_is_set_by_index(tmp_path, base_dict):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    base_dict["hardware_profiles"] = ["a"]
    sc = as_scenario(base_dict, {"hardware_profiles[0]": "b"}, file=str(tmp_path / "s.yaml"))
    assert sc.hardware_profiles == ["b"]
    with pytest.raises(ConfigError, match=r"hardware_profiles\[3\]: no item \[3\]: the list "
                                          r"has 1"):
        as_scenario(base_dict, {"hardware_profiles[3]": "b"})


@pytest.mark.parametrize("path, value, message", [
    ("placements.disag.pools.d.instances", 2,
     "placements.disag: no entry 'disag' (did you mean 'disagg'?); one of coloc, disagg"),
    ("placements.disagg.pools.d.instanses", 2,
     "placements.disagg.pools.d.instanses: unknown key (did you mean 'instances'?)"),
    ("placements.disagg.pools.d.instances", 0,
     "placements.disagg.pools.d.instances: must be > 0, got 0"),
    ("placements.disagg.pools.d.tp", 3, "placements.disagg.pools.d.tp: must be a power of two"),
    ("workload.arrival.rate", 2, "workload.arrival.rate: unknown key (did you mean 'rate_rps'?)"),
    ("slo.ttft_s.p99", 2, "slo.ttft_s: is 1.0, a value, not a section"),
    ("placements.disagg.pools.d.precision.kv", "fp3", "precision.kv"),
    ("placements.disagg.pools.x.role", "decode", "placements.disagg.pools.x: no entry 'x'"),
    ("placements.disagg.pools.x", {"role": "decode"},
     "placements.disagg.pools.x.accelerator: required key is missing"),
    ("placements.disagg.pools.d.role", "decoder", "placements.disagg.pools.d.role: unknown role"),
])
def test_a_bad_override_names_its_path_and_is_blamed_not_the_file(f, path, value, message):
    with pytest.raises(ConfigError) as e:
        as_scenario(f, {path: value}, "--set")
    text = str(e.value)
    assert text.startswith(f"{f}: ") and message in text and text.endswith("(set by --set)")


def test_cli_set_changes_the_run_and_a_bad_one_writes_nothing(f, tmp_path, capsys):
    assert main(["run", str(f), "--json", "-q"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["run", str(f), "--json", "-q", "--set", "workload.requests=50",
                 "--set", "placements.disagg.pools.d.instances=2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [p["requests"] for p in out["placements"]] == [50, 50] != \
        [p["requests"] for p in plain["placements"]]
    assert out["placements"][1]["accelerators"] == plain["placements"][1]["accelerators"] + 1
    text = f.read_text()
    dest = tmp_path / "out"
    assert main(["run", str(f), "--out", str(dest), "--set",
                 "placements.disagg.pools.d.instances=-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "instances: must be > 0, got -1 (set by --set)" in err
    assert not dest.exists() and f.read_text() == text
    assert main(["run", str(f), "--set", "workload.requests"]) == 2
    assert "expected PATH=VALUE" in capsys.readouterr().err


def test_the_last_of_two_sets_of_one_path_wins(f, capsys):
    assert main(["run", str(f), "--json", "-q", "--set", "workload.requests=30",
                 "--set", "workload.requests=40"]) == 0
    assert json.loads(capsys.readouterr().out)["placements"][0]["requests"] == 40


def test_api_takes_a_path_a_mapping_or_a_scenario_alike(f, base_dict):
    ov = {"workload.requests": 60, "placements.disagg.pools.d.instances": 2}
    by_path = hetsim.run(f, overrides=ov).summaries
    by_dict = hetsim.run(base_dict, overrides=ov).summaries
    by_obj = hetsim.run(hetsim.load_scenario(f), overrides=ov).summaries
    by_hand = hetsim.run(as_scenario(f, ov)).summaries
    assert json.dumps(by_path) == json.dumps(by_dict) == json.dumps(by_obj) == json.dumps(by_hand)


def test_goodput_and_check_take_overrides(f, tmp_path, base_dict, capsys):
    ov = {"workload.requests": 60, "placements.disagg.pools.d.instances": 2}
    (a,) = hetsim.goodput(f, ["disagg"], seeds=1, rel_tol=0.2, overrides=ov)
    (b,) = hetsim.goodput(as_scenario(f, ov), ["disagg"], seeds=1, rel_tol=0.2)
    assert a.to_json() == b.to_json() and a.accelerators == 3
    checks = dict(base_dict, expect={"completed": {"min": 60, "max": 60}})
    cf = tmp_path / "c.yaml"
    cf.write_text(yaml.safe_dump(checks, sort_keys=False))
    assert main(["check", str(cf)]) == 1          # 200 requests complete, not 60
    capsys.readouterr()
    assert main(["check", str(cf), "--set", "workload.requests=60"]) == 0
    assert main(["check", str(cf), "--set", "expect.completed.min=1"]) == 2
    assert "expect: unknown key" in capsys.readouterr().err


def test_a_named_entry_given_whole_is_added(base_dict):
    sc = as_scenario(base_dict, {"placements.solo": {"pools": {"m": {
        "role": "mixed", "accelerator": "a100-sxm"}}}})
    assert list(sc.placements) == ["coloc", "disagg", "solo"]
    assert sc.placements["solo"].pools["m"].accelerator == "a100-sxm"


def test_an_error_already_in_the_file_is_not_put_on_an_override(tmp_path, base_dict):
    base_dict["placements"]["coloc"]["pools"]["m"]["tp"] = 3
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(base_dict, sort_keys=False))
    with pytest.raises(ConfigError) as e:
        as_scenario(f, {"placements.coloc.router": "random", "workload.requests": 5}, "--set")
    assert str(e.value) == f"{f}: placements.coloc.pools.m.tp: must be a power of two, got 3"


def test_plan_takes_overrides():
    spec = ROOT / "examples" / "plan" / "llama8b-chat.yaml"
    with pytest.raises(ConfigError, match=r"llama8b-chat.yaml: inventory\.h100: no entry "
                                          r"'h100'.*\(set by --set\)"):
        hetsim.load_plan_spec(spec, {"inventory.h100.max": 1}, "--set")
    s = hetsim.load_plan_spec(spec, {"verify_requests": 123, "target_rps": 5,
                                     "inventory.b200": {"max": 4}})
    assert s.verify_requests == 123 and s.target_rps == 5 and s.source_file == str(spec)
    assert s.inventory["b200"].max == 4


_NAMES = st.text(st.characters(codec="ascii", exclude_categories=("Cc",)), max_size=12)
#: real segments, so generated paths reach deep into the schema as often as not
_REAL = st.sampled_from(["placements", "disagg", "coloc", "pools", "d", "m", "precision", "kv",
                         "runtime", "workload", "arrival", "rate_rps", "slo", "instances",
                         "hardware_profiles", "[0]", "kv_transfer", "prefix_cache"])


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])   # never mutated
@given(path=st.lists(st.one_of(_REAL, _NAMES, st.integers(-2, 3).map(lambda i: f"[{i}]")),
                     min_size=1, max_size=6).map(".".join),
       value=st.one_of(st.none(), st.integers(), st.text(max_size=5), st.booleans(),
                       st.dictionaries(_NAMES, st.integers(), max_size=2)))
def test_any_override_is_applied_or_refused_with_a_config_error(base_dict, path, value):
    try:
        sc = as_scenario(base_dict, {path: value})
    except ConfigError as e:
        assert "\n" not in str(e)
    else:
        assert isinstance(sc, Scenario)


def test_apply_overrides_refuses_non_string_paths():
    with pytest.raises(ConfigError, match="a key path must be a string"):
        apply_overrides({}, {3: 1}, Scenario)


def test_an_override_that_fails_resolution_is_blamed_too(f, capsys):
    assert main(["run", str(f), "--set", "placements.coloc.pools.m.accelerator=a100-sxm",
                 "--set", "placements.coloc.pools.m.precision=fp4"]) == 2
    err = capsys.readouterr().err
    assert "does not compute in fp4" in err and err.rstrip().endswith("(set by --set)")
    with pytest.raises(ConfigError, match=r"accelerator: .*\(set by overrides\)$"):
        hetsim.run(f, overrides={"placements.coloc.pools.m.accelerator": "h100-sx"})
