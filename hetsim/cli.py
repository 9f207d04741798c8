"""``hetsim`` command line. The only layer that reads arguments and writes files or stdout."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__
from . import cli_args as flags
from .errors import ConfigError

__all__ = ["main", "EXIT_INTERNAL", "EXIT_PIPE"]

#: Exit code of a crash (sysexits' EX_SOFTWARE), kept apart from 1 (a failed check or plan)
#: and 2 (bad input).
EXIT_INTERNAL = 70
#: Exit code when stdout's reader went away (128 + SIGPIPE, as a shell reports it).
EXIT_PIPE = 141


def _progress(args, prefix: str = "", unit: str = "it", delay_s: float = 0.0):
    """The stderr progress of a command (nothing with ``-q``): a tqdm bar on a terminal, plain
    lines in a log."""
    from .progress import Progress
    return Progress(prefix, unit, delay_s=delay_s, enabled=not args.quiet)


def _cmd_run(args) -> int:
    from .api import run
    from .report import format_table, run_title, write_outputs
    from .outputs import check_output_dir
    from .resolve import load_scenario
    out = check_output_dir(args.out, args.force) if args.out else None
    sc = load_scenario(args.scenario, flags.overrides(args), "--set")
    with _progress(args, unit="requests", delay_s=2.0) as progress:
        result = run(sc, placements=args.placement or None, progress=progress)
    if out:
        write_outputs(result, out)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(format_table(result.summaries, title=run_title(result)))
        if args.out:
            print(f"wrote {args.out}/ (summary.json, requests.csv and .parquet, "
                  "scenario.resolved.yaml, plots)")
    return 0


def _cmd_goodput(args) -> int:
    from .api import check_memory
    from .goodput_search import goodput
    from .resolve import load_scenario
    if args.requests:
        check_memory(args.requests, 1, path="--requests")
    sc = load_scenario(args.scenario, flags.overrides(args), "--set")
    out_dir = None
    if args.out:
        from .outputs import check_output_dir
        out_dir = check_output_dir(args.out, args.force)
    with flags.executor(args) as ex, _progress(args, prefix="goodput",
                                          unit="rates simulated") as progress:
        res = goodput(sc, args.placement or None, seeds=args.seeds, requests=args.requests,
                      rel_tol=args.tolerance, progress=progress,
                      tune=dict(args.tune) if args.tune else None, executor=ex)
    out = {"scenario": sc.name, "slo": {"ttft_s": sc.slo.ttft_s, "tpot_s": sc.slo.tpot_s,
                                        "attainment": sc.slo.attainment,
                                        "percentile": sc.slo.percentile},
           "placements": [r.to_json() for r in res]}
    if out_dir:
        import dataclasses
        from .report import write_goodput
        # the scenario as searched: its request count is the one each rate ran
        searched = dataclasses.replace(sc, workload=dataclasses.replace(
            sc.workload, requests=res[0].requests))
        write_goodput(out, searched, out_dir)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    form = (f"p{sc.slo.percentile:g} TTFT<={sc.slo.ttft_s}s and TPOT<={sc.slo.tpot_s}s"
            if sc.slo.percentile else f"{sc.slo.attainment:.0%} of requests within TTFT<="
            f"{sc.slo.ttft_s}s and TPOT<={sc.slo.tpot_s}s")
    print(f"{sc.name}: max rate with {form} ({args.seeds} seeds x {res[0].requests} requests "
          f"per rate)")
    rows = [("placement", "goodput r/s", "tok/s", "r/s per accel", "r/s per $/h",
             "attainment (95% CI)", "rates tried") + (("tuned knobs",) if args.tune else ())]
    for r in out["placements"]:
        a = r["attainment_at_goodput"]
        knobs = (flags.knobs(r["knobs"]),) if args.tune else ()
        rows.append((r["name"], f"{r['max_goodput_rps']:.3g}" + ("" if r["bracketed"] else "*"),
                     f"{r['max_goodput_tokens_per_s']:.0f}", f"{r['per_accelerator_rps']:.3g}",
                     "-" if r["per_dollar_hour_rps"] is None else f"{r['per_dollar_hour_rps']:.3g}",
                     "-" if a is None else f"{a['mean']:.1%} ({a['ci95'][0]:.0%}-{a['ci95'][1]:.0%})",
                     str(len(r["curve"]))) + knobs)
    from .report import text_table
    print(text_table(rows, numeric=True))
    if any(not r["bracketed"] for r in out["placements"]):
        print("* not bracketed: the SLO held at the highest rate tried, or failed at the lowest")
    if out_dir:
        print(f"wrote {out_dir.path}/ (goodput.json, curves.csv, attainment and latency plots)")
    return 0


def _cmd_check(args) -> int:
    from .check import (baseline_json, format_results, junit_xml, load_baseline, load_checks,
                        run_check)
    from .outputs import check_output_file, write_text_atomic
    # reads and checks; nothing runs before the outputs
    checks = load_checks(args.plan, flags.overrides(args), "--set")
    baseline_path = Path(args.baseline) if args.baseline else None
    target = junit = baseline = None
    if args.update_baseline:
        target = check_output_file(baseline_path or Path(args.plan).with_suffix(".baseline.json"),
                                   "--baseline")
        if target.exists():          # only a baseline is overwritten by --update-baseline
            try:
                load_baseline(target)
            except ConfigError as e:
                raise ConfigError(f"{target} exists and is not a hetsim baseline ({e.message}); "
                                  f"--update-baseline overwrites only a baseline",
                                  path="--baseline") from None
    elif baseline_path:
        baseline = load_baseline(baseline_path)
    if args.junit:
        junit = check_output_file(args.junit, "--junit")
    inputs = {Path(args.plan).resolve(): "the checks file", **(
        {baseline_path.resolve(): "the baseline"} if baseline_path and not target else {})}
    for flag, out in (("--baseline", target), ("--junit", junit)):
        if out is not None and out.resolve() in inputs:
            raise ConfigError(f"{out} is {inputs[out.resolve()]} this check reads", path=flag)
    if target and junit and target.resolve() == junit.resolve():
        raise ConfigError("the JUnit report and the baseline would be one file", path="--junit")
    results, metrics = run_check(checks, baseline, args.tolerance)
    sc_name = checks.scenario.name
    if target:
        write_text_atomic(target, json.dumps(baseline_json(sc_name, metrics, args.tolerance),
                                             indent=2, sort_keys=True) + "\n")
        print(f"wrote {target} ({sum(len(m) for m in metrics.values())} metrics)")
    if junit:
        write_text_atomic(junit, junit_xml(results, f"hetsim.check.{sc_name}"))
    print(format_results(results, args.verbose))
    failed = [r for r in results if not r.passed]
    if failed:
        print(f"FAIL: {len(failed)} of {len(results)} checks; first: {failed[0].placement}: "
              f"{failed[0].message}")
        return 1
    print(f"PASS: {len(results)} checks")
    return 0


def _cmd_plan(args) -> int:
    import yaml
    from .outputs import check_output_dir
    from .planner import by_cost, load_plan_spec, plan
    from .plots import plan_png
    out = check_output_dir(args.out, args.force)
    spec = load_plan_spec(args.spec, flags.overrides(args), "--set")
    with flags.executor(args) as ex:     # its own errors name its flags, not the spec
        try:
            with _progress(args, prefix="plan", unit="candidates") as progress:
                res = plan(spec, progress, executor=ex)
        except ConfigError as e:
            raise e.with_file(args.spec) from None

    def fill(tmp: Path) -> None:
        (tmp / "plan.yaml").write_text(
            f"# written by `hetsim plan {args.spec}`; run it with `hetsim run`\n"
            + yaml.safe_dump(res.scenario_dict(), sort_keys=False, width=100))
        plan_png(res, tmp / "pareto.png")
    out.write("plan", fill)
    per_acc = spec.objective == "goodput-per-accelerator"
    # sites and the cross-site verdict: columns only where the spec has them (output as before)
    sites = len(spec.sites) > 1
    factor = spec.resilience and spec.resilience.cross_site_factor
    rows = [("plan", "accel", "$/h", "verified", "attainment", "goodput r/s", "r/s per accel",
             "frontier") + (("tuned knobs",) if spec.tune else ()) + (("sites",) if sites else ())
            + ((f"cross-site x{factor:g}",) if factor else ())]
    front = {id(c) for c in res.frontier}
    key = (lambda c: -c.per_accelerator_rps) if per_acc else by_cost
    for c in sorted(res.verified, key=key):
        rows.append((c.name(), str(c.accelerators), f"{c.cost:.2f}",
                     "yes" if c.verified else "no",
                     "-" if c.attainment is None else f"{c.attainment:.1%}",
                     "-" if c.goodput_rps is None else f"{c.goodput_rps:.3g}",
                     "-" if c.goodput_rps is None else f"{c.per_accelerator_rps:.3g}",
                     "*" if id(c) in front else "")
                    + ((flags.knobs(c.knobs),) if spec.tune else ())
                    + ((c.sites(),) if sites else ()) + ((_cross_site_cell(c),) if factor else ()))
    goal = ("most goodput per accelerator" if per_acc
            else f"{res.target_rps:g} req/s within SLO")
    rest = "ranked below the short list" if per_acc else "dearer than the short list"
    print(f"{spec.name}: {goal}; {res.considered} candidates considered, {res.pruned} pruned "
          f"analytically ({res.infeasible} infeasible, the rest {rest}), {res.simulated} "
          f"simulated, {res.wall_s:.1f} s")
    from .report import text_table
    print(text_table(rows))
    for c in res.verified:
        if c.reason:
            print(f"{c.name()}: {c.reason}")
    best = res.best
    if per_acc:
        print(f"best per accelerator: {best.name()} at {best.per_accelerator_rps:.3g}"
              f" req/s per accelerator" if best else "no unit met the SLO at any rate")
    else:
        print(f"cheapest: {best.name()} at ${best.cost:.2f}/h" if best else
              "no candidate met the SLO at the target rate within the inventory and budget")
    print(f"wrote {out.path}/plan.yaml and {out.path}/pareto.png")
    return 0 if best else 1


def _cross_site_cell(c) -> str:
    """A plan row's verdict with the cross-site link degraded (none run: on one site)."""
    if c.cross_site is None:
        return "one site"
    return {True: "pass", False: "FAIL", None: "-"}[c.cross_site_ok]


def _cmd_sweep(args) -> int:
    from .outputs import check_output_dir
    from .report import text_table
    from .sweeps import load_sweep, sweep, write_sweep
    for flag, needs, ok in (("--csv", "--out", not args.csv or args.out),
                            ("--force", "--out", not args.force or args.out),
                            ("--cache-dir", "the cache (drop --no-cache)",
                             not (args.cache_dir and args.no_cache))):
        if not ok:
            raise ConfigError(f"{flag} needs {needs}", path=flag)
    out = check_output_dir(args.out, args.force) if args.out else None
    spec = load_sweep(args.sweep, flags.overrides(args))
    cache = False if args.no_cache else (args.cache_dir or True)
    # the executor starts (a Ray cluster is reached) once every point has been checked
    with _progress(args, unit="simulations") as progress:
        res = sweep(spec, executor=args.executor, jobs=args.jobs, address=args.address,
                    cache=cache, progress=progress)
    if out:
        write_sweep(res, out, csv=args.csv)
    goodput = spec.measure == "goodput"
    metrics = ([("goodput r/s", "max_goodput_rps", "{:.3g}"), ("$/h", "cost_per_hour_usd",
                "{:.2f}"), ("r/s per $/h", "per_dollar_hour_rps", "{:.3g}")] if goodput else
               [("TTFT p99", "ttft_s.p99", "{:.3f}"), ("TPOT p99", "tpot_s.p99", "{:.4f}"),
                ("goodput r/s", "goodput_rps", "{:.2f}"), ("$/h", "cost_per_hour_usd", "{:.2f}"),
                ("SLO met", "meets_slo", "{:.0%}")])
    short = [p.rsplit(".", 1)[-1] for p in res.axes]
    rows = [("point", *short, "placement", *(h for h, _, _ in metrics))]
    for _, r in res.summary.iterrows():
        rows.append((str(r["point"]), *(str(r[a]) for a in res.axes), str(r["placement"]),
                     *("-" if _missing(r.get(c)) else f.format(r[c]) for _, c, f in metrics)))
    n, k = len(res.points), len(spec.seeds or [0])
    print(f"{res.scenario.name}: {n} point{'s' * (n > 1)} x {k} seed{'s' * (k > 1)}, measure "
          f"{spec.measure}; {res.computed} simulated, {res.cached} from the cache, "
          f"{res.wall_s:.1f} s" + ("; means over seeds" if k > 1 else ""))
    print(text_table(rows, numeric=True))
    if out:
        print(f"wrote {out.path}/ (results.parquet, summary.parquet, sweep.json, plots)")
    return 0


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _cmd_validate(args) -> int:
    """Every check ``run`` makes before simulating (the requests are drawn too)."""
    from .api import prepare
    from .check import load_checks
    for f in args.scenario:
        checks = load_checks(f)   # a scenario, or a checks file (expect: blocks checked too)
        sc = checks.scenario
        _, _, reqs = prepare(sc)
        clipped = f", {reqs.clipped} clipped to the context" if reqs.clipped else ""
        runs = sum(v.cannot is None for v in checks.variants)
        runs_text = f" + {runs} resilience runs" if runs else ""
        print(f"{f}: ok ({len(sc.placements) - runs} placements{runs_text}, {len(reqs)} "
              f"requests{clipped})")
    return 0


def _cmd_profiles(args) -> int:
    from .hardware import list_profiles, list_runtimes, load_accelerator, load_interconnect
    from .models import list_models, load_model
    if args.action == "show" and not args.name:
        raise ConfigError("profiles show needs a NAME (see hetsim profiles list)")
    if args.action == "list":
        for kind in ("accelerator", "interconnect"):
            print(f"{kind}s: " + ", ".join(list_profiles(kind)))
        print("models: " + ", ".join(list_models()))
        runtimes = list_runtimes()
        if runtimes:      # a pool's runtime: key picks one of these
            print("runtimes: " + "; ".join(f"{n} ({', '.join(r)})" for n, r in runtimes.items()))
        return 0
    import yaml
    from .config import to_dict
    for loader in (load_accelerator, load_interconnect, load_model):
        try:
            obj = loader(args.name)
        except ConfigError:
            continue
        print(yaml.safe_dump(to_dict(obj), sort_keys=False, width=100), end="")
        return 0
    from .errors import suggest
    names = list_profiles("accelerator") + list_profiles("interconnect") + list_models()
    raise ConfigError(f"no accelerator, interconnect or model named {args.name!r}"
                      + suggest(args.name, names))


class _Parser(argparse.ArgumentParser):
    """argparse with README's error form: one line on stderr, exit code 2."""

    def error(self, message: str):
        # NOTE: ConfigError's form escapes control characters a user typed (a newline in an
        # argument must not split the one error line)
        line = ConfigError(f"{self.prog}: {message} (see {self.prog} --help)").format()
        self.exit(2, f"hetsim: error: {line}\n")


_FORCE_HELP = ("write into a non-empty folder that holds no hetsim output, replacing only the "
               "files hetsim writes there")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hetsim", description=(
        "Simulate heterogeneous prefill/decode LLM inference clusters."))
    p.add_argument("--version", action="version", version=f"hetsim {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="simulate every placement of a scenario side by side")
    r.add_argument("scenario", help="scenario YAML file")
    r.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    r.add_argument("--out", metavar="DIR", help="write summary.json, requests.csv and "
                   "requests.parquet, the resolved scenario and PNG plots to DIR (new, empty, "
                   "or a previous hetsim output)")
    r.add_argument("--force", action="store_true", help=_FORCE_HELP)
    r.add_argument("--placement", action="append", metavar="NAME",
                   help="run only this placement (repeatable)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    flags.add_set(r)
    r.set_defaults(func=_cmd_run)
    v = sub.add_parser("validate", help="check scenario files without running them")
    v.add_argument("scenario", nargs="+")
    v.set_defaults(func=_cmd_validate)
    pr = sub.add_parser("profiles", help="list or show hardware profiles and models")
    pr.add_argument("action", choices=["list", "show"])
    pr.add_argument("name", nargs="?", help="profile or model name (for show)")
    pr.set_defaults(func=_cmd_profiles)
    g = sub.add_parser("goodput", help="highest arrival rate within SLO, per placement")
    g.add_argument("scenario")
    g.add_argument("--placement", action="append", metavar="NAME")
    g.add_argument("--seeds", type=lambda t: flags.positive_int(t, most=1000), default=3,
                   help="request streams per rate (default 3)")
    g.add_argument("--requests", type=flags.positive_int,
                   help="requests per run (default: the scenario's)")
    g.add_argument("--tolerance", type=lambda t: flags.pct(t, positive=True), default=0.02,
                   help="stop bisecting at this relative width (default 2%%)")
    g.add_argument("--tune", action="append", type=flags.tune_arg, metavar="KNOB=V1,V2,...",
                   help="search this runtime knob too (repeat): max_seqs, max_batch_tokens "
                   "(positive integers), chunked_prefill (true,false); the best combination's "
                   "goodput is reported with its knobs")
    g.add_argument("--json", action="store_true")
    g.add_argument("--out", metavar="DIR", help="write goodput.json, curves.csv and the "
                   "attainment and latency plots to DIR (new, empty, or a previous hetsim output)")
    g.add_argument("--force", action="store_true", help=_FORCE_HELP)
    g.add_argument("-q", "--quiet", action="store_true")
    flags.add_set(g)
    flags.add_executor(g)
    g.set_defaults(func=_cmd_goodput)
    pl = sub.add_parser("plan", help="cheapest clusters from an inventory that meet a target "
                        "load (analytical pruning, then simulation)")
    pl.add_argument("spec", help="plan spec YAML (model, workload, slo, inventory, ...)")
    pl.add_argument("--out", default="plan-out", metavar="DIR",
                    help="where plan.yaml and pareto.png go (default plan-out/; new, empty, or a "
                    "previous hetsim output)")
    pl.add_argument("--force", action="store_true", help=_FORCE_HELP)
    pl.add_argument("-q", "--quiet", action="store_true")
    flags.add_set(pl)
    flags.add_executor(pl)
    pl.set_defaults(func=_cmd_plan)
    sw = sub.add_parser("sweep", help="run a sweep file: a scenario over a grid of key paths "
                        "and seeds, one tidy table out")
    sw.add_argument("sweep", help="sweep YAML (scenario, grid, zip, seeds, measure)")
    sw.add_argument("--out", metavar="DIR", help="write results.parquet, summary.parquet, "
                    "sweep.json, the base scenario and plots to DIR (new, empty, or a previous "
                    "hetsim output)")
    sw.add_argument("--csv", action="store_true", help="with --out: CSV copies of the tables")
    sw.add_argument("--force", action="store_true", help=_FORCE_HELP)
    sw.add_argument("--no-cache", action="store_true", help="simulate every point again "
                    "(finished points are kept in the cache and reused otherwise)")
    sw.add_argument("--cache-dir", metavar="DIR", help="the cache folder (default: sweeps/ "
                    "under $HETSIM_CACHE_DIR, else $XDG_CACHE_HOME/hetsim or ~/.cache/hetsim)")
    sw.add_argument("-q", "--quiet", action="store_true")
    flags.add_set(sw)
    flags.add_executor(sw)
    sw.set_defaults(func=_cmd_sweep)
    c = sub.add_parser("check", help="run a checks file and check its expectations and "
                       "baseline (exit 0 pass, 1 regression, 2 bad input)")
    c.add_argument("plan", help="checks file: a scenario YAML with expect: blocks (and "
                   "resilience: {survive: 1, cross_site_factor: F})")
    c.add_argument("--baseline", metavar="JSON", help="compare every metric with this baseline")
    c.add_argument("--tolerance", type=flags.pct, default=0.05,
                   help="allowed drift from the baseline (default 5%%)")
    c.add_argument("--junit", metavar="XML", help="write a JUnit report")
    c.add_argument("--update-baseline", action="store_true",
                   help="rewrite the baseline from this run (on purpose)")
    c.add_argument("-v", "--verbose", action="store_true", help="list passing baseline metrics")
    flags.add_set(c)
    c.set_defaults(func=_cmd_check)
    from .calibrate.cli import build_parser as calibrate_parser
    calibrate_parser(sub.add_parser("calibrate", help="fit a profile to torch measurements on "
                                    "this device (needs torch) or to a CSV"))
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:      # argparse: --help, --version, or a one-line usage error
        return e.code if isinstance(e.code, int) else 2
    try:
        if hasattr(args, "executor"):
            flags.check_executor_flags(args)
        return args.func(args)
    except ConfigError as e:
        print(f"hetsim: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader of stdout left (`hetsim run s.yaml | head`): not a bug; stop quietly,
        # with the shell's status for SIGPIPE, and keep Python's exit flush off the dead pipe
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return EXIT_PIPE
    except Exception:   # a bug, not bad input: keep the traceback, never exit 1 or 2
        import traceback
        traceback.print_exc()
        print("hetsim: internal error (a bug in hetsim, not in your input; please report it "
              "with the traceback above)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
