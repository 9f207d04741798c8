"""``hetsim calibrate``: measure, fit, check, write (its parser is filled here and run by
:mod:`hetsim.cli`; ``python -m hetsim.calibrate`` goes through ``__main__``)."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..errors import ConfigError
from ..progress import Progress
from . import gates
from .csvio import csv_text, read_csv
from .fit import device_only, model_kernels
from .profile import FitResult, base_accelerator, fit_profile
from .timer import Timer

__all__ = ["build_parser", "calibrate", "from_aiconfigurator", "measure_and_fit",
           "Outcome"]


def _base_raw(accelerator: str | None, device: str, threads: int | None) -> dict:
    """The datasheet profile to refine: a name, a .yaml path, or the host CPU."""
    from ..config import build, read_yaml
    from ..hardware import Accelerator
    if accelerator and accelerator.endswith((".yaml", ".yml")):
        raw = read_yaml(accelerator)
        try:
            build(Accelerator, raw)      # checked here, so its errors name the file
        except ConfigError as e:
            raise e.with_file(accelerator) from None
        return raw
    if accelerator:
        from ..errors import match_name
        from ..hardware import _index, profile_dirs
        index = _index("accelerator", profile_dirs(), calibrated=False)
        return read_yaml(index[match_name(accelerator, index, "accelerator",
                                          path="--accelerator")])
    if device == "cpu":
        from .host import host_profile
        return host_profile("cpu", threads)
    raise ConfigError("--accelerator NAME is required off the CPU (the datasheet profile to "
                      "calibrate, e.g. h100-sxm)", path="--accelerator")


def _torch():
    try:
        import torch
    except ImportError:
        raise ConfigError("measuring needs torch: pip install torch==2.13.0 (the CPU build), "
                          "then pip install -e '.[calibrate]'; or fit timings measured elsewhere "
                          "with --from-csv", path="calibrate") from None
    return torch


def measure_all(torch, device, base, quick, progress):
    """Every kernel of the grid, the copy, launch and probe iterations, timed together (on a
    CPU in interleaved passes over all of them: :meth:`timer.Timer.run`)."""
    from . import measure, reference
    from .grid import grid as make_grid
    g = make_grid("cpu" if device == "cpu" else "gpu", quick)
    timer = Timer(torch, device, g.reps)
    precs = measure.supported_precisions(torch, device, base.precisions)
    if not precs:
        raise ConfigError(f"none of {base.name}'s precisions ({', '.join(base.precisions)}) can "
                          f"be measured on {device}", path="--accelerator")
    main_p = "fp32" if device == "cpu" else ("bf16" if "bf16" in precs else precs[0])
    measure.warm_up(torch, device)
    jobs = (measure.memory_jobs(torch, device, g) + measure.gemm_jobs(torch, device, g, precs)
            + measure.attention_jobs(torch, device, g, precs))
    for op, cfg in (("probe", reference.PROBE), ("probe_deep", reference.PROBE_DEEP)):
        for job in reference.jobs(torch, device, cfg, main_p, (), ((1, 16), (4, 64))):
            job.row["op"] = op
            jobs.append(job)
    rows = timer.run(jobs, "timing", progress)
    rows += measure.allreduce(torch, device, g.reps, progress=progress)   # multi-GPU hosts
    return rows, g, main_p, timer


def timing_note(timer) -> str:
    if not timer.device.startswith("cuda"):
        return ("wall clock, median of repetitions interleaved across shapes, outliers "
                "rejected")
    return (f"CUDA events around back-to-back calls on rotated inputs; {timer.graphs} timings "
            f"replayed as CUDA graphs, {timer.eager} eager (not capturable)")


def measure_reference(torch, device, precision, quick, progress):
    """Reference-transformer iterations timed on ``device`` (never used in the fit)."""
    from . import reference
    cfg = reference.CPU_REF if device == "cpu" else reference.GPU_REF
    if device == "cpu":
        pre = [(1, 64), (1, 256), (4, 128), (1, 1024)] if quick else [
            (1, 32), (1, 128), (1, 512), (4, 256), (1, 1024), (2, 1024), (1, 2048)]
        dec = [(1, 128), (8, 512), (32, 256)] if quick else [
            (1, 128), (1, 2048), (8, 512), (16, 1024), (32, 256), (64, 512)]
    else:
        pre = [(1, 512), (1, 2048), (4, 1024), (1, 8192)] if quick else [
            (1, 256), (1, 1024), (1, 4096), (4, 2048), (8, 1024), (1, 16384)]
        dec = [(1, 1024), (32, 2048), (128, 1024)] if quick else [
            (1, 512), (1, 8192), (16, 2048), (64, 4096), (128, 1024), (256, 2048)]
    timer = Timer(torch, device, 5 if device == "cpu" else 10)
    return reference.measure(torch, timer, cfg, precision, pre, dec, progress)


def score_reference(fit, rows, cpu: bool) -> dict:
    """Whole reference iterations (``ref_prefill`` / ``ref_decode`` rows), measured vs
    predicted before and after calibration: median and p90 absolute percentage error."""
    from ..perf import PerfModel, StepModel
    from . import reference
    cfg = reference.CPU_REF if cpu else reference.GPU_REF
    mc = cfg.model_config()
    out = {}
    cal = fit.fitted.calibration
    # the reference's surplus kernels over a fused layer's cost what a tiny one measured, in
    # both columns (it is the reference's cost, not the model's)
    small = cal.small_kernel_us if cal and cal.small_kernel_us else \
        fit.fitted.efficiency.kernel_overhead_us
    # a bare torch iteration has no scheduler: compare without the engine's host overhead
    pms = {"before": PerfModel(device_only(fit.base), link=None),
           "after": PerfModel(device_only(fit.fitted), link=None)}
    for phase in ("ref_prefill", "ref_decode"):
        sel = [r for r in rows if r["op"] == phase]
        if not sel:
            continue
        e: dict[str, list[float]] = {"before": [], "after": []}
        for label, pm in pms.items():
            acc = pm.acc
            for r in sel:
                step = StepModel(mc, pm, 1, r["precision"])
                n = r["seq"] if phase == "ref_prefill" else r["kv_len"]
                p = (step.prefill_time([n] * r["batch"]) if phase == "ref_prefill"
                     else step.decode_time(r["batch"], r["batch"] * (n + 1)))
                if r.get("kernels"):   # the unfused reference's extra kernels, at a tiny one's cost
                    extra = r["kernels"] - model_kernels(acc, cfg, r["precision"], phase,
                                                         r["batch"], n)
                    p += max(0.0, extra) * small * 1e-6
                e[label].append(abs(p - r["seconds"]) / r["seconds"])
        out[phase] = {"n": len(sel), **{f"{lab}_{k}": float(f(e[lab]))
                                        for lab in ("before", "after")
                                        for k, f in (("median", np.median),
                                                     ("p90", lambda x: np.percentile(x, 90)))}}
    return out


def table(accuracy: dict) -> str:
    lines = ["| op class / phase | n | before: median | p90 | after: median | p90 |",
             "|---|---|---|---|---|---|"]
    for k, v in accuracy.items():
        lines.append(f"| {gates.NAMES.get(k, k)} | {v['n']:.0f} | {v['before_median']:.1%} | "
                     f"{v['before_p90']:.1%} | {v['after_median']:.1%} | {v['after_p90']:.1%} |")
    return "\n".join(lines)


def _outputs(out_arg: str) -> tuple[Path, Path]:
    """The profile and its CSV, checked before anything is measured."""
    from ..outputs import check_output_file
    out = check_output_file(out_arg, "--out")
    csv_path = out.with_suffix(".csv")
    if csv_path == out:
        raise ConfigError(f"{out}: give a .yaml file name (the raw measurements go to a .csv "
                          f"beside it)", path="--out")
    check_output_file(csv_path, "--out")
    return out, csv_path


@dataclass
class Outcome:
    """What one calibration measured and fitted, and what the gates make of it."""
    fit: FitResult
    base_raw: dict
    rows: list[dict]
    accuracy: dict                 # op class or reference phase -> errors before / after
    noise: gates.Noise | None      # spread of repeats (None: not recorded)
    busy: float | None             # others' share of the host's CPU time while timing on it
    refused: list[str]             # why it must not be written (empty: it may)


def _from_csv(args) -> tuple[list[dict], dict, dict]:
    """Rows, base profile and provenance of timings measured elsewhere."""
    rows = read_csv(args.from_csv)
    base_raw = _base_raw(args.accelerator, args.device or "cpu", args.threads)
    name = Path(args.from_csv).name
    prov = dict(grid="csv", device=f"measurements in {name}", torch_version="", driver="",
                timing="", measured=None)
    old = base_raw.get("calibration") or {}
    if old.get("measurements") == name:
        # re-fitting a calibrated profile from its own measurements keeps their provenance
        prov.update(grid=old.get("grid") or "csv", device=old.get("device") or prov["device"],
                    torch_version=old.get("torch", ""), driver=old.get("driver", ""),
                    measured=old.get("date"),
                    timing=str(old.get("notes", "")).partition("timing: ")[2])
    return rows, base_raw, prov


def measure_and_fit(args, measurements: str) -> Outcome:
    """Measure on the device (or read ``--from-csv``), fit, score the reference iterations
    with ``--check``, and apply the gates. Writes nothing; ``measurements`` is the CSV's file
    name, recorded in the profile."""
    from . import measure
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"must be a whole number >= 1, got {args.threads}", path="--threads")
    device, torch, main_p = args.device, None, None
    progress = Progress("calibrate", "jobs", delay_s=1.0, enabled=not args.quiet)
    load = measure.HostLoad()      # entered only around timings on this host
    try:
        if args.from_csv:
            rows, base_raw, prov = _from_csv(args)
            main_p = next((r["precision"] for r in rows if r["op"] == "probe"), None)
        else:
            torch = _torch()
            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            if args.threads and device == "cpu":
                torch.set_num_threads(args.threads)
            torch.manual_seed(0)
            base_raw = _base_raw(args.accelerator, device, args.threads or (
                torch.get_num_threads() if device == "cpu" else None))
            with load:
                rows, g, main_p, timer = measure_all(torch, device, base_accelerator(base_raw),
                                                     args.quick, progress)
            prov = dict(grid=g.name, device=measure.device_name(torch, device),
                        torch_version=str(torch.__version__),
                        driver=str(measure.driver_version(torch, device)),
                        timing=timing_note(timer), measured=None)
        fit = fit_profile(base_raw, rows, name=args.name or (None if args.accelerator else "cpu"),
                          measurements=measurements, **prov)
        ref_rows = [r for r in rows if r["op"].startswith("ref_")]     # from a CSV
        if args.check and not ref_rows:
            torch = torch or _torch()
            device = device or "cpu"
            with load:
                ref_rows = measure_reference(torch, device, main_p or (
                    "fp32" if device == "cpu" else "bf16"), args.quick, progress)
            rows = rows + ref_rows
    finally:
        progress.close()
    accuracy = dict(fit.accuracy)
    if ref_rows:
        accuracy.update(score_reference(fit, ref_rows, cpu=fit.base.vendor == "cpu"))
        fit.profile["calibration"]["accuracy"] = {
            k: {kk: float(f"{vv:.4g}") for kk, vv in v.items()} for k, v in accuracy.items()}
    noise = gates.noise(rows)
    # the host's load matters where kernels run on its cores (a GPU's do not)
    busy = load.share if (device or "cpu") == "cpu" else None
    return Outcome(fit, base_raw, rows, accuracy, noise, busy,
                   gates.refusals(accuracy, noise, busy))


def _aic_outputs(args) -> tuple[Path, Path]:
    """The profile and its grids, checked before anything is read; existing files are
    replaced only with --force."""
    from ..outputs import check_output_file
    out = check_output_file(args.out, "--out")
    if out.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"{out}: give a .yaml file name (the kernel grids go to a .npz "
                          f"beside it)", path="--out")
    npz = check_output_file(out.with_suffix(".npz"), "--out")
    there = [str(p) for p in (out, npz) if p.exists()]
    if there and not args.force:
        raise ConfigError(f"{' and '.join(there)} already exist{'s' if len(there) == 1 else ''}"
                          f"; choose a new name, or add --force to replace "
                          f"{'it' if len(there) == 1 else 'them'}", path="--out")
    return out, npz


def from_aiconfigurator(args) -> int:
    """``--from-aiconfigurator``: a runtime profile from aiconfigurator-core's kernel tables
    (no torch, nothing measured)."""
    from ..outputs import write_atomic, write_text_atomic
    for flag, v in (("--from-csv", args.from_csv), ("--accelerator", args.accelerator),
                    ("--device", args.device), ("--quick", args.quick),
                    ("--check", args.check), ("--name", args.name),
                    ("--threads", args.threads)):
        if v:
            raise ConfigError("does not apply to --from-aiconfigurator (its tables were "
                              "measured already)", path=flag)
    if not args.runtime:
        raise ConfigError("--from-aiconfigurator needs --runtime (vllm, sglang or trtllm)",
                          path="--runtime")
    if not 0 <= args.held_out < 1:
        raise ConfigError(f"must be in [0, 1), got {args.held_out}", path="--held-out")
    out, npz = _aic_outputs(args)                    # before anything is read
    from .aic import build, profile_text
    p = build(args.from_aiconfigurator, args.runtime, args.version, held_out=args.held_out,
              kernels_file=npz.name)
    cal = p.profile["calibration"]
    print(f"{p.profile['name']} {p.profile['runtime']}: {len(p.kernels)} kernel grids from "
          f"{cal['date']} ({cal['device']})")
    print(aic_table(cal["accuracy"], args.held_out))
    # the grids first, so the profile never names a file that is not there
    write_atomic(npz, p.kernels.save)
    write_text_atomic(out, profile_text(p))
    print(f"wrote {out} and {npz}")
    return 0


def aic_table(accuracy: dict, held_out: float) -> str:
    lines = [f"| op class ({held_out:.0%} of shapes held out) | n | grid MdAPE | p90 | "
             f"datasheet MdAPE | p90 |", "|---|---|---|---|---|---|"]
    for op, v in accuracy.items():
        cells = [f"{v[k]:.1%}" if k in v else "-" for k in
                 ("after_median", "after_p90", "before_median", "before_p90")]
        lines.append(f"| {op} | {v['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def calibrate(args) -> int:
    from ..outputs import write_text_atomic
    if args.from_aiconfigurator:
        return from_aiconfigurator(args)
    for flag, v in (("--runtime", args.runtime), ("--version", args.version)):
        if v:
            raise ConfigError("applies to --from-aiconfigurator only", path=flag)
    out, csv_path = _outputs(args.out)              # before anything is measured
    o = measure_and_fit(args, csv_path.name)
    cal = o.fit.profile["calibration"]
    print(f"{o.fit.profile['name']}: {len(o.rows)} measurements on {cal['device']}")
    print(table(o.accuracy))
    print(gates.noise_line(o.noise, o.busy))
    why = "; ".join(o.refused)
    if why and not args.force:
        raise ConfigError(f"not written: {why}; rerun on an idle machine, or --force to write "
                          f"it anyway", file=str(out))
    if why:
        print(f"hetsim: warning: {out}: written anyway (--force): {why}", file=sys.stderr)
    header = (f"# Calibrated by `hetsim calibrate` ({cal['device']}, {cal['date']}); raw "
              f"measurements: {csv_path.name}\n")
    text = header + yaml.safe_dump(o.fit.profile, sort_keys=False, width=100)
    # the CSV first, so the profile never names measurements that are not there
    if not args.from_csv or Path(args.from_csv).resolve() != csv_path.resolve():
        write_text_atomic(csv_path, csv_text(o.rows))
    write_text_atomic(out, text)
    print(f"wrote {out} and {csv_path}")
    return 0


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Fill ``hetsim calibrate``'s sub-parser (made by hetsim.cli, which owns error handling),
    or a plain parser for scripts that build arguments themselves."""
    p = p or argparse.ArgumentParser(prog="hetsim calibrate")
    p.description = ("Measure torch reference kernels on a device (or read --from-csv), fit the "
                     "performance model's efficiency curves and overheads, and write a "
                     "calibrated profile with its raw measurements beside it.")
    p.add_argument("--accelerator", metavar="NAME|FILE",
                   help="datasheet profile to refine (default on --device cpu: the host CPU)")
    p.add_argument("--device", choices=["cpu", "cuda"] + [f"cuda:{i}" for i in range(16)],
                   help="where to measure (default: cuda if available, else cpu)")
    p.add_argument("--out", required=True, metavar="FILE.yaml",
                   help="calibrated profile; raw measurements go to FILE.csv beside it")
    p.add_argument("--name", help="name of the calibrated profile (default: the base's, or cpu)")
    p.add_argument("--quick", action="store_true", help="a small shape grid (CPU: seconds)")
    p.add_argument("--check", action="store_true", help="also time the reference transformer "
                   "and report whole-iteration error before and after calibration")
    p.add_argument("--from-csv", metavar="CSV", help="fit timings measured elsewhere (columns: "
                   "op,precision,m,n,k,batch,seq,kv_len,heads,kv_heads,head_dim,bytes,seconds; "
                   "optional: devices,kernels,noise)")
    p.add_argument("--threads", type=int, help="CPU threads (default: all)")
    p.add_argument("--from-aiconfigurator", metavar="SYSTEM", help="build a runtime profile "
                   "from aiconfigurator-core's measured kernel tables (pip install "
                   "'hetsim[aic]'; no torch): SYSTEM is its name (h100_sxm) or hetsim's "
                   "(h100-sxm); the kernel grids go to FILE.npz beside --out")
    p.add_argument("--runtime", metavar="vllm|sglang|trtllm",
                   help="with --from-aiconfigurator: whose kernel tables")
    p.add_argument("--version", metavar="V", help="with --from-aiconfigurator: the runtime "
                   "version (default: the package's declared current one)")
    p.add_argument("--held-out", type=float, default=0.2, metavar="FRACTION",
                   help="with --from-aiconfigurator: shapes held out to score the fit "
                   "(default 0.2; the written grids use every shape)")
    p.add_argument("--force", action="store_true", help="write the profile even when its "
                   "timings are too noisy or it predicts held-out shapes worse than the base "
                   "profile (otherwise refused: exit 2, nothing written); with "
                   "--from-aiconfigurator: replace an existing FILE.yaml / FILE.npz")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=calibrate)
    return p

