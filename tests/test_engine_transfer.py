"""The KV link: one ResolvedTransfer from resolution, read by the engine's KVLink."""
import copy

import pytest
import simpy

from hetsim.engine.transfer import KVLink
from hetsim.hardware import load_interconnect
from hetsim.resolve import ResolvedTransfer, _resolve_pool, _resolve_transfer, resolve_scenario

from .conftest import scenario_from


def disagg(base_dict, tmp_path, **kv_transfer):
    d = copy.deepcopy(base_dict)
    pl = d["placements"]["disagg"]
    pl.pop("kv_link")
    pl["kv_transfer"] = {"link": "roce-400g", **kv_transfer}
    return scenario_from(d, tmp_path)


def test_the_transfer_resolves_into_one_value_and_pools_stay_as_they_were(base_dict, tmp_path):
    sc = disagg(base_dict, tmp_path, handoff="push", staging_fraction=0.25)
    model, resolved = resolve_scenario(sc)
    pl = resolved["disagg"]
    t = pl.transfer
    assert isinstance(t, ResolvedTransfer) and resolved["coloc"].transfer is None
    roce = load_interconnect("roce-400g")
    assert t.nics == {"p": roce, "d": roce} and pl.disaggregated
    assert (t.engine, t.mode, t.handoff, t.conversion) == ("rdma", "whole", "push", "decode")
    d_blocks = pl.pools["d"].memory.kv_blocks
    assert t.staging_blocks == {"d": int(d_blocks * 0.25)}      # receivers only
    assert t.cross_site is None and not t.early_routing
    assert not hasattr(pl.pools["p"], "nic")                    # the link is the transfer's
    # resolving the transfer reads the pools and changes nothing
    dirs = [sc.base_dir / x for x in sc.hardware_profiles]
    spec = sc.placements["disagg"]
    pools = {n: _resolve_pool(n, p, model, dirs, f"placements.disagg.pools.{n}")
             for n, p in spec.pools.items()}
    before = dict(pools)
    assert _resolve_transfer(spec, pools, dirs, "placements.disagg") == t
    assert pools == before and all(pools[n] is before[n] for n in pools)


def test_cross_site_link_latency_and_count_resolve_once(base_dict, tmp_path):
    d = copy.deepcopy(base_dict)
    pl = d["placements"]["disagg"]
    pl.pop("kv_link")
    pl["pools"]["p"]["site"] = "far"
    pl["kv_transfer"] = {"link": "roce-400g", "mode": "layerwise",
                         "cross_site": {"link": "tcp-25g", "count": 3, "latency_us": 500}}
    model, resolved = resolve_scenario(scenario_from(d, tmp_path))
    pl = resolved["disagg"]
    t = pl.transfer
    link = load_interconnect("tcp-25g")
    assert t.cross_site == link and t.early_routing
    assert t.cross_site_bandwidth == link.bandwidth * 3
    assert t.cross_site_latency_s == pytest.approx(500e-6)
    # the engine's path crosses both NICs and the shared fabric, with the fabric's latency
    kvl = KVLink(simpy.Environment(), t, model)
    p, dec = (_Inst(kvl, n, pl.pools[n]) for n in ("p", "d"))
    ports, setup = kvl.path(p, dec)
    assert ports == (p.ports.nic, dec.ports.nic, kvl.fabric)
    roce = t.nics["p"]
    assert setup == pytest.approx(roce.latency + roce.per_transfer_overhead + 500e-6)
    assert kvl.ports == [p.ports.nic, dec.ports.nic, kvl.fabric]   # the fabric comes last
    assert kvl.fabric.capacity == t.cross_site_bandwidth


class _Inst:
    def __init__(self, kvl, name, pool):
        self.pool, self.ports = pool, kvl.make_ports(f"{name}/0", pool)


def test_layerwise_staging_counts_the_prefill_sides_own_blocks(base_dict, tmp_path):
    """A layer-wise handoff reserves decode-side room (prompt + output) while the prompt is
    still prefilling; the prefill side's staging count must hold the prompt's own blocks, and
    so be back at 0 once every KV has moved (it used to count the decode side's blocks, which
    the release never took back: the run now asserts it)."""
    import hetsim
    d = copy.deepcopy(base_dict)
    pl = d["placements"]["disagg"]
    pl.pop("kv_link")
    pl["kv_transfer"] = {"link": "roce-400g", "mode": "layerwise"}
    d["placements"] = {"disagg": pl}
    r = hetsim.run(scenario_from(d, tmp_path))
    s = r.summaries[0]
    t = r.staging[r.staging["placement"] == "disagg"]
    prefill_blocks = -(-512 // 16)        # one 512-token prompt, 16-token blocks
    assert t["held_blocks"].iloc[-1] == 0
    assert t["held_blocks"].max() % prefill_blocks == 0      # whole prompts, never outputs
    assert 0 < s["kv_staging"]["p"]["peak"] < 1
