"""Plans on several sites (issue 17, section 4): inventory entries name their site, a plan-level
``cross_site`` link joins them, heterogeneous-PD candidates whose prefill and decode sit on
different sites send their KV over it (pruned by its bandwidth, its transfer time counted in
TTFT), and ``resilience.cross_site_factor`` verifies them with that link degraded.

The setting (``SPEC``): Llama-3.1-8B, 512-token prompts, 64-token outputs, 4 req/s, TTFT
0.5 s, TPOT 20 ms; L40S on a remote site, H100 at home. An L40S cannot decode within 20 ms
(the 16 GB of bf16 weights alone take 18.6 ms to stream at its 864 GB/s, over the 18 ms the
capacity model allows a step), so every disaggregated plan with a decode pool on L40S is out,
and the only PD layout that can serve is prefill on the remote L40S, decode on a home H100.
"""
import copy

import pytest
import yaml

from hetsim.cli import main
from hetsim.config import build
from hetsim.hardware import load_interconnect
from hetsim.models import load_model
from hetsim.planner import PlanSpec, plan
from hetsim.planner.capacity import TPOT_MARGIN, options
from hetsim.planner.search import KV_LINK_MAX_LOAD, candidates
from hetsim.planner.spec import SHAPES
from hetsim.planner.verify import _scenario

from .conftest import ROOT

EXAMPLE = ROOT / "examples" / "plan" / "prfaas-sites.yaml"
PROMPT, OUTPUT, RATE = 512, 64, 4.0
SPEC = {
    "name": "sites", "model": "llama-3.1-8b",
    "workload": {"requests": 200, "seed": 3,
                 "arrival": {"process": "poisson", "rate_rps": RATE},
                 "input_tokens": {"dist": "fixed", "value": PROMPT},
                 "output_tokens": {"dist": "fixed", "value": OUTPUT}},
    "slo": {"ttft_s": 0.5, "tpot_s": 0.02},
    "inventory": {"l40s": {"max": 4, "site": "remote"}, "h100-sxm": {"max": 4}},
    "cross_site": {"link": "tcp-25g", "latency_us": 2000},
    "tp": [1], "verify": 1, "verify_requests": 200,
}
#: one prompt's KV (bf16, 128 KiB per token: 8 KV heads x 128 x 2 bytes x 2 x 32 layers)
KV_BYTES = PROMPT * 131072.0


def spec(**edits) -> PlanSpec:
    return build(PlanSpec, {**copy.deepcopy(SPEC), **edits})


@pytest.fixture(scope="module")
def model():
    return load_model("llama-3.1-8b")


def search(sp, model, target=RATE):
    return candidates(sp, options(sp, model, PROMPT, OUTPUT), KV_BYTES, target)


def test_the_setting_is_what_the_docstring_says(model):
    assert model.kv_tokens(PROMPT, "bf16") * model.kv_bytes_per_token("bf16") == KV_BYTES
    weights_s = 16.06e9 / 864e9          # Llama-3.1-8B bf16 weights over L40S HBM
    assert weights_s > TPOT_MARGIN * SPEC["slo"]["tpot_s"]
    by_acc = {o.acc: (o, dec) for o, _, dec, _ in options(spec(), model, PROMPT, OUTPUT)}
    assert by_acc["l40s"][1] == 0 and by_acc["h100-sxm"][1] > RATE
    assert (by_acc["l40s"][0].site, by_acc["h100-sxm"][0].site) == ("remote", "local")


def table(out: str) -> list[list[str]]:
    """The rows of ``hetsim plan``'s table (a plan name, then its accelerator count)."""
    return [r for r in map(str.split, out.splitlines())
            if len(r) > 1 and r[0].split(":")[0] in SHAPES and r[1].isdigit()]


# --- the search --------------------------------------------------------------------------------
PRFAAS = {   # the one PD layout that can serve: prefill on the remote L40S, decode at home
    "pools": {"prefill": {"role": "prefill", "accelerator": "l40s", "instances": 1, "tp": 1,
                          "precision": "bf16", "price_usd_per_hour": 1.861, "site": "remote"},
              "decode": {"role": "decode", "accelerator": "h100-sxm", "instances": 1, "tp": 1,
                         "precision": "bf16", "price_usd_per_hour": 2.99}},
    "router": "least-loaded",
    "kv_transfer": {"link": "roce-400g",
                    "cross_site": {"link": "tcp-25g", "count": 1, "latency_us": 2000.0}}}


def test_the_only_feasible_disaggregated_layout_spans_the_sites_as_written(tmp_path, capsys):
    """H100 capped at one: homogeneous PD on H100 needs two, on L40S cannot decode; so PD is
    L40S prefill (remote) + H100 decode (home), one each (4 prompts/s of 42 ms each keep one
    L40S 17% busy), its KV over the cross-site link. Colocated H100 sits at home."""
    d = {**copy.deepcopy(SPEC), "inventory": {"l40s": {"max": 4, "site": "remote"},
                                             "h100-sxm": {"max": 1}}}
    res = plan(d)
    pd = [c for c in res.verified if c.shape != "colocated"]
    assert [c.placement() for c in pd] == [PRFAAS] and pd[0].verified
    assert pd[0].cross_site is not None and pd[0].sites() == "remote+local"
    (co,) = [c for c in res.verified if c.shape == "colocated"]
    assert co.sites() == "local" and "site" not in co.placement()["pools"]["mixed"]
    # plan.yaml carries the sites and the link, and runs as the scenario it is
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(d))
    assert main(["plan", str(f), "-q", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert {r[0].split(":")[0]: r[-1] for r in table(out)} == {
        "colocated": "local", "heterogeneous-pd": "remote+local"}
    written = yaml.safe_load((tmp_path / "o" / "plan.yaml").read_text())
    assert PRFAAS in written["placements"].values()


def test_no_site_given_writes_placements_as_before(model):
    """Without sites every option sits at home and no placement names a site or a link
    between sites (plan.yaml and the goldens stay byte-identical)."""
    sp = build(PlanSpec, yaml.safe_load((ROOT / "examples/plan/llama8b-chat.yaml").read_text()))
    cands, _, _ = candidates(sp, options(sp, model, 1024, 200), KV_BYTES, 20.0)
    assert cands and sp.sites == ["local"] and not sp.spans_sites
    for c in cands:
        pl = c.placement()
        assert c.cross_site is None and "kv_transfer" not in pl
        assert all("site" not in p for p in pl["pools"].values())


def test_only_heterogeneous_pd_across_sites_gets_the_link(model):
    sp = spec(inventory={"l40s": {"site": "remote"}, "h100-sxm": {},
                         "a100-sxm": {"site": "remote"}}, slo={"ttft_s": 0.5, "tpot_s": 0.03})
    cands, _, _ = search(sp, model)
    site = {"l40s": "remote", "h100-sxm": "local", "a100-sxm": "remote"}
    spanning = set()
    for c in cands:
        sites = {site[o.acc] for o, _ in c.pools.values()}
        assert (c.cross_site is not None) == (len(sites) > 1), c.name()
        if c.cross_site is not None:
            assert c.shape == "heterogeneous-pd" and c.cross_site == sp.cross_site
            spanning.add(c.name())
        pools = c.placement()["pools"].values()
        assert [p.get("site", "local") for p in pools] == [site[p["accelerator"]]
                                                           for p in pools]
    assert {c.sites() for c in cands if c.shape == "colocated"} == {"remote", "local"}
    # both directions exist: remote prefill with home decode, and home prefill, remote decode
    pairs = {(c.pools["prefill"][0].site, c.pools["decode"][0].site) for c in cands
             if c.name() in spanning}
    assert pairs == {("remote", "local"), ("local", "remote")}


def _link_cap_rps(link: str, count: int = 1) -> float:
    """The load whose KV keeps the cross-site link KV_LINK_MAX_LOAD busy."""
    return KV_LINK_MAX_LOAD * load_interconnect(link).bandwidth * count / KV_BYTES


def test_a_link_too_thin_prunes_exactly_the_cross_site_candidates(model):
    """At 40 req/s the KV is 2.7 GB/s: 70% of one 100 GbE link carries it (6.1 GB/s), 70%
    of one 25 GbE link does not (1.5 GB/s); every other candidate is the same."""
    inv = {"l40s": {"site": "remote"}, "h100-sxm": {}, "a100-sxm": {}}
    slo = {"ttft_s": 0.5, "tpot_s": 0.03}
    wide, n_wide, _ = search(spec(inventory=inv, slo=slo, cross_site={"link": "tcp-100g"}),
                             model, target=40.0)
    thin, n_thin, _ = search(spec(inventory=inv, slo=slo, cross_site={"link": "tcp-25g"}),
                             model, target=40.0)
    assert _link_cap_rps("tcp-25g") < 40.0 < _link_cap_rps("tcp-100g")
    spanning = {c.name() for c in wide if c.cross_site is not None}
    assert spanning and n_thin == n_wide
    assert {c.name() for c in thin} == {c.name() for c in wide} - spanning
    assert any(c.shape == "heterogeneous-pd" for c in thin)     # one-site hetero-PD stays


def test_the_cross_site_link_is_one_shared_link_whatever_the_pool_sizes(model):
    """The limit is the link's, not per prefill accelerator: past it, no cross-site
    candidate survives however many prefill instances it has; two links carry twice."""
    sp = spec(inventory={"l40s": {"site": "remote"}, "h100-sxm": {}},
              slo={"ttft_s": 0.5, "tpot_s": 0.03})
    cap = _link_cap_rps("tcp-25g")
    assert [c for c in search(sp, model, 1.01 * cap)[0] if c.cross_site] == []
    under = [c for c in search(sp, model, 0.99 * cap)[0] if c.cross_site]
    assert under and max(c.pools["prefill"][1] for c in under) > 1
    two = spec(inventory={"l40s": {"site": "remote"}, "h100-sxm": {}},
               slo={"ttft_s": 0.5, "tpot_s": 0.03},
               cross_site={"link": "tcp-25g", "count": 2, "latency_us": 2000})
    assert [c for c in search(two, model, 1.99 * cap)[0] if c.cross_site]
    assert [c for c in search(two, model, 2.01 * cap)[0] if c.cross_site] == []


def test_the_crossing_counts_in_ttft_when_decode_shows_the_first_token(model):
    """One prompt's KV on the link plus its latency comes out of the TTFT budget: a latency
    past the TTFT target prunes every cross-site candidate, unless the prefill side shows
    the first token (then the crossing is not in TTFT)."""
    far = {"link": "tcp-25g", "latency_us": 0.6e6}        # 0.6 s one way > TTFT 0.5 s
    slow, _, _ = search(spec(cross_site=far), model)
    assert not [c for c in slow if c.cross_site] and [c for c in search(spec(), model)[0]
                                                      if c.cross_site]
    dist, _, _ = search(spec(cross_site=far, first_token="prefill"), model)
    (c,) = [c for c in dist if c.cross_site]
    assert c.placement()["kv_transfer"]["first_token"] == "prefill"
    # the prefill capacity shrinks by exactly the crossing: an M/D/1 knee at the smaller TTFT
    from hetsim.planner.capacity import prefill_rate
    (near,) = [c for c in search(spec(), model)[0] if c.cross_site]
    o = near.pools["prefill"][0]
    bw = load_interconnect("tcp-25g").bandwidth
    assert o.capacity_rps == prefill_rate(o.prefill_s, 0.5 - KV_BYTES / bw - 2e-3)


# --- resilience --------------------------------------------------------------------------------
RES = {"shapes": ["heterogeneous-pd"]}


def with_factor(f: float | None) -> dict:
    res = {"survive": 1} if f is None else {"survive": 1, "cross_site_factor": f}
    return {**copy.deepcopy(SPEC), **RES, "resilience": res}


@pytest.fixture(scope="module")
def by_factor():
    """The PD plan verified at each cross_site_factor (None: N+1 alone)."""
    out = {}
    for f in (None, 0.1, 0.2, 0.3, 0.6):
        (c,) = plan(with_factor(f)).verified
        out[f] = c
    return out


def test_n_plus_1_passes_but_a_link_at_a_tenth_fails_with_that_reason(by_factor):
    """At 4 req/s the KV is 268 MB/s; a tenth of one 25 GbE link (2.19 GB/s achievable)
    carries 219 MB/s, so transfers queue without end and the run misses; N+1 alone passes
    (two of each pool), so the link is the reason, and no pool is grown for it."""
    n1, tenth = by_factor[None], by_factor[0.1]
    assert n1.verified and [n for _, n in n1.pools.values()] == [2, 2]
    assert n1.cross_site_ok is None                     # no cross-site run was asked for
    assert tenth.verified is False and tenth.cross_site_ok is False
    assert [n for _, n in tenth.pools.values()] == [2, 2]
    assert tenth.reason.startswith("misses its SLO with the cross-site link at x0.1 for the "
                                   "whole run (attainment ")
    assert RATE * KV_BYTES > 0.1 * load_interconnect("tcp-25g").bandwidth


def test_a_healthier_cross_site_link_never_turns_a_pass_into_a_fail(by_factor):
    verdicts = [by_factor[f].verified for f in (0.1, 0.2, 0.3, 0.6)]
    assert verdicts == sorted(verdicts) and verdicts[0] is False and verdicts[-1] is True
    assert [by_factor[f].cross_site_ok for f in (0.1, 0.2, 0.3, 0.6)] == verdicts


def test_a_candidate_on_one_site_has_no_cross_site_run(tmp_path, capsys):
    d = {**with_factor(0.1), "shapes": ["colocated", "heterogeneous-pd"]}
    sp = build(PlanSpec, d)
    res = plan(sp)
    (co,) = [c for c in res.verified if c.shape == "colocated"]
    (pd,) = [c for c in res.verified if c.shape != "colocated"]
    assert co.cross_site is None and co.cross_site_ok is None and co.verified
    names = list(_scenario(sp, [co, pd], RATE, 10, down=True).placements)
    assert [n for n in names if "cross-site" in n] == [f"{pd.name()} with cross-site x0.1"]
    # the report says so per candidate, and names the failing run's reason
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(d))
    assert main(["plan", str(f), "-q", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    head = next(ln for ln in out.splitlines() if ln.startswith("plan "))
    assert head.split()[-2:] == ["cross-site", "x0.1"]
    cell = {r[0].split(":")[0]: " ".join(r[-2:]) for r in table(out)}
    assert cell == {"colocated": "one site", "heterogeneous-pd": "remote+local FAIL"}
    assert f"{pd.name()}: misses its SLO with the cross-site link at x0.1" in out
    desc = yaml.safe_load((tmp_path / "o" / "plan.yaml").read_text())["description"]
    assert "those spanning sites (none)" in desc


def test_the_shipped_sites_example_plans_and_reports_the_sites(tmp_path, capsys):
    assert main(["plan", str(EXAMPLE), "-q", "--out", str(tmp_path / "o")]) == 0
    rows = table(capsys.readouterr().out)
    spanning = [r for r in rows if "remote+local" in r]
    assert spanning and all(r[0].startswith("heterogeneous-pd:") for r in spanning)
    assert all(r[-2:] == ["one", "site"] for r in rows if r not in spanning)
    assert [r[-1] for r in spanning] == ["pass"]       # at half the link's bandwidth
    written = yaml.safe_load((tmp_path / "o" / "plan.yaml").read_text())
    crossing = []
    for pl in written["placements"].values():
        crosses = len({p.get("site", "local") for p in pl["pools"].values()}) > 1
        assert crosses == ("cross_site" in pl.get("kv_transfer", {}))
        crossing += [pl] * crosses
    assert len(crossing) == 1 and crossing[0]["pools"]["prefill"]["site"] == "remote"
