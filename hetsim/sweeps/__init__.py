"""Design-space sweeps: a scenario, key paths to vary, seeds; one tidy table out.

A sweep file names a base scenario and the values to try::

    scenario: ../scenarios/quickstart.yaml
    grid:                                  # cartesian product, the last path varying fastest
      placements.hetero-h100p-a100d.pools.decode.instances: [1, 2, 3]
      workload.arrival.rate_rps: [4, 8]
    zip: {}                                # paths varied together (equal-length lists)
    seeds: [1, 2, 3]
    measure: run                           # or goodput

Every point (grid x zip) is checked before anything runs: a path the schema does not have, an
empty list or a value that fails validation at some point is one error naming the point.
Each (point, seed) is one task, a pure function of the point's scenario, so the table is
identical on every executor, in any order. Finished tasks are kept in a cache keyed by the hash
of the point's scenario and of everything it reads (hetsim's code and data, profile folders,
workload files), so an interrupted sweep resumes where it stopped and a repeated one is free.

``table``: one row per (point, seed, placement), a column per swept path and per metric.
``summary``: one row per (point, placement), each metric's mean over seeds and a 95% Student-t
interval (``m.ci95_lo``, ``m.ci95_hi``).
"""
from .cache import default_cache_dir
from .run import SweepResult, sweep
from .spec import SweepSpec, expand, load_sweep
from .table import summarize, write_sweep

__all__ = ["SweepSpec", "SweepResult", "sweep", "load_sweep", "write_sweep", "expand",
           "summarize", "default_cache_dir"]
