"""Sweep throughput per executor: the same sweep on one process, on local workers, on a local
Ray instance, and again from the cache; every table checked byte-identical to the first.

    python benchmarks/sweep_speed.py                    # print the table
    python benchmarks/sweep_speed.py --readme README.md # and rewrite README's sweep_speed region

The sweep: the quick-start scenario's heterogeneous placement (H100 prefill, A100 decode),
decode instances 1-3 x arrival rate 4-16 req/s x 2 seeds = 24 simulations of 1,000 requests.
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:       # this checkout's hetsim, not whichever one is installed
    sys.path.insert(0, str(ROOT))

import hetsim  # noqa: E402
from hetsim.executors import LocalExecutor, cpu_count  # noqa: E402

MARK = ("<!-- sweep_speed -->", "<!-- /sweep_speed -->")
SPEC = {"scenario": str(ROOT / "scenarios" / "quickstart.yaml"),
        "grid": {"placements.hetero-h100p-a100d.pools.decode.instances": [1, 2, 3],
                 "workload.arrival.rate_rps": [4, 8, 12, 16]},
        "seeds": [1, 2], "placements": ["hetero-h100p-a100d"], "requests": 1000}


def _parquet(res) -> bytes:
    buf = io.BytesIO()
    res.table.to_parquet(buf, index=False)
    return buf.getvalue()


def measure(jobs: int, ray: bool) -> list[tuple[str, int, float, bool]]:
    """(executor, workers, wall s, identical to the first) per configuration."""
    rows, first = [], None

    def timed(label, workers, **kw):
        nonlocal first
        t0 = time.perf_counter()
        res = hetsim.sweep(SPEC, **kw)
        wall = time.perf_counter() - t0
        data = _parquet(res)
        first = first or data
        rows.append((label, workers, wall, data == first))
        print(f"{label}: {wall:.2f} s", file=sys.stderr)
    timed("local, this process", 1, cache=False, executor=LocalExecutor(1))
    with LocalExecutor(jobs) as ex:
        timed(f"local, {jobs} processes", jobs, cache=False, executor=ex)
    if ray:
        import ray as ray_mod
        from hetsim.executors import RayExecutor
        t0 = time.perf_counter()
        ray_mod.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False)
        start = time.perf_counter() - t0
        try:
            with RayExecutor() as ex:
                timed(f"ray, local instance ({start:.1f} s to start, not counted)", jobs,
                      cache=False, executor=ex)
        finally:
            ray_mod.shutdown()
    with tempfile.TemporaryDirectory() as cache:
        hetsim.sweep(SPEC, cache=cache)
        timed("cache, every point stored", 1, cache=cache)
    return rows


def block(rows, jobs: int) -> str:
    base = rows[0][2]
    tasks = 3 * 4 * 2
    lines = ["| executor | workers | wall (s) | simulations/s | speed-up | same table |",
             "|---|---|---|---|---|---|"]
    for label, workers, wall, same in rows:
        lines.append(f"| {label} | {workers} | {wall:.2f} | {tasks / wall:.1f} | "
                     f"{base / wall:.2f}x | {'yes' if same else 'NO'} |")
    lines.append("")
    lines.append(f"({time.strftime('%Y-%m-%d')}, `python benchmarks/sweep_speed.py --jobs "
                 f"{jobs}` on {cpu_count()} CPUs, Python {sys.version.split()[0]}; 24 "
                 "simulations of 1,000 requests: the quick-start heterogeneous placement, "
                 "decode instances 1-3 x rate 4-16 req/s x 2 seeds.)")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=min(2, cpu_count()) or 1)
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray instance")
    ap.add_argument("--readme", type=Path, help="rewrite this README's sweep_speed region")
    args = ap.parse_args(argv)
    ray = not args.no_ray
    if ray:
        import importlib.util
        if importlib.util.find_spec("ray") is None:
            print("ray is not installed (pip install 'hetsim[ray]'): skipping it",
                  file=sys.stderr)
            ray = False
    out = block(measure(args.jobs, ray), args.jobs)
    from kernel_accuracy import emit    # benchmarks/ is the script's folder
    emit(out, args.readme, MARK)
    return 0


if __name__ == "__main__":
    sys.exit(main())
