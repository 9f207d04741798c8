"""What a finished run hands to metrics: frozen snapshots, built once at the end.

Metrics read these and the per-request records only, never a live instance or port.
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass, field, replace

import numpy as np

from .kvsteps import TransferRecord
from .network import PortStats
from .records import Records

__all__ = ["Timeline", "KVStats", "InstanceStats", "FaultStats", "SimResult", "since", "port_since"]


class Timeline:
    """(time, held blocks) at each change, kept as two packed arrays (12 bytes a change, where
    a tuple each took ~100); iterates as (float, int) pairs and compares equal to their
    sequence.

    NOTE: held blocks are stored as C ints (32-bit: a prefill instance's KV holds far fewer
    than 2^31 blocks, asserted by ``array`` on append) and read back as int64. A snapshot
    (:meth:`frozen`) shares the arrays and the live timeline copies them before its next
    change (copy on write), so the snapshot a run ends with costs no second copy."""
    __slots__ = ("_t", "_held", "_shared")

    def __init__(self, t: array | None = None, held: array | None = None):
        self._t = t if t is not None else array("d")
        self._held = held if held is not None else array("i")
        self._shared = False

    def append(self, t: float, held: int) -> None:
        if self._shared:     # a snapshot holds the arrays: it must not see this change
            self._t, self._held, self._shared = array("d", self._t), array("i", self._held), False
        self._t.append(t)
        self._held.append(held)

    def frozen(self) -> "Timeline":
        """A snapshot that no later change reaches (what a statistics snapshot keeps)."""
        self._shared = True
        return Timeline(self._t, self._held)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(times, held blocks) as numpy arrays: the times a read-only view, held blocks as
        int64 (a copy)."""
        return np.frombuffer(self._t, np.float64), np.array(self._held, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._t)

    def __iter__(self):
        return zip(self._t, self._held)

    def __eq__(self, other) -> bool:
        return tuple(self) == tuple(other)

    def __hash__(self) -> int:
        # as the tuple of pairs it equals (so InstanceStats, a frozen dataclass, stays hashable
        # as it was with a tuple timeline); a statistics snapshot's copy never changes
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"Timeline({list(self)!r})"


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
    timeline: Timeline = field(default_factory=Timeline)   # (time, held blocks) at each change
    # on-demand decode: preemption
    preemptions: int = 0
    swapped_bytes: float = 0.0
    recomputed_tokens: int = 0
    preemption_s: float = 0.0   # device time spent swapping and recomputing
    # write-through host tier (kv_offload.write_through): KV bytes written to it
    host_written_bytes: float = 0.0


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
    #: per request a fault hit: (id, retries, transfers_retried, recomputed_tokens,
    #: lost_prefill_tokens, kv_bytes_lost, kv_bytes_resent, kv_bytes_restored), by id (a
    #: warm-up's requests are left out of the summary with these)
    by_request: tuple[tuple[int, int, int, int, int, float, float, float], ...] = ()
    #: (instance, start, end) of each degrade: the instance ran slower, and stayed up
    degrades: tuple[tuple[str, float, float], ...] = ()
    #: wire bytes of KV transfers a fault cut off before they ended (each is sent again, so
    #: these crossed in vain; the records' kv_bytes are the last attempt's)
    kv_bytes_resent: float = 0.0
    #: decoding requests restored from a surviving write-through host copy, and the KV bytes
    #: read back (a restore that failed and fell back to recompute counts in neither)
    restored: int = 0
    kv_bytes_restored: float = 0.0


@dataclass(frozen=True)
class SimResult:
    """One placement's run: the records (by request id), each pool's instances, the ports."""
    requests: Records
    instances: dict[str, tuple[InstanceStats, ...]]   # pool name -> its instances
    ports: tuple[PortStats, ...]
    end_s: float                   # the last token
    conversion_bytes: float = 0.0  # KV bytes read and written by format conversion
    #: where ``instances`` and ``ports`` start counting: the first measured request's send
    #: time with a warm-up (:func:`since`), else None (the whole run)
    stats_start_s: float | None = None
    #: stepwise transfers (kv_transfer with encoding, batching or descriptor_us), in the order
    #: they ended; None when transfers are not stepwise
    transfers: tuple[TransferRecord, ...] | None = None
    faults: FaultStats | None = None   # None: the placement has no faults



_COUNTERS = ("busy_s", "iterations", "work_s", "decode_tokens", "decode_token_s", "preemptions",
             "swapped_bytes", "recomputed_tokens", "preemption_s", "host_written_bytes")


def _mean_since(at_start: float, at_end: float, t0: float, t1: float) -> float:
    """A mean over [t0, t1] from means over [0, t0] and [0, t1]; 0 over an empty span (as
    a mean over [0, 0] is)."""
    return (at_end * t1 - at_start * t0) / (t1 - t0) if t1 > t0 else 0.0


def since(start: InstanceStats, end: InstanceStats, t0: float, t1: float) -> InstanceStats:
    """``end`` (taken at ``t1``) over [t0, t1] only: counters less their value at ``t0``
    (``start``), means over the window. Peaks are the instance's own since ``t0`` (the engine
    restarts them there); ``timeline`` stays the whole run's."""
    kv = replace(end.kv, mean_occupancy=_mean_since(start.kv.mean_occupancy,
                                                    end.kv.mean_occupancy, t0, t1))
    return replace(end, kv=kv, held_mean=_mean_since(start.held_mean, end.held_mean, t0, t1),
                   **{k: getattr(end, k) - getattr(start, k) for k in _COUNTERS})


def port_since(start: PortStats, end: PortStats) -> PortStats:
    """``end`` less what crossed the port before ``start`` was taken."""
    return end._replace(bytes=end.bytes - start.bytes,
                        busy_area=end.busy_area - start.busy_area)
