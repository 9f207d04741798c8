"""Engine speed: simulated requests per second and peak memory, on a 16-instance
heterogeneous cluster (6 H100 prefill + 10 A100 decode, Llama-3.1-8B, TP1, Poisson 60 req/s).

    python benchmarks/speed.py [--sizes 25000,100000] [--placements 1] [--readme README.md]
    python benchmarks/speed.py --memory-scale   # 1M and 2M requests: bytes per request
    python benchmarks/speed.py --memory         # the per-request constants behind api.check_memory
    python benchmarks/speed.py --features [--readme README.md]   # what each engine feature costs
    python benchmarks/speed.py --phases 200000   # where the bytes are, per phase (tracemalloc)

Each size runs in a fresh process so peak RSS is that run's own; the rate is requests over
the run's CPU seconds (``time.process_time``: other work on a shared machine does not count),
wall seconds beside it.

Profile (issue 19; ``python -m cProfile -s tottime benchmarks/speed.py --one 20000``). Before
the restructure (commit 2b2e661) 20k requests made 484,575 SimPy events: 258k decode
iterations (13 per request), 40k prefill iterations and ~9 per request for its own process
(lifecycle, prefill done, decode room, flow, join, completion). The hot spots by own time:
SimPy's ``step``/``_resume``/``schedule`` and ``Event.__init__`` (~20%), the instance loop
(``loop._run``, ``_iterate``: ~8%), the decode step (``DecodeInstance._schedule``,
``_step_time``, ``StepModel.decode_time`` and three nested calls: ~15%), the network's max-min
rates (``_rates``, ``_reschedule``: ~6%), routing's ``fits`` checks (~3%). Per request,
besides events, the run kept one ``Request`` (~0.5 KB with its slots), one finished SimPy
process and one ``RequestRecord`` to the end, a tuple per change of the prefill staging
timeline, and built a DataFrame from 100k namedtuples at the end: 3 KB a request at 100k, and
Python's cyclic GC scanned all of them (~9% of the run at 100k).

After (same profile, same 484,575 events: the model did not change): the engine holds only
requests in flight and writes records into numpy columns as they end (100k: 308 -> 196 MB
peak, the GC's share gone, records_frame 0.35 -> 0.11 s); routing asks ``fits`` once per
receiver pool (220k -> 80k calls); the decode step's linear attention form is written out
(three nested calls a step fewer). Own time now: SimPy's machinery ~20%, the decode and
prefill steps ~19%, the loop ~9%, the network ~8%, writing records ~4%; 100k requests take
~11.5 s of CPU where they took ~13. What is left is mostly one SimPy event per decode
iteration (13 per request here, ~7 us each, ~2.7 us of it SimPy's event and process
machinery); driving the instance loop by callbacks instead of a process would save part of
that, at the cost of the fault interrupts the loop's process receives. (Written then: running
several quiet iterations of one instance per event would not, since another instance's event
falls inside almost every ~14 ms decode iteration. That was wrong: only an event that
changes this instance's batch matters, not another instance's; the fifth pass below does it.)
What each change bought is in README "Measured figures" and DESIGN "Engine".

Second pass (issue 19; ``python -m cProfile -s tottime benchmarks/speed.py --one 100000``,
base 60c7c3a then this change, back to back, the VM loaded by other work, so the seconds move
by ~15% with the load; the call counts do not). Both make the same 2,379,495 SimPy events
(the model and its event order did not change); Python calls 61.4M -> 51.8M, 57.1 -> 42.7 s
under the profiler. Top 15 by own time, seconds (calls), before: SimPy ``step`` 3.01
(2,379k), ``loop._run`` 2.96 (1,447k), SimPy ``_resume`` 2.89 (2,047k), ``loop._iterate``
2.16 (1,348k), ``StepModel.decode_time`` 1.89 (1,248k), ``DecodeInstance._schedule`` 1.87
(1,248k), SimPy ``schedule`` 1.75, ``RecordWriter.write`` 1.54 (100k), SimPy ``run`` 1.52,
``DecodeInstance._after`` 1.43, ``Event.__init__`` 1.41 (1,680k), ``Network._rates`` 1.39
(200k), ``DecodeInstance._step_time`` 1.25, ``min`` 1.20 (518k: routing's and the network's
keys as lambdas), ``Simulation._disaggregated`` 1.10 (500k). After: ``step`` 2.48,
``_resume`` 2.38, ``_run`` 2.35, ``_iterate`` 1.90, ``schedule`` 1.51, ``_schedule`` 1.40,
``decode_time`` 1.27, ``run`` 1.24, ``Event.__init__`` 1.21, ``_after`` 1.20,
``_step_time`` 1.19, ``_disaggregated`` 0.89, ``heappop`` 0.86 (2,479k),
``Network._reschedule`` 0.86 (200k), ``min`` 0.77; ``write`` and ``_rates`` left the top 15.
The hot spots found (py-spy, which does not slow the calls it samples) and what was done:
the prefill step (``PrefillInstance._schedule`` -> ``StepModel.time`` -> the attention op
model and its calibration curves: ~12% of the run, though nearly every prefill iteration is
one prompt, 5,101 distinct shapes in 100k) is memoized per prompt shape; ``decode_time``
built a tuple key per step and walked three attribute chains (now a cache by batch and one
precomputed tuple); a decode instance called ``_admit`` every iteration (now only when
sequences wait); ``Enum.__hash__`` (Python code, 1.4M calls from the asserted transitions
and the records) is identity; least-loaded routing's key is an ``attrgetter``; a lone flow
(most of the network's recomputations) skips progressive filling, and the filling loop
walks lists; ``KVLink.path`` is memoized per pair; records are written a block of rows at a
time. 100k requests: 12.36 -> 9.77 s of CPU (medians of three alternating runs; README
"Measured figures"). What is left is SimPy's own machinery (``step``, ``_resume``,
``schedule``, ``run``, ``Event.__init__``: ~20% under the profiler, ~0.5 us an event) and
the one event per decode iteration it serves; the loop's call of ``_iterate`` stays (a
test observes every decode iteration there).

Memory, third pass (issue 19: 10M requests in 2 GB; ``python benchmarks/speed.py --phases
200000``: tracemalloc, which counts numpy's buffers, bytes a request held at the end of each
phase and the phase's peak). Before (48e7472): drawing holds 24 (arrival float64, token
counts int64; peak 53 while drawing); the simulation ends holding 227, peak 228: the record
columns 125 (twelve float64 97, four int32 token counts 16, three int32 codes 12, the state
byte), the prefill staging timeline twice, 65 (the live arrays, grown by appends, and the
snapshot's copy), the drawn arrays 24; the summary peaks at 274 (the slim pandas frame, ~90,
over the 183 left once the live timeline goes); ``--out`` peaks at 732 (the whole requests
frame: pandas' block manager 136, concatenation 48, expression temporaries 48; matplotlib's
paths for 200k-point CDFs 64; the kv_staging frame). After: the simulation ends holding 129,
peak 144: the record columns 67 (on this cluster 8 of the 19 fields are stored: a column
whose rows all wrote one value, or the value of another column set at the same instant,
stays that until a row differs, ``engine.records.SAME``; instance codes are one byte), the
staging timeline 25 (12 B a change, its snapshot shares the arrays, copy on write), the drawn
arrays 24; the summary adds only its scratch, peak 148 (``hetsim.summary``: one float64
column, one latency's completed values, one-byte masks); ``--out`` streams the frames 64k
rows at a time and draws CDFs through at most 100k points, so what it adds (~45 MB here:
imports, one chunk's frame, the plot) does not grow with the run.

Fourth pass (issue 19: SimPy's machinery; DESIGN "The event loop, written out"). Most events
are instance iterations (1.35M of 2.38M at 100k), each one SimPy ``step`` call and a process
resume. ``engine.environment.Environment.run()`` processes the events inline (``step``'s code,
without the call): records bit-identical. Measured against 46e7e04 on a 2-core VM that other
work loaded heavily (load average 3-5), so CPU seconds moved by ~30% from run to run and say
little; instruction counts do not move with the load (valgrind callgrind, ``--one 2000`` and
``--one 5000``, the difference per request): 753k instructions a request before, 745k with the
event loop (-1.1%). Python calls at 20k (cProfile): 11.52M -> 11.04M (``step``'s 484,575).
Tried and not kept: the instance loop driven by its events' callbacks instead of a process,
737k (-2.1% in all): the rest of SimPy's share in the profile (``schedule``, ``Timeout``,
the heap) is the work an event must do, not overhead around it.

Fifth pass (issue 19: decode spans; DESIGN "Decode spans"). A reserving decode instance runs
its iterations from one batch change to the next as one event (at most 16), its counters
applied when read. Instruction counts (valgrind callgrind, ``--one 2000`` and ``--one 6000``,
the difference per request; each tree on its own ``PYTHONPATH``): 744k a request before
(4461488), 629k with spans (b645ef2), 611k once the span's ends are accumulated and a
settle bisects (-18% in all; 614k with at most 32 iterations a span, where a cut wastes
more worked-out times). 20k requests (cProfile): SimPy events 484,574 -> 229,473, process
resumes 418k -> 202k, decode step times 258k worked out one call each -> 357k in 38.7k batched
calls (a cut, ~1 a request as a sequence joins, drops the 140k past it), the loop's
``_run`` 298k -> 82k. CPU seconds for 100k requests on this session's 2-core VM (its
host not quiet: the same run moved 16.0-21.3 s within an hour): 19.7 before, 16.0-16.7
after. What is left is spread thin: the request's own process (lifecycle, handoff, network
flow: ~10 resumes a request), the prefill iterations (2 events a request), routing's and the
network's ``min`` keys, writing records.

On-demand decode spans too (its sequences' growth worked out ahead, applied as each step
begins). Instructions a request (``--feature``): on-demand KV with preemption 956k without
spans, 963k with the growth worked out on a copy of the heap every span, 825k once a bound
(every heap entry growing every grain x block tokens) skips that where the free blocks cover
it (-14%); vLLM's decode 1,060k, 1,148k, 1,025k (-3%: its step times are measured-table
lookups, most of an iteration's cost with or without an event). At most 4 iterations a span
instead of 16 put vLLM at 1,040k: the step times a cut throws away cost less than the
events a shorter span adds.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

SCENARIO = {
    "name": "speed",
    "model": "llama-3.1-8b",
    "workload": {"seed": 1, "arrival": {"process": "poisson", "rate_rps": 60.0},
                 "input_tokens": {"dist": "lognormal", "mean": 1024, "sigma": 0.8, "max": 8192},
                 "output_tokens": {"dist": "lognormal", "mean": 200, "sigma": 0.9,
                                   "max": 2048}},
    "slo": {"ttft_s": 1.0, "tpot_s": 0.05},
    "placements": {"hetero-16": {
        "router": "least-loaded",
        "pools": {"prefill": {"role": "prefill", "accelerator": "h100-sxm", "instances": 6},
                  "decode": {"role": "decode", "accelerator": "a100-sxm", "instances": 10}},
        "kv_link": "ib-hdr-200g"}},
}


def _pools(**extra) -> dict:
    """The benchmark's placement with ``extra`` keys set on both of its pools."""
    (pl,) = SCENARIO["placements"].values()
    return {**pl, "pools": {k: {**v, **extra} for k, v in pl["pools"].items()}}


def _decode(**extra) -> dict:
    (pl,) = SCENARIO["placements"].values()
    return {**pl, "pools": {**pl["pools"], "decode": {**pl["pools"]["decode"], **extra}}}


# The same scenario with one engine feature on (issue 19: "say what each feature costs").
# NOTE: the feature settings are benchmark choices, not measured facts: vLLM's scheduler and
# overheads on both pools; decode KV taken on demand with recompute preemption, its KV memory
# cut to 0.24 of the GPU so that some preemptions happen (0.22 overloads it); layer-wise KV streaming; a random crash
# per decode instance every 30 simulated minutes on average (5 minutes to repair).
FEATURES = {
    "none": {},
    "runtime: vllm": {"placements": {"p0": _pools(runtime="vllm")}},
    "on-demand KV, preemption": {"placements": {"p0": _decode(
        preemption="recompute", memory_utilization=0.24)}},
    "layer-wise transfer": {"placements": {"p0": {
        **{k: v for k, v in _pools().items() if k != "kv_link"},
        "kv_transfer": {"link": "ib-hdr-200g", "mode": "layerwise"}}}},
    "faults (random crashes)": {"faults": [{"pool": "decode", "kind": "crash",
                                            "mtbf_s": 1800, "mttr_s": 300}]},
}


def _scenario(n: int, placements: int = 1, feature: str = "none"):
    import dataclasses
    from hetsim.config import build
    from hetsim.scenario import Scenario
    (pl,) = SCENARIO["placements"].values()
    raw = {**SCENARIO, "placements": {f"p{i}": pl for i in range(placements)},
           **FEATURES[feature]}
    sc = build(Scenario, raw)
    return dataclasses.replace(sc, workload=dataclasses.replace(sc.workload, requests=n))


def one(n: int, placements: int = 1, feature: str = "none") -> dict:
    import hetsim
    sc = _scenario(n, placements, feature)
    t0, c0 = time.perf_counter(), time.process_time()
    r = hetsim.run(sc)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    s = r.summaries[0]
    return {"requests": n, "placements": placements, "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2), "requests_per_s": round(n * placements / cpu),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "completed": s["completed"], "simulated_s": round(s["duration_s"], 1),
            "preemptions": s["preemptions"]["count"],
            "faults": s.get("faults", 0), "retried": s.get("requests_retried", 0),
            "failed": s.get("requests_failed", 0)}


def phases(n: int, top: int = 5) -> None:
    """Where the bytes are, per phase of one run (``--phases N``): tracemalloc (which counts
    numpy's buffers too) after drawing the requests, simulating, summarising and writing
    ``--out``: bytes a request held at the end of the phase, its peak, and the allocation
    sites holding the most at the end."""
    import tempfile
    import tracemalloc
    from hetsim.api import PlacementRun, Result, prepare
    from hetsim.engine.sim import Simulation
    from hetsim.outputs import check_output_dir
    from hetsim.report import write_outputs
    from hetsim.summary import summarize_records
    sc = _scenario(n)
    tracemalloc.start()

    def phase(name: str) -> None:
        now, peak = tracemalloc.get_traced_memory()
        print(f"{name}: {now / n:.0f} B a request at the end, peak {peak / n:.0f}")
        for st in tracemalloc.take_snapshot().statistics("lineno")[:top]:
            f = st.traceback[0]
            print(f"  {st.size / n:6.1f}  {f.filename.split('site-packages/')[-1]}:{f.lineno}")
        tracemalloc.reset_peak()
    model, (pl,), reqs = (lambda m, p, r: (m, list(p.values()), r))(*prepare(sc))
    phase("draw")
    res = Simulation(pl, model, reqs, seed=sc.workload.seed).run()
    phase("simulate")
    print(f"  (record columns stored: {res.requests.nbytes() / n:.0f} B a request)")
    s = summarize_records(res.requests, pl, sc.slo, res)
    phase("summary")
    r = Result(sc, [s], [PlacementRun(pl.name, pl, res)])
    with tempfile.TemporaryDirectory() as d:
        write_outputs(r, check_output_dir(f"{d}/out"))
        phase("output (--out)")


MARK = ("<!-- speed -->", "<!-- /speed -->")
FEATURE_MARK = ("<!-- speed-features -->", "<!-- /speed-features -->")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="25000,100000")
    ap.add_argument("--placements", type=int, default=1)
    ap.add_argument("--memory", action="store_true",
                    help="fit peak RSS = base + n x (a + b x placements) and compare with the "
                    "constants api.check_memory uses")
    ap.add_argument("--memory-scale", action="store_true",
                    help="1M and 2M requests, each in a fresh process: peak bytes per request "
                    "and the rate at scale")
    ap.add_argument("--features", action="store_true",
                    help="100k requests with each engine feature on in turn: what each costs")
    ap.add_argument("--readme", type=Path, help=f"write the table into this file's {MARK[0]} "
                    "region")
    ap.add_argument("--phases", type=int, metavar="N",
                    help="N requests under tracemalloc: bytes a request per phase, and where")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--feature", default="none", choices=FEATURES, help=argparse.SUPPRESS)
    a = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from kernel_accuracy import emit    # benchmarks/ is the script's folder
    if a.one:
        print(json.dumps(one(a.one, a.placements, a.feature)))
        return
    if a.memory:
        return memory()
    if a.phases:
        return phases(a.phases)
    if a.features:
        return emit(features(), a.readme, FEATURE_MARK)
    sizes = (1_000_000, 2_000_000) if a.memory_scale else map(int, a.sizes.split(","))
    rows = [measure(n, a.placements) for n in sizes]
    lines = ["| requests | CPU (s) | wall (s) | simulated req/s (CPU) | peak RSS (MB) |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['requests']:,} | {r['cpu_s']} | {r['wall_s']} | {r['requests_per_s']:,} "
              f"| {r['peak_rss_mb']} |" for r in rows]
    if len(rows) > 1:
        lo, hi = rows[0], rows[-1]
        per = (hi["peak_rss_mb"] - lo["peak_rss_mb"]) * 2 ** 20 / (hi["requests"] - lo["requests"])
        lines.append(f"\nPeak memory grows {per:.0f} B per request ({lo['requests']:,} to "
                     f"{hi['requests']:,}); the rate at {hi['requests']:,} is "
                     f"{hi['requests_per_s'] / lo['requests_per_s']:.0%} of the rate at "
                     f"{lo['requests']:,}.")
    emit("\n".join(lines), a.readme, MARK)


def features(n: int = 100_000) -> str:
    """The table of what each feature costs: each run in a fresh process."""
    rows = {f: measure(n, 1, f) for f in FEATURES}
    base = rows["none"]
    lines = [f"| {n:,} requests with | CPU (s) | simulated req/s (CPU) | vs none | "
             "peak RSS (MB) | preemptions | faults | requests retried | failed |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {f} | {r['cpu_s']} | {r['requests_per_s']:,} | "
              f"{r['cpu_s'] / base['cpu_s'] - 1:+.0%} | {r['peak_rss_mb']} | "
              f"{r['preemptions']:,} | {r['faults']} | {r['retried']:,} | {r['failed']:,} |"
              for f, r in rows.items()]
    return "\n".join(lines)


def measure(n: int, placements: int, feature: str = "none") -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", str(n), "--placements",
                          str(placements), "--feature", feature],
                         capture_output=True, text=True, check=True).stdout
    row = json.loads(out)
    print(json.dumps(row), flush=True)
    return row


def memory() -> None:
    """Peak RSS at two sizes and two placement counts -> bytes per request and per record
    (sizes where the fixed part no longer blurs the slope)."""
    import numpy as np
    from hetsim.api import _BYTES_PER_REQUEST, _BYTES_PER_REQUEST_PLACEMENT
    runs = [measure(n, p) for n in (200_000, 400_000) for p in (1, 3)]
    a = np.array([[1, r["requests"], r["requests"] * r["placements"]] for r in runs], float)
    y = np.array([r["peak_rss_mb"] * 2 ** 20 for r in runs], float)
    base, per_req, per_rec = np.linalg.lstsq(a, y, rcond=None)[0]
    print(f"fitted: {base / 1e6:.0f} MB + n x ({per_req:.0f} B + {per_rec:.0f} B x placements)"
          f"; api.check_memory assumes n x ({_BYTES_PER_REQUEST} B + "
          f"{_BYTES_PER_REQUEST_PLACEMENT} B x placements)")


if __name__ == "__main__":
    main()
