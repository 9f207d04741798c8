"""A request's explicit lifecycle and its record.

``RequestRecord`` is the one field list of the per-request table: the engine's live
``Request`` takes its record slots from it, and each finished request yields one frozen record.
Transitions between states are asserted.
"""
from __future__ import annotations

import enum
import math
from operator import attrgetter
from typing import NamedTuple

__all__ = ["State", "TERMINAL", "Request", "RequestRecord", "RECORD_COLUMNS"]


class State(enum.Enum):
    CREATED = "created"
    QUEUED = "queued"              # waiting for a prefill (or mixed) instance
    PREFILLING = "prefilling"
    WAIT_KV = "wait_kv"            # prefill done, waiting for decode-side KV blocks
    TRANSFERRING = "transferring"
    DECODING = "decoding"          # admitted to a decode batch (or in a mixed batch)
    COMPLETED = "completed"
    DROPPED = "dropped"
    FAILED = "failed"              # a fault hit it past the retry limit or its timeout

    # NOTE: hashed by identity, in C (Enum's own __hash__ is Python code hashing the name, and
    # every transition's check hashes two states: ~1.4M calls at 100k requests). A member is
    # equal only to itself, so the hash agrees with ==; no result depends on a set's order.
    __hash__ = object.__hash__


#: the states a request ends in; every request reaches exactly one (asserted per run)
TERMINAL = frozenset({State.COMPLETED, State.DROPPED, State.FAILED})


_NEXT = {
    State.CREATED: {State.QUEUED, State.DROPPED},
    State.QUEUED: {State.PREFILLING, State.DROPPED},
    State.PREFILLING: {State.WAIT_KV, State.DECODING, State.COMPLETED},
    State.WAIT_KV: {State.TRANSFERRING},
    State.TRANSFERRING: {State.DECODING},
    State.DECODING: {State.COMPLETED},
    State.COMPLETED: set(),
    State.DROPPED: set(),
    State.FAILED: set(),
}
# A fault may strike a request anywhere before it ends: it fails, or it starts again from
# routing (CREATED) or, with its prompt's KV still on the prefill side, from the handoff.
for _s in set(_NEXT) - TERMINAL:
    _NEXT[_s] |= {State.FAILED, State.CREATED, State.WAIT_KV} - {_s}


class RequestRecord(NamedTuple):
    """One finished (completed or dropped) request; times in seconds, NaN where a stage never
    ran. ``id`` and ``state`` come first (``Request.record`` relies on it)."""
    id: int
    state: str                 # a State value
    drop_reason: str           # why it was dropped or failed
    arrival_s: float
    input_tokens: int
    output_tokens: int
    prefill_start_s: float
    prefill_end_s: float
    transfer_start_s: float
    transfer_end_s: float
    decode_start_s: float
    first_token_s: float
    last_token_s: float
    prefill_instance: str
    decode_instance: str
    kv_bytes: float            # bytes that crossed the KV link
    kv_reserved_s: float       # decode-side room granted
    kv_ready_s: float          # KV usable on decode
    conversion_s: float        # KV format conversion time spent on this request
    cached_tokens: int         # prompt tokens served from a prefix cache
    preemptions: int


RECORD_COLUMNS: tuple[str, ...] = RequestRecord._fields
_REST = attrgetter(*RECORD_COLUMNS[2:])

# Engine state that never reaches the record: the SimPy events of the stage in progress, the
# KV the request holds, and where a running sequence stands (decode instances).
_ENGINE_SLOTS = (
    "done",                  # event of the stage in progress
    "started",               # layer-wise: the prefill iteration holding it has begun
    "kv_granted",            # layer-wise: decode-side room (KV blocks or staging) granted
    "prefill_end_expected",  # when the running prefill iteration ends
    "kv_blocks",             # blocks reserved on the instance holding its KV
    "done_step",             # decode step at which the last token is produced
    "gen",                   # bumped at every start/stop: invalidates stale heap entries
    "ctx0", "step0",         # context length at step ``step0`` (context grows one per step)
    "remaining",             # preempted: decode steps still to run
    "swapped",               # preempted to the host tier: blocks held there
    "eligible",              # overlap scheduling: the step count before which it cannot join
    "proc",                  # with faults: the SimPy process serving it (to interrupt)
    "xfer",                  # its KV handoff in progress (engine.transfer.Handoff), or None
    "xproc",                 # with faults, layer-wise: the process streaming its KV
    "fault",                 # with faults: its recovery record (None until a fault hits it)
    "reserve_out",           # output tokens a scheduler reserving output KV reserves: the
                             # client's max_tokens where the workload states it, else its own
)


class Request:
    __slots__ = RECORD_COLUMNS + _ENGINE_SLOTS

    def __init__(self, rid: int, arrival_s: float, input_tokens: int, output_tokens: int):
        self.id = rid
        self.state = State.CREATED
        self.drop_reason = ""
        self.arrival_s = arrival_s
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        nan = math.nan
        self.prefill_start_s = self.prefill_end_s = self.transfer_start_s = nan
        self.transfer_end_s = self.decode_start_s = self.first_token_s = self.last_token_s = nan
        self.prefill_instance = self.decode_instance = ""
        self.kv_bytes = 0.0
        self.kv_reserved_s = self.kv_ready_s = nan
        self.conversion_s = 0.0
        self.cached_tokens = 0
        self.preemptions = 0
        self.done = self.started = self.kv_granted = None
        self.prefill_end_expected = nan
        self.kv_blocks = self.done_step = self.gen = 0
        self.ctx0 = self.step0 = self.remaining = self.swapped = self.eligible = 0
        self.proc = self.fault = self.xfer = self.xproc = None
        self.reserve_out = output_tokens

    def to(self, state: State) -> None:
        assert state in _NEXT[self.state], f"request {self.id}: {self.state} -> {state}"
        self.state = state

    def drop(self, reason: str) -> None:
        self.to(State.DROPPED)
        self.drop_reason = reason

    def fail(self, reason: str) -> None:
        self.to(State.FAILED)
        self.drop_reason = reason

    def record(self) -> RequestRecord:
        return RequestRecord(self.id, self.state.value, *_REST(self))
