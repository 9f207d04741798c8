"""The steps of a stepwise KV transfer: codec costs, descriptor counts, batching, records.

A transfer is stepwise when its placement's ``kv_transfer`` sets ``encoding``, ``batching`` or
``descriptor_us`` (:class:`~hetsim.resolve.TransferSteps`). Its steps, in order::

    encode (sender device) -> [wait in a batch window] -> setup -> post descriptors
      -> stream: serialize (sender host) | wire (NICs, cross-site) | deserialize (receiver host)
      -> decode (receiver device)

The stream's three steps pipeline (one flow over all their ports, max-min fair); each is
charged the time it bounded the flow (``Network`` tracking), so the steps of one request sum to
its transfer time (end - start). ``KVLink`` (``transfer``) runs the steps; this module holds
what they cost and how batches form. Nothing here reads the scenario.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import simpy

from ..perf import PerfModel
from ..precision import PRECISION_BYTES

__all__ = ["STEPS", "TransferRecord", "Codec", "StreamCost", "Batcher", "make_codec",
           "descriptors_per_rank"]

#: The breakdown's steps, in the order a transfer meets them.
STEPS = ("setup", "descriptors", "encode", "batch_wait", "serialize", "wire", "deserialize",
         "decode")


class TransferRecord(NamedTuple):
    """One request's stepwise transfer (times in seconds; the shared steps of a batch, setup
    to deserialize, are its batch's)."""
    id: int
    batch: int                # index of the stream that carried it
    kv_bytes: float           # KV bytes in the format on the wire, before encoding
    wire_bytes: float         # after encoding
    descriptors: int          # over all ranks
    setup_s: float
    descriptors_s: float
    encode_s: float
    batch_wait_s: float
    serialize_s: float
    wire_s: float
    deserialize_s: float
    decode_s: float


class Codec(NamedTuple):
    """A sender/receiver pair's codec: wire bytes per KV byte, and the device seconds to
    encode (on the sender) and decode (on the receiver) a request's KV bytes."""
    ratio: float
    encode_s: Callable[[float], float]
    decode_s: Callable[[float], float]


class StreamCost(NamedTuple):
    """What one stream (a lone transfer or a batch) cost: sent at ``sent_s``, then setup and
    descriptor posting, then {step: seconds} of the stream itself."""
    index: int
    sent_s: float
    setup_s: float
    descriptors_s: float
    steps: dict


def _free(_: float) -> float:
    return 0.0


def _rate(bytes_per_s: float | None, pm: PerfModel, ratio: float, tp: int,
          layers: int) -> Callable[[float], float]:
    """Seconds to code ``n`` KV bytes on a TP group: each rank codes its shard, at the stated
    throughput, else as a memory-bound pass (read the KV, write ratio x as much, one kernel
    per layer: the KV-conversion model)."""
    if bytes_per_s is not None:
        return lambda n: n / (tp * bytes_per_s)
    return lambda n: pm.kv_convert_time(n / tp, n / tp * ratio, layers)


def make_codec(steps, src, dst, wire_fmt: str, layers: int) -> Codec:
    """The codec of transfers from pool ``src`` to ``dst`` whose KV travels as ``wire_fmt``."""
    if steps.codec == "none":
        return Codec(1.0, _free, _free)
    ratio = steps.ratio
    if ratio is None:   # a named codec: the element-size ratio (resolution checked it shrinks)
        ratio = PRECISION_BYTES[steps.codec] / PRECISION_BYTES[wire_fmt]
    enc = _rate(steps.encode_bytes_per_s, PerfModel(src.accelerator), ratio, src.spec.attn_tp,
                layers)
    # decoding reads the codes and writes the KV back: the same pass the other way round
    dec = _rate(steps.decode_bytes_per_s, PerfModel(dst.accelerator), ratio, dst.spec.attn_tp,
                layers)
    return Codec(ratio, enc, dec)


def descriptors_per_rank(model, tokens: int, block_size: int) -> int:
    """Descriptors one rank posts for a ``tokens``-token prompt: one per KV block per layer,
    K and V apart (one latent for MLA), as vLLM's NIXL and Mooncake connectors post them
    (ai-dynamo/nixl#1514: Llama-70B TP8, 118 blocks -> 80 layers x 2 x 118 = 18,880 per rank).
    Windowed layers hold only the window's blocks."""
    parts = 1 if model.mla else 2
    blocks = math.ceil(tokens / block_size) * model.full_attention_layers
    w = model.sliding_window
    if w:
        blocks += math.ceil(min(tokens, w.size) / block_size) * w.layers
    return parts * blocks


class _Batch:
    __slots__ = ("p", "d", "bytes", "descriptors", "done", "sent", "members", "proc", "flow")

    def __init__(self, p, d, done: simpy.Event):
        self.p, self.d, self.done = p, d, done
        self.bytes = 0.0
        self.descriptors = 0     # per rank, summed over the members
        self.sent = False
        self.members = 0         # transfers waiting for it (faults: they may leave)
        self.proc = None         # its stream's process, once sent
        self.flow = None         # its bytes in flight (set by the stream)


class Batcher:
    """Open batches per (prefill instance, decode instance). A batch opens with its first
    transfer and is sent when its window ends or when its wire bytes reach the cap; a
    transfer that would push it past the cap sends it first and opens the next. So no
    transfer waits longer than the window. ``ship(batch)`` starts the batch's stream and
    returns its process (its value: the :class:`StreamCost`)."""

    def __init__(self, env: simpy.Environment, window_s: float, cap_bytes: float, ship):
        self.env, self.window, self.cap, self.ship = env, window_s, cap_bytes, ship
        self._open: dict[tuple[str, str], _Batch] = {}

    def join(self, p, d, nbytes: float, descriptors: int) -> _Batch:
        """Add a transfer; its batch's ``done`` fires with the StreamCost when the stream
        ends."""
        key = (p.name, d.name)
        b = self._open.get(key)
        if b is not None and b.bytes + nbytes > self.cap:
            self._send(key, b)
            b = None
        if b is None:
            b = self._open[key] = _Batch(p, d, self.env.event())
            self.env.timeout(self.window).callbacks.append(lambda _: self._send(key, b))
        b.bytes += nbytes
        b.descriptors += descriptors
        b.members += 1
        if b.bytes >= self.cap:
            self._send(key, b)
        return b

    def leave(self, b: _Batch, nbytes: float, descriptors: int, sent) -> float:
        """A member's transfer stops (a fault): out of a batch not yet sent, or, the last to
        leave one in flight, its stream stops. Returns the member's bytes already sent
        (``sent(flow)``: the fraction of the batch's flow that has crossed)."""
        b.members -= 1
        if not b.sent:
            b.bytes -= nbytes
            b.descriptors -= descriptors
            if not b.members:       # nothing left to send: dropped (the timer finds it sent)
                b.sent = True
                del self._open[(b.p.name, b.d.name)]
            return 0.0
        crossed = nbytes * sent(b.flow) if b.flow is not None else 0.0
        if not b.members and b.proc.is_alive:
            b.proc.interrupt()
        return crossed

    def _send(self, key, b: _Batch) -> None:
        if b.sent:          # already sent by its cap; the window's timer finds it gone
            return
        b.sent = True
        del self._open[key]
        b.proc = self.ship(b)
        b.proc.callbacks.append(lambda ev: b.done.succeed(ev.value))
