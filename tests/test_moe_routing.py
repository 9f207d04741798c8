"""MoE routing skew (``workload.moe_routing``): read from the runtime profiles' measured MoE
grids at the distribution asked for, refused where no measured grid has it."""
import copy

import pytest

import hetsim
from hetsim.cli import main
from hetsim.errors import ConfigError
from hetsim.perf import PerfModel, StepModel
from hetsim.resolve import load_scenario
from hetsim.workload.spec import MOE_ROUTINGS

from .conftest import scenario_from

BASE = {
    "name": "moe", "model": "qwen3-30b-a3b",
    "workload": {"requests": 60, "seed": 2, "arrival": {"process": "poisson", "rate_rps": 4},
                 "input_tokens": {"dist": "fixed", "value": 512},
                 "output_tokens": {"dist": "fixed", "value": 64}},
    "slo": {"ttft_s": 1.0, "tpot_s": 0.05},
    "placements": {"v": {"pools": {"m": {"role": "mixed", "accelerator": "h200-sxm",
                                         "runtime": "vllm"}}}},
}


def _with(routing, **pool):
    d = copy.deepcopy(BASE)
    d["workload"]["moe_routing"] = routing
    d["placements"]["v"]["pools"]["m"].update(pool)
    return d


def _step(routing):
    model = hetsim.load_model("qwen3-30b-a3b")
    acc = hetsim.load_accelerator("h200-sxm", runtime="vllm")
    return model, acc, StepModel(model, PerfModel(acc), 1, "bf16", moe_distribution=routing)


@pytest.mark.parametrize("routing", MOE_ROUTINGS)
def test_routed_experts_read_the_grid_measured_at_that_routing(routing):
    """At every measured token count the layer's routed-expert time is the table's own."""
    model, acc, step = _step(routing)
    e = model.moe
    grids = [g for g in PerfModel(acc).kernels.grids("moe")
             if g.named_key["distribution"] == routing and g.named_key["hidden"] ==
             model.hidden_size and g.named_key["experts"] == e.num_experts
             and g.named_key["tp"] == 1 and g.named_key["ep"] == 1
             and g.named_key["dtype"] == "bf16"]
    assert step.measured_moe and len(grids) == 1
    g, = grids
    for tokens, seconds, measured in zip(g.axes[0], g.seconds,
                                         g.measured if g.measured is not None else
                                         [True] * len(g.seconds)):
        if measured:
            assert step._moe_grid(float(tokens)) == pytest.approx(float(seconds), rel=1e-9)
            if routing != "balanced":       # skewed: the table as measured
                assert step._moe_form(float(tokens)) == step._moe_grid(float(tokens))


def test_balanced_routing_reads_the_table_at_the_experts_random_routing_reaches():
    """aiconfigurator's balanced table spreads n tokens' top-k over min(E, n k) experts;
    tokens that pick their experts independently reach E (1 - (1 - k/E)^n). Where weights
    bound the layer (few tokens) the table is read in that proportion; where every expert is
    reached either way, as measured; never less for more tokens."""
    model, _, step = _step("balanced")
    E, k = model.moe.num_experts, model.moe.top_k           # 128, 8
    assert step._moe_form(1.0) == pytest.approx(step._moe_grid(1.0), rel=1e-12)
    for n in (2, 4, 8, 16, 32):
        reached = E * (1 - (1 - k / E) ** n)
        assert step._moe_form(n) / step._moe_grid(n) == pytest.approx(
            reached / min(E, n * k), rel=2e-3)
    assert 16 * 8 / E == 1 and step._moe_form(16) < 0.65 * step._moe_grid(16)
    for n in (1024, 4096, 16384):
        assert step._moe_form(n) == pytest.approx(step._moe_grid(n), rel=1e-9)


def test_skewed_routing_changes_the_run_and_balanced_is_the_default(tmp_path):
    runs = {r: hetsim.run(scenario_from(_with(r), tmp_path, f"{r}.yaml")).summary
            for r in MOE_ROUTINGS}
    unset = hetsim.run(scenario_from(BASE, tmp_path, "unset.yaml")).summary
    tpot = {r: s.loc["v", "tpot_s.mean"] for r, s in runs.items()}
    assert tpot["balanced"] == unset.loc["v", "tpot_s.mean"]
    assert len(set(tpot.values())) == 3


def test_routing_is_refused_where_no_measured_grid_has_it(tmp_path):
    # no runtime: the analytical MoE assumes balanced routing and would ignore the key
    with pytest.raises(ConfigError) as e:
        load_scenario(scenario_from(_with("power_law_1.2", runtime=None), tmp_path))
    assert e.value.path == "workload.moe_routing"
    assert "pool 'v.pools.m'" in str(e.value) and "no runtime" in str(e.value)
    # balanced is what the analytical model assumes: accepted anywhere
    load_scenario(scenario_from(_with("balanced", runtime=None), tmp_path, "b.yaml"))


def test_a_dense_model_has_no_routing(tmp_path, base_dict):
    d = copy.deepcopy(base_dict)
    d["workload"]["moe_routing"] = "power_law_1.01"
    with pytest.raises(ConfigError, match="llama-3.1-8b has no MoE layers") as e:
        load_scenario(scenario_from(d, tmp_path))
    assert e.value.path == "workload.moe_routing"


def test_an_unknown_routing_is_one_line_with_its_key(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    import yaml
    f.write_text(yaml.safe_dump(_with("zipf")))
    assert main(["run", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "workload.moe_routing: unknown routing 'zipf'" in err
    assert "balanced, power_law_1.01, power_law_1.2" in err
    assert not list(tmp_path.glob("*/"))


PLAN = {"name": "moe-plan", "model": "qwen3-30b-a3b",
        "workload": {**BASE["workload"], "moe_routing": "power_law_1.2"},
        "slo": {"ttft_s": 1.0, "tpot_s": 0.05, "attainment": 0.9},
        "inventory": {"l40s": {"max": 4}, "h100-sxm": {"max": 4}},
        "tp": [1], "precisions": ["fp8"], "interconnects": ["roce-400g"], "runtime": "sglang"}


def test_a_plan_prunes_options_whose_profile_has_no_grid_at_the_routing():
    """SGLang's L40S profile timed no fp8 MoE kernels (its H100 one did): a plan with skewed
    routing keeps only H100, since a simulation of an L40S candidate would be refused."""
    from hetsim.config import build
    from hetsim.planner import PlanSpec
    from hetsim.planner.capacity import options
    model = hetsim.load_model("qwen3-30b-a3b")

    def measured(acc, routing):
        prof = hetsim.load_accelerator(acc, runtime="sglang")
        return StepModel(model, PerfModel(prof), 1, "fp8", moe_distribution=routing).measured_moe
    assert not measured("l40s", "power_law_1.2") and measured("h100-sxm", "power_law_1.2")
    kept = {o.acc for o, *_ in options(build(PlanSpec, PLAN), model, 512, 64)}
    assert kept == {"h100-sxm"}
    balanced = {**PLAN, "workload": {**PLAN["workload"], "moe_routing": "balanced"}}
    assert {o.acc for o, *_ in options(build(PlanSpec, balanced), model, 512, 64)} == {
        "l40s", "h100-sxm"}


def test_a_plan_with_skewed_routing_needs_a_runtime():
    from hetsim.config import build
    from hetsim.planner import PlanSpec
    with pytest.raises(ConfigError, match="a plan needs runtime:") as e:
        build(PlanSpec, {k: v for k, v in PLAN.items() if k != "runtime"})
    assert e.value.path == "workload.moe_routing"


@pytest.mark.parametrize("acc", ["rtx-pro-6000-server", "b200", "l40s"])
@pytest.mark.parametrize("prec", ["bf16", "fp8"])
def test_a_plan_keeps_an_option_exactly_when_its_simulation_is_accepted(tmp_path, acc, prec):
    """The planner's pruning asks the MoE kernels the simulated pool reads: TRT-LLM on
    Blackwell computes gpt-oss's MXFP4 experts on MXFP8 activations (runtimes.moe_compute), so
    a bf16 pool reads the w4a8 table (RTX Pro 6000's TRT-LLM profile has no w4a16 one)."""
    from hetsim.config import build
    from hetsim.planner import PlanSpec
    from hetsim.planner.capacity import options
    workload = {**BASE["workload"], "moe_routing": "power_law_1.2"}
    plan = {**PLAN, "model": "gpt-oss-20b", "workload": workload, "runtime": "trtllm",
            "inventory": {acc: {"max": 4}}, "precisions": [prec]}
    kept = bool(options(build(PlanSpec, plan), hetsim.load_model("gpt-oss-20b"), 512, 64))
    sc = {**BASE, "model": "gpt-oss-20b", "workload": workload, "placements": {"v": {"pools": {
        "m": {"role": "mixed", "accelerator": acc, "runtime": "trtllm", "precision": prec}}}}}
    try:
        load_scenario(scenario_from(sc, tmp_path))
        accepted = True
    except ConfigError as e:
        assert e.path == "workload.moe_routing", e
        accepted = False
    assert kept == accepted
