"""Digests of every shipped scenario's per-request records, for tests/test_records_exact.py.

The committed digests were made by the engine before issue 19's restructure (2b2e661; the
slow-decode scenario's at the commit before issue 19's merge: one Request object and one frozen
record per request, all kept to the end), so the test checks
that the column-writing engine gives the same records bit for bit. Regenerate only when a
change is meant to move records: ``python -m tests.regen_records``.
"""
import hashlib
import json
from pathlib import Path

import numpy as np

import hetsim

from .conftest import SCENARIOS, with_requests

RECORDS = Path(__file__).parent / "golden" / "records.json"
#: requests per scenario (its own count where smaller): a few thousand at most
N = 2000


def digest(df) -> str:
    """SHA-256 over every column's name, dtype and values (floats by their bits)."""
    h = hashlib.sha256()
    for name, col in df.items():
        h.update(f"{name}:{col.dtype}\0".encode())
        if col.dtype.kind in "biuf":
            h.update(np.ascontiguousarray(col.to_numpy()).tobytes())
        else:   # strings (pandas' str dtype, or object)
            h.update("\0".join(map(str, col)).encode())
    return h.hexdigest()


def records(path: Path) -> dict:
    """{placement: [requests, digest of its records frame]} for one scenario."""
    sc = hetsim.load_scenario(path)
    sc = with_requests(sc, min(N, sc.workload.requests or N))
    df = hetsim.run(sc).requests
    return {p: [len(g), digest(g.reset_index(drop=True))] for p, g in df.groupby("placement",
                                                                                   sort=False)}


def scenarios() -> list[Path]:
    return sorted(SCENARIOS.rglob("*.yaml"))


if __name__ == "__main__":
    out = {str(p.relative_to(SCENARIOS)): records(p) for p in scenarios()}
    RECORDS.write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", RECORDS)
