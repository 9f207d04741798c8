"""What a finished run hands to metrics: frozen snapshots, built once at the end.

Metrics read these and the per-request records only, never a live instance or port.
"""
from __future__ import annotations

from dataclasses import dataclass

from .network import PortStats
from .request import RequestRecord

__all__ = ["KVStats", "InstanceStats", "FaultStats", "SimResult"]


@dataclass(frozen=True)
class KVStats:
    """An instance's KV block pool at the end of a run."""
    capacity: int
    used: int
    peak: int
    mean_occupancy: float    # mean used fraction over the run


@dataclass(frozen=True)
class InstanceStats:
    """One instance over a run. Fields a kind does not have stay at their zero."""
    name: str
    pool: str
    role: str
    busy_s: float            # iteration time (model, device work, fetches, swaps)
    iterations: int
    work_s: float            # queued device work (conversion, staging copies)
    decode_tokens: int       # decode tokens produced
    decode_token_s: float    # sum over decode steps of step time x batch
    kv: KVStats
    running: int = 0         # decode: sequences still running at the end
    # prefill: finished prompts' KV still owned here (waiting for, or in, transfer)
    held_peak: int = 0
    held_mean: float = 0.0   # mean blocks held
    timeline: tuple[tuple[float, int], ...] = ()   # (time, held blocks) at each change
    # on-demand decode: preemption
    preemptions: int = 0
    swapped_bytes: float = 0.0
    recomputed_tokens: int = 0
    preemption_s: float = 0.0   # device time spent swapping and recomputing


@dataclass(frozen=True)
class FaultStats:
    """What faults did over a run (hetsim.engine.faults)."""
    applied: int                   # fault events that took an instance down
    retried: int                   # requests a fault moved at least once
    transfers_retried: int         # KV handoffs sent again to another decode instance
    recomputed_tokens: int         # tokens whose KV was lost and is computed again
    lost_prefill_tokens: int       # prompt tokens of prefills cut off by a crash
    kv_bytes_lost: float
    outages: dict[str, tuple[tuple[float, float], ...]]   # instance -> (down, back up)
    pools: dict[str, str]          # instance -> its pool
    link_faults: tuple[tuple[str, float, float], ...] = ()   # (link group, start, end)


@dataclass(frozen=True)
class SimResult:
    """One placement's run: the records (by request id), each pool's instances, the ports."""
    requests: tuple[RequestRecord, ...]
    instances: dict[str, tuple[InstanceStats, ...]]   # pool name -> its instances
    ports: tuple[PortStats, ...]
    end_s: float                   # the last token
    conversion_bytes: float = 0.0  # KV bytes read and written by format conversion
    faults: FaultStats | None = None   # None: the placement has no faults
