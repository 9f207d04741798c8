"""Simulate one placement on a request stream: build instances, run every request's lifecycle.

Each request is one SimPy process that walks its lifecycle:
  arrive -> route -> prefill queue -> batched prefill -> (disaggregated: route to a decode
  instance -> reserve its KV blocks -> transfer the KV -> free the prefill copy) -> decode ->
  complete, KV released.
All run state hangs off one ``Simulation`` object; nothing is global.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import simpy

from ..perf import PerfModel, StepModel
from ..resolve import ResolvedPlacement, ResolvedPool, kv_mismatch
from ..workload import Requests
from .instances import DecodeInstance, MixedInstance, OnDemandDecodeInstance, PrefillInstance
from .memory import BlockPool
from .network import Network, Port
from .request import Request, State
from .routers import make_router

__all__ = ["Simulation", "SimResult"]


@dataclass
class SimResult:
    requests: list[Request]
    instances: dict[str, list]          # pool name -> instances
    ports: list[Port]
    end_s: float
    stats: dict = field(default_factory=dict)


class Simulation:
    def __init__(self, placement: ResolvedPlacement, model, requests: Requests, seed: int = 0,
                 progress=None):
        self.placement, self.model, self.requests = placement, model, requests
        self.env = simpy.Environment()
        self.net = Network(self.env)
        self.progress = progress
        self.done = 0
        # Router randomness is its own source, seeded per placement name (stable across runs).
        ss = np.random.SeedSequence([seed, *placement.name.encode()])
        r_pre, r_dec = (np.random.default_rng(s) for s in ss.spawn(2))
        routers = placement.spec.routers
        self.router_prefill = make_router(routers.prefill, r_pre, routers)
        self.router_decode = make_router(routers.decode, r_dec, routers)
        self.instances: dict[str, list] = {}
        self.ports: list[Port] = []
        self.transfer = placement.transfer
        self.engine = placement.engine
        # The decode target is chosen when the prefill starts if the prefill must know it then:
        # to stream layers to it, or to write the KV in its format.
        t = self.transfer
        self.early_routing = t is not None and (t.mode == "layerwise" or t.conversion == "prefill")
        self._target: dict[int, object] = {}
        kinds = {"prefill": PrefillInstance, "decode": DecodeInstance, "mixed": MixedInstance}
        for pname, pool in placement.pools.items():
            step = StepModel(model, PerfModel(pool.accelerator), pool.spec.tp, pool.formats)
            kind = kinds[pool.spec.role]
            if pool.spec.role == "decode" and pool.spec.on_demand:
                kind = OnDemandDecodeInstance
            insts = []
            for i in range(pool.spec.instances):
                inst = kind(self.env, f"{pname}/{i}", pool, step)
                if pool.staging_blocks:
                    inst.staging = BlockPool(self.env, pool.staging_blocks, pool.spec.block_size)
                if placement.disaggregated:
                    self._attach_ports(inst, pool)
                insts.append(inst)
            self.instances[pname] = insts
            if pool.spec.role == "prefill" and self.early_routing:
                for inst in insts:
                    inst.on_start = (lambda r, p=inst: self._on_prefill_start(r, p))
        by_role = lambda role: [i for p, insts in self.instances.items()  # noqa: E731
                                for i in insts if placement.pools[p].spec.role == role]
        self.prefills, self.decodes, self.mixed = by_role("prefill"), by_role("decode"), by_role("mixed")
        self.receivers = self.decodes or self.mixed
        self.fabric = None
        if placement.cross_site is not None:
            cs, link = self.transfer.cross_site, placement.cross_site
            self.fabric = Port(f"cross-site:{link.name}", link.bandwidth * cs.count, "cross-site")
            self.fabric_latency = (link.latency if cs.latency_us is None else cs.latency_us * 1e-6)
            self.ports.append(self.fabric)
        self._pair_cache: dict = {}
        self.conversion_bytes = 0.0
        self.reqs: list[Request] = []

    def _attach_ports(self, inst, pool) -> None:
        """Per-instance ports: the NIC (every rank's NIC in parallel), the scale-up fabric, and
        for the tcp engine the host link and the host-side serialization (staged copies)."""
        tp, name, role = pool.spec.tp, inst.name, pool.spec.role
        inst.port = Port(f"{name}:nic", pool.nic.bandwidth * tp, f"{pool.name}.nic")
        ports = [inst.port]
        if pool.scale_up is not None and pool.spec.scale_up_domain:
            inst.su_port = Port(f"{name}:scale-up", pool.scale_up.bandwidth * tp,
                                f"{pool.name}.scale-up")
            ports.append(inst.su_port)
        if self.engine == "tcp" and role in ("prefill", "decode", "mixed"):
            inst.host_port = Port(f"{name}:host", pool.host_link.bandwidth * tp,
                                  f"{pool.name}.host")
            inst.stack_port = Port(f"{name}:tcp", self.transfer.tcp_stream_gb_s * 1e9 * tp,
                                   f"{pool.name}.tcp-stack")
            ports += [inst.host_port, inst.stack_port]
        self.ports += ports

    # --- the boundary: formats, bytes and paths ------------------------------------------
    def _pair(self, src: ResolvedPool, dst: ResolvedPool):
        """Per (prefill pool, decode pool): wire bytes per token, conversion side and cost."""
        key = (src.name, dst.name)
        if key not in self._pair_cache:
            m, conv = self.model, self.transfer.conversion
            mismatch = bool(kv_mismatch(src, dst))
            side = conv if mismatch and conv != "none" else None
            # What the receiver's ranks must get, in the format on the wire.
            wire_fmt = dst.formats.kv if side == "prefill" else src.formats.kv
            wire = m.kv_bytes_per_token(wire_fmt, dst.spec.tp) * dst.spec.tp
            conv_s = None
            if side is not None:
                at = src if side == "prefill" else dst
                pm = PerfModel(at.accelerator)
                b_in = m.kv_bytes_per_token(src.formats.kv, at.spec.tp)
                b_out = m.kv_bytes_per_token(dst.formats.kv, at.spec.tp)
                conv_s = (lambda n, pm=pm, a=b_in, b=b_out, L=m.num_layers:
                          pm.kv_convert_time(n * a, n * b, L))
            conv_bytes = (b_in + b_out) * at.spec.tp if side else 0.0
            self._pair_cache[key] = (wire, side, conv_s, conv_bytes)
        return self._pair_cache[key]

    def _path(self, p, d) -> tuple[tuple[Port, ...], float]:
        """Ports a transfer from ``p`` to ``d`` crosses, and its fixed setup time."""
        pp, dp = p.pool, d.pool
        dom = pp.spec.scale_up_domain
        if dom and dom == dp.spec.scale_up_domain:
            link = pp.scale_up
            return (p.su_port, d.su_port), link.latency + link.per_transfer_overhead
        ports = [p.port, d.port]
        setup = max(pp.nic.latency, dp.nic.latency) + max(pp.nic.per_transfer_overhead,
                                                          dp.nic.per_transfer_overhead)
        if self.engine == "tcp":
            ports += [p.host_port, p.stack_port, d.stack_port, d.host_port]
            setup += pp.host_link.latency + dp.host_link.latency
        if pp.spec.site != dp.spec.site:
            ports.append(self.fabric)
            setup += self.fabric_latency
        return tuple(ports), setup

    # --- request lifecycles --------------------------------------------------------------
    def _finish(self, req: Request) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done)

    def _on_prefill_start(self, req: Request, p) -> float:
        """Route to decode as the prefill batch forms; return prefill-side conversion time,
        which is fused into the iteration (each layer is written out in the consumer's format)."""
        if req.output_tokens == 1:
            return 0.0
        d = self.router_decode.pick([d for d in self.receivers if d.fits(req)], req)
        self._target[req.id] = d
        _, side, conv_s, conv_bytes = self._pair(p.pool, d.pool)
        if side != "prefill":
            return 0.0
        req.conversion_s = conv_s(req.input_tokens)
        self.conversion_bytes += conv_bytes * req.input_tokens
        return req.conversion_s

    def _handoff(self, req: Request, p, d):
        """Move the prompt's KV from prefill instance ``p`` to ``d``; ownership is explicit:
        decode-side room first (KV blocks for pull, a staging buffer for push), then the bytes,
        then the prefill copy is released (the acknowledgement), then any conversion."""
        env, t = self.env, self.transfer
        prefill_blocks = req.kv_blocks
        wire, side, conv_s, conv_bytes_tok = self._pair(p.pool, d.pool)
        staging = getattr(d, "staging", None)
        staged = 0
        if t.handoff == "push" and staging is not None:
            staged = staging.blocks(req.input_tokens)
        if staged and staged <= staging.capacity:
            yield staging.reserve(staged)
        else:
            staged = 0
            yield d.reserve(req)
        req.kv_reserved_s = env.now
        if req.kv_granted is not None:     # layer-wise: the request's process is waiting on it
            req.kv_granted.succeed()
        else:
            req.to(State.TRANSFERRING)
        conv = 0.0
        if side == "decode":
            conv = req.conversion_s = conv_s(req.input_tokens)
            self.conversion_bytes += conv_bytes_tok * req.input_tokens
        req.kv_bytes = req.input_tokens * wire
        ports, setup = self._path(p, d)
        cap = None
        ahead = req.prefill_end_expected - env.now
        if t.mode == "layerwise" and ahead > 0 and req.state is State.PREFILLING:
            # the stream cannot run ahead of the layers being computed; the last layer is sent
            # after the prefill ends (only the tail is exposed)
            cap = req.kv_bytes * (1 - 1 / self.model.num_layers) / ahead
        req.transfer_start_s = env.now
        flow = self.net.transfer(ports, req.kv_bytes, setup, cap=cap)
        if cap is not None:
            req.done.callbacks.append(lambda _: self.net.uncap(flow))
        yield flow
        req.transfer_end_s = env.now
        p.release(prefill_blocks)
        if staged:   # from the staging buffer into the decode KV pool: a local copy pass,
            yield d.reserve(req)   # which a decode-side conversion replaces
            tokens = req.input_tokens * d.pool.memory.kv_bytes_per_token
            copy = conv if side == "decode" else d.step.pm.kv_convert_time(
                tokens, tokens, self.model.num_layers)
            yield d.add_work(copy)
            staging.release(staged)
        elif side == "decode":
            yield d.add_work(conv)
        req.kv_ready_s = env.now

    def _disaggregated(self, req: Request, p):
        env = self.env
        if not p.fits(req):
            req.drop("prompt exceeds the prefill instance's KV capacity")
            return
        if not any(d.fits(req) for d in self.receivers):
            req.drop("prompt + output exceed every decode instance's KV capacity")
            return
        layerwise = self.transfer.mode == "layerwise" and req.output_tokens > 1
        if layerwise:
            req.started = env.event()
            req.kv_granted = env.event()
        prefill_done = p.submit(req)
        handoff = None
        if layerwise:   # stream from the moment the prefill starts
            yield req.started
            d = self._target.pop(req.id)
            handoff = env.process(self._handoff(req, p, d))
        yield prefill_done
        if req.output_tokens == 1:  # the first token was the last
            req.last_token_s = env.now
            req.to(State.COMPLETED)
            p.release(req.kv_blocks)
            return
        req.to(State.WAIT_KV)
        if handoff is None:   # whole transfer: the handoff runs in the request's own process
            d = self._target.pop(req.id, None) or self.router_decode.pick(
                [d for d in self.receivers if d.fits(req)], req)
            yield from self._handoff(req, p, d)
        else:
            yield req.kv_granted
            req.to(State.TRANSFERRING)
            yield handoff
        yield d.join(req)

    def _colocated(self, req: Request, m=None):
        if m is None:
            candidates = [m for m in self.mixed if m.fits(req)]
            if not candidates:
                req.drop("prompt + output exceed every instance's KV capacity")
                return
            m = self.router_prefill.pick(candidates, req)
        elif not m.fits(req):
            req.drop("prompt + output exceed the instance's KV capacity")
            return
        yield m.submit(req)

    def _lifecycle(self, req: Request):
        if not self.prefills:
            yield from self._colocated(req)
        else:
            target = self.router_prefill.pick(self.prefills + self.mixed, req)
            if target.role == "mixed":
                yield from self._colocated(req, target)
            else:
                yield from self._disaggregated(req, target)
        self._finish(req)

    # --- arrivals ------------------------------------------------------------------------
    def _open_loop(self):
        env, rq = self.env, self.requests
        for i, t in enumerate(rq.arrival_s.tolist()):
            if t > env.now:
                yield env.timeout(t - env.now)
            req = Request(i, env.now, int(rq.input_tokens[i]), int(rq.output_tokens[i]))
            self.reqs.append(req)
            env.process(self._lifecycle(req))

    def _closed_loop(self):
        env, rq = self.env, self.requests
        counter = iter(range(len(rq)))

        def client():
            for i in counter:
                req = Request(i, env.now, int(rq.input_tokens[i]), int(rq.output_tokens[i]))
                self.reqs.append(req)
                yield from self._lifecycle(req)
                if rq.think_time_s:
                    yield env.timeout(rq.think_time_s)
        for _ in range(min(rq.closed_concurrency, len(rq))):
            env.process(client())
        yield env.timeout(0)

    def run(self) -> SimResult:
        closed = self.requests.closed_concurrency is not None
        self.env.process(self._closed_loop() if closed else self._open_loop())
        self.env.run()
        reqs = sorted(self.reqs, key=lambda r: r.id)
        unfinished = [r for r in reqs if r.state not in (State.COMPLETED, State.DROPPED)]
        assert not unfinished, f"{len(unfinished)} requests neither completed nor dropped"
        end = max((r.last_token_s for r in reqs if not math.isnan(r.last_token_s)), default=0.0)
        return SimResult(reqs, self.instances, self.ports, end,
                         {"conversion_bytes": self.conversion_bytes})
