"""KV serialization over standard networks (issue 18): encoding, batching, descriptors, and
the cost of every step of a stepwise transfer (``hetsim.engine.kvsteps``)."""
import copy

import pytest
import simpy
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import hetsim
from hetsim.cli import main
from hetsim.engine.kvsteps import STEPS, Batcher, descriptors_per_rank
from hetsim.engine.network import Network, Port
from hetsim.errors import ConfigError
from hetsim.models import load_model

from .conftest import ROOT, SCENARIOS, scenario_from

KV_PER_TOKEN = 131072.0      # llama-3.1-8b, bf16: 2 x 32 layers x 8 heads x 128 x 2 B


def one(base_dict, tmp_path, n=1, tokens=4096, prefill=None, decode=None, **kv):
    """A scenario of ``n`` simultaneous ``tokens``-token prompts (closed loop) over 25 GbE TCP
    with ``kv`` added to its kv_transfer (``prefill`` and ``decode`` to its pools); its one
    placement's summary and result."""
    d = copy.deepcopy(base_dict)
    d["workload"] = {"requests": n, "seed": 1,
                     "arrival": {"process": "closed", "concurrency": n},
                     "input_tokens": {"dist": "fixed", "value": tokens},
                     "output_tokens": {"dist": "fixed", "value": 4}}
    pl = d["placements"]["disagg"]
    pl.pop("kv_link")
    pl["pools"]["p"].update(prefill or {})
    pl["pools"]["d"].update(decode or {})
    pl["kv_transfer"] = {"link": "tcp-25g", "engine": "tcp", **kv}
    d["placements"] = {"disagg": pl}
    r = hetsim.run(scenario_from(d, tmp_path))
    return r.summaries[0], r


# --- the schema ---------------------------------------------------------------------------
@pytest.mark.parametrize("kv, path, words", [
    ({"encoding": {"codec": "int4", "ratio": 1.5}}, "encoding.ratio", "must be in (0, 1]"),
    ({"encoding": {"codec": "int4", "ratio": 0}}, "encoding.ratio", "must be in (0, 1]"),
    ({"encoding": {"codec": "int4", "encode_gb_s": 0}}, "encoding.encode_gb_s", "must be > 0"),
    ({"encoding": {"codec": "fp8", "decode_gb_s": -1}}, "encoding.decode_gb_s", "must be > 0"),
    ({"encoding": {"codec": "compressed", "ratio": 0.3, "decode_gb_s": 9}},
     "encoding.encode_gb_s", "needs its measured ratio"),
    ({"encoding": {"codec": "none", "ratio": 0.5}}, "encoding.ratio", "codec none"),
    ({"encoding": {"codec": "int5"}}, "encoding.codec", "did you mean 'int4'"),
    ({"batching": {"window_ms": 5}}, "batching.max_bytes_mb", "needs a cap"),
    ({"batching": {"window_ms": 0, "max_bytes_mb": 5}}, "batching.window_ms", "must be > 0"),
    ({"batching": {"window_ms": 5, "max_bytes_mb": 0}}, "batching.max_bytes_mb", "must be > 0"),
    ({"batching": {"window_ms": 5, "max_mb": 5}}, "batching.max_mb", "did you mean"),
    ({"batching": "sometimes"}, "batching", "'none'"),
    ({"descriptor_us": -1}, "descriptor_us", "must be >= 0"),
    ({"mode": "layerwise", "encoding": {"codec": "int4"}}, "encoding", "use mode: whole"),
])
def test_bad_values_name_their_key_path(base_dict, tmp_path, kv, path, words):
    d = copy.deepcopy(base_dict)
    d["placements"]["disagg"].pop("kv_link")
    d["placements"]["disagg"]["kv_transfer"] = {"link": "tcp-25g", **kv}
    with pytest.raises(ConfigError) as e:
        scenario_from(d, tmp_path)
    assert e.value.path == f"placements.disagg.kv_transfer.{path}"
    assert words in e.value.message


def test_a_named_codec_must_shrink_the_kv(base_dict, tmp_path):
    d = copy.deepcopy(base_dict)
    pl = d["placements"]["disagg"]
    pl.pop("kv_link")
    pl["pools"]["p"]["precision"] = {"compute": "bf16", "weights": "bf16", "kv": "fp8"}
    pl["kv_transfer"] = {"link": "tcp-25g", "encoding": {"codec": "fp8"}}
    with pytest.raises(ConfigError, match="does not shrink the fp8 KV of pool 'p'") as e:
        scenario_from(d, tmp_path)
    assert e.value.path == "placements.disagg.kv_transfer.encoding.codec"
    pl["kv_transfer"]["encoding"]["ratio"] = 0.9     # a stated ratio is the user's measurement
    scenario_from(d, tmp_path)


def test_a_named_codec_is_checked_against_the_format_on_the_wire(base_dict, tmp_path):
    # bf16 prefill KV, fp8 decode KV: converted on decode (the default), bf16 crosses the wire
    # and fp8 halves it; converted on prefill, fp8 crosses it and fp8 cannot shrink it
    fp8 = {"compute": "bf16", "weights": "bf16", "kv": "fp8"}
    s, _ = one(base_dict, tmp_path, encoding={"codec": "fp8"}, decode={"precision": fp8})
    assert s["kv_transfer_bytes"] == 4096 * KV_PER_TOKEN
    assert s["kv_wire_bytes"] == 4096 * KV_PER_TOKEN / 2
    with pytest.raises(ConfigError, match="does not shrink the fp8 KV of pool 'd'") as e:
        one(base_dict, tmp_path, encoding={"codec": "fp8"}, conversion="prefill",
            decode={"precision": fp8})
    assert e.value.path == "placements.disagg.kv_transfer.encoding.codec"


def test_a_bad_value_is_one_line_exit_2_from_the_cli(base_dict, tmp_path, capsys):
    d = copy.deepcopy(base_dict)
    d["placements"]["disagg"]["kv_transfer"] = {"encoding": {"codec": "int4", "ratio": 2}}
    d["placements"]["disagg"]["kv_transfer"]["link"] = d["placements"]["disagg"].pop("kv_link")
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(d))
    assert main(["run", str(f), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"hetsim: error: {f}: placements.disagg.kv_transfer.encoding.ratio: must be "
                   f"in (0, 1], got 2.0"]
    assert not (tmp_path / "out").exists()


def test_unset_keys_are_not_written_and_set_ones_round_trip(base_dict, tmp_path):
    d = copy.deepcopy(base_dict)
    d["placements"]["disagg"].pop("kv_link")
    d["placements"]["disagg"]["kv_transfer"] = {"link": "tcp-25g"}
    written = scenario_from(d, tmp_path).to_dict()["placements"]["disagg"]["kv_transfer"]
    assert written["link"] == "tcp-25g"
    assert not {"encoding", "batching", "descriptor_us"} & set(written)
    d = copy.deepcopy(base_dict)
    d["placements"]["disagg"].pop("kv_link")
    d["placements"]["disagg"]["kv_transfer"] = {
        "link": "tcp-25g", "encoding": {"codec": "int4"}, "batching": "none",
        "descriptor_us": 2.4}
    sc = scenario_from(d, tmp_path)
    again = scenario_from(sc.to_dict(), tmp_path, "again.yaml")
    assert again.placements == sc.placements


# --- encoding -------------------------------------------------------------------------------
def test_encoding_cuts_wire_bytes_by_its_ratio_and_adds_exactly_its_codec_time(base_dict,
                                                                              tmp_path):
    plain, rp = one(base_dict, tmp_path, encoding={"codec": "none"})
    enc, re_ = one(base_dict, tmp_path, encoding={"codec": "compressed", "ratio": 0.25,
                                                  "encode_gb_s": 50, "decode_gb_s": 80})
    kv = 4096 * KV_PER_TOKEN
    assert plain["kv_transfer_bytes"] == enc["kv_transfer_bytes"] == kv
    assert plain["kv_wire_bytes"] == kv and enc["kv_wire_bytes"] == kv * 0.25
    b0, b1 = plain["kv_transfer_breakdown_s"], enc["kv_transfer_breakdown_s"]
    # idle instances: the codec's device work runs at once, for exactly bytes / rate
    assert b1["encode"]["mean"] == pytest.approx(kv / 50e9, rel=1e-12)
    assert b1["decode"]["mean"] == pytest.approx(kv / 80e9, rel=1e-12)
    assert b0["encode"]["mean"] == b0["decode"]["mean"] == 0.0
    # the stream carries a quarter of the bytes at the same (NIC-bound) rate
    nic = hetsim.hardware.load_interconnect("tcp-25g").bandwidth
    assert b0["wire"]["mean"] == pytest.approx(kv / nic, rel=1e-9)
    assert b1["wire"]["mean"] == pytest.approx(kv * 0.25 / nic, rel=1e-9)
    assert b1["setup"] == b0["setup"]
    t0, t1 = plain["kv_transfer_s"]["mean"], enc["kv_transfer_s"]["mean"]
    assert t1 == pytest.approx(t0 - kv * 0.75 / nic + kv / 50e9 + kv / 80e9, rel=1e-9)


@pytest.mark.parametrize("codec, ratio", [("int4", 0.25), ("fp8", 0.5)])
def test_named_codecs_default_to_the_element_size_ratio(base_dict, tmp_path, codec, ratio):
    s, _ = one(base_dict, tmp_path, encoding={"codec": codec})
    assert s["kv_wire_bytes"] == s["kv_transfer_bytes"] * ratio
    assert s["kv_transfer_breakdown_s"]["encode"]["mean"] > 0     # a memory-bound pass


def _exposed(base_dict, tmp_path, link, **encoding):
    d = copy.deepcopy(base_dict)
    d["workload"].update({"requests": 60, "input_tokens": {"dist": "fixed", "value": 4096}})
    d["placements"]["disagg"].pop("kv_link")
    d["placements"]["disagg"]["kv_transfer"] = {"link": link, "engine": "tcp",
                                                "encoding": encoding}
    d["placements"] = {"disagg": d["placements"]["disagg"]}
    return hetsim.run(scenario_from(d, tmp_path)).summaries[0]["kv_transfer_exposed_s"]["mean"]


def test_a_codec_slower_than_the_link_makes_exposed_transfer_worse(base_dict, tmp_path):
    # 100 GbE TCP moves ~5 GB/s (the host stack); a 1 GB/s codec costs more than it saves
    none = _exposed(base_dict, tmp_path, "tcp-100g", codec="none")
    slow = _exposed(base_dict, tmp_path, "tcp-100g", codec="compressed", ratio=0.25,
                    encode_gb_s=1, decode_gb_s=1)
    assert slow > none
    # the same codec on a link twenty times slower pays
    none25 = _exposed(base_dict, tmp_path, "tcp-25g", codec="none")
    fast25 = _exposed(base_dict, tmp_path, "tcp-25g", codec="compressed", ratio=0.25,
                      encode_gb_s=40, decode_gb_s=40)
    assert fast25 < none25


def test_a_faster_codec_never_raises_exposed_transfer(base_dict, tmp_path):
    times = [_exposed(base_dict, tmp_path, "tcp-25g", codec="compressed", ratio=0.3,
                      encode_gb_s=g, decode_gb_s=g) for g in (2, 8, 32)]
    assert times == sorted(times, reverse=True)


# --- descriptors ----------------------------------------------------------------------------
def test_descriptor_counts_follow_the_kv_layout():
    # ai-dynamo/nixl#1514: Llama-70B, TP8, 80 layers x 2 K/V x 118 blocks = 18,880 per rank
    m70 = load_model("llama-3.1-70b")
    assert descriptors_per_rank(m70, 118 * 16, 16) == 18_880
    assert descriptors_per_rank(m70, 118 * 16 - 15, 16) == 18_880     # a partial last block
    assert descriptors_per_rank(m70, 118 * 16 + 1, 16) == 80 * 2 * 119
    assert descriptors_per_rank(m70, 118 * 16, 32) == 80 * 2 * 59     # bigger pages, fewer
    # MLA holds one latent per token: no K/V split
    ds = load_model("deepseek-v3")
    assert descriptors_per_rank(ds, 1024, 64) == ds.num_layers * 16
    # windowed layers hold only the window's blocks
    g = load_model("gpt-oss-120b")
    w = g.sliding_window
    n = 4 * w.size
    assert descriptors_per_rank(g, n, 16) == 2 * (
        g.full_attention_layers * n // 16 + w.layers * w.size // 16)


def test_descriptors_count_every_tp_shard_and_cost_each_rank_in_parallel(base_dict,
                                                                        tmp_path):
    base_dict["placements"]["disagg"]["pools"]["d"]["tp"] = 2
    s, _ = one(base_dict, tmp_path, descriptor_us=2.0)
    per_rank = 4096 // 16 * 32 * 2
    assert s["kv_descriptors"]["mean"] == per_rank * 2
    assert s["kv_transfer_breakdown_s"]["descriptors"]["mean"] == pytest.approx(
        per_rank * 2e-6, rel=1e-12)


# --- batching -------------------------------------------------------------------------------
def test_k_transfers_in_one_batch_pay_one_setup(base_dict, tmp_path):
    # three 2048-token prompts share one prefill iteration, so their KV is ready together
    lone, rl = one(base_dict, tmp_path, n=3, tokens=2048, batching="none", descriptor_us=1.0)
    batch, rb = one(base_dict, tmp_path, n=3, tokens=2048, descriptor_us=1.0,
                    batching={"window_ms": 5, "max_bytes_mb": 10_000})
    assert (lone["kv_batches"], lone["kv_requests_per_batch"]) == (3, 1.0)
    assert (batch["kv_batches"], batch["kv_requests_per_batch"]) == (1, 3.0)
    nic = hetsim.hardware.load_interconnect("tcp-25g")
    # one stream: the window, one per-transfer overhead, all three requests' descriptors
    # posted on the initiator's thread (the decode instance's: pull), the path latency, then the three requests' bytes
    per_rank = 2048 // 16 * 32 * 2
    latency = nic.latency + 2 * 5.7e-6     # NICs + both PCIe hops (pcie-gen5)
    expect = (5e-3 + nic.per_transfer_overhead + 3 * per_rank * 1e-6 + latency
              + 3 * 2048 * KV_PER_TOKEN / nic.bandwidth)
    assert batch["kv_transfer_s"]["mean"] == pytest.approx(expect, rel=1e-9)
    assert batch["kv_transfer_s"]["p99"] == pytest.approx(expect, rel=1e-9)
    # unbatched, the three posts queue on the one thread: three overheads, not one
    b = lone["kv_transfer_breakdown_s"]
    queued = sorted(r.setup_s - latency - nic.per_transfer_overhead
                    for r in rl.transfers["disagg"])
    step = nic.per_transfer_overhead + per_rank * 1e-6
    assert queued == pytest.approx([0.0, step, 2 * step], abs=1e-12)
    assert b["setup"]["mean"] == pytest.approx(latency + nic.per_transfer_overhead + step,
                                               rel=1e-9)


def test_the_initiator_posts_the_decode_side_under_pull_the_prefill_side_under_push(
        base_dict, tmp_path):
    # one prefill instance hands three prompts (one iteration) to three decode instances
    nic = hetsim.hardware.load_interconnect("tcp-25g")
    latency = nic.latency + 2 * 5.7e-6
    step = nic.per_transfer_overhead + 2048 // 16 * 32 * 2 * 1e-6
    waits = {}
    for handoff in ("pull", "push"):
        _, r = one(base_dict, tmp_path, n=3, tokens=2048, batching="none", descriptor_us=1.0,
                   handoff=handoff, decode={"instances": 3})
        waits[handoff] = sorted(t.setup_s - latency - nic.per_transfer_overhead
                                for t in r.transfers["disagg"])
    # pull: each decode instance reads its own KV on its own thread, so nothing queues;
    # push: the one prefill instance writes all three from its thread, one after another
    assert waits["pull"] == pytest.approx([0.0, 0.0, 0.0], abs=1e-12)
    assert waits["push"] == pytest.approx([0.0, step, 2 * step], abs=1e-12)


def _batcher(window, cap):
    env = simpy.Environment()
    sent = []

    def ship(b):
        sent.append((env.now, b.p.name, b.d.name, b.bytes, b.descriptors))
        ev = env.event()
        ev.succeed(len(sent) - 1)
        return ev
    return env, Batcher(env, window, cap, ship), sent


class _I:
    def __init__(self, name):
        self.name = name


def test_a_batch_goes_at_its_window_or_its_cap_and_a_join_past_the_cap_sends_first():
    env, b, sent = _batcher(1.0, 100.0)
    p, d1, d2 = _I("p"), _I("d1"), _I("d2")
    b.join(p, d1, 30, 1)
    b.join(p, d2, 30, 1)          # another receiver: another batch
    env.run(until=0.5)
    b.join(p, d1, 30, 1)
    b.join(p, d1, 50, 1)          # 110 > cap: the open batch goes now, this one opens the next
    assert sent == [(0.5, "p", "d1", 60, 2)]
    b.join(p, d1, 50, 1)          # reaches the cap: goes at once
    env.run(until=3)
    assert sent == [(0.5, "p", "d1", 60, 2), (0.5, "p", "d1", 100, 2), (1.0, "p", "d2", 30, 1)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 5), st.integers(0, 2), st.floats(1, 80)),
                min_size=1, max_size=30),
       st.floats(0.01, 2), st.floats(10, 200))
def test_no_transfer_waits_past_its_window_and_bytes_are_conserved(joins, window, cap):
    env, b, sent = _batcher(window, cap)
    recv = [_I(f"d{i}") for i in range(3)]
    waits, p = [], _I("p")

    def client(t, i, n):
        yield env.timeout(t)
        t0 = env.now
        idx = yield b.join(p, recv[i], n, 1).done
        waits.append(sent[idx][0] - t0)
        assert sent[idx][2] == recv[i].name
    for t, i, n in joins:
        env.process(client(t, i, n))
    env.run()
    assert len(waits) == len(joins) and max(waits) <= window + 1e-12
    assert sum(s[3] for s in sent) == pytest.approx(sum(n for _, _, n in joins))
    assert sum(s[4] for s in sent) == len(joins)
    assert all(s[3] <= cap or s[4] == 1 for s in sent)    # over the cap only alone


# --- host serialization and the breakdown ------------------------------------------------
def test_host_serialization_is_shared_fairly_by_concurrent_transfers():
    env = simpy.Environment()
    net = Network(env)
    stack = Port("p/0:tcp", 5e9, "p.tcp-stack", "serialize")
    nics = [Port(f"n{i}", 100e9, "n", "wire") for i in range(2)]
    alone = net.transfer((stack, nics[0]), 10e9, 0.0, track=True)
    env.run(alone)
    assert env.now == pytest.approx(2.0) and alone.value == pytest.approx({"serialize": 2.0})
    start = env.now
    both = [net.transfer((stack, nic), 10e9, 0.0, track=True) for nic in nics]
    env.run(both[0] & both[1])
    assert env.now - start == pytest.approx(4.0)         # each gets half the host
    assert [e.value for e in both] == [pytest.approx({"serialize": 4.0})] * 2
    assert stack.bytes == pytest.approx(30e9)


def test_the_stream_is_charged_to_the_step_that_bounds_it(base_dict, tmp_path):
    # 100 GbE NICs outrun the 5 GB/s host stack: a lone transfer is serialize-bound
    d_kv = {"encoding": {"codec": "none"}}
    fast, _ = _one_link(base_dict, tmp_path, "tcp-100g", d_kv)
    b = fast["kv_transfer_breakdown_s"]
    kv = 512 * KV_PER_TOKEN     # base_dict's prompts
    assert b["serialize"]["mean"] == pytest.approx(kv / 5e9, rel=1e-9)
    assert b["wire"]["mean"] == b["deserialize"]["mean"] == 0.0
    slow, _ = _one_link(base_dict, tmp_path, "tcp-25g", d_kv)
    assert slow["kv_transfer_breakdown_s"]["serialize"]["mean"] == 0.0


def _one_link(base_dict, tmp_path, link, kv):
    d = copy.deepcopy(base_dict)
    d["workload"].update({"requests": 1})
    d["placements"]["disagg"].pop("kv_link")
    engine = "rdma" if hetsim.hardware.load_interconnect(link).rdma else "tcp"
    d["placements"]["disagg"]["kv_transfer"] = {"link": link, "engine": engine, **kv}
    d["placements"] = {"disagg": d["placements"]["disagg"]}
    r = hetsim.run(scenario_from(d, tmp_path))
    return r.summaries[0], r


def test_every_request_s_steps_sum_to_its_transfer_time(base_dict, tmp_path):
    d = copy.deepcopy(base_dict)
    d["workload"].update({"requests": 120, "arrival": {"process": "poisson", "rate_rps": 8},
                          "input_tokens": {"dist": "lognormal", "mean": 2000, "sigma": 0.6,
                                           "max": 8000}})
    pl = d["placements"]["disagg"]
    pl.pop("kv_link")
    pl["pools"]["d"]["instances"] = 2
    pl["kv_transfer"] = {"link": "tcp-100g", "engine": "tcp", "descriptor_us": 0.5,
                         "encoding": {"codec": "int4"},
                         "batching": {"window_ms": 20, "max_bytes_mb": 300}}
    d["placements"] = {"disagg": pl}
    r = hetsim.run(scenario_from(d, tmp_path))
    df = r.requests.set_index("id")
    recs = r.transfers["disagg"]
    assert len(recs) == len(df) == 120
    for t in recs:
        total = sum(getattr(t, f"{k}_s") for k in STEPS)
        assert total == pytest.approx(df.loc[t.id, "transfer_s"], rel=1e-9, abs=1e-12)
        assert 0 <= t.batch_wait_s <= 0.020 + 1e-12
    s = r.summaries[0]
    assert s["kv_batches"] == len({t.batch for t in recs}) < 120
    assert s["kv_requests_per_batch"] == pytest.approx(120 / s["kv_batches"])


def test_without_the_keys_nothing_new_is_reported(base_dict, tmp_path):
    r = hetsim.run(scenario_from(base_dict, tmp_path))
    for s in r.summaries:
        assert not {"kv_wire_bytes", "kv_transfer_breakdown_s", "kv_batches"} & set(s)


def test_the_design_space_scenario_shows_where_encoding_pays():
    from hetsim.check import flatten
    from hetsim.metrics import metric_error
    r = hetsim.run(SCENARIOS / "design-space" / "kv-serialization.yaml")
    s = {x["name"]: x for x in r.summaries}
    exposed = {k: v["kv_transfer_exposed_s"]["mean"] for k, v in s.items()}
    for link in ("25g", "100g"):
        assert exposed[f"{link}-int4"] < exposed[f"{link}-plain"]          # a fast codec pays
        assert exposed[f"{link}-int4-batch"] < exposed[f"{link}-plain"]
        w = s[f"{link}-int4"]
        assert w["kv_wire_bytes"] == w["kv_transfer_bytes"] / 4
    assert exposed["100g-plain"] < exposed["25g-plain"]                    # a faster link pays
    assert exposed["100g-slow-codec"] > exposed["100g-plain"]              # a slow codec loses
    # 100 GbE outruns the 5 GB/s host stack: serialization bounds the stream, not the wire
    b = s["100g-plain"]["kv_transfer_breakdown_s"]
    assert b["serialize"]["mean"] > b["wire"]["mean"]
    assert s["25g-plain"]["kv_transfer_breakdown_s"]["serialize"]["mean"] == 0.0
    # every stepwise metric is one `expect:` accepts
    roles = {n: p.role for n, p in r.scenario.placements["25g-plain"].pools.items()}
    for k, v in flatten(s["25g-int4-batch"]).items():
        numeric = isinstance(v, (int, float, type(None))) and not isinstance(v, bool)
        assert (metric_error(k, roles) is None) == numeric, k


def test_batching_pays_where_per_transfer_work_saturates_the_sender(base_dict, tmp_path):
    # a link whose every transfer costs 20 ms of host work (a hypothetical engine) and many
    # short prompts: unbatched, the sender's thread is over-committed; batches share the cost
    prof = tmp_path / "profiles" / "interconnects"
    prof.mkdir(parents=True)
    link = yaml.safe_load((ROOT / "hardware_profiles" / "interconnects" / "tcp-25g.yaml")
                          .read_text())
    link.update(name="slow-setup", per_transfer_overhead_us=20_000.0)
    (prof / "slow-setup.yaml").write_text(yaml.safe_dump(link))
    d = copy.deepcopy(base_dict)
    d["hardware_profiles"] = ["profiles"]
    d["workload"].update({"requests": 300, "arrival": {"process": "poisson", "rate_rps": 60},
                          "input_tokens": {"dist": "fixed", "value": 128}})
    pl = d["placements"]["disagg"]
    pl.pop("kv_link")
    pl["pools"]["d"]["instances"] = 1
    d["placements"] = {}
    for name, batching in (("lone", "none"),
                           ("batched", {"window_ms": 20, "max_bytes_mb": 1000})):
        p = copy.deepcopy(pl)
        p["kv_transfer"] = {"link": "slow-setup", "engine": "tcp", "batching": batching}
        d["placements"][name] = p
    s = {x["name"]: x for x in hetsim.run(scenario_from(d, tmp_path)).summaries}
    assert s["batched"]["kv_requests_per_batch"] > 1.5
    assert (s["batched"]["kv_transfer_exposed_s"]["mean"]
            < 0.5 * s["lone"]["kv_transfer_exposed_s"]["mean"])


def test_rdma_skips_the_host_steps(base_dict, tmp_path):
    s, _ = _one_link(base_dict, tmp_path, "roce-400g", {"encoding": {"codec": "none"}})
    s = s["kv_transfer_breakdown_s"]
    assert s["serialize"]["mean"] == s["deserialize"]["mean"] == 0.0
    roce = hetsim.hardware.load_interconnect("roce-400g")
    assert s["wire"]["mean"] == pytest.approx(512 * KV_PER_TOKEN / roce.bandwidth, rel=1e-9)


# --- liveness -------------------------------------------------------------------------------
def test_a_prefill_waiting_for_kv_still_runs_the_encodes_that_free_it(base_dict, tmp_path):
    # ten 10k-token prompts at once on a prefill instance whose KV holds two (batched in one
    # iteration): their encodes are queued while the prefill waits for KV that only their
    # transfers release, so it must wake for the work (it used to wait forever)
    s, r = one(base_dict, tmp_path, n=10, tokens=10_000, encoding={"codec": "int4"},
               prefill={"memory_utilization": 0.326, "max_batch_tokens": 65536})
    assert 2 * 10_000 <= s["kv_capacity_tokens"]["p"] < 3 * 10_000
    assert s["completed"] == 10
    assert all(t.encode_s > 0 for t in r.transfers["disagg"])
