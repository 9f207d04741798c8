"""Every PNG comes from hetsim.plots: importing hetsim never loads matplotlib, names are drawn
literally (a ``$`` is not math), and each plot lands as a real PNG."""
import copy
import subprocess
import sys

import yaml

import hetsim
from hetsim.planner import Candidate, Option, PlanResult, load_plan_spec, pareto
from hetsim.plots import cost_goodput_png, latency_cdf_png, plan_png, run_pngs

from .conftest import ROOT

PNG = b"\x89PNG\r\n\x1a\n"


def _png(path) -> bool:
    return path.read_bytes()[:8] == PNG and path.stat().st_size > 1000


def test_importing_hetsim_and_its_reports_loads_no_matplotlib():
    code = ("import sys, hetsim, hetsim.report, hetsim.plots, hetsim.cli, hetsim.planner\n"
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr


def test_run_plots_with_dollar_names(tmp_path, base_dict):
    d = copy.deepcopy(base_dict)
    d["workload"]["requests"] = 80
    d["name"] = "cost $5 $x^2$"
    d["placements"] = {"$cheap$": d["placements"]["coloc"], "a$b": d["placements"]["disagg"]}
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    res = hetsim.run(f)
    run_pngs(res, tmp_path)
    assert _png(tmp_path / "latency_cdf.png") and _png(tmp_path / "cost_vs_goodput.png")
    latency_cdf_png(res, tmp_path / "one.png")
    cost_goodput_png(res, tmp_path / "two.png")
    assert (tmp_path / "one.png").read_bytes() == (tmp_path / "latency_cdf.png").read_bytes()
    assert (tmp_path / "two.png").read_bytes() == (tmp_path / "cost_vs_goodput.png").read_bytes()


def _cand(shape, cost, goodput, verified=True):
    o = Option("h100-sxm", 1, "bf16", cost, 10.0)
    pools = ({"mixed": (o, 1)} if shape == "colocated"
             else {"prefill": (o, 1), "decode": (o, 1)})
    return Candidate(shape, pools, None if shape == "colocated" else "roce-400g", cost, 10.0,
                     verified=verified, attainment=0.95, goodput_rps=goodput)


def test_plan_png_with_a_frontier_and_with_nothing_verified(tmp_path):
    spec = load_plan_spec(ROOT / "examples" / "plan" / "llama8b-chat.yaml")
    cands = [_cand("colocated", 3.0, 10.0), _cand("homogeneous-pd", 6.0, 25.0),
             _cand("heterogeneous-pd", 7.0, 20.0), _cand("colocated", 2.0, None, False)]
    res = PlanResult(spec, 20.0, 4, 0, 4, 0.0, cands, pareto(cands))
    assert [c.cost for c in res.frontier] == [3.0, 6.0]
    plan_png(res, tmp_path / "p.png")
    empty = PlanResult(spec, 20.0, 0, 0, 0, 0.0, [], [])
    plan_png(empty, tmp_path / "e.png")
    assert _png(tmp_path / "p.png") and _png(tmp_path / "e.png")
    assert (tmp_path / "p.png").read_bytes() != (tmp_path / "e.png").read_bytes()
