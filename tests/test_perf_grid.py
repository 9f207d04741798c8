"""LogGrid: measured kernel times on a grid, as a function of any shape."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hetsim.perf.grid import LogGrid

M = [1, 4, 16, 64]
N = [128, 1024, 8192]


def power(m, n):
    return 1e-6 * m ** 0.5 * n ** 0.8


def grid(f=power, **kw):
    return LogGrid([M, N], [[f(m, n) for n in N] for m in M], **kw)


def test_grid_points_are_the_measurements():
    g = grid()
    for m in M:
        for n in N:
            assert g((m, n)) == pytest.approx(power(m, n), rel=1e-12)


def test_a_power_law_is_interpolated_exactly():
    """Log-log multilinear interpolation is exact for c * m^a * n^b (kernel times are close
    to such laws between neighbouring measurements)."""
    g = grid()
    for m, n in [(2, 300), (10, 5000), (33, 2048), (1.5, 129)]:
        assert g((m, n)) == pytest.approx(power(m, n), rel=1e-9)


def test_outside_the_model_carries_the_edge_time():
    g = grid(lambda m, n: 2 * power(m, n))          # measured = 2 x the model everywhere
    model = lambda p: power(*p)
    for p in [(256, 4096), (8, 65536), (1024, 1 << 20), (0.5, 64)]:
        assert g(p, model) == pytest.approx(2 * model(p), rel=1e-9)
    # continuous at the edge, and flat past it without a model
    assert g((64 * (1 + 1e-12), 8192), model) == pytest.approx(g((64, 8192)), rel=1e-9)
    assert g((1e6, 8192)) == g((64, 8192))


@settings(max_examples=200, deadline=None)
@given(raw=st.lists(st.floats(1e-6, 1e-1), min_size=12, max_size=12),
       a=st.floats(64, 1e5), da=st.floats(0, 1e5), b=st.floats(8192, 1e6), db=st.floats(0, 1e6),
       n=st.floats(50, 20000), m=st.floats(0.5, 200))
def test_past_the_grid_time_grows_with_work_as_the_model_does(raw, a, da, b, db, n, m):
    """Whatever was measured, beyond the last row (or column) time rises with work when the
    model's does: the edge time is carried, never held flat or dropped."""
    g = LogGrid([M, N], np.array(raw).reshape(4, 3))
    model = lambda p: power(*p)
    assert g((a + da, n), model) >= g((a, n), model) * (1 - 1e-12)
    assert g((m, b + db), model) >= g((m, b), model) * (1 - 1e-12)


@pytest.mark.parametrize("axes, t, words", [
    ([[1, 1]], [1.0, 1.0], "strictly increasing"),
    ([[0, 1]], [1.0, 1.0], "> 0"),
    ([[1, 2]], [1.0, 0.0], "times must be finite and > 0"),
    ([[1, 2]], [1.0, math.nan], "times must be finite and > 0"),
    ([[1, 2]], [1.0], "shape"),
])
def test_bad_grids_are_refused(axes, t, words):
    with pytest.raises(ValueError, match=words):
        LogGrid(axes, t)


def test_holes_are_filled_from_their_lines_in_log_space():
    """A power law with holes comes back exactly where a line brackets the hole; a hole past
    every measurement of its lines takes the nearest one."""
    from hetsim.perf.grid import fill_log_grid
    t = np.array([[power(m, n) for n in N] for m in M])
    holed = t.copy()
    holed[1, 1] = holed[2, 0] = holed[3, 2] = np.nan
    filled, holes = fill_log_grid([M, N], holed)
    assert holes == 3
    assert filled[1, 1] == pytest.approx(t[1, 1], rel=1e-9)    # bracketed on both axes
    assert filled[2, 0] == pytest.approx(t[2, 0], rel=1e-9)    # bracketed along m
    assert filled[3, 2] == pytest.approx(t[2, 2], rel=1e-9)    # a corner: its nearest along m
    assert not np.isnan(filled).any()
    lone = np.full((4, 3), np.nan)
    lone[0, 0] = 1e-3
    assert fill_log_grid([M, N], lone)[0] == pytest.approx(np.full((4, 3), 1e-3), rel=1e-12)
