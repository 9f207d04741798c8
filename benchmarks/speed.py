"""Engine speed: simulated requests per wall-second and peak memory, 100k requests on a
16-instance heterogeneous cluster (6 H100 prefill + 10 A100 decode, Llama-3.1-8B, TP1).

    python benchmarks/speed.py [--sizes 25000,50000,100000] [--placements 1]
    python benchmarks/speed.py --memory     # the per-request constants behind api.check_memory

Each size runs in a fresh process so peak RSS is that run's own. ``--placements N`` runs N
copies of the placement side by side (one after the other, as ``hetsim run`` does).
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


def one(n: int, placements: int = 1) -> dict:
    import dataclasses
    import hetsim
    from hetsim.config import build
    from hetsim.scenario import Scenario
    (pl,) = SCENARIO["placements"].values()
    sc = build(Scenario, {**SCENARIO, "placements": {f"p{i}": pl for i in range(placements)}})
    sc = dataclasses.replace(sc, workload=dataclasses.replace(sc.workload, requests=n))
    t0 = time.perf_counter()
    r = hetsim.run(sc)
    wall = time.perf_counter() - t0
    s = r.summaries[0]
    return {"requests": n, "placements": placements, "wall_s": round(wall, 2),
            "requests_per_s": round(n * placements / wall),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "completed": s["completed"], "simulated_s": round(s["duration_s"], 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="25000,50000,100000")
    ap.add_argument("--placements", type=int, default=1)
    ap.add_argument("--memory", action="store_true",
                    help="fit peak RSS = base + n x (a + b x placements) and compare with the "
                    "constants api.check_memory uses")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.placements)))
        return
    if a.memory:
        return memory()
    rows = [measure(n, a.placements) for n in map(int, a.sizes.split(","))]
    print("\n| requests | wall (s) | simulated req/s | peak RSS (MB) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['requests']:,} | {r['wall_s']} | {r['requests_per_s']:,} | {r['peak_rss_mb']} |")


def measure(n: int, placements: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", str(n), "--placements",
                          str(placements)], capture_output=True, text=True, check=True).stdout
    row = json.loads(out)
    print(json.dumps(row), flush=True)
    return row


def memory() -> None:
    """Peak RSS at two sizes and two placement counts -> bytes per request and per record."""
    import numpy as np
    from hetsim.api import _BYTES_PER_REQUEST, _BYTES_PER_REQUEST_PLACEMENT
    runs = [measure(n, p) for n in (20000, 60000) for p in (1, 3)]
    a = np.array([[1, r["requests"], r["requests"] * r["placements"]] for r in runs], float)
    y = np.array([r["peak_rss_mb"] * 2 ** 20 for r in runs], float)
    base, per_req, per_rec = np.linalg.lstsq(a, y, rcond=None)[0]
    print(f"fitted: {base / 1e6:.0f} MB + n x ({per_req:.0f} B + {per_rec:.0f} B x placements)"
          f"; api.check_memory assumes n x ({_BYTES_PER_REQUEST} B + "
          f"{_BYTES_PER_REQUEST_PLACEMENT} B x placements)")


if __name__ == "__main__":
    main()
