"""LogGrid with a base (interpolating log(measured / analytical time)) and fill_log_grid's
options: what the table-backed kernel model reads its grids with."""
import math

import numpy as np
import pytest

from hetsim.perf.grid import LogGrid, base_at_nodes, fill_log_grid

M = [1, 4, 16, 64]
N = [128, 1024, 8192]


def waves(p):
    """An analytical time with wave quantization: steps in m (128-row tiles over 132 units)
    and a launch floor, so not a power law between grid points."""
    m, n = p
    return 3e-6 + 1e-9 * math.ceil(math.ceil(m / 8) * n / 128 / 132) * 132 * 128


def measured(m, n):
    return 1.7 * waves((m, n)) * (1 + 0.001 * math.log(n))


def table():
    return np.array([[measured(m, n) for n in N] for m in M])


def test_with_a_base_nodes_are_the_measurements_and_the_ratio_is_interpolated():
    g = LogGrid([M, N], table(), base=waves)
    for i, m in enumerate(M):
        for j, n in enumerate(N):
            assert g((m, n)) == pytest.approx(table()[i, j], rel=1e-12)
    for p in [(2, 300), (10, 5000), (33, 2048), (1.5, 129)]:
        assert g(p) == pytest.approx(measured(*p), rel=2e-3)
    # without the base the steps of the analytical time are lost between grid points
    plain = LogGrid([M, N], table())
    assert max(abs(plain(p) / measured(*p) - 1) for p in [(33, 2048), (10, 5000)]) > 0.05


def test_with_a_base_the_edge_ratio_is_carried_outside():
    g = LogGrid([M, N], table(), base=waves)
    for p in [(256, 4096), (8, 65536), (1024, 1 << 20), (0.5, 64)]:
        edge = tuple(min(max(x, a[0]), a[-1]) for x, a in zip(p, (M, N)))
        assert g(p) == pytest.approx(waves(p) * g(edge) / waves(edge), rel=1e-12)


def test_a_grid_with_a_base_refuses_a_second_model():
    with pytest.raises(ValueError, match="no model"):
        LogGrid([M, N], table(), base=waves)((2, 300), waves)


def test_the_base_must_be_positive_at_every_node():
    with pytest.raises(ValueError, match="finite and > 0"):
        base_at_nodes([M, N], lambda p: p[0] - 1.0)        # 0 at m = 1
    with pytest.raises(ValueError, match="finite and > 0"):
        LogGrid([M, N], table(), base=lambda p: math.nan)


def test_fill_with_a_base_carries_holes_past_the_measurements_by_the_base():
    """A ragged table (no large m x large n, as decode attention's): the holes past the last
    measurement of their lines come back as the base's shape times the nearest ratio, where
    plain filling holds them flat."""
    holed = table()
    holed[3, 2] = holed[3, 1] = np.nan
    filled, holes = fill_log_grid([M, N], holed, waves)
    assert holes == 2
    np.testing.assert_allclose(filled, table(), rtol=2e-3)
    flat, _ = fill_log_grid([M, N], holed)
    assert flat[3, 2] < 0.5 * table()[3, 2]


def test_fill_smoothest_keeps_a_step_along_one_axis_out_of_its_neighbours():
    """A kernel switch between two rows (time drops 10x from m = 16 to m = 64, smooth along
    n): a hole in the m = 16 row is filled along n, where the mean would mix the step in."""
    t = np.array([[1e-5 * n ** 0.5 * (10 if m < 64 else 1) for n in N] for m in M])
    holed = t.copy()
    holed[2, 1] = np.nan
    best, _ = fill_log_grid([M, N], holed, smoothest=True)
    mean, _ = fill_log_grid([M, N], holed)
    assert best[2, 1] == pytest.approx(t[2, 1], rel=1e-9)
    assert abs(mean[2, 1] / t[2, 1] - 1) > 0.3


def test_fill_along_the_diagonal_of_equal_work_keeps_a_diagonal_cliff():
    """Decode attention on a part whose L2 holds small KV caches: time jumps ~8x where batch x
    KV length passes the cache, a cliff along the anti-diagonal. A hole on the cliff's edge
    is filled along the diagonal of equal work (its neighbours there are on the same side),
    where both axes cross the cliff."""
    b = [1, 2, 4, 8, 16, 32]
    kv = [256, 512, 1024, 2048, 4096, 8192]
    t = np.array([[1e-6 * x * y / 64 * (8 if x * y >= 16384 else 1) + 5e-6 for y in kv]
                  for x in b])
    holed = t.copy()
    holed[3, 3] = np.nan                 # 8 x 2048 = 16384: the first cell past the cliff
    diag, _ = fill_log_grid([b, kv], holed, smoothest=True, diagonals=True)
    axes_only, _ = fill_log_grid([b, kv], holed, smoothest=True)
    assert diag[3, 3] == pytest.approx(t[3, 3], rel=1e-9)
    assert abs(axes_only[3, 3] / t[3, 3] - 1) > 0.3


def test_fill_of_a_power_law_is_exact_with_every_option():
    """The options choose among directions; on a power law every direction agrees."""
    t = np.array([[1e-6 * m ** 0.5 * n ** 0.8 for n in N] for m in M])
    holed = t.copy()
    holed[1, 1] = holed[2, 1] = np.nan
    for opts in ({}, {"smoothest": True}, {"diagonals": True},
                 {"smoothest": True, "diagonals": True}):
        filled, holes = fill_log_grid([M, N], holed, **opts)
        assert holes == 2
        np.testing.assert_allclose(filled, t, rtol=1e-9)
