"""Engine speed: simulated requests per wall-second and peak memory, 100k requests on a
16-instance heterogeneous cluster (6 H100 prefill + 10 A100 decode, Llama-3.1-8B, TP1).

    python benchmarks/speed.py [--requests 100000] [--sizes 25000,50000,100000]

Each size runs in a fresh process so peak RSS is that run's own.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

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


def one(n: int) -> dict:
    import dataclasses
    import hetsim
    from hetsim.config import build
    from hetsim.scenario import Scenario
    sc = build(Scenario, SCENARIO)
    sc = dataclasses.replace(sc, workload=dataclasses.replace(sc.workload, requests=n))
    t0 = time.perf_counter()
    r = hetsim.run(sc)
    wall = time.perf_counter() - t0
    s = r.summaries[0]
    return {"requests": n, "wall_s": round(wall, 2), "requests_per_s": round(n / wall),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "completed": s["completed"], "simulated_s": round(s["duration_s"], 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="25000,50000,100000")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one)))
        return
    rows = []
    for n in map(int, a.sizes.split(",")):
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True,
                             text=True, check=True).stdout
        rows.append(json.loads(out))
        print(json.dumps(rows[-1]), flush=True)
    print("\n| requests | wall (s) | simulated req/s | peak RSS (MB) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['requests']:,} | {r['wall_s']} | {r['requests_per_s']:,} | {r['peak_rss_mb']} |")


if __name__ == "__main__":
    main()
