"""The calibration timer on a synthetic clock (no torch): repeats interleaved across shapes,
grouped large grids, outliers and noise, optional jobs that fail, input rotation, host load."""
import numpy as np
import pytest

from hetsim.calibrate import timer as timing


class Host:
    """A CPU on a synthetic clock: each kernel takes its own fixed time, ``slow`` times as long
    when it starts inside a burst of load from another process, [burst[0], burst[1])."""

    def __init__(self, burst=(0.0, 0.0), slow=10.0):
        self.now, self.burst, self.slow, self.calls = 0.0, burst, slow, []

    def clock(self):
        return self.now

    def kernel(self, name, seconds):
        def run():
            self.calls.append(name)
            hit = self.burst[0] <= self.now < self.burst[1]
            self.now += seconds * (self.slow if hit else 1.0)
        return run


def jobs_on(host, n=20, reps=5):
    times = {i: 1e-3 * (1 + i % 7) for i in range(n)}
    jobs = [timing.Job({"op": "gemm", "precision": "fp32", "m": i, "n": 1, "k": 1},
                        lambda i=i: [host.kernel(i, times[i])]) for i in range(n)]
    timer = timing.Timer(None, "cpu", reps)
    timer.clock = host.clock
    return jobs, timer, times


def test_repeats_are_interleaved_across_shapes():
    host = Host()
    jobs, timer, times = jobs_on(host, n=6, reps=4)
    rows = timer.run(jobs)
    warm, timed = host.calls[:12], host.calls[12:]
    assert warm == [i for i in range(6) for _ in range(2)]          # two warm-ups each
    passes = [timed[k:k + 6] for k in range(0, 24, 6)]
    assert all(sorted(p) == list(range(6)) for p in passes)          # every shape once a pass
    assert len({p[0] for p in passes}) == 4                           # each pass starts elsewhere
    assert all(a != b for a, b in zip(timed, timed[1:]))              # never twice in a row
    for r in rows:
        assert r["seconds"] == pytest.approx(times[r["m"]]) and r["noise"] < 1e-9
        assert len(r["repeats"]) == 4


def test_a_burst_of_load_slows_many_shapes_a_little_not_one_shape_a_lot():
    """The same burst (3x slower for most of a pass's worth of calls) against interleaved
    repeats and against all repeats of a shape back to back (what calibration did before):
    interleaved, it hits many shapes once and no shape's time moves; back to back, the shapes
    timed during it read 3x slow."""
    n, reps, slow = 20, 5, 3.0
    pass_s = sum(1e-3 * (1 + i % 7) for i in range(n))
    start = 2 * pass_s + 1.5 * pass_s                  # after the warm-ups, mid-run
    burst = (start, start + 0.8 * slow * pass_s)
    host = Host(burst, slow)
    jobs, timer, times = jobs_on(host, n, reps)
    rows = timer.run(jobs)
    assert all(r["seconds"] == pytest.approx(times[r["m"]]) for r in rows)
    hit = [sum(t > 2 * times[r["m"]] for t in r["repeats"]) for r in rows]
    assert sum(h > 0 for h in hit) >= n // 2 and max(hit) <= 2     # many shapes, a little

    host = Host(burst, slow)
    jobs, timer, times = jobs_on(host, n, reps)
    back_to_back = {j.row["m"]: float(np.median(timer.times(j.make()))) for j in jobs}
    assert sum(back_to_back[i] > 2 * times[i] for i in range(n)) >= 2   # a few shapes, a lot


def test_large_grids_are_interleaved_in_groups_drawn_across_the_grid(monkeypatch):
    monkeypatch.setattr(timing, "GROUP_BYTES", 10)
    host = Host()
    jobs, timer, times = jobs_on(host, n=9, reps=2)
    for j in jobs:
        j.nbytes = 4.0                      # bytes may be fractional (fp4)
    assert timer._groups(jobs) == [[0, 4, 8], [1, 5], [2, 6], [3, 7]]
    rows = timer.run(jobs)
    assert [r["m"] for r in rows] == list(range(9))
    assert host.calls[:12] == [0, 0, 4, 4, 8, 8, 0, 4, 8, 4, 8, 0]   # group 1, then the next
    assert all(r["seconds"] == pytest.approx(times[r["m"]]) for r in rows)


def test_outlying_repeats_are_rejected_and_noise_is_their_spread():
    from hetsim.calibrate.timer import inliers, spread, summarise
    quiet = [1.00, 1.01, 0.99, 1.02, 9.0]            # one repeat hit by a burst
    assert inliers(quiet) == [1.00, 1.01, 0.99, 1.02]
    seconds, noise = summarise(quiet)
    assert seconds == pytest.approx(1.005)
    assert noise == pytest.approx(0.02 / 1.01)        # (q3 - q1) / median of all repeats
    assert summarise([2.0] * 5) == (2.0, 0.0)         # identical repeats keep each other
    busy = [1.0, 1.1, 8.0, 9.0, 10.0]                 # most repeats contended: nothing to drop
    assert inliers(busy) == busy and spread(busy) == pytest.approx((9 - 1.1) / 8)


def test_optional_jobs_that_fail_are_skipped_and_others_are_not(capsys):
    host = Host()

    def broken():
        raise RuntimeError("no fp8 GEMM in this build\ndetails")
    ok = timing.Job({"op": "gemm", "precision": "bf16", "m": 1, "n": 1, "k": 1},
                     lambda: [host.kernel("ok", 1e-3)])
    bad = [timing.Job({"op": "gemm", "precision": "fp8", "m": m, "n": 1, "k": 1}, broken,
                       optional=True) for m in (1, 2)]
    timer = timing.Timer(None, "cpu", 3)
    timer.clock = host.clock
    assert [r["precision"] for r in timer.run([ok, *bad])] == ["bf16"]
    assert capsys.readouterr().err.count("warning: fp8 gemms skipped (no fp8 GEMM") == 1
    with pytest.raises(RuntimeError):
        timer.run([ok, timing.Job(dict(ok.row), broken)])


def test_host_load_is_others_cpu_time_over_the_hosts(tmp_path, monkeypatch):
    import os
    from hetsim.calibrate.measure import HostLoad
    hz = os.sysconf("SC_CLK_TCK")
    stat = tmp_path / "stat"
    own = iter([1.0, 2.0])            # this process: 1 s of CPU time while timing

    class Times:
        def __init__(self):
            self.user, self.system = next(own), 0.0
    monkeypatch.setattr(os, "times", Times)
    load = HostLoad(str(stat))
    # user nice system idle iowait irq softirq steal: 2 CPUs over 2 s = 4 s, 3 s busy
    stat.write_text(f"cpu  {100 * hz} 0 {100 * hz} {800 * hz} 0 0 0 0 0 0\ncpu0 ...\n")
    with load:
        stat.write_text(f"cpu  {102 * hz} 0 {101 * hz} {801 * hz} 0 0 0 0 0 0\n")
    assert load.share == pytest.approx((3 - 1) / 4)
    assert HostLoad(str(tmp_path / "missing")).share is None
    with HostLoad(str(tmp_path / "missing")) as unknown:
        pass
    assert unknown.share is None


def test_timer_rotates_inputs_and_copies_only_on_gpus():
    assert timing.copies("cpu", 1) == 1
    assert timing.copies("cuda", 2 ** 30) == 1
    assert timing.copies("cuda", 2 ** 20) == timing.MAX_COPIES
    assert timing.copies("cuda", 64 * 2 ** 20) == 4         # 256 MiB of operands in rotation
    calls = []
    t = timing.Timer(None, "cpu", reps=5)([lambda i=i: calls.append(i) for i in range(3)])
    assert t >= 0 and sorted(set(calls)) == [0, 1, 2] and len(calls) == 7    # 2 warm-ups + 5
