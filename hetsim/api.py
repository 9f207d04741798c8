"""``hetsim.run``: a scenario in, a result with ``.summary`` and ``.requests`` DataFrames out."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .engine.sim import Simulation
from .errors import ConfigError, suggest
from .metrics import records_frame, summarize
from .scenario import Scenario, load_scenario, resolve_scenario
from .workload import generate

__all__ = ["Result", "run"]


@dataclass
class Result:
    scenario: Scenario
    summaries: list[dict]
    requests: pd.DataFrame   # one row per (placement, request)
    staging: pd.DataFrame | None = None   # prefill-held KV over time (disaggregated only)

    @property
    def summary(self) -> pd.DataFrame:
        """One row per placement; nested metrics flattened as ``ttft_s.p99``."""
        return pd.json_normalize(self.summaries).set_index("name")

    def to_json(self) -> dict:
        return {"scenario": self.scenario.name, "placements": self.summaries}


def run(scenario: "Scenario | str | Path", placements: list[str] | None = None,
        progress=None) -> Result:
    """Simulate every placement (or those named) on the identical request stream.

    ``progress(placement, done, total)`` is called as requests finish (for progress bars).
    """
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    model, resolved = resolve_scenario(sc)
    reqs = generate(sc.workload, sc.base_dir, max_context=model.max_context)
    names = placements or list(resolved)
    for name in names:
        if name not in resolved:
            raise ConfigError(f"unknown placement {name!r}" + suggest(name, resolved)
                              + f"; one of {', '.join(resolved)}", file=sc.source_file)
    summaries, frames, staging = [], [], []
    for name in names:
        pl = resolved[name]
        cb = (lambda n, _name=name: progress(_name, n, len(reqs))) if progress else None
        res = Simulation(pl, model, reqs, seed=sc.workload.seed, progress=cb).run()
        df = records_frame(res.requests, name)
        summaries.append(summarize(df, pl, sc.slo, res))
        frames.append(df)
        staging.append(staging_frame(res, pl, name))
    return Result(sc, summaries, pd.concat(frames, ignore_index=True),
                  pd.concat(staging, ignore_index=True))


def staging_frame(res, pl, name: str) -> pd.DataFrame:
    """Blocks and tokens of finished-prompt KV each prefill instance holds, at every change."""
    rows = []
    for pname, insts in res.instances.items():
        pool = pl.pools[pname]
        if pool.spec.role != "prefill":
            continue
        for inst in insts:
            rows += [(name, inst.name, t, b, b * pool.spec.block_size) for t, b in inst.timeline]
    return pd.DataFrame(rows, columns=["placement", "instance", "t_s", "held_blocks",
                                       "held_tokens"])
