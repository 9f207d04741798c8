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
from ..scenario import ResolvedPlacement
from ..workload import Requests
from .instances import DecodeInstance, MixedInstance, PrefillInstance
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
        self.router_prefill = make_router(placement.spec.routers.prefill, r_pre)
        self.router_decode = make_router(placement.spec.routers.decode, r_dec)
        self.instances: dict[str, list] = {}
        self.ports: list[Port] = []
        link = placement.kv_link
        kinds = {"prefill": PrefillInstance, "decode": DecodeInstance, "mixed": MixedInstance}
        for pname, pool in placement.pools.items():
            step = StepModel(model, PerfModel(pool.accelerator), pool.spec.tp, pool.formats)
            insts = []
            for i in range(pool.spec.instances):
                inst = kinds[pool.spec.role](self.env, f"{pname}/{i}", pool, step)
                if link is not None and pool.spec.role != "mixed":
                    # NOTE: one NIC per accelerator; a TP group's shards move in parallel.
                    inst.port = Port(inst.name, link.bandwidth * pool.spec.tp)
                    self.ports.append(inst.port)
                insts.append(inst)
            self.instances[pname] = insts
        by_role = lambda role: [i for p, insts in self.instances.items()  # noqa: E731
                                for i in insts if placement.pools[p].spec.role == role]
        self.prefills, self.decodes, self.mixed = by_role("prefill"), by_role("decode"), by_role("mixed")
        if link is not None:
            # Bytes on the wire: every KV head once (unique bytes), in the sender's format.
            pf = next(p for p in placement.pools.values() if p.spec.role == "prefill").formats.kv
            self.kv_bytes_per_token = model.kv_bytes_per_token(pf)
            self.setup_s = link.latency + link.per_transfer_overhead
        self.reqs: list[Request] = []

    # --- request lifecycles --------------------------------------------------------------
    def _finish(self, req: Request) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done)

    def _disaggregated(self, req: Request):
        env = self.env
        p = self.router_prefill.pick(self.prefills, req)
        if not p.fits(req):
            req.drop("prompt exceeds the prefill instance's KV capacity")
            return
        if not any(d.fits(req) for d in self.decodes):
            req.drop("prompt + output exceed every decode instance's KV capacity")
            return
        yield p.submit(req)
        prefill_blocks = req.kv_blocks
        if req.output_tokens == 1:  # the first token was the last
            req.last_token_s = env.now
            req.to(State.COMPLETED)
            p.release(prefill_blocks)
            return
        candidates = [d for d in self.decodes if d.fits(req)]
        d = self.router_decode.pick(candidates, req)
        req.to(State.WAIT_KV)
        yield d.reserve(req)
        req.to(State.TRANSFERRING)
        req.transfer_start_s = env.now
        req.kv_bytes = req.input_tokens * self.kv_bytes_per_token
        yield self.net.transfer((p.port, d.port), req.kv_bytes, self.setup_s)
        req.transfer_end_s = env.now
        p.release(prefill_blocks)
        yield d.join(req)

    def _colocated(self, req: Request):
        candidates = [m for m in self.mixed if m.fits(req)]
        if not candidates:
            req.drop("prompt + output exceed every instance's KV capacity")
            return
        yield self.router_prefill.pick(candidates, req).submit(req)

    def _lifecycle(self, req: Request):
        body = self._disaggregated if self.prefills else self._colocated
        yield from body(req)
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
        return SimResult(reqs, self.instances, self.ports, end)
