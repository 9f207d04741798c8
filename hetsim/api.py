"""``hetsim.run``: a scenario in, a result with ``.summary`` and ``.requests`` DataFrames out."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from .engine.sim import Simulation
from .engine.stats import SimResult
from .errors import ConfigError, match_name
from .metrics import fault_windows, records_frame
from .resolve import load_scenario, resolve_scenario
from .scenario import Scenario, as_scenario, parse_scenario
from .summary import latencies, summarize_records, timeline_frame
from .workload import generate

__all__ = ["Result", "PlacementRun", "run", "prepare", "memory_estimate", "plain", "run_summaries"]


@dataclass(frozen=True)
class PlacementRun:
    """What one placement's run keeps for the per-request tables: the engine's result (records
    as columns and the staging timeline, ~90-150 B a request) and what the frames need to be
    built from it."""
    name: str
    placement: object      # ResolvedPlacement
    sim: SimResult
    warmup: object = None  # Warmup | None

    def requests(self, rows: slice = slice(None)) -> pd.DataFrame:
        """The per-request frame (of the ids in ``rows``)."""
        return records_frame(self.sim.requests, self.name, self.warmup, rows)

    def request_chunks(self, size: int):
        """:meth:`requests` as consecutive frames of at most ``size`` rows (never the whole
        frame at once: what ``--out`` streams to its files)."""
        n = len(self.sim.requests)
        return (self.requests(slice(a, min(a + size, n))) for a in range(0, n, size))

    def staging(self) -> pd.DataFrame:
        return staging_frame(self.sim, self.placement, self.name)

    def staging_chunks(self, size: int):
        """:meth:`staging` as consecutive frames of at most ``size`` rows."""
        return staging_frames(self.sim, self.placement, self.name, size)

    def latencies(self, field: str):
        """``ttft_s`` or ``tpot_s`` of the measured requests that have one, by id."""
        return latencies(self.sim.requests, field, self.warmup)

    def timeline(self, slo, bin_s: float) -> pd.DataFrame:
        """``metrics.timeline`` of this placement's requests, from the columns."""
        return timeline_frame(self.sim.requests, self.name, slo, bin_s)


@dataclass
class Result:
    """A run's summaries, and its per-request tables built from the record columns on first
    access (issue 19: a run that needs only summaries never builds a DataFrame per request,
    nor does ``--out``, which streams them in chunks; the frames are ~450 B a request, the
    columns ~90-150 B)."""
    scenario: Scenario
    summaries: list[dict]
    runs: list[PlacementRun]
    clipped: int = 0         # requests clipped to the model context (clip_to_context: true)
    #: per placement with stepwise KV transfers (kv_transfer encoding, batching or
    #: descriptor_us): one TransferRecord per transfer, each step's seconds
    transfers: dict = field(default_factory=dict)
    #: placements with faults: when something was down, [(start, end)] (timeline.png)
    fault_windows: dict = field(default_factory=dict)

    @cached_property
    def requests(self) -> pd.DataFrame:
        """One row per (placement, request), placements in run order."""
        return pd.concat([r.requests() for r in self.runs], ignore_index=True)

    @cached_property
    def staging(self) -> pd.DataFrame:
        """Prefill-held KV over time (rows only for disaggregated placements)."""
        return pd.concat([r.staging() for r in self.runs], ignore_index=True)

    def request_chunks(self, size: int):
        """The rows of :attr:`requests`, in order, as frames of at most ``size`` rows
        (built from the columns one at a time; the whole frame is never built)."""
        for r in self.runs:
            yield from r.request_chunks(size)

    def staging_chunks(self, size: int):
        """The rows of :attr:`staging`, in order, as frames of at most ``size`` rows."""
        for r in self.runs:
            yield from r.staging_chunks(size)

    def timeline(self, bin_s: float) -> pd.DataFrame:
        """``metrics.timeline(self.requests, slo, bin_s)``, from the columns."""
        return pd.concat([r.timeline(self.scenario.slo, bin_s) for r in self.runs],
                         ignore_index=True)

    @property
    def request_count(self) -> int:
        """Rows of ``requests``, without building it."""
        return sum(len(r.sim.requests) for r in self.runs)

    @property
    def summary(self) -> pd.DataFrame:
        """One row per placement; nested metrics flattened as ``ttft_s.p99``."""
        return pd.json_normalize(self.summaries).set_index("name")

    def to_json(self) -> dict:
        return {"scenario": self.scenario.name, "clipped_requests": self.clipped,
                "placements": self.summaries}


# Peak memory of a run (issue 19, third pass; `python benchmarks/speed.py --phases 200000`
# and --memory-scale, 2026-12-02). Per request the drawn arrays (24 B). Per request and
# placement what the engine keeps until the run returns: the record columns (~67 B on the
# speed benchmark, where 8 of 19 fields carry information; at most ~125 B, every field
# stored), the prefill staging timeline (~25 B), and while a summary is made its scratch
# (~20 B); with allocator slack, 200 B covers the worst case. NOTE: `hetsim run --out` no
# longer builds the per-request frames (it streams them in chunks), so the estimate no longer
# carries them (700 B before); a caller reading Result.requests builds ~300 B a request more.
_BYTES_PER_REQUEST = 24
_BYTES_PER_REQUEST_PLACEMENT = 200
# A placement with stepwise KV transfers (kv_transfer encoding, batching or descriptor_us) also
# keeps one TransferRecord per transfer (a 13-field namedtuple of Python numbers, ~450 B with
# its floats) in its log and in Result.transfers: measured 600 B a request more than the plain
# placement (kv-serialization.yaml 25g-int4-batch, 40k -> 160k requests, 2026-12-02: 1,325 B
# against 717 B for quickstart's disaggregated placement).
_BYTES_PER_TRANSFER_RECORD = 600


def memory_estimate(requests: int, placements: int, stepwise: int = 0) -> float:
    """Peak bytes a run of ``requests`` over ``placements`` needs, roughly (``stepwise`` of
    them log every transfer's steps)."""
    return requests * (_BYTES_PER_REQUEST + _BYTES_PER_REQUEST_PLACEMENT * placements
                       + _BYTES_PER_TRANSFER_RECORD * stepwise)


def _available_memory() -> float | None:
    """Bytes this process may still use: the host's available memory, or less when a cgroup
    (a container's limit) allows less; None where neither can be read."""
    have = []
    try:
        with open("/proc/meminfo") as fh:
            have += [float(line.split()[1]) * 1024 for line in fh
                     if line.startswith("MemAvailable:")]
    except OSError:
        pass
    for limit, used in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                        ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                         "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            cap, cur = (Path(f).read_text().strip() for f in (limit, used))
            if cap.isdigit() and cur.isdigit():
                have.append(float(cap) - float(cur))
            break
        except OSError:
            continue
    return min(have) if have else None


def check_memory(requests: int, placements: int, path: str = "workload.requests",
                 stepwise: int = 0) -> None:
    """Refuse, before drawing anything, a run whose memory would not fit this machine."""
    need, have = memory_estimate(requests, placements, stepwise), _available_memory()
    if have is not None and need > have:
        raise ConfigError(f"{requests:,} requests x {placements} placements need about "
                          f"{need / 1e9:.1f} GB of memory, more than the {have / 1e9:.1f} GB "
                          f"available; run fewer requests or placements", path=path)


def prepare(sc: Scenario, placements: list[str] | None = None):
    """Resolve a scenario and draw its requests, with every check ``run`` makes before it
    simulates: (model, {name: ResolvedPlacement} of the placements to run, Requests)."""
    model, resolved = resolve_scenario(sc)
    names = [match_name(n, resolved, "placement", file=sc.source_file)
             for n in placements or list(resolved)]
    try:
        stepwise = sum(t is not None and t.steps is not None
                       for t in (resolved[n].transfer for n in names))
        if sc.workload.requests:
            check_memory(sc.workload.requests, len(names), stepwise=stepwise)
        reqs = generate(sc.workload, sc.base_dir, max_context=model.max_context, model=model.name)
        check_memory(len(reqs), len(names), stepwise=stepwise)
    except ConfigError as e:
        raise e.with_file(sc.source_file) from None
    return model, {n: resolved[n] for n in names}, reqs


def run(scenario: "Scenario | str | Path | dict", placements: list[str] | None = None,
        progress=None, *, overrides: dict | None = None) -> Result:
    """Simulate every placement (or those named) on the identical request stream.

    ``scenario``: a file path, a mapping as a scenario file parses, or a Scenario;
    ``overrides``: {key path: value} set on it first (``{"workload.arrival.rate_rps": 12}``).
    ``progress(placement, done, total)`` is called as requests finish (for progress bars).
    """
    sc = load_scenario(scenario, overrides) if overrides else as_scenario(scenario)
    model, resolved, reqs = prepare(sc, placements)
    summaries, runs, transfers, windows = [], [], {}, {}
    for name, pl in resolved.items():
        cb = (lambda n, _name=name: progress(_name, n, len(reqs))) if progress else None
        res = Simulation(pl, model, reqs, seed=sc.workload.seed, progress=cb).run()
        run = PlacementRun(name, pl, res, sc.workload.warmup)
        # NOTE: the summary reads the record columns (no per-request frame); the frame is
        # built only if Result.requests is read
        summaries.append(summarize_records(res.requests, pl, sc.slo, res, sc.workload.warmup))
        runs.append(run)
        if res.transfers is not None:
            transfers[name] = res.transfers
        if res.faults is not None:
            windows[name] = fault_windows(res)
    return Result(sc, summaries, runs, reqs.clipped, transfers, windows)


_STAGING_COLUMNS = ["placement", "instance", "t_s", "held_blocks", "held_tokens"]


def staging_frame(res: SimResult, pl, name: str) -> pd.DataFrame:
    """Blocks and tokens of finished-prompt KV each prefill instance holds, at every change."""
    parts = list(staging_frames(res, pl, name))
    return (pd.concat(parts, ignore_index=True) if parts
            else pd.DataFrame(columns=_STAGING_COLUMNS))


def staging_frames(res: SimResult, pl, name: str, size: int | None = None):
    """:func:`staging_frame`'s rows, per prefill instance, at most ``size`` rows a frame."""
    for pname, insts in res.instances.items():
        pool = pl.pools[pname]
        if pool.spec.role != "prefill":
            continue
        for inst in insts:
            t, held = inst.timeline.arrays()
            step = size or max(len(t), 1)
            for a in range(0, max(len(t), 1), step):    # (an empty timeline: one empty frame)
                h = held[a:a + step]
                yield pd.DataFrame({"placement": name, "instance": inst.name,
                                    "t_s": t[a:a + step], "held_blocks": h,
                                    "held_tokens": h * pool.spec.block_size})


def plain(sc: Scenario) -> tuple[str, str | None]:
    """A scenario as a task carries it to another process: its JSON text and the absolute
    path its relative files resolve against."""
    return (json.dumps(sc.to_dict(), sort_keys=True),
            str(Path(sc.source_file).resolve()) if sc.source_file else None)


def run_summaries(text: str, source: str | None) -> list[dict]:
    """``run(...).summaries`` of a scenario as :func:`plain` carries it (an executor's task)."""
    return run(parse_scenario(json.loads(text), source)).summaries
