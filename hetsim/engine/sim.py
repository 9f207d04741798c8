"""Simulate one placement on a request stream: build instances, run every request's lifecycle.

Each request is one SimPy process that walks its lifecycle:
  arrive -> route -> prefill queue -> batched prefill -> (disaggregated: route to a decode
  instance -> reserve its KV blocks -> transfer the KV -> free the prefill copy) -> decode ->
  complete, KV released.
All run state hangs off one ``Simulation`` object; nothing is global. ``run`` returns frozen
records and statistics (:class:`~hetsim.engine.stats.SimResult`).

Only requests in flight hold objects: a ``Request`` (and its process) is made when the request
is sent and let go when it ends, once its fields are written into the run's record columns
(:class:`~hetsim.engine.records.RecordWriter`), so memory is the columns plus what is live.
"""
from __future__ import annotations

from dataclasses import replace
from itertools import groupby

import numpy as np

from ..resolve import ResolvedPlacement, ResolvedPool, kv_mismatch
from ..workload import Requests
from .environment import Environment
from .faults import Faults
from .instances import DecodeInstance, MixedInstance, PrefillInstance
from .loop import kv_state_blocks, kv_window
from .memory import BlockPool
from .network import PortStats
from .ondemand import OnDemandDecodeInstance, OnDemandMixedInstance, WriteThroughDecodeInstance
from .records import RecordWriter
from .request import Request, State
from .routers import make_router
from .stats import SimResult, port_since, since
from .transfer import KVLink

__all__ = ["Simulation", "SimResult"]

_KINDS = {"prefill": PrefillInstance, "decode": DecodeInstance, "mixed": MixedInstance}
#: arrival times turned into Python floats at a time (the open loop)
_ARRIVAL_BLOCK = 4096


class Simulation:
    def __init__(self, placement: ResolvedPlacement, model, requests: Requests, seed: int = 0,
                 progress=None):
        self.placement, self.model, self.requests = placement, model, requests
        self.env = Environment()
        self.progress = progress
        self.done = 0
        # Router randomness is its own source, seeded per placement name (stable across runs).
        ss = np.random.SeedSequence([seed, *placement.name.encode()])
        r_pre, r_dec = (np.random.default_rng(s) for s in ss.spawn(2))
        routers = placement.spec.routers
        self.router_prefill = make_router(routers.prefill, r_pre, routers)
        self.router_decode = make_router(routers.decode, r_dec, routers)
        t = self.transfer = placement.transfer
        self.link = KVLink(self.env, t, model) if t is not None else None
        self.early_routing = t is not None and t.early_routing
        #: the client's first token comes from the decode side (after the KV arrives)
        self.first_from_decode = t is not None and t.first_token == "decode"
        self._target: dict[int, object] = {}
        self.instances: dict[str, list] = {p: self._build(pool)
                                           for p, pool in placement.pools.items()}
        self.prefills, self.decodes, self.mixed = (
            [i for insts in self.instances.values() for i in insts if i.pool.spec.role == role]
            for role in ("prefill", "decode", "mixed"))
        self.receivers = self.decodes or self.mixed
        #: the receivers by pool, in order: ``fits`` depends on the pool alone (its KV
        #: capacity and block size), so it is asked once per pool, not per instance
        self._receiver_pools = [(insts[0], insts) for insts in (
            list(g) for _, g in groupby(self.receivers, key=lambda i: id(i.pool)))]
        self.entry = self.prefills + self.mixed     # where prompts are routed
        #: per-request frontend time (HTTP, tokenisation) of the runtime taking the prompts
        #: (the longest, where pools differ); routing happens after it, on the load then
        self.frontend_s = max((i.frontend_s for i in self.prefills + self.mixed), default=0.0)
        #: requests sent and not yet ended, by id, in send order (faults scan them)
        self.live: dict[int, Request] = {}
        #: ended requests a fault touched (their recovery records feed ``FaultStats``)
        self.struck: list[Request] = []
        self.records = RecordWriter(len(requests))
        #: with a warm-up: whether request i sent at time t is measured; the engine's
        #: statistics restart when the first measured request is sent (``_open_window``)
        w = requests.warmup
        self._measured = (None if w is None else
                          (lambda i, t: i >= w.requests) if w.requests is not None else
                          (lambda i, t: t >= w.seconds))
        self._window: tuple | None = None
        self.faults = Faults(self, placement, seed) if placement.faults else None

    def _build(self, pool: ResolvedPool) -> list:
        """The pool's instances, each with what it owns: ports and staging when KV crosses
        to or from it, the early-routing hook on prefill."""
        spec = pool.spec
        step = pool.step_model(self.model)
        kind = _KINDS[spec.role]
        # (a runtime's KV admission is in spec.kv_allocation: resolution filled it in)
        if spec.role == "decode" and spec.kv_offload is not None and spec.kv_offload.write_through:
            kind = WriteThroughDecodeInstance
        elif spec.role == "decode" and spec.on_demand:
            kind = OnDemandDecodeInstance
        elif spec.role == "mixed" and pool.rules is not None and spec.on_demand:
            kind = OnDemandMixedInstance
        kw = {}
        if spec.role == "prefill" and self.early_routing:
            kw["on_start"] = self._on_prefill_start
        if spec.role == "prefill" and self.link is not None and self.link.steps is not None:
            kw["takes_work"] = True     # a stepwise transfer encodes on the sender
        if self.first_from_decode:
            kw["first_elsewhere" if spec.role == "prefill" else "first_token"] = True
        staging_blocks = self.transfer.staging_blocks.get(pool.name, 0) if self.transfer else 0
        insts = []
        for i in range(spec.instances):
            name = f"{pool.name}/{i}"
            ports = self.link.make_ports(name, pool) if self.link is not None else None
            staging = (BlockPool(self.env, staging_blocks, spec.block_size,
                                 window=kv_window(self.model),
                                 state=kv_state_blocks(step, spec.block_size))
                       if staging_blocks else None)
            insts.append(kind(self.env, name, pool, step, ports=ports, staging=staging, **kw))
        return insts

    # --- request lifecycles --------------------------------------------------------------
    @property
    def reqs(self):
        """The requests in flight, in send order."""
        return self.live.values()

    def _finish(self, req: Request) -> None:
        """``req`` has ended: its record is written and the request let go."""
        del self.live[req.id]
        if req.fault is not None:
            self.faults.restore((req,))
            self.struck.append(req)
        self.records.write(req)
        self.done += 1
        if self.progress is not None:
            self.progress(self.done)

    def _on_prefill_start(self, p, req: Request) -> float:
        """Route to decode as the prefill batch forms; return prefill-side conversion time,
        which is fused into the iteration (each layer is written out in the consumer's format)."""
        if req.output_tokens == 1:
            return 0.0
        candidates = self._decoders(req)
        if self.faults is not None:     # live ones with a path up (else any: it is re-picked)
            candidates = self.faults.reachable(p, candidates) or candidates
        d = self.router_decode.pick(candidates, req)
        self._target[req.id] = d
        pair = self.link.pair(p.pool, d.pool)
        if pair.side != "prefill":
            return 0.0
        return self.link.convert(req, pair, d)

    def _disaggregated(self, req: Request, p):
        env = self.env
        if not p.fits(req):
            self._refuse(req, "prompt exceeds the prefill instance's KV capacity")
            return
        if not any(first.fits(req) for first, _ in self._receiver_pools):
            self._refuse(req, "prompt + output exceed every decode instance's KV capacity")
            return
        layerwise = self.transfer.mode == "layerwise" and req.output_tokens > 1
        if layerwise:
            req.started = env.event()
            req.kv_granted = env.event()
        prefill_done = p.submit(req)
        d = None
        if layerwise:   # stream from the moment the prefill starts
            yield req.started
            d = self._target.pop(req.id)
            if self.faults is None:
                req.xproc = env.process(self.link.handoff(req, p, d))
            elif self.faults.reachable(p, [d]):
                req.xproc = env.process(self.faults.stream(req, p, d))
            else:      # its target is down or cut off: whole, once the prefill ends
                req.kv_granted = None
        yield prefill_done
        if req.output_tokens == 1:  # the first token was the last
            req.first_token_s = req.last_token_s = env.now
            req.to(State.COMPLETED)
            p.release(req.kv_blocks)
            return
        req.to(State.WAIT_KV)
        if req.xproc is None:   # whole transfer: the handoff runs in the request's own process
            # (or a layer-wise stream that a fault stopped, or never started)
            d = self._target.pop(req.id, None) or d
            if self.faults is not None:
                d = yield from self.faults.pick_receiver(p, self._decoders(req, like=d), req,
                                                         prefer=d)
            elif d is None:
                d = self.router_decode.pick(self._decoders(req), req)
            yield from self.link.handoff(req, p, d)
        else:
            yield req.kv_granted
            req.to(State.TRANSFERRING)
            yield req.xproc
        yield d.join(req)

    @staticmethod
    def _refuse(req: Request, reason: str) -> None:
        """``req`` fits nowhere it could go: dropped, with ``reason``; or, where a fault made
        it longer (a recompute adds the tokens generated to its prompt), failed
        (``too_long_after_fault``): it was served until the fault, so the fault ended it."""
        f = req.fault
        if f is not None and req.input_tokens > f.input_tokens:
            req.fail("too_long_after_fault")
        else:
            req.drop(reason)

    def _decoders(self, req: Request, like=None) -> list:
        """The receivers ``req`` fits; where the prefill side converted its KV for ``like``,
        those that read ``like``'s KV format only."""
        ds = []
        for first, insts in self._receiver_pools:   # every instance of a pool fits alike
            if first.fits(req):
                ds += insts
        if like is not None and self.transfer.conversion == "prefill":
            ds = [d for d in ds if not kv_mismatch(d.pool, like.pool)]
        return ds

    def _handoff(self, req: Request, p, like=None):
        """A fault's recovery (hetsim.engine.faults): the prompt's KV, still on ``p``, goes to
        a live decode instance (one that reads its format, converted for ``like``), and the
        request decodes there."""
        d = yield from self.faults.pick_receiver(p, self._decoders(req, like), req)
        yield from self.link.handoff(req, p, d)
        yield d.join(req)

    def _colocated(self, req: Request, m=None):
        if m is None:
            candidates = [m for m in self.mixed if m.accepts(req)]
            if not candidates:
                self._refuse(req, self.mixed[0].refusal(req, "every instance's"))
                return
            m = (self.router_prefill.pick(candidates, req) if self.faults is None
                 else (yield from self.faults.pick(self.router_prefill, candidates, req)))
        elif not m.accepts(req):
            self._refuse(req, m.refusal(req))
            return
        yield m.submit(req)

    def _lifecycle(self, req: Request):
        if self.frontend_s:     # the runtime's frontend, before any instance sees the request
            yield self.env.timeout(self.frontend_s)
        if self.faults is not None:
            yield from self.faults.serve(req)
        else:   # NOTE: hot path: no generator between the request's process and its stage
            yield from self._stage(req, self.router_prefill.pick(self.entry, req)
                                   if self.prefills else None)
        self._finish(req)

    def _stage(self, req: Request, target):
        """What serves ``req`` routed to ``target`` (a prefill or mixed instance; None: a
        colocated placement, where the pick is the mixed instances' own)."""
        if target is None or target.role == "mixed":
            return self._colocated(req, target)
        return self._disaggregated(req, target)

    # --- arrivals ------------------------------------------------------------------------
    def _send(self, i: int) -> Request:
        """Request ``i``, sent now."""
        rq, now = self.requests, self.env.now
        req = Request(i, now, int(rq.input_tokens[i]), int(rq.output_tokens[i]))
        if rq.max_output_tokens is not None:
            req.reserve_out = rq.max_output_tokens
        self.live[i] = req
        if self._measured is not None and self._window is None and self._measured(i, now):
            self._open_window(now)
        return req

    def _open_window(self, now: float) -> None:
        """The measured window opens at ``now``: keep every instance's and port's statistics
        as they stand (``run`` subtracts them) and restart the peaks. An iteration running
        across ``now`` counts in the window for the part still to run."""
        link = self.link
        self._window = (now, {p: tuple(replace(i.stats(now), busy_s=i.busy_s - i.running_s(now))
                                       for i in insts)
                              for p, insts in self.instances.items()},
                        tuple(link.net.stats_now(p) for p in link.ports) if link else (),
                        link.conversion_bytes if link else 0.0)
        for insts in self.instances.values():
            for i in insts:
                i.restart_peaks()

    def _open_loop(self):
        """The one arrival process: walks the arrival times (as Python floats, a block at a
        time, so no list of every arrival is held) and sends each request as it arrives."""
        env, arrivals = self.env, self.requests.arrival_s
        for b in range(0, len(arrivals), _ARRIVAL_BLOCK):
            for i, t in enumerate(arrivals[b:b + _ARRIVAL_BLOCK].tolist(), b):
                if t > env.now:
                    yield env.timeout(t - env.now)
                env.process(self._lifecycle(self._send(i)))

    def _closed_loop(self):
        """N clients; client c (from 0) starts at c x ramp_s / N (all at t=0 without a ramp)
        and sends its next request when the last completes (after think_time_s).

        Ids come from one shared counter drawn at send time, so ids follow send order."""
        env, rq = self.env, self.requests
        counter = iter(range(len(rq)))
        n = rq.closed_concurrency

        def client(start: float):
            if start:   # NOTE: no zero timeout without a ramp: same-time event order unchanged
                yield env.timeout(start)
            for i in counter:
                yield from self._lifecycle(self._send(i))
                if rq.think_time_s:
                    yield env.timeout(rq.think_time_s)
        for c in range(min(n, len(rq))):
            env.process(client(c * rq.ramp_s / n))
        yield env.timeout(0)

    def run(self) -> SimResult:
        closed = self.requests.closed_concurrency is not None
        self.env.process(self._closed_loop() if closed else self._open_loop())
        self.env.run()
        assert not self.live, f"{len(self.live)} requests neither completed, dropped nor failed"
        self._check_released()
        faults = self.faults
        records = self.records.table()     # (asserts every request was recorded)
        last = records.column("last_token_s")
        end = float(np.nanmax(last)) if len(last) and not np.isnan(last).all() else 0.0
        if self._measured is not None and self._window is None:
            self._open_window(end)   # no measured request was sent: the measured span is empty
        link = self.link
        instances = {p: tuple(i.stats(end) for i in insts) for p, insts in self.instances.items()}
        ports = tuple(PortStats.of(p) for p in link.ports) if link is not None else ()
        converted = link.conversion_bytes if link is not None else 0.0
        t0 = None
        if self._window is not None:     # the statistics over the measured window only
            t0, inst0, ports0, converted0 = self._window
            instances = {p: tuple(since(a, b, t0, end) for a, b in zip(inst0[p], insts))
                         for p, insts in instances.items()}
            ports = tuple(port_since(a, b) for a, b in zip(ports0, ports))
            converted -= converted0
        log = tuple(link.log) if link is not None and link.steps is not None else None
        return SimResult(records, instances, ports, end, converted,
                         stats_start_s=t0, transfers=log,
                         faults=faults.stats() if faults is not None else None)

    def _check_released(self) -> None:
        """Conservation of KV: once every request has ended, every block reserved anywhere
        (KV pools, staging buffers, host tiers and the copies restores read from them, the
        prefill side's count of finished prompts' blocks) is back."""
        for insts in self.instances.values():
            for i in insts:
                pools = [i.kv, i.staging, getattr(i, "host", None)]
                held = [p.used for p in pools if p is not None] + [
                    getattr(i, "held", 0), getattr(i, "restoring", 0),
                    len(getattr(i, "copies", ()))]
                assert not any(held), f"{i.name}: KV blocks not released at the end: {held}"
