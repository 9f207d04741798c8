"""The KV link between prefill and decode instances: ports, formats, bytes and paths.

Everything here reads the placement's :class:`~hetsim.resolve.ResolvedTransfer`; nothing reads
the scenario. ``KVLink.handoff`` is one request's move of its prompt KV, as a SimPy process.
A stepwise transfer (``ResolvedTransfer.steps``) runs as the steps of :mod:`.kvsteps`.
"""
from __future__ import annotations

from typing import NamedTuple

import simpy

from ..perf import PerfModel
from ..resolve import ResolvedPool, ResolvedTransfer, kv_mismatch, wire_pool
from .kvsteps import (Batcher, Codec, StreamCost, TransferRecord, descriptors_per_rank,
                      make_codec)
from .loop import kv_format
from .network import Network, Port
from .request import Request, State

__all__ = ["InstancePorts", "KVLink", "Handoff"]


class InstancePorts(NamedTuple):
    """An instance's ports: the NIC (every rank's NIC in parallel), the scale-up fabric, and
    for the tcp engine the host link and the host-side serialization (staged copies)."""
    nic: Port
    scale_up: Port | None = None
    host: Port | None = None
    stack: Port | None = None


class Handoff:
    """What one request's KV handoff to decode instance ``d`` holds now, so that a fault can
    stop it at once (:meth:`drop`): a push staging buffer and the KV room on ``d`` (each
    granted or queued), and its bytes: its own flow, or its share of a batch. ``wired``: the
    bytes have all crossed (a stepwise transfer then decodes them on ``d``)."""
    __slots__ = ("req", "d", "resets", "staged", "staging_ev", "room_ev", "room", "flow",
                 "batch", "share", "wired")

    def __init__(self, req: Request, d):
        self.req, self.d, self.resets = req, d, d.resets
        self.staged = 0            # staging blocks asked for (``staging_ev``: their event)
        self.staging_ev = self.room_ev = None
        self.room = 0              # KV blocks asked for on d (``room_ev``: their event)
        self.flow = self.batch = None
        self.share = (0.0, 0)      # (wire bytes, descriptors) in ``batch``
        self.wired = False

    def reserve(self) -> simpy.Event:
        """Ask ``d`` for the request's KV blocks (its load counts the request from now)."""
        self.room_ev = ev = self.d.reserve(self.req)
        self.room = self.req.kv_blocks
        return ev

    def drop(self, link: "KVLink", gone=None) -> float:
        """Stop: the bytes stop crossing, and the room held on ``d`` goes back unless ``d``
        is ``gone`` (crashing now) or a crash has emptied it since. Returns the wire bytes
        that had crossed (sent in vain)."""
        sent = 0.0
        if self.flow is not None:
            sent = link.net.cancel(self.flow)
        elif self.batch is not None:
            sent = link.batcher.leave(self.batch, *self.share, link.net.sent)
        self.flow = self.batch = None
        d = self.d
        if d is gone or d.resets != self.resets:
            return sent
        if self.staged:
            if not d.staging.cancel(self.staging_ev):     # granted
                d.staging.release(self.staged)
            self.staged = 0
        if self.room_ev is not None:
            d.cut()     # (blocks given back may grant queued reservations)
            if not d.kv.cancel(self.room_ev):
                d.kv.release(self.room)
            d.load_tokens -= self.req.input_tokens + self.req.output_tokens
            d.n_requests -= 1
            self.room_ev = None
        return sent


class _Pair(NamedTuple):
    """Per (prefill pool, decode pool): wire bytes per token, where a format mismatch
    converts (None: no conversion), its cost in seconds for n tokens, bytes per token, and
    the KV format on the wire. A token here is one of full-attention KV; a prompt's count is
    ``model.kv_tokens(n, fmt, tp)`` (the wire's format: a linear layer's state in its tokens)."""
    wire: float
    side: str | None
    convert_s: object
    convert_bytes: float
    fmt: str


class KVLink:
    def __init__(self, env: simpy.Environment, transfer: ResolvedTransfer, model):
        self.env, self.t, self.model = env, transfer, model
        self.net = Network(env)
        self._ports: list[Port] = []
        self.fabric = None
        if transfer.cross_site is not None:
            self.fabric = Port(f"cross-site:{transfer.cross_site.name}",
                               transfer.cross_site_bandwidth, "cross-site")
        self._pairs: dict = {}
        self._paths: dict = {}      # (sender, receiver) -> path(sender, receiver)
        self.conversion_bytes = 0.0
        self.steps = transfer.steps
        self.log: list[TransferRecord] = []    # stepwise transfers, in the order they ended
        self._codecs: dict = {}
        self._streams = 0
        self._threads: dict[str, simpy.Resource] = {}   # initiator -> its transfer thread
        self.batcher = None
        if self.steps is not None and self.steps.window_s is not None:
            self.batcher = Batcher(env, self.steps.window_s, self.steps.batch_cap_bytes,
                                   lambda b: env.process(self._batch_stream(b)))

    def make_ports(self, name: str, pool: ResolvedPool) -> InstancePorts:
        """The ports of instance ``name`` of ``pool``."""
        tp = pool.spec.tp
        nic = Port(f"{name}:nic", self.t.nics[pool.name].bandwidth * tp, f"{pool.name}.nic")
        su = host = stack = None
        if pool.scale_up is not None and pool.spec.scale_up_domain:
            su = Port(f"{name}:scale-up", pool.scale_up.bandwidth * tp, f"{pool.name}.scale-up")
        if self.t.engine == "tcp":
            # NOTE: a prefill instance only sends and a decode/mixed one only receives, so its
            # host-side ports are the serialize or the deserialize step
            step = "serialize" if pool.spec.role == "prefill" else "deserialize"
            host = Port(f"{name}:host", pool.host_link.bandwidth * tp, f"{pool.name}.host", step)
            stack = Port(f"{name}:tcp", self.t.tcp_stream_bytes_per_s * tp,
                         f"{pool.name}.tcp-stack", step)
        ports = InstancePorts(nic, su, host, stack)
        self._ports += [p for p in ports if p is not None]
        return ports

    @property
    def ports(self) -> list[Port]:
        """Every port: the instances' in the order they were made, then the fabric."""
        return self._ports + ([self.fabric] if self.fabric is not None else [])

    def pair(self, src: ResolvedPool, dst: ResolvedPool) -> _Pair:
        key = (src.name, dst.name)
        if key not in self._pairs:
            self._pairs[key] = self._make_pair(src, dst)
        return self._pairs[key]

    def _make_pair(self, src: ResolvedPool, dst: ResolvedPool) -> _Pair:
        m, conv = self.model, self.t.conversion
        mismatch = bool(kv_mismatch(src, dst))
        side = conv if mismatch and conv != "none" else None
        # What the receiver's ranks must get, in the format on the wire (the sequence's
        # shards: one attention data-parallel rank's group holds it, attn_tp = tp at dp 1)
        wire_fmt = dst.formats.kv if side == "prefill" else src.formats.kv
        wire = m.kv_bytes_per_token(wire_fmt, dst.spec.attn_tp) * dst.spec.attn_tp
        if side is None:
            return _Pair(wire, None, None, 0.0, wire_fmt)
        at = src if side == "prefill" else dst
        pm = PerfModel(at.accelerator)
        b_in = m.kv_bytes_per_token(src.formats.kv, at.spec.attn_tp)
        b_out = m.kv_bytes_per_token(dst.formats.kv, at.spec.attn_tp)
        conv_s = (lambda n, pm=pm, a=b_in, b=b_out, L=m.num_layers:
                  pm.kv_convert_time(n * a, n * b, L))
        return _Pair(wire, side, conv_s, (b_in + b_out) * at.spec.attn_tp, wire_fmt)

    def convert(self, req: Request, pair: _Pair, d) -> float:
        """Charge ``req``'s conversion on the pair (to decode instance ``d``); its seconds.
        Only the KV is converted: a linear layer's state keeps its own format on both sides
        (kv_tokens(0), the state's tokens, left out)."""
        fmt = kv_format(d.step)
        tokens = self.model.kv_tokens(req.input_tokens, *fmt) - self.model.kv_tokens(0, *fmt)
        req.conversion_s = pair.convert_s(tokens)
        self.conversion_bytes += pair.convert_bytes * tokens
        return req.conversion_s

    def path(self, p, d) -> tuple[tuple[Port, ...], float]:
        """Ports a transfer from instance ``p`` to ``d`` crosses, and its fixed setup time.
        NOTE: memoized per pair: both depend only on the two instances' pools and ports,
        which a run never replaces (a fault changes a port's capacity, not the port)."""
        key = (p, d)
        path = self._paths.get(key)
        if path is None:
            path = self._paths[key] = self._path(p, d)
        return path

    def _path(self, p, d) -> tuple[tuple[Port, ...], float]:
        pp, dp = p.pool, d.pool
        dom = pp.spec.scale_up_domain
        if dom and dom == dp.spec.scale_up_domain:
            link = pp.scale_up
            return (p.ports.scale_up, d.ports.scale_up), link.latency + link.per_transfer_overhead
        return self._network_path(p, d)

    def restore_path(self, c, d) -> tuple[tuple[Port, ...], float]:
        """Ports a restore from crashed instance ``c``'s write-through host tier into ``d``
        crosses, and its setup: the tier's read side (``c.host_port``, its host link), then
        the path a KV transfer between them takes over the network (the NICs; never the
        scale-up fabric, which reaches device memory only). ``d`` is ``c`` itself (repaired):
        the host link alone."""
        host = (c.host_port,), c.host_link.latency
        if d is c:
            return host
        ports, setup = self._network_path(c, d)
        return host[0] + ports, host[1] + setup

    def _network_path(self, p, d) -> tuple[tuple[Port, ...], float]:
        pp, dp = p.pool, d.pool
        pn, dn = self.t.nics[pp.name], self.t.nics[dp.name]
        ports = [p.ports.nic, d.ports.nic]
        setup = max(pn.latency, dn.latency) + max(pn.per_transfer_overhead,
                                                  dn.per_transfer_overhead)
        if self.t.engine == "tcp":
            ports += [p.ports.host, p.ports.stack, d.ports.stack, d.ports.host]
            setup += pp.host_link.latency + dp.host_link.latency
        if pp.spec.site != dp.spec.site:
            ports.append(self.fabric)
            setup += self.t.cross_site_latency_s
        return tuple(ports), setup

    def handoff(self, req: Request, p, d):
        """Move the prompt's KV from prefill instance ``p`` to ``d``; ownership is explicit:
        decode-side room first (KV blocks for pull, a staging buffer for push), then the bytes,
        then the prefill copy is released (the acknowledgement), then any conversion. What it
        holds meanwhile is ``req.xfer`` (a :class:`Handoff`)."""
        env, t = self.env, self.t
        h = req.xfer = Handoff(req, d)
        req.decode_instance = d.name
        prefill_blocks = req.kv_blocks
        pair = self.pair(p.pool, d.pool)
        staging = d.staging
        staged = 0
        if t.handoff == "push" and staging is not None:
            staged = staging.blocks(req.input_tokens)
        if staged and staged <= staging.capacity:
            h.staged, h.staging_ev = staged, staging.reserve(staged)
            yield h.staging_ev
        else:
            staged = 0
            yield h.reserve()
        req.kv_reserved_s = env.now
        if req.kv_granted is not None:     # layer-wise: the request's process is waiting on it
            req.kv_granted.succeed()
        else:
            req.to(State.TRANSFERRING)
        conv = self.convert(req, pair, d) if pair.side == "decode" else 0.0
        send = self._send if self.steps is None else self._send_steps
        # NOTE: a windowed layer sends only the window's KV, a linear layer its state (kv_tokens
        # counts both, the state in tokens of the wire's format: its bytes exactly)
        nbytes = self.model.kv_tokens(req.input_tokens, pair.fmt, d.step.attn_tp) * pair.wire
        yield from send(req, p, d, nbytes, h)
        p.release(prefill_blocks)
        if staged:   # from the staging buffer into the decode KV pool: a local copy pass,
            yield h.reserve()   # which a decode-side conversion replaces
            tokens = (self.model.kv_tokens(req.input_tokens, *kv_format(d.step))
                      * d.pool.memory.kv_bytes_per_token)
            copy = conv if pair.side == "decode" else d.step.pm.kv_convert_time(
                tokens, tokens, self.model.num_layers)
            yield d.add_work(copy)
            staging.release(staged)
            h.staged = 0
        elif pair.side == "decode":
            yield d.add_work(conv)
        req.kv_ready_s = env.now
        req.xfer = None

    def _send(self, req: Request, p, d, nbytes: float, h: Handoff):
        """The prompt's ``nbytes`` cross the path (a layer-wise stream no faster than the
        prefill)."""
        env = self.env
        req.kv_bytes = nbytes
        ports, setup = self.path(p, d)
        cap = None
        ahead = req.prefill_end_expected - env.now
        if self.t.mode == "layerwise" and ahead > 0 and req.state is State.PREFILLING:
            # NOTE: the stream cannot run ahead of the layers being computed; the last layer is
            # sent after the prefill ends (only the tail is exposed)
            cap = req.kv_bytes * (1 - 1 / self.model.num_layers) / ahead
        req.transfer_start_s = env.now
        flow = h.flow = self.net.transfer(ports, req.kv_bytes, setup, cap=cap)
        if cap is not None:
            req.done.callbacks.append(lambda _: self.net.uncap(flow))
        yield flow
        h.flow = None
        if req.state is State.PREFILLING:
            # NOTE: a layer-wise stream never ends before its prefill (a hang holds the
            # prefill past the end its cap assumed; without faults the last layer's bytes
            # keep the flow past it anyway)
            yield req.done
        req.transfer_end_s = env.now

    # --- a stepwise transfer (kvsteps) ---------------------------------------------------
    def codec(self, src: ResolvedPool, dst: ResolvedPool) -> Codec:
        """The codec of the pair, in the format its KV crosses the wire in."""
        key = (src.name, dst.name)
        if key not in self._codecs:
            wire_fmt = wire_pool(self.t.conversion, src, dst).formats.kv
            self._codecs[key] = make_codec(self.steps, src, dst, wire_fmt,
                                           self.model.num_layers)
        return self._codecs[key]

    def _send_steps(self, req: Request, p, d, nbytes: float, h: Handoff):
        """Encode on the sender, wait in a batch window (with batching), then one stream
        (setup, descriptors, serialize | wire | deserialize), then decode on the receiver.
        The transfer spans all of it: the exposed time counts the window's wait."""
        env = self.env
        codec = self.codec(p.pool, d.pool)
        req.kv_bytes = nbytes
        wire = req.kv_bytes * codec.ratio
        descriptors = descriptors_per_rank(self.model, req.input_tokens, p.pool.spec.block_size)
        req.transfer_start_s = env.now
        encode = codec.encode_s(req.kv_bytes)
        if encode > 0:     # (without a codec: no event at all)
            yield p.add_work(encode)
        encode = env.now - req.transfer_start_s     # as waited for (behind a running iteration)
        joined = env.now
        if self.batcher is None:
            cost = yield from self._stream(p, d, wire, descriptors, h)
        else:
            h.batch, h.share = self.batcher.join(p, d, wire, descriptors), (wire, descriptors)
            cost = yield h.batch.done
            h.batch = None
        h.wired = True
        decoded = env.now
        decode = codec.decode_s(req.kv_bytes)
        if decode > 0:
            yield d.add_work(decode)
        req.transfer_end_s = env.now
        s = cost.steps
        self.log.append(TransferRecord(
            req.id, cost.index, req.kv_bytes, wire, descriptors * d.pool.spec.attn_tp, cost.setup_s,
            cost.descriptors_s, encode, cost.sent_s - joined, s.get("serialize", 0.0),
            s.get("wire", 0.0), s.get("deserialize", 0.0), env.now - decoded))

    def _batch_stream(self, b):
        """A batch's stream, in its own process; stopped once every member has left."""
        try:
            return (yield from self._stream(b.p, b.d, b.bytes, b.descriptors, b))
        except simpy.Interrupt:
            return None

    def _stream(self, p, d, nbytes: float, descriptors: int, holder):
        """One stream from ``p`` to ``d`` (a lone transfer or a batch): the initiator's
        transfer thread (``d``'s under pull, ``p``'s under push) posts it (the per-transfer
        overhead, then the descriptors, every rank in parallel), one at a time per instance;
        after the path's latency the bytes flow. Its
        StreamCost: setup = waiting for the thread + overhead + latency. Its flow is
        ``holder.flow`` while in flight (the Handoff or batch it carries)."""
        env = self.env
        index, self._streams = self._streams, self._streams + 1
        ports, setup = self.path(p, d)
        overhead = self.overhead(p, d)
        posting = descriptors * self.steps.descriptor_s
        sent = env.now
        # NOTE: the initiator posts: under pull the decode side reads (vLLM's NixlConnector:
        # descriptor preparation and READ submission stall the decode model thread,
        # vllm-project/vllm#57987), under push the prefill side writes. One thread per
        # instance (ai-dynamo/nixl#1514: postXfer posts descriptors in a single-threaded
        # loop), so concurrent transfers it initiates queue for it
        owner = (d if self.t.handoff == "pull" else p).name
        thread = self._threads.get(owner)
        if thread is None:
            thread = self._threads[owner] = simpy.Resource(env, 1)
        with thread.request() as turn:    # (a fault's interrupt here gives the turn back)
            yield turn
            if overhead + posting > 0:
                yield env.timeout(overhead + posting)
        posted = env.now
        try:
            holder.flow = self.net.transfer(ports, nbytes, setup - overhead, track=True)
            steps = yield holder.flow
        except simpy.Interrupt:     # stopped by a fault (a Handoff's drop cancelled its own)
            if holder.flow is not None:
                self.net.cancel(holder.flow)
            raise
        holder.flow = None
        return StreamCost(index, sent, posted - sent - posting + setup - overhead, posting,
                          steps)

    def overhead(self, p, d) -> float:
        """The fixed per-transfer cost (descriptor lists, registration, connection) of a
        transfer from ``p`` to ``d``: the part of :meth:`path`'s setup that is host work."""
        pp, dp = p.pool, d.pool
        dom = pp.spec.scale_up_domain
        if dom and dom == dp.spec.scale_up_domain:
            return pp.scale_up.per_transfer_overhead
        return max(self.t.nics[pp.name].per_transfer_overhead,
                   self.t.nics[dp.name].per_transfer_overhead)
