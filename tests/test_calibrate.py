"""Calibration: the CPU run end to end, fits that respect physics, CSV round trips and errors,
and the package boundary (the simulator never imports torch; calibration never imports SimPy).

The end-to-end tests need torch (the README's test command installs the CPU build); the fitting
tests use synthetic measurements and need only numpy.
"""
import subprocess
import sys

import numpy as np
import pytest
import yaml

import hetsim
from hetsim.calibrate import fit_profile, read_csv, write_csv
from hetsim.calibrate.cli import main as calibrate_main
from hetsim.calibrate.fit import predict
from hetsim.config import read_yaml
from hetsim.hardware import Accelerator, _index, load_accelerator, profile_dirs
from hetsim.perf import PerfModel

from .conftest import SCENARIOS

H100_RAW = read_yaml(_index("accelerator", profile_dirs(), calibrated=False)["h100-sxm"])


def synthetic_rows(factor, precision="bf16"):
    """Measurements of an imaginary device: the datasheet model's op time (without its 3 us
    launch overhead) x ``factor(row)``, plus the device's own 4 us launch overhead."""
    pm = PerfModel(hetsim.load_accelerator("h100-sxm@datasheet"), link=None)
    rows = [{"op": "copy", "precision": "fp32", "bytes": 2 ** 31,
             "seconds": 2 ** 31 / (3.35e12 * 0.7)},
            {"op": "launch", "precision": "fp32", "seconds": 4e-6}]
    for m in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192):
        for n, k in ((6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336), (1536, 4096),
                     (4096, 1024)):
            rows.append({"op": "gemm", "precision": precision, "m": m, "n": n, "k": k})
    for b, s in ((1, 256), (1, 512), (1, 1024), (1, 2048), (4, 1024), (1, 4096), (1, 8192)):
        rows.append({"op": "attn_prefill", "precision": precision, "batch": b, "seq": s,
                     "heads": 32, "kv_heads": 8, "head_dim": 128})
    for b, s in ((1, 512), (8, 1024), (16, 2048), (64, 4096), (128, 1024), (32, 8192)):
        rows.append({"op": "attn_decode", "precision": precision, "batch": b, "kv_len": s,
                     "heads": 32, "kv_heads": 8, "head_dim": 128})
    for r in rows:
        if "seconds" not in r:
            r["seconds"] = (predict(pm, r) - pm.kernel_overhead) * factor(r) + 4e-6
    return rows


# --- fitting (no torch) -----------------------------------------------------------------------
def test_fit_generalises_to_held_out_shapes():
    """A device whose memory-bound GEMMs reach 80% of the modelled bandwidth, whose
    compute-bound GEMMs lose 50% below m=1024 and 10% above, and whose attention runs at 60%
    of the model: the fitted, shape-aware curves predict shapes they never saw."""
    pm = PerfModel(hetsim.load_accelerator("h100-sxm@datasheet"), link=None)

    def f(r):
        if r["op"] == "gemm":
            c, m = pm.gemm_parts(r["m"], r["n"], r["k"], "bf16")
            return 1.25 if m > c else (1.5 if r["m"] < 1024 else 1.1)
        return 1 / 0.6
    fit = fit_profile(H100_RAW, synthetic_rows(f))
    for cls in ("gemm", "attention_prefill", "attention_decode"):
        a = fit.accuracy[cls]
        assert a["before_median"] > 0.15, cls
        assert a["after_median"] < 0.05 and a["after_p90"] < 0.2, (cls, a)
    # shape-aware, not one scalar: each path and each m range gets its own correction
    cal = fit.fitted.calibration
    assert fit.fitted.efficiency.hbm == pytest.approx(0.7, rel=1e-3)   # from the copy row
    # relative to that bandwidth: 1.25x slower than the datasheet's 0.8 of peak
    assert cal.gemm_memory["bf16"](4) == pytest.approx(0.8 / (0.7 * 1.25), rel=0.02)
    assert cal.gemm["bf16"](512) == pytest.approx(1 / 1.5, rel=0.05)
    assert cal.gemm["bf16"](4096) == pytest.approx(1 / 1.1, rel=0.05)
    Accelerator(**{**fit.fitted.__dict__})   # still a valid profile


def test_fitted_times_never_fall_as_work_grows():
    import random
    rnd = random.Random(0)
    fit = fit_profile(H100_RAW, synthetic_rows(lambda r: rnd.uniform(0.5, 3.0)))
    pm = PerfModel(fit.fitted, link=None)
    ms = [1, 2, 3, 5, 8, 13, 16, 31, 64, 100, 128, 300, 512, 1000, 2048, 5000, 8192, 20000]
    for n, k in ((4096, 4096), (1536, 4096), (28672, 8192)):
        t = [pm.gemm_time(m, n, k, "bf16") for m in ms]
        assert all(b >= a * (1 - 1e-9) for a, b in zip(t, t[1:])), (n, k, t)
    seqs = [64, 128, 200, 512, 1000, 2048, 4096, 10000, 32768]
    t = [pm.attention_prefill_time(1, s, 32, 8, 128, "bf16") for s in seqs]
    assert all(b >= a for a, b in zip(t, t[1:]))
    for b in (1, 8, 64):
        t = [pm.attention_decode_time(b, s, 32, 8, 128, "bf16") for s in seqs]
        assert all(y >= x for x, y in zip(t, t[1:])), t


def test_calibrated_profile_moves_simulation_in_expected_direction(tmp_path):
    """A device measured 1.5x slower than its datasheet: TTFT and TPOT rise, goodput never."""
    fit = fit_profile(H100_RAW, synthetic_rows(lambda r: 1.5))
    d = tmp_path / "profiles" / "calibrated"
    d.mkdir(parents=True)
    (d / "h100-sxm.yaml").write_text(yaml.safe_dump(fit.profile, sort_keys=False))
    sc = yaml.safe_load((SCENARIOS / "quickstart.yaml").read_text())
    sc["workload"]["requests"] = 200
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(sc))
    sc["hardware_profiles"] = ["profiles"]
    (tmp_path / "cal.yaml").write_text(yaml.safe_dump(sc))
    base = {s["name"]: s for s in hetsim.run(tmp_path / "base.yaml").summaries}
    cal = {s["name"]: s for s in hetsim.run(tmp_path / "cal.yaml").summaries}
    for name in base:
        assert cal[name]["ttft_s"]["mean"] > base[name]["ttft_s"]["mean"]
        assert cal[name]["tpot_s"]["mean"] > base[name]["tpot_s"]["mean"]
        assert cal[name]["goodput_rps"] <= base[name]["goodput_rps"] + 1e-9


def test_calibrated_profile_wins_and_datasheet_can_be_asked_for(tmp_path):
    fit = fit_profile(H100_RAW, synthetic_rows(lambda r: 2.0))
    (tmp_path / "calibrated").mkdir()
    (tmp_path / "calibrated" / "h100-sxm.yaml").write_text(yaml.safe_dump(fit.profile))
    assert load_accelerator("h100-sxm", [tmp_path]).calibration is not None
    assert load_accelerator("h100-sxm@datasheet", [tmp_path]).calibration is None


def test_unsupported_precision_is_a_clear_error(tmp_path, capsys):
    rows = synthetic_rows(lambda r: 1.0, precision="bf16")
    for r in rows:
        if r["op"] == "gemm":
            r["precision"] = "fp8"
    f = tmp_path / "m.csv"
    write_csv(rows, f)
    assert calibrate_main(["--from-csv", str(f), "--accelerator", "a100-sxm",
                           "--out", str(tmp_path / "a.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a100-sxm does not compute in fp8" in err
    assert not (tmp_path / "a.yaml").exists()


BAD_CSV = [
    ("op,precision,m,n,k\ngemm,bf16,1,2,3\n", "missing column 'seconds'"),
    ("op,precision,m,n,k,seconds\ngem,bf16,1,2,3,0.1\n", "csv:2: op: unknown op 'gem' (did you mean 'gemm'?)"),
    ("op,precision,m,n,k,seconds\ngemm,bf16,1,x,3,0.1\n", "csv:2: n: gemm needs a number in column 'n'"),
    ("op,precision,m,n,k,seconds\ngemm,bf16,1,2,3,-1\n", "csv:2: seconds: must be > 0"),
    ("op,precision,m,n,k,seconds\ngemm,bf17,1,2,3,0.1\n", "csv:2: precision: unknown precision"),
    ("op,precision,bytes,seconds\ncopy,fp32,100,0.1\n", "no gemm or attention measurements"),
]


@pytest.mark.parametrize("text,expected", BAD_CSV)
def test_bad_csv_one_line_exit_2(tmp_path, capsys, text, expected):
    f = tmp_path / "bad.csv"
    f.write_text(text)
    assert calibrate_main(["--from-csv", str(f), "--accelerator", "h100-sxm",
                           "--out", str(tmp_path / "x.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(f) in err and expected in err
    assert not (tmp_path / "x.yaml").exists()


# --- package boundaries -------------------------------------------------------------------------
def test_simulator_never_imports_torch():
    code = ("import sys, hetsim; hetsim.run(sys.argv[1]); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    p = subprocess.run([sys.executable, "-c", code, str(SCENARIOS / "quickstart.yaml")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_calibration_imports_without_simpy_or_pandas(tmp_path):
    rows = synthetic_rows(lambda r: 1.3)
    f = tmp_path / "m.csv"
    write_csv(rows, f)
    code = ("import sys\n"
            "for m in ('simpy', 'pandas', 'scipy', 'matplotlib'): sys.modules[m] = None\n"
            "from hetsim.calibrate.cli import main\n"
            f"sys.exit(main(['--from-csv', {str(f)!r}, '--accelerator', 'h100-sxm', "
            f"'--out', {str(tmp_path / 'o.yaml')!r}, '-q']))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "o.yaml").exists()


# --- timing: interleaved repeats, outliers, noise (synthetic clock, no torch) -------------------
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
    from hetsim.calibrate import measure
    times = {i: 1e-3 * (1 + i % 7) for i in range(n)}
    jobs = [measure.Job({"op": "gemm", "precision": "fp32", "m": i, "n": 1, "k": 1},
                        lambda i=i: [host.kernel(i, times[i])]) for i in range(n)]
    timer = measure.Timer(None, "cpu", reps)
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
    from hetsim.calibrate import measure
    monkeypatch.setattr(measure, "GROUP_BYTES", 10)
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
    from hetsim.calibrate.measure import inliers, spread, summarise
    quiet = [1.00, 1.01, 0.99, 1.02, 9.0]            # one repeat hit by a burst
    assert inliers(quiet) == [1.00, 1.01, 0.99, 1.02]
    seconds, noise = summarise(quiet)
    assert seconds == pytest.approx(1.005)
    assert noise == pytest.approx(0.02 / 1.01)        # (q3 - q1) / median of all repeats
    assert summarise([2.0] * 5) == (2.0, 0.0)         # identical repeats keep each other
    busy = [1.0, 1.1, 8.0, 9.0, 10.0]                 # most repeats contended: nothing to drop
    assert inliers(busy) == busy and spread(busy) == pytest.approx((9 - 1.1) / 8)


def test_optional_jobs_that_fail_are_skipped_and_others_are_not(capsys):
    from hetsim.calibrate import measure
    host = Host()

    def broken():
        raise RuntimeError("no fp8 GEMM in this build\ndetails")
    ok = measure.Job({"op": "gemm", "precision": "bf16", "m": 1, "n": 1, "k": 1},
                     lambda: [host.kernel("ok", 1e-3)])
    bad = [measure.Job({"op": "gemm", "precision": "fp8", "m": m, "n": 1, "k": 1}, broken,
                       optional=True) for m in (1, 2)]
    timer = measure.Timer(None, "cpu", 3)
    timer.clock = host.clock
    assert [r["precision"] for r in timer.run([ok, *bad])] == ["bf16"]
    assert capsys.readouterr().err.count("warning: fp8 gemms skipped (no fp8 GEMM") == 1
    with pytest.raises(RuntimeError):
        timer.run([ok, measure.Job(dict(ok.row), broken)])


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


# --- the gates: refuse noisy timings and fits worse than their base (synthetic) ----------------
def worse_on_held_out(rows):
    """``rows`` with every shape the fit trains on 2x slower than measured, and the held-out
    shapes as measured: a fit that generalises, from timings that do not."""
    from hetsim.calibrate.fit import CLASSES, _held_out
    return [dict(r, seconds=r["seconds"] * 2) if r["op"] in CLASSES and not held else r
            for r, held in zip(rows, _held_out(rows))]


def calibrate_csv(tmp_path, rows, *extra):
    f = tmp_path / "m.csv"
    write_csv(rows, f)
    out = tmp_path / "out" / "p.yaml"
    rc = calibrate_main(["--from-csv", str(f), "--accelerator", "h100-sxm", "--out", str(out),
                         *extra])
    return rc, out


REFUSED = "rerun on an idle machine, or --force to write it anyway"


def test_gates_refuse_noise_above_the_limit_and_worse_held_out_errors():
    from hetsim.calibrate import gates
    from hetsim.calibrate.gates import ACCURACY_MARGIN, BUSY_LIMIT, NOISE_LIMIT
    rows = [{"op": "gemm", "precision": "bf16", "m": i, "n": 1, "k": 1, "noise": x}
            for i, x in enumerate([0.01, 0.02, 0.5, 0.03, 0.9])]   # median 3%: two wild rows
    n = gates.noise(rows)
    assert n.median == pytest.approx(0.03) and n.worst == 0.9 and "m=4" in n.worst_row
    assert gates.refusals({}, n) == []
    loud = gates.noise([dict(r, noise=NOISE_LIMIT * 1.5) for r in rows])
    assert "too noisy" in gates.refusals({}, loud)[0]
    assert gates.noise([{k: v for k, v in r.items() if k != "noise"} for r in rows]) is None
    assert gates.refusals({}, None, busy=BUSY_LIMIT / 2) == []
    assert "host busy" in gates.refusals({}, None, busy=BUSY_LIMIT * 2)[0]

    def acc(before, after):
        return {"ref_decode": {"n": 3, "before_median": before, "after_median": after,
                               "before_p90": 1, "after_p90": 1}}
    assert gates.refusals(acc(0.036, 0.036 + ACCURACY_MARGIN * 0.9), None) == []
    why = gates.refusals(acc(0.57, 8.63), None)
    assert len(why) == 1 and "reference decode iteration" in why[0] and "863" in why[0]


def test_a_fit_worse_on_held_out_shapes_is_refused_and_nothing_is_written(tmp_path, capsys):
    rows = worse_on_held_out(synthetic_rows(lambda r: 1.0))
    rc, out = calibrate_csv(tmp_path, rows)
    o, e = capsys.readouterr()
    assert rc == 2 and e.count("\n") == 1 and e.endswith(REFUSED + "\n")
    assert e.startswith(f"hetsim: error: {out}: not written: ") and "GEMM" in e
    assert "| GEMM (held-out shapes) |" in o and "noise:" in o       # the figures, on stdout
    assert not (tmp_path / "out").exists()                            # neither file, no folder
    # --force writes both, with a warning, and the profile loads
    rc, out = calibrate_csv(tmp_path, rows, "--force")
    o, e = capsys.readouterr()
    assert rc == 0 and e.count("\n") == 1 and "written anyway (--force)" in e
    assert out.exists() and out.with_suffix(".csv").exists()
    Accelerator(**{**fit_profile(H100_RAW, rows).fitted.__dict__})


def test_noisy_timings_are_refused_unless_forced(tmp_path, capsys):
    from hetsim.calibrate.gates import NOISE_LIMIT
    good = synthetic_rows(lambda r: 1.3)          # a fit that helps everywhere
    rc, out = calibrate_csv(tmp_path, [dict(r, noise=NOISE_LIMIT * 0.8) for r in good])
    assert rc == 0 and out.exists()
    assert all(r["noise"] == NOISE_LIMIT * 0.8 for r in read_csv(out.with_suffix(".csv")))
    capsys.readouterr()
    out.unlink()
    out.with_suffix(".csv").unlink()
    noisy = [dict(r, noise=NOISE_LIMIT * 2) for r in good]
    rc, out = calibrate_csv(tmp_path, noisy)
    o, e = capsys.readouterr()
    assert rc == 2 and e.count("\n") == 1 and e.endswith(REFUSED + "\n")
    assert "timings too noisy" in e
    assert f"median spread of repeats {NOISE_LIMIT * 2:.1%}" in o
    assert not out.exists() and not out.with_suffix(".csv").exists()
    assert calibrate_csv(tmp_path, noisy, "--force")[0] == 0 and out.exists()


def test_noise_column_is_optional_and_checked(tmp_path):
    rows = synthetic_rows(lambda r: 1.0)
    f = tmp_path / "m.csv"
    write_csv([dict(r, noise=0.05) for r in rows], f)
    assert {r["noise"] for r in read_csv(f)} == {0.05}
    write_csv(rows, f)
    assert all("noise" not in r for r in read_csv(f))        # older files: not checked
    for bad in ("-0.1", "nan", "lots"):
        (tmp_path / "bad.csv").write_text(f.read_text().replace(",\n", f",{bad}\n", 1))
        with pytest.raises(hetsim.ConfigError, match=r"csv:2: noise: column 'noise' must be a "
                           r"number >= 0"):
            read_csv(tmp_path / "bad.csv")


@pytest.mark.parametrize("name", ["cpu-xeon-2c", "h200-sxm"])
def test_committed_measurements_pass_the_gates(name):
    """Recorded measurements: the shipped calibrations' CSVs (they predate the noise column, so
    only the accuracy gate applies)."""
    from hetsim.calibrate.cli import build_parser, measure_and_fit
    d = [d for d in profile_dirs() if (d / "calibrated" / f"{name}.yaml").exists()][0]
    yml = d / "calibrated" / f"{name}.yaml"
    args = build_parser().parse_args(["--from-csv", str(yml.with_suffix(".csv")),
                                      "--accelerator", str(yml), "--out", "unused.yaml"])
    o = measure_and_fit(args, yml.with_suffix(".csv").name)
    assert o.noise is None and o.busy is None and o.refused == []
    assert o.fit.profile["calibration"] == read_yaml(yml)["calibration"]


BAD_OUT = [
    ("folder", "is a folder"),
    ("file.txt/p.yaml", "lies under"),
    ("p.csv", "give a .yaml file name"),
]


@pytest.mark.parametrize("where,expected", BAD_OUT)
def test_output_path_is_checked_before_measuring(tmp_path, capsys, monkeypatch, where, expected):
    from hetsim.calibrate import cli
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("keep me")
    monkeypatch.setattr(cli, "measure_all", lambda *a: pytest.fail("measured before checking"))
    assert calibrate_main(["--device", "cpu", "--quick", "--out", str(tmp_path / where)]) == 2
    e = capsys.readouterr().err
    assert e.count("\n") == 1 and e.startswith("hetsim: error: --out: ") and expected in e
    assert sorted(x.name for x in tmp_path.iterdir()) == ["file.txt", "folder"]
    assert (tmp_path / "file.txt").read_text() == "keep me"


@pytest.mark.parametrize("threads", ["0", "-2", "two"])
def test_threads_must_be_positive(tmp_path, capsys, monkeypatch, threads):
    from hetsim.calibrate import cli
    from hetsim.cli import main
    monkeypatch.setattr(cli, "measure_all", lambda *a: pytest.fail("measured"))
    for run in (calibrate_main, lambda a: main(["calibrate", *a])):
        try:
            rc = run(["--device", "cpu", "--threads", threads, "--out", str(tmp_path / "x.yaml")])
        except SystemExit as ex:               # argparse: not a number
            rc = ex.code
        e = capsys.readouterr().err
        assert rc == 2 and e.count("\n") == 1 and "--threads" in e and "Traceback" not in e
    assert list(tmp_path.iterdir()) == []


# --- on this CPU, with torch ----------------------------------------------------------------------
torch = pytest.importorskip("torch", reason="install the CPU build: pip install torch==2.13.0")


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """A real quick calibration of this CPU, written with --force: how busy the machine is
    decides whether the gates refuse it and how accurate it is, and neither is what these
    tests check (the gates are tested on synthetic measurements above; real figures come from
    benchmarks/calibration_noise.py and benchmarks/accuracy.py)."""
    d = tmp_path_factory.mktemp("cal") / "calibrated"
    out = d / "cpu.yaml"
    assert calibrate_main(["--device", "cpu", "--quick", "--out", str(out), "--check",
                           "--force", "-q"]) == 0
    return out


def test_cpu_calibration_end_to_end_writes_a_loadable_profile(cpu_run):
    acc = load_accelerator("cpu", [cpu_run.parent.parent])
    cal = acc.calibration
    assert cal is not None and cal.torch.startswith("2.") and cal.grid == "quick"
    assert "fp32" in cal.gemm and "fp32" in cal.attention_prefill and "fp32" in cal.attention_decode
    for k in ("gemm", "attention_prefill", "attention_decode", "ref_prefill", "ref_decode"):
        assert k in cal.accuracy and cal.accuracy[k]["n"] >= 1
    assert "interleaved" in cal.notes
    rows = read_csv(cpu_run.with_suffix(".csv"))
    assert {r["op"] for r in rows} >= {"gemm", "attn_prefill", "attn_decode", "copy", "launch",
                                        "probe", "probe_deep", "ref_prefill", "ref_decode"}
    assert all(r["noise"] >= 0 for r in rows)              # every timing says how noisy it was
    # the model can drive a simulation on it (how fast depends on how busy this host was)
    pm = PerfModel(acc, link=None)
    m = hetsim.ModelConfig(name="t", num_layers=2, hidden_size=512, num_heads=8, num_kv_heads=2,
                           ffn_size=1408, vocab_size=4096)
    t = hetsim.StepModel(m, pm, 1, "fp32").prefill_time([256])
    assert 0 < t < float("inf")


def test_from_csv_round_trips(cpu_run, tmp_path):
    out = tmp_path / "again.yaml"
    assert calibrate_main(["--from-csv", str(cpu_run.with_suffix(".csv")), "--accelerator",
                           str(cpu_run), "--out", str(out), "--force", "-q"]) == 0
    a, b = read_yaml(cpu_run), read_yaml(out)
    for k in ("gemm", "gemm_memory", "attention_prefill", "attention_decode",
              "attention_decode_memory", "base_efficiency"):
        assert a["calibration"][k] == b["calibration"][k], k
    assert a["efficiency"] == {**b["efficiency"], "note": a["efficiency"]["note"]}
    assert a["tflops"] == b["tflops"] and a["hbm_bandwidth_tbps"] == b["hbm_bandwidth_tbps"]
    for cls in ("gemm", "attention_prefill", "attention_decode", "ref_prefill", "ref_decode"):
        assert a["calibration"]["accuracy"][cls] == b["calibration"]["accuracy"][cls]
    assert read_csv(cpu_run.with_suffix(".csv")) == read_csv(out.with_suffix(".csv"))


def test_missing_torch_is_a_clear_error(tmp_path):
    code = ("import sys; sys.modules['torch'] = None\n"
            "from hetsim.cli import main\n"
            f"sys.exit(main(['calibrate', '--device', 'cpu', '--out', {str(tmp_path / 'c.yaml')!r}]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert "pip install torch==2.13.0" in p.stderr


# --- all-reduce (multi-GPU hosts) -------------------------------------------------------------
def allreduce_rows(n, latency, busbw, sizes=(2 ** 16, 2 ** 20, 2 ** 24, 2 ** 27)):
    return [{"op": "allreduce", "precision": "fp16", "bytes": b, "devices": n,
             "seconds": latency + 2 * (n - 1) / n * b / busbw} for b in sizes]


def test_allreduce_fit_recovers_latency_and_bus_bandwidth(tmp_path):
    rows = (synthetic_rows(lambda r: 1.0) + allreduce_rows(2, 20e-6, 180e9)
            + allreduce_rows(4, 35e-6, 210e9) + allreduce_rows(8, 50e-6, 230e9, sizes=(2 ** 20,)))
    fit = fit_profile(H100_RAW, rows)
    ar = fit.profile["calibration"]["allreduce"]
    assert set(ar) == {"2", "4"}                    # one size cannot separate the two terms
    assert ar["2"]["latency_s"] == pytest.approx(20e-6, rel=0.01)
    assert ar["2"]["bus_bandwidth_gb_s"] == pytest.approx(180, rel=0.01)
    assert ar["4"]["bus_bandwidth_gb_s"] == pytest.approx(210, rel=0.01)
    # the CSV carries the device count and round-trips
    f = tmp_path / "m.csv"
    write_csv(rows, f)
    assert fit_profile(H100_RAW, read_csv(f)).profile["calibration"]["allreduce"] == ar
    # the performance model uses the fit for the counts it covers, the link model otherwise
    pm, ds = PerfModel(fit.fitted), PerfModel(load_accelerator("h100-sxm@datasheet"))
    assert pm.allreduce_time(2 ** 22, 2) == pytest.approx(20e-6 + 2 ** 22 / 180e9, rel=1e-3)
    assert pm.allreduce_time(2 ** 22, 8) == ds.allreduce_time(2 ** 22, 8)


def test_slow_measured_allreduce_slows_tensor_parallel_iterations():
    from hetsim.perf import StepModel
    base = synthetic_rows(lambda r: 1.0)
    fast = fit_profile(H100_RAW, base + allreduce_rows(2, 10e-6, 400e9)).fitted
    slow = fit_profile(H100_RAW, base + allreduce_rows(2, 60e-6, 20e9)).fitted
    m = hetsim.load_model("llama-3.1-8b")
    t = {k: StepModel(m, PerfModel(a), 2, "bf16") for k, a in (("fast", fast), ("slow", slow))}
    assert t["slow"].prefill_time([2048]) > t["fast"].prefill_time([2048])
    assert t["slow"].decode_time(32, 32 * 1024) > t["fast"].decode_time(32, 32 * 1024)
    one = {k: StepModel(m, PerfModel(a), 1, "bf16").prefill_time([2048])
           for k, a in (("fast", fast), ("slow", slow))}
    assert one["slow"] == one["fast"]                # TP1 never all-reduces


def test_allreduce_is_measured_only_with_several_gpus():
    import torch
    from hetsim.calibrate import measure
    assert measure.allreduce(torch, "cpu", 2) == []


# --- GPU-side fitting details (synthetic, no torch) -------------------------------------------
def probe_rows(kernel_s, iteration_s, k1=51, k3=149):
    """1- and 3-layer probes on a device where every counted kernel costs ``kernel_s`` and an
    iteration ``iteration_s`` more (the probes' own work is negligible)."""
    return [{"op": op, "precision": "bf16", "batch": b, "kv_len": s, "kernels": k,
             "seconds": iteration_s + k * kernel_s}
            for op, k in (("probe", k1), ("probe_deep", k3)) for b, s in ((1, 16), (4, 64))]


def test_kernel_and_iteration_overheads_from_gemms_and_counted_probe_kernels():
    # GEMVs cost 4 us + bytes / (0.8 x 3.35 TB/s) (synthetic_rows); tiny kernels 1.5 us each;
    # the device adds 20 us per iteration; the base profile's 1.5 ms engine overhead is kept
    fit = fit_profile(H100_RAW, synthetic_rows(lambda r: 1.0) + probe_rows(1.5e-6, 20e-6))
    eff, cal = fit.fitted.efficiency, fit.fitted.calibration
    assert eff.kernel_overhead_us == pytest.approx(4.0, rel=0.02)      # a real kernel's floor
    assert eff.hbm == pytest.approx(0.8, rel=0.02)      # GEMV streaming beats the 0.7 copy
    assert cal.small_kernel_us == pytest.approx(1.5, rel=0.02)
    assert cal.engine_overhead_ms == 1.5
    assert eff.iteration_overhead_ms == pytest.approx(1.5 + 0.020, abs=2e-3)
    from hetsim.calibrate.fit import device_only, gemm_floor
    assert device_only(fit.fitted).efficiency.iteration_overhead_ms == pytest.approx(0.02, abs=2e-3)
    a, bw = gemm_floor(fit.base, synthetic_rows(lambda r: 1.0))
    assert a == pytest.approx(4e-6, rel=0.02) and bw == pytest.approx(0.8 * 3.35e12, rel=0.02)
    # without kernel counts (older CSVs) the probes' extra time is spread over the step
    # model's own kernels, as before
    legacy = [{k: v for k, v in r.items() if k != "kernels"} for r in probe_rows(1.5e-6, 20e-6)]
    old = fit_profile(H100_RAW, synthetic_rows(lambda r: 1.0) + legacy).fitted.calibration
    assert old.small_kernel_us > 3 * cal.small_kernel_us


def test_gemm_floor_refuses_a_poor_fit():
    from hetsim.calibrate.fit import gemm_floor
    rows = synthetic_rows(lambda r: 1.0)
    base = load_accelerator("h100-sxm@datasheet")
    assert gemm_floor(base, [r for r in rows if r["op"] != "gemm" or r["m"] > 16]) is None
    noisy = [dict(r, seconds=r["seconds"] * (5 if i % 2 else 0.2)) for i, r in enumerate(rows)]
    assert gemm_floor(base, noisy) is None


def test_kernels_column_is_optional_and_checked(tmp_path):
    rows = synthetic_rows(lambda r: 1.0) + probe_rows(1.5e-6, 20e-6)
    f = tmp_path / "m.csv"
    write_csv(rows, f)
    back = read_csv(f)
    assert [r.get("kernels") for r in back if r["op"].startswith("probe")] == [51, 51, 149, 149]
    assert all("kernels" not in r for r in back if r["op"] == "gemm")
    text = f.read_text().replace(",51,", ",many,", 1)
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(hetsim.ConfigError, match=r"kernels.*whole number"):
        read_csv(tmp_path / "bad.csv")


def test_timer_rotates_inputs_and_copies_only_on_gpus():
    from hetsim.calibrate import measure
    assert measure.copies("cpu", 1) == 1
    assert measure.copies("cuda", 2 ** 30) == 1
    assert measure.copies("cuda", 2 ** 20) == measure.MAX_COPIES
    assert measure.copies("cuda", 64 * 2 ** 20) == 4         # 256 MiB of operands in rotation
    calls = []
    t = measure.Timer(None, "cpu", reps=5)([lambda i=i: calls.append(i) for i in range(3)])
    assert t >= 0 and sorted(set(calls)) == [0, 1, 2] and len(calls) == 7    # 2 warm-ups + 5


def test_reference_kernel_count_sees_the_unfused_layer():
    torch = pytest.importorskip("torch")
    from hetsim.calibrate.reference import PROBE, PROBE_DEEP, Reference, count_kernels
    counts = []
    for cfg in (PROBE, PROBE_DEEP):
        net = Reference(torch, cfg, "cpu", torch.float32)
        cache, x = net.cache(1, 17), torch.randn(1, 1, cfg.hidden)
        with torch.no_grad():
            counts.append(count_kernels(torch, lambda: net.forward(x, cache, 16)))
    per_layer = (counts[1] - counts[0]) / 2
    assert per_layer == int(per_layer) and per_layer > 16    # more than a fused layer's ~16
    assert counts[0] > per_layer                              # plus the final norm and head


# --- the shipped H100 calibration -------------------------------------------------------------
def test_shipped_h100_calibration_refits_to_itself_and_beats_the_datasheet(tmp_path):
    """The committed profile is what the committed measurements and today's fitting code give
    (so a change to the fit shows up here), and it predicts its device better than the
    datasheet profile does."""
    src = load_accelerator("h100-sxm")
    assert src.calibration is not None and "H100" in src.calibration.device
    shipped = [d for d in profile_dirs() if (d / "calibrated" / "h100-sxm.yaml").exists()][0]
    yml = shipped / "calibrated" / "h100-sxm.yaml"
    out = tmp_path / "h100-sxm.yaml"
    assert calibrate_main(["--from-csv", str(yml.with_suffix(".csv")), "--accelerator", str(yml),
                           "--out", str(out), "-q"]) == 0
    a, b = read_yaml(yml), read_yaml(out)
    assert a["efficiency"] == b["efficiency"]
    assert a["calibration"] == {**b["calibration"], "measurements": "h100-sxm.csv"}
    acc = a["calibration"]["accuracy"]
    for cls in ("gemm", "attention_prefill", "attention_decode"):
        assert acc[cls]["after_median"] < acc[cls]["before_median"], cls
    assert acc["ref_prefill"]["after_median"] < 0.15 and acc["ref_decode"]["after_median"] < 0.15
