"""Calibration without torch: fits that respect physics, CSV round trips and errors, the gates,
the command line on measurements read from a CSV, and the package boundary (the simulator never
imports torch; calibration never imports SimPy).

Nothing here needs torch (the timer's tests are in test_calibrate_timing.py, the ones that time
this CPU with torch in test_calibrate_torch.py): ``test_torch_free_tests_collect_with_torch_blocked``
keeps it so.
"""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import hetsim
from hetsim.calibrate import fit_profile, read_csv, write_csv
from hetsim.calibrate.__main__ import main as calibrate_main
from hetsim.calibrate.curves import predict
from hetsim.config import read_yaml
from hetsim.hardware import Accelerator, _index, load_accelerator, profile_dirs
from hetsim.perf import PerfModel

from .conftest import SCENARIOS

H100_RAW = read_yaml(_index("accelerator", profile_dirs(), calibrated=False)["h100-sxm"])
ROOT = Path(__file__).resolve().parent.parent


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
    ("op,precision,m,n,k,seconds\ngemm,bf17,1,2,3,0.1\n",
     "csv:2: precision: unknown precision 'bf17' (did you mean 'bf16'?)"),
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
            "from hetsim.calibrate.__main__ import main\n"
            f"sys.exit(main(['--from-csv', {str(f)!r}, '--accelerator', 'h100-sxm', "
            f"'--out', {str(tmp_path / 'o.yaml')!r}, '-q']))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "o.yaml").exists()


TORCH_FREE = ("tests/test_calibrate.py", "tests/test_calibrate_timing.py")


def test_torch_free_tests_collect_with_torch_blocked():
    """With torch unimportable, the torch-free calibration tests are all collected and none is
    skipped (a module-level torch import or skip would hide every test in its file)."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "import pytest\n"
            f"sys.exit(pytest.main(['--collect-only', '-o', 'addopts=', '-q', "
            f"'-p', 'no:cacheprovider', *{TORCH_FREE!r}]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stdout + p.stderr
    ids = [line for line in p.stdout.splitlines() if "::" in line]
    summary = p.stdout.strip().splitlines()[-1]      # "52 tests collected in 1.2s"
    assert "collected" in summary and "skipped" not in summary, summary
    for f in TORCH_FREE:
        assert sum(i.startswith(f + "::") for i in ids) >= 5, (f, p.stdout)
    assert len(ids) >= 50


@pytest.mark.parametrize("module", ["csvio", "curves", "fit", "profile", "gates", "grid", "host",
                                    "timer", "measure", "reference", "cli", "__main__"])
def test_calibration_modules_import_with_torch_blocked(module):
    code = ("import sys; sys.modules['torch'] = None\n"
            f"import hetsim.calibrate.{module}")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr


# --- the gates: refuse noisy timings and fits worse than their base (synthetic) ----------------
def worse_on_held_out(rows):
    """``rows`` with every shape the fit trains on 2x slower than measured, and the held-out
    shapes as measured: a fit that generalises, from timings that do not."""
    from hetsim.calibrate.csvio import CLASSES
    from hetsim.calibrate.curves import held_out
    return [dict(r, seconds=r["seconds"] * 2) if r["op"] in CLASSES and not held else r
            for r, held in zip(rows, held_out(rows))]


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
