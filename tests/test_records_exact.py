"""The engine's per-request records are exactly those of the engine before issue 19's
restructure, on every shipped scenario (digests from commit 2b2e661: tests/regen_records.py);
and the record columns behave as the records they replace."""
import json
import math

import numpy as np
import pytest

import hetsim
from hetsim.engine.records import RecordWriter
from hetsim.engine.request import RECORD_COLUMNS, Request, RequestRecord, State

from .conftest import SCENARIOS
from .regen_records import RECORDS, records, scenarios

WANT = json.loads(RECORDS.read_text())


def test_every_shipped_scenario_has_a_digest():
    assert sorted(WANT) == [str(p.relative_to(SCENARIOS)) for p in scenarios()]


@pytest.mark.parametrize("path", scenarios(), ids=lambda p: str(p.relative_to(SCENARIOS)))
def test_records_are_those_of_the_engine_before_the_restructure(path):
    assert records(path) == WANT[str(path.relative_to(SCENARIOS))]


def _ended(rid: int, state: State, **fields) -> Request:
    r = Request(rid, 0.5 * rid, 10 + rid, 3)
    r.to(State.QUEUED)
    if state is State.DROPPED:
        r.drop("too long")
    else:
        r.to(State.PREFILLING)
        r.to(State.COMPLETED)
    for k, v in fields.items():
        setattr(r, k, v)
    return r


def _same(a: tuple, b: tuple) -> bool:
    """Equal field by field, NaN equal to NaN."""
    return len(a) == len(b) and all(
        x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
        for x, y in zip(a, b))


def test_columns_give_back_the_records_the_requests_had():
    w = RecordWriter(3)
    reqs = [_ended(2, State.COMPLETED, prefill_instance="p/1", decode_instance="d/0",
                   last_token_s=7.25, preemptions=2, kv_bytes=1e9),
            _ended(0, State.DROPPED), _ended(1, State.COMPLETED, prefill_instance="p/0",
                                             cached_tokens=4)]
    for r in reqs:      # rows go by id, whatever order the requests end in
        w.write(r)
    table = w.table()
    want = sorted((r.record() for r in reqs), key=lambda rec: rec.id)
    got = list(table)
    assert [type(g) for g in got] == [RequestRecord] * 3
    for g, r in zip(got, want):   # the record's own Python types and values
        assert [type(x) for x in g] == [type(x) for x in r] and _same(g, r)
    assert _same(table[2], got[2]) and _same(table[-1], got[2])
    # slices as the tuple of records did: a tuple, any step, clipped to the table
    assert all(_same(a, b) for a, b in zip(table[1:], got[1:])) and len(table[1:]) == 2
    assert [r.id for r in table[::-1]] == [2, 1, 0] and table[5:] == () and table[:0] == ()
    assert table[0].drop_reason == "too long"
    with pytest.raises(IndexError):
        table[3]
    cols = table.columns()
    assert list(cols) == list(RECORD_COLUMNS)
    assert cols["id"].tolist() == [0, 1, 2] and cols["input_tokens"].dtype == np.int64
    assert cols["state"].tolist() == ["dropped", "completed", "completed"]
    assert cols["decode_instance"].tolist() == ["", "", "d/0"]
    with pytest.raises(ValueError):     # read-only
        table._cols["arrival_s"][0] = 1.0


def test_a_row_is_written_once_and_every_row_must_be():
    w = RecordWriter(2)
    w.write(_ended(0, State.DROPPED))
    with pytest.raises(AssertionError, match="twice"):
        w.write(_ended(0, State.DROPPED))
    with pytest.raises(AssertionError, match="never recorded"):
        w.table()
    live = Request(1, 0.0, 5, 5)
    with pytest.raises(AssertionError, match="recorded in state"):
        w.write(live)


def test_tables_compare_by_value_nan_included():
    def table(t):
        w = RecordWriter(1)
        w.write(_ended(0, State.COMPLETED, last_token_s=t))
        return w.table()
    assert table(math.nan) == table(math.nan) and table(1.0) != table(2.0)


def test_a_run_returns_columns_and_its_frame_is_built_from_them():
    from hetsim.api import prepare
    from hetsim.engine.sim import Simulation
    from hetsim.metrics import records_frame

    from .conftest import with_requests
    sc = with_requests(hetsim.load_scenario(SCENARIOS / "quickstart.yaml"), 200)
    model, placements, reqs = prepare(sc)
    name, pl = next(iter(placements.items()))
    sim = Simulation(pl, model, reqs, seed=sc.workload.seed)
    res = sim.run()
    assert not sim.live        # every request let go once recorded
    df = records_frame(res.requests, name)
    rows = list(df[list(RECORD_COLUMNS)].itertuples(index=False))
    assert len(res.requests) == len(rows) == 200
    assert all(_same(tuple(r), tuple(row)) for r, row in zip(res.requests, rows))
    assert res.requests == Simulation(pl, model, reqs, seed=sc.workload.seed).run().requests


def test_arrivals_walked_in_blocks_give_the_same_run(monkeypatch):
    from hetsim.engine import sim as sim_mod

    from .conftest import with_requests
    sc = with_requests(hetsim.load_scenario(SCENARIOS / "quickstart.yaml"), 100)
    want = hetsim.run(sc).requests
    monkeypatch.setattr(sim_mod, "_ARRIVAL_BLOCK", 7)     # 100 = 14 blocks of 7 + 2
    assert hetsim.run(sc).requests.equals(want)


@pytest.mark.parametrize("path, placement, preempts", [
    ("design-space/kv-offload.yaml", "recompute", True), ("runtimes.yaml", "sglang", False)])
def test_on_demand_instances_let_ended_requests_go(path, placement, preempts):
    """On-demand KV (preemption; a runtime's scheduler) keeps no ended request: its victim
    order drops stale entries, so what a run holds stays bounded by what is in flight, not
    by the request count (1,000 requests here; a few dozen run at once)."""
    import gc

    from hetsim.api import prepare
    from hetsim.engine.request import Request
    from hetsim.engine.sim import Simulation

    from .conftest import with_requests
    sc = with_requests(hetsim.load_scenario(SCENARIOS / path), 1000)
    model, placements, reqs = prepare(sc, [placement])
    sim = Simulation(placements[placement], model, reqs, seed=sc.workload.seed)
    res = sim.run()
    assert (res.requests.column("preemptions").sum() > 0) == preempts
    gc.collect()
    kept = sum(type(o) is Request for o in gc.get_objects())
    assert kept < 300, f"{kept} of 1000 ended requests still referenced"


def test_instance_statistics_stay_hashable_values():
    """The prefill staging timeline is packed arrays now; InstanceStats (a frozen dataclass)
    hashes and compares as it did with a tuple of (time, blocks) pairs."""
    import dataclasses

    from hetsim.api import prepare
    from hetsim.engine.sim import Simulation

    from .conftest import with_requests
    sc = with_requests(hetsim.load_scenario(SCENARIOS / "quickstart.yaml"), 50)
    model, placements, reqs = prepare(sc, ["disagg-1p3d-h100"])
    a, b = (Simulation(placements["disagg-1p3d-h100"], model, reqs).run()
            .instances["prefill"][0] for _ in range(2))
    assert len(a.timeline) > 0 and a == b and hash(a) == hash(b) and len({a, b}) == 1
    pairs = tuple(a.timeline)
    assert a.timeline == pairs and hash(a.timeline) == hash(pairs)
    assert dataclasses.replace(a, timeline=pairs[:-1]) != a


def _table(rows: list[dict], block: int, monkeypatch) -> "tuple":
    """A table of completed requests with ``rows``' fields, written ``block`` rows at a time."""
    monkeypatch.setattr(RecordWriter, "_BLOCK", block)
    w = RecordWriter(len(rows))
    reqs = [_ended(i, State.COMPLETED, **f) for i, f in enumerate(rows)]
    for r in reqs:
        w.write(r)
    return w.table(), [r.record() for r in reqs]


def test_columns_are_stored_only_once_a_row_differs(monkeypatch):
    """Issue 19: a column every row so far wrote alike stays one constant, and one equal to
    its SAME column stays that; the first block that differs allocates it, filled with what
    it stood for. Reading gives back every record exactly either way."""
    from hetsim.engine.records import SAME
    nan = math.nan
    same = [{"prefill_end_s": 1.0 + i, "transfer_start_s": 1.0 + i, "conversion_s": 0.25,
             "decode_instance": "d/0"} for i in range(10)]
    table, want = _table(same, 3, monkeypatch)
    assert all(_same(g, r) for g, r in zip(table, want))
    assert table._cols["transfer_start_s"] == SAME["transfer_start_s"] == "prefill_end_s"
    assert table._cols["conversion_s"] == (0.25, np.float64)
    assert isinstance(table._cols["prefill_end_s"], np.ndarray)
    assert table.column("conversion_s").tolist() == [0.25] * 10
    # the 8th row breaks both (a third block): both are allocated, every row still exact;
    # a NaN of another payload (-nan) breaks a NaN constant too (records are bit-exact)
    late = [dict(f) for f in same]
    late[7].update(transfer_start_s=99.0, conversion_s=0.5, kv_ready_s=-nan,
                   decode_instance="d/1")
    table, want = _table(late, 3, monkeypatch)
    assert all(_same(g, r) for g, r in zip(table, want))
    for f in ("transfer_start_s", "conversion_s", "kv_ready_s"):
        assert isinstance(table._cols[f], np.ndarray)
    bits = table.column("kv_ready_s").view(np.uint64)
    assert bits[7] == np.float64(-nan).view(np.uint64) != bits[0]
    assert table.column("transfer_start_s").tolist()[6:9] == [7.0, 99.0, 9.0]
    assert table.codes("decode_instance")[0].dtype == np.uint8


def test_codes_widen_past_256_strings(monkeypatch):
    rows = [{"prefill_instance": f"p/{i}"} for i in range(300)]
    table, want = _table(rows, 64, monkeypatch)
    codes, vocab = table.codes("prefill_instance")
    assert codes.dtype == np.int32 and len(vocab) == 301
    assert table.column("prefill_instance").tolist() == [f"p/{i}" for i in range(300)]


def test_a_timeline_snapshot_shares_its_arrays_and_never_sees_a_later_change():
    from hetsim.engine.stats import Timeline
    live = Timeline()
    live.append(0.5, 3)
    snap = live.frozen()
    assert snap._t is live._t and snap._held.itemsize == 4    # no copy; 12 B a change
    live.append(1.5, 5)
    assert list(snap) == [(0.5, 3)] and list(live) == [(0.5, 3), (1.5, 5)]
    t, held = live.arrays()
    assert t.tolist() == [0.5, 1.5] and held.dtype == np.int64 and held.tolist() == [3, 5]
