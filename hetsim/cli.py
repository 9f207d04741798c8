"""``hetsim`` command line. The only layer that reads arguments and writes files or stdout."""
from __future__ import annotations

import argparse
import json
import sys
import time

from . import __version__
from .errors import ConfigError

__all__ = ["main"]


class _Progress:
    """A progress line on stderr, shown only once a run has taken more than ``after_s``."""

    def __init__(self, stream=sys.stderr, after_s: float = 2.0):
        self.stream, self.after_s = stream, after_s
        self.t0 = time.monotonic()
        self.shown = False
        self._last = 0.0

    def __call__(self, placement: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.t0 < self.after_s or (now - self._last < 0.2 and done < total):
            return
        self._last = now
        self.shown = True
        self.stream.write(f"\r{placement}: {done}/{total} requests ({done / total:.0%})   ")
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")


def _cmd_run(args) -> int:
    from .api import run
    from .report import format_table, write_outputs
    from .scenario import load_scenario
    sc = load_scenario(args.scenario)
    progress = _Progress() if not args.quiet else None
    try:
        result = run(sc, placements=args.placement or None, progress=progress)
    finally:
        if progress:
            progress.close()
    if args.out:
        write_outputs(result, args.out)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        slo = sc.slo
        print(format_table(result.summaries, title=(
            f"{sc.name}: {len(result.requests) // max(1, len(result.summaries))} requests, "
            f"SLO TTFT<={slo.ttft_s}s TPOT<={slo.tpot_s}s at {slo.attainment:.0%}")))
        if args.out:
            print(f"wrote {args.out}/ (summary.json, requests.csv, scenario.resolved.yaml, plots)")
    return 0


def _cmd_validate(args) -> int:
    from .scenario import load_scenario
    for f in args.scenario:
        sc = load_scenario(f)
        print(f"{f}: ok ({len(sc.placements)} placements, {sc.workload.requests} requests)")
    return 0


def _cmd_profiles(args) -> int:
    from .hardware import list_profiles, load_accelerator, load_interconnect
    from .models import list_models, load_model
    if args.action == "list":
        for kind in ("accelerator", "interconnect"):
            print(f"{kind}s: " + ", ".join(list_profiles(kind)))
        print("models: " + ", ".join(list_models()))
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hetsim", description=(
        "Simulate heterogeneous prefill/decode LLM inference clusters."))
    p.add_argument("--version", action="version", version=f"hetsim {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="simulate every placement of a scenario side by side")
    r.add_argument("scenario", help="scenario YAML file")
    r.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    r.add_argument("--out", metavar="DIR", help="write summary.json, requests.csv, the resolved "
                   "scenario and PNG plots to DIR")
    r.add_argument("--placement", action="append", metavar="NAME",
                   help="run only this placement (repeatable)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    r.set_defaults(func=_cmd_run)
    v = sub.add_parser("validate", help="check scenario files without running them")
    v.add_argument("scenario", nargs="+")
    v.set_defaults(func=_cmd_validate)
    pr = sub.add_parser("profiles", help="list or show hardware profiles and models")
    pr.add_argument("action", choices=["list", "show"])
    pr.add_argument("name", nargs="?", help="profile or model name (for show)")
    pr.set_defaults(func=_cmd_profiles)
    from .calibrate.cli import build_parser as calibrate_parser
    calibrate_parser(sub.add_parser("calibrate", help="fit a profile to torch measurements on "
                                    "this device (needs torch) or to a CSV"))
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "action", None) == "show" and not args.name:
        parser.error("profiles show needs a NAME")
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"hetsim: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
