"""Faults and recovery: cases an independent review (rv1) found broken, each checked on an
exact schedule. Helpers and conventions are tests/test_faults.py's."""
import pytest

from .test_faults import scenario, simulate


def _hang(target, at, seconds):
    return {"at_s": at, "target": target, "kind": "hang", "duration_s": seconds}


def test_two_hangs_starting_together_then_a_crash_keep_each_hang_apart():
    # decode/0 hangs twice from t = 0.01 (the pool's hang, listed first, for 0.3 s; its own
    # for 0.1 s), then crashes at 0.2 (back at 0.25). The short hang ends at 0.11; the long
    # one is ended by the crash. Two hangs that start together are still two hangs: the
    # short one's end must not end the long one in its place
    d = scenario(requests=20, rate=20.0, faults=[
        _hang("decode", 0.01, 0.3), _hang("decode/0", 0.01, 0.1),
        {"at_s": 0.2, "target": "decode/0", "kind": "crash", "repair_s": 0.05}])
    recs, res, s = simulate(d)
    out = res.faults.outages
    assert out["decode/0"] == ((0.01, 0.11), (0.01, 0.2), (0.2, pytest.approx(0.25)))
    assert out["decode/1"] == ((0.01, pytest.approx(0.31)),)
    assert res.faults.applied == 4
    assert s["completed"] == 20
