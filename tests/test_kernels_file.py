"""hetsim.perf.kernels: the measured-grid file round-trips exactly and deterministically."""
import numpy as np
import pytest

from hetsim.errors import ConfigError
from hetsim.perf.kernels import KernelGrid, MeasuredKernels, load_kernels


def _kernels():
    gemm = KernelGrid("gemm", ("bf16",), (np.array([1.0, 16, 256]), np.array([128.0, 4096]),
                                          np.array([4096.0])),
                      np.array([[[1e-5], [3e-5]], [[1.2e-5], [3.1e-5]], [[4e-5], [2e-4]]]))
    ar = KernelGrid("allreduce", ("bf16", 8), (np.array([1024.0, 1 << 20]),),
                    np.array([8e-6, 4e-5]))
    return MeasuredKernels([gemm, ar], {"source": "synthetic"})


def test_round_trip_and_bytes_are_deterministic(tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    _kernels().save(a)
    _kernels().save(b)
    assert a.read_bytes() == b.read_bytes()
    k = load_kernels(a)
    assert k.meta == {"source": "synthetic"} and k.ops() == ["gemm", "allreduce"]
    g = k.get("gemm", ("bf16",))
    assert g.seconds.shape == (3, 2, 1) and g.seconds[2, 1, 0] == pytest.approx(2e-4, rel=1e-6)
    assert k.get("allreduce", ["bf16", 8]).named_key == {"dtype": "bf16", "gpus": 8}
    assert k.get("gemm", ("fp8",)) is None and len(k) == 2
    assert g.grid((16, 128, 4096)) == pytest.approx(1.2e-5, rel=1e-6)


def test_bad_grids_and_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown op"):
        KernelGrid("conv", ("bf16",), (np.array([1.0]),), np.array([1.0]))
    with pytest.raises(ValueError, match="key"):
        KernelGrid("gemm", (), (np.array([1.0]),) * 3, np.ones((1, 1, 1)))
    with pytest.raises(ValueError, match="> 0"):
        KernelGrid("allreduce", ("bf16", 2), (np.array([1.0, 2.0]),), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="two gemm grids"):
        g = _kernels().get("gemm", ("bf16",))
        MeasuredKernels([g, g])
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="bad.npz.*unreadable"):
        load_kernels(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_kernels(tmp_path / "none.npz")


def test_measured_masks_round_trip(tmp_path):
    mask = np.array([[[True], [False]], [[True], [True]], [[False], [True]]])
    k = _kernels()
    gemm = k.get("gemm", ("bf16",))
    masked = KernelGrid("gemm", ("bf16",), gemm.axes, gemm.seconds, mask)
    ar = KernelGrid("allreduce", ("bf16", 4), (np.array([1.0, 2.0]),), np.array([1e-5, 2e-5]),
                    np.array([False, True]))
    MeasuredKernels([masked, k.get("allreduce", ("bf16", 8)), ar]).save(tmp_path / "m.npz")
    back = load_kernels(tmp_path / "m.npz")
    assert np.array_equal(back.get("gemm", ("bf16",)).measured, mask)
    assert back.get("allreduce", ("bf16", 8)).measured is None
    assert back.get("allreduce", ("bf16", 4)).measured.tolist() == [False, True]
    with pytest.raises(ValueError, match="mask"):
        KernelGrid("allreduce", ("bf16", 2), (np.array([1.0]),), np.array([1.0]),
                   np.array([1, 0]))
