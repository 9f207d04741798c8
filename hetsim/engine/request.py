"""A request's explicit lifecycle. Transitions are asserted; records are produced once at the end."""
from __future__ import annotations

import enum
import math

__all__ = ["State", "Request", "RECORD_COLUMNS"]


class State(enum.Enum):
    CREATED = "created"
    QUEUED = "queued"              # waiting for a prefill (or mixed) instance
    PREFILLING = "prefilling"
    WAIT_KV = "wait_kv"            # prefill done, waiting for decode-side KV blocks
    TRANSFERRING = "transferring"
    DECODING = "decoding"          # admitted to a decode batch (or in a mixed batch)
    COMPLETED = "completed"
    DROPPED = "dropped"


_NEXT = {
    State.CREATED: {State.QUEUED, State.DROPPED},
    State.QUEUED: {State.PREFILLING, State.DROPPED},
    State.PREFILLING: {State.WAIT_KV, State.DECODING, State.COMPLETED},
    State.WAIT_KV: {State.TRANSFERRING},
    State.TRANSFERRING: {State.DECODING},
    State.DECODING: {State.COMPLETED},
    State.COMPLETED: set(),
    State.DROPPED: set(),
}

RECORD_COLUMNS = ("id", "state", "drop_reason", "arrival_s", "input_tokens", "output_tokens",
                  "prefill_start_s", "prefill_end_s", "transfer_start_s", "transfer_end_s",
                  "decode_start_s", "first_token_s", "last_token_s", "prefill_instance",
                  "decode_instance", "kv_bytes", "kv_reserved_s", "kv_ready_s", "conversion_s",
                  "cached_tokens", "preemptions")


class Request:
    __slots__ = ("id", "state", "drop_reason", "arrival_s", "input_tokens", "output_tokens",
                 "prefill_start_s", "prefill_end_s", "transfer_start_s", "transfer_end_s",
                 "decode_start_s", "first_token_s", "last_token_s", "prefill_instance",
                 "decode_instance", "kv_bytes", "kv_reserved_s", "kv_ready_s", "conversion_s",
                 "cached_tokens", "preemptions", "done", "kv_blocks", "done_step", "started",
                 "prefill_end_expected", "kv_granted", "gen", "ctx0", "step0", "remaining",
                 "swapped")

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
        self.kv_reserved_s = self.kv_ready_s = nan   # decode room granted; KV usable on decode
        self.conversion_s = 0.0   # KV format conversion time spent on this request
        self.cached_tokens = 0    # prompt tokens served from a prefix cache
        self.preemptions = 0
        self.started = None       # event: the prefill iteration holding it has begun
        self.prefill_end_expected = nan
        self.kv_granted = None    # event: decode-side room (KV blocks or staging) granted
        self.gen = 0              # on-demand decode: invalidates stale heap entries
        self.ctx0 = self.step0 = self.remaining = self.swapped = 0
        self.done = None       # SimPy event of the stage in progress
        self.kv_blocks = 0     # blocks reserved on the instance holding its KV
        self.done_step = 0     # decode step at which the last token is produced

    def to(self, state: State) -> None:
        assert state in _NEXT[self.state], f"request {self.id}: {self.state} -> {state}"
        self.state = state

    def drop(self, reason: str) -> None:
        self.to(State.DROPPED)
        self.drop_reason = reason

    def record(self) -> tuple:
        return (self.id, self.state.value, self.drop_reason, self.arrival_s, self.input_tokens,
                self.output_tokens, self.prefill_start_s, self.prefill_end_s,
                self.transfer_start_s, self.transfer_end_s, self.decode_start_s,
                self.first_token_s, self.last_token_s, self.prefill_instance,
                self.decode_instance, self.kv_bytes, self.kv_reserved_s, self.kv_ready_s,
                self.conversion_s, self.cached_tokens, self.preemptions)
