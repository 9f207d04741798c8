"""Faults and recovery: instances crash, hang or slow down, links slow down or go down, and
the requests they held recover.

One ``Faults`` per simulation of a placement with faults. It runs one SimPy process per
scheduled fault target and per instance under a random fault, keeps instances that are down
out of the routers' candidates, and serves each request's lifecycle so that a crash can
interrupt it wherever it waits. Where the request stood decides how it goes on:

=====================================================  ==========================================
where the request is when instance X crashes           what happens
=====================================================  ==========================================
queued at X                                            ``reroute``: routed again to a live one
prefilling on X                                        ``restart``: routed again (work lost)
KV on prefill X, waiting for or crossing to decode     ``reprefill``: the owner is gone, so the
                                                       prompt is prefilled again (the decode
                                                       side's reservation is released)
waiting for or crossing to decode X, prefill copy      ``rehandoff``: the prefill side still owns
held                                                   the KV, so it goes to another decode
KV on X (decoding, or copied and being converted)      ``recompute``: the prompt + the tokens
                                                       generated so far are prefilled again
decoding on X, a write-through host copy of its KV     ``restore``: the copy is read over the
on X's surviving host                                  network into a live decode instance,
                                                       which recomputes only the tail past it
=====================================================  ==========================================

A restore that fails (its destination crashes, a link on its path goes down, the host is
lost) falls back to ``recompute``; the copy is let go on every path.

A handoff in progress (``req.xfer``, a :class:`~hetsim.engine.transfer.Handoff`) is dropped
at once wherever it stands: its flow or batch share stops, its decode room and staging go
back. A layer-wise stream beside a prefill whose receiver fails (or whose link goes down)
stops alone (``_restream``): the KV goes whole once the prefill ends.

Every move counts one retry; past ``recovery.retry_limit`` the request ends ``failed``
(``retry_limit``), as it does once ``request_timeout_s`` has passed since its arrival when a
fault moves it or while it waits for a live instance (``timeout``). A hang freezes the
instance's loop (:class:`~hetsim.engine.loop.Hang`); its requests stay and wait. A degrade
slows the instance's iterations (``Instance.speed``); it stays up.

Link faults change the capacity of every port of a link group (``Network.set_capacity``):
``degrade`` multiplies it by its factor; ``down`` leaves it at 1 B/s (a flow there stalls),
and every transfer crossing the group is stopped and sent again (``rehandoff``, its decode
room released first): to a decode instance whose path is up if one is live, else as soon as
the link carries bytes again, from the start.

Random faults draw from their own streams: ``SeedSequence(seed, spawn_key=(3, src, j, i))``
for fault ``j`` of the scenario (src 0) or the placement (src 1) and instance ``i`` of its
pool; ``(3, src, j)`` for a random link fault. The workload draws from children 0-2 of ``SeedSequence(seed)`` and the routers from a
per-placement sequence, so no other stream moves, and every placement with that pool sees the
same failure times.
"""
from __future__ import annotations

import math

import numpy as np
import simpy

from ..resolve import kv_mismatch
from .loop import Hang, kv_format
from .request import TERMINAL, Request, State
from .stats import FaultStats
from .transfer import Handoff

__all__ = ["Faults", "FAULT_STREAM"]

#: the child of the run's SeedSequence the fault streams descend from (the workload's are 0-2)
FAULT_STREAM = 3
#: what a link that is down carries, B/s: nothing to speak of, but rates stay defined
DOWN_BYTES_PER_S = 1.0
REROUTE, RESTART, REPREFILL, REHANDOFF, RECOMPUTE, RESTORE = (
    "reroute", "restart", "reprefill", "rehandoff", "recompute", "restore")


class _Gone(Exception):
    """The request ended (failed) while its stage ran: its lifecycle stops."""


class _Hit:
    """What a request had before faults changed it, and its recovery so far."""
    __slots__ = ("input_tokens", "output_tokens", "first_token_s", "retries", "pending",
                 "transfers", "recomputed", "lost_prefill", "kv_bytes_lost", "resent",
                 "source", "stored", "blocks", "loaded", "restored")

    def __init__(self, req: Request):
        self.input_tokens, self.output_tokens = req.input_tokens, req.output_tokens
        self.first_token_s = math.nan
        self.retries = 0
        self.pending = False    # an interrupt is on its way (later scans leave it alone)
        # what the faults cost this request (summed over the measured requests with a warm-up)
        self.transfers = self.recomputed = self.lost_prefill = 0
        self.kv_bytes_lost = 0.0
        self.resent = 0.0       # wire bytes of its transfers a fault cut off
        # a restore in progress: the crashed instance whose host tier holds its copy, the
        # tokens stored and the host blocks they take (0: the store died too)
        self.source, self.stored, self.blocks = None, 0, 0
        self.loaded = None      # restored: tokens whose KV arrived, until it decodes again
        self.restored = 0.0     # KV bytes read back from a host copy


def _hit(r: Request) -> _Hit:
    """The request's recovery record (made at the first fault that hits it)."""
    if r.fault is None:
        r.fault = _Hit(r)
    return r.fault


def _stop(proc) -> None:
    """Stop a layer-wise stream's process (``Faults.stream`` ends quietly; one stopped before
    it began fails, and nobody waits for it: defused)."""
    if proc is not None and proc.is_alive:
        proc.interrupt()
        proc.callbacks.append(_defuse)


def _defuse(ev) -> None:
    ev.defused = True


def _stream(seed: int, key: tuple) -> np.random.Generator:
    """A random fault's own stream: child ``(FAULT_STREAM, *key)`` of the run's seed."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(FAULT_STREAM, *key)))


class Faults:
    def __init__(self, sim, placement, seed: int):
        self.sim, self.env = sim, sim.env
        rec = placement.recovery
        self.retry_limit, self.timeout_s = rec.retry_limit, rec.request_timeout_s
        self.by_name = {i.name: i for insts in sim.instances.values() for i in insts}
        self.crashed: set[str] = set()
        #: hangs in progress per instance, each ``[start]``; a crash ends them (appends its time)
        self.hangs: dict[str, list[list[float]]] = {n: [] for n in self.by_name}
        self.repaired = self.env.event()       # fires at the next repair, then renewed
        self.outages: dict[str, list[tuple[float, float]]] = {n: [] for n in self.by_name}
        self.applied = self.retried = self.transfers_retried = 0
        self.recomputed_tokens = self.lost_prefill_tokens = 0
        self.kv_bytes_lost = 0.0
        self.kv_bytes_resent = 0.0     # wire bytes of transfer attempts cut off by a fault
        self.restored, self.kv_bytes_restored = 0, 0.0   # restores from a host copy
        self.link_faults: list[tuple[str, float, float]] = []
        self.degrades: list[tuple[str, float, float]] = []    # (instance, start, end)
        self._slow: dict[str, list[float]] = {}    # instance -> factors of its degrades now
        self._base: dict = {}       # port -> its capacity without faults
        self._factors: dict = {}    # port -> factors of the link faults on it now
        self._down: set = set()     # ports of link groups that are down now
        env = self.env
        for rf in placement.faults:
            f = rf.spec
            if rf.link is not None:     # one stream per random link fault: (src, j)
                env.process(self._random(lambda s, rf=rf: self._link_fault(rf, s), f,
                                         _stream(seed, rf.stream)) if f.random
                            else self._link(rf))
                continue
            for name in rf.instances:
                inst = self.by_name[name]
                if f.random:       # one stream per instance: (src, j, i)
                    i = int(name.rpartition("/")[2])
                    env.process(self._random(lambda s, inst=inst, f=f: self._strike(inst, f, s), f,
                                             _stream(seed, (*rf.stream, i))))
                else:
                    env.process(self._scheduled(inst, f))

    # --- fault processes -----------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """Every request has ended: later faults change nothing and are not applied."""
        return self.sim.done == len(self.sim.requests)

    def _scheduled(self, inst, f):
        if f.at_s:
            yield self.env.timeout(f.at_s)
        yield from self._strike(inst, f, f.down_s)

    def _random(self, strike, f, rng: np.random.Generator):
        """Up an Exp(mtbf) time, down an Exp(mttr) time (``strike(seconds)``), again, until
        the requests end. Both draws are made every cycle, so the times never depend on the
        run."""
        while True:
            up, down = rng.exponential(f.mtbf_s), rng.exponential(f.mttr_s)
            yield self.env.timeout(up)
            if self.finished:
                return
            yield from strike(down)

    def _strike(self, inst, f, down_s: float):
        """Take ``inst`` down for ``down_s`` (a crash of a crashed instance does nothing), or
        slow it (a degrade)."""
        if f.kind == "degrade":
            yield from self._degrade(inst, f.factor, down_s)
            return
        kind = f.kind
        if inst.name in self.crashed or self.finished:
            return
        env = self.env
        self.applied += 1
        start = env.now
        inst.outages += 1
        if kind == "crash":
            self.crashed.add(inst.name)
            self._end_hangs(inst)
            self._crash(inst, host_lost=f.host == "lost")
        else:
            hang = [start]
            self.hangs[inst.name].append(hang)
            inst.cut()     # (the iteration in progress is what the hang freezes)
            inst.proc.interrupt(Hang(down_s))
        yield env.timeout(down_s)
        if kind != "crash":
            if len(hang) > 1:       # a crash ended it (and counted its outage)
                return
            # by identity: two hangs that began at once are equal lists, yet two hangs
            hangs = self.hangs[inst.name]
            del hangs[next(k for k, h in enumerate(hangs) if h is hang)]
        inst.outages -= 1
        if kind == "crash":
            # NOTE: back cold (reset emptied it); a hang still running ends with the crash
            self.crashed.discard(inst.name)
            inst.proc = env.process(inst._run())
        self.outages[inst.name].append((start, env.now))
        ev, self.repaired = self.repaired, env.event()
        ev.succeed()

    def _degrade(self, inst, factor: float, seconds: float):
        """``inst`` runs at ``factor`` of its speed for ``seconds`` (degrades that overlap
        multiply). It stays up: routers use it, availability counts it up. NOTE: the
        iterations that start meanwhile run slower; one in progress at either end keeps the
        speed it started with. A slow device stays slow across a crash and its repair."""
        if self.finished:
            return
        env = self.env
        self.applied += 1
        start = env.now
        fs = self._slow.setdefault(inst.name, [])
        fs.append(factor)
        inst.cut()      # the iterations after the one in progress run at the new speed
        inst.speed = float(math.prod(fs))
        yield env.timeout(seconds)
        fs.remove(factor)
        inst.cut()
        inst.speed = float(math.prod(fs))
        self.degrades.append((inst.name, start, env.now))

    def _end_hangs(self, inst) -> None:
        """A crash ends the hangs of ``inst`` in progress: their outages end now, so the
        instance is back at the crash's repair."""
        now = self.env.now
        for hang in self.hangs[inst.name]:
            hang.append(now)
            inst.outages -= 1
            self.outages[inst.name].append((hang[0], now))
        self.hangs[inst.name] = []

    def _link(self, rf):
        """A scheduled degrade or down of a link group."""
        if rf.spec.at_s:
            yield self.env.timeout(rf.spec.at_s)
        yield from self._link_fault(rf, rf.spec.duration_s)

    def _link_fault(self, rf, seconds: float):
        """A degrade or down on every port of a link group, for ``seconds``."""
        f, env, link = rf.spec, self.env, self.sim.link
        ports = [p for p in link.ports if p.group == rf.link]
        if self.finished:
            return
        self.applied += 1
        start = env.now
        factor = f.factor if f.kind == "degrade" else 0.0
        for p in ports:
            self._scale(p, factor, add=True)
        if f.kind == "down":
            self._resend(set(ports))
        yield env.timeout(seconds)
        for p in ports:
            self._scale(p, factor, add=False)
        self.link_faults.append((rf.link, start, env.now))

    def _scale(self, port, factor: float, add: bool) -> None:
        base = self._base.setdefault(port, port.capacity)
        fs = self._factors.setdefault(port, [])
        fs.append(factor) if add else fs.remove(factor)
        if 0.0 in fs:
            self._down.add(port)
        else:
            self._down.discard(port)
        cap = base * math.prod(fs)
        self.sim.link.net.set_capacity(port, max(cap, DOWN_BYTES_PER_S))

    def _resend(self, ports: set) -> None:
        """Every transfer crossing ``ports`` stops; its prefill copy goes out again (a
        layer-wise stream still beside its prefill goes whole once the prefill ends)."""
        link, moves, restores = self.sim.link, [], []
        for r in self.sim.reqs:
            h = r.xfer
            if h is None or (r.fault is not None and r.fault.pending):
                continue
            if r.fault is not None and r.fault.source is not None:    # a restore: fails
                if h.flow is not None and not ports.isdisjoint(
                        link.restore_path(r.fault.source, h.d)[0]):
                    self._drop(r)
                    r.fault.pending = True
                    restores.append(r)
                continue
            if h.wired or r.transfer_end_s == r.transfer_end_s:
                continue
            p = self.by_name[r.prefill_instance]
            if ports.isdisjoint(link.path(p, h.d)[0]):
                continue
            if r.state is State.PREFILLING:
                self._restream(r)
            elif r.state is State.TRANSFERRING:
                self._drop(r)
                _hit(r).pending = True
                moves.append(r)
        for r in moves:
            self._interrupt(r, (REHANDOFF, 0))
        for r in restores:
            self._interrupt(r, (RECOMPUTE, 0))

    def _crash(self, inst, host_lost: bool = False) -> None:
        """Stop the instance, release what its requests hold elsewhere, empty it, and send
        each of them its recovery. A write-through host tier (``inst.copies``) survives
        unless ``host_lost``: the copies a restore reads stay in it."""
        inst.cut()
        inst.proc.interrupt("crash")
        copies = getattr(inst, "copies", None)
        store = copies if not host_lost else None
        moves = []
        for r in self.sim.reqs:
            if r.state in TERMINAL or r.state is State.CREATED or (
                    r.fault is not None and r.fault.pending):
                continue
            cause = self._where(r, inst, store, host_lost)
            if cause is not None:
                _hit(r).pending = True
                moves.append((r, cause))
        if copies is None:
            inst.reset()
        else:
            inst.reset(host_survives=store is not None)
        for r, cause in moves:
            self._interrupt(r, cause)

    @staticmethod
    def _interrupt(r: Request, cause) -> None:
        """Send ``r`` its recovery; a layer-wise stream of its KV stops too (its process
        first: the stream's end must not wake it)."""
        r.proc.interrupt(cause)
        _stop(r.xproc)

    def _where(self, r: Request, inst, store=None, host_lost: bool = False):
        """The recovery of ``r`` when ``inst`` crashes (None: ``r`` is not on it), having
        released what ``r`` holds on other instances. ``store``: the write-through copies on
        ``inst`` that survive it (None: none do)."""
        name, st, f = inst.name, r.state, r.fault
        if f is not None and f.source is not None:    # being restored from a host copy
            if f.source is inst and host_lost:
                f.blocks = 0        # (the store died: nothing to let go)
            elif r.decode_instance != name:
                return None
            self._drop(r, inst)
            return RECOMPUTE, 0     # the restore failed: recompute (``_recover``)
        on_p, on_d = r.prefill_instance == name, r.decode_instance == name
        if on_p and st is State.QUEUED:
            return REROUTE, 0
        if on_p and st is State.PREFILLING:
            n = inst.prefilled(r)      # (chunked prefill: the chunks run so far)
            self.lost_prefill_tokens += n
            _hit(r).lost_prefill += n
            self._drop(r, inst)        # a layer-wise stream from it stops
            return RESTART, 0
        if on_d and st is State.PREFILLING and r.xfer is not None:
            self._restream(r, inst)    # layer-wise, into the crashing decode: stops
            return None
        sent = r.transfer_end_s == r.transfer_end_s     # not NaN: the prefill copy is freed
        if st in (State.WAIT_KV, State.TRANSFERRING) and not sent:
            if on_p:     # the owner of the only copy is gone
                self._drop(r, inst)
                self._lost(inst, r, r.input_tokens)
                return REPREFILL, 0
            if on_d:
                self._drop(r, inst)
                return REHANDOFF, 0
            return None
        if on_d and st in (State.TRANSFERRING, State.DECODING):
            # (a restored sequence not yet started holds its context: nothing past it)
            g = (inst.generated(r) if st is State.DECODING and (f is None or f.loaded is None)
                 else 0)
            copy = store.get(r.id) if store is not None and st is State.DECODING else None
            self._drop(r, inst)     # (what it held on inst, staging included, died with it)
            if copy is not None and copy[0]:     # a host copy of its first copy[0] tokens
                self._lost(inst, r, r.input_tokens + g, kept=copy[0])
                h = _hit(r)
                h.source, h.stored, h.blocks = inst, copy[0], copy[1]
                inst.restoring += copy[1]
                return RESTORE, g
            self._lost(inst, r, r.input_tokens + g)
            return RECOMPUTE, g
        return None

    def _drop(self, r: Request, gone=None) -> None:
        """``r``'s handoff in progress (if any) stops and gives back what it holds (on
        instances other than ``gone``); the bytes it had sent count in ``kv_bytes_resent``."""
        h = r.xfer
        if h is None:
            return
        r.xfer = None
        sent = h.drop(self.sim.link, gone)
        self.kv_bytes_resent += sent
        _hit(r).resent += sent

    def _restream(self, r: Request, gone=None) -> None:
        """A layer-wise stream beside ``r``'s prefill stops (its receiver crashed, or its link
        went down): once the prefill ends, the KV goes whole to another decode instance. A
        transfer retried; the request itself stays where it is (not a retry)."""
        self._drop(r, gone)
        _stop(r.xproc)
        r.xproc = None
        r.started = r.kv_granted = None
        r.kv_blocks = self.by_name[r.prefill_instance].kv.blocks(r.input_tokens)  # (its own)
        self.transfers_retried += 1
        _hit(r).transfers += 1

    def _lost(self, inst, r: Request, tokens: int, kept: int = 0) -> None:
        """KV of ``tokens`` tokens of ``r`` on ``inst`` is gone and will be computed again,
        but for the first ``kept`` (a host copy holds them)."""
        self.recomputed_tokens += tokens - kept
        pool = inst.pool
        m, fmt = inst.step.model, kv_format(inst.step)
        lost = ((m.kv_tokens(tokens, *fmt) - (m.kv_tokens(kept, *fmt) if kept else 0))
                * pool.memory.kv_bytes_per_token * pool.spec.attn_tp)
        self.kv_bytes_lost += lost
        h = _hit(r)
        h.recomputed += tokens - kept
        h.kv_bytes_lost += lost

    @staticmethod
    def _let_go(f: _Hit) -> None:
        """The host copy a restore read (or would have) goes back to its store."""
        c = f.source
        if f.blocks:
            c.restoring -= f.blocks
            c.host.release(f.blocks)
        f.source, f.blocks = None, 0

    def _unrestore(self, r: Request) -> None:
        """The restore of ``r`` failed: the tokens its copy held are recomputed too."""
        f = r.fault
        self._lost(f.source, r, f.stored)
        self._let_go(f)

    def _restore(self, req: Request):
        """Read ``req``'s host copy from the crashed instance into a live decode instance
        that reads the same KV format (its room reserved first, as a handoff's), then decode
        there: the tail past the copy is recomputed there (``DecodeInstance._restart``).
        With no such instance it recomputes at once."""
        f, sim = req.fault, self.sim
        c, link = f.source, sim.link
        cands = [d for d in sim._decoders(req) if not kv_mismatch(d.pool, c.pool)]
        if not cands:
            self._unrestore(req)
            req.to(State.CREATED)
            yield from self._route(req)
            return
        ok = [d for d in cands if not d.outages
              and self._down.isdisjoint(link.restore_path(c, d)[0])]
        d = (sim.router_decode.pick(ok, req) if ok else
             (yield from self.pick(sim.router_decode, cands, req)))
        h = req.xfer = Handoff(req, d)
        req.decode_instance = d.name
        yield h.reserve()
        req.to(State.TRANSFERRING)
        ports, setup = link.restore_path(c, d)
        nbytes = c.copy_bytes(f.stored)
        h.flow = link.net.transfer(ports, nbytes, setup)
        yield h.flow
        h.flow = req.xfer = None
        self.restored += f.restored == 0       # (requests: one restored twice counts once)
        self.kv_bytes_restored += nbytes
        f.restored += nbytes
        f.loaded = f.stored
        self._let_go(f)
        yield d.join(req)

    # --- request lifecycles --------------------------------------------------------------
    def serve(self, req: Request):
        """The request's lifecycle, started again where a fault leaves it."""
        req.proc = self.env.active_process
        stage = self._route(req)
        while True:
            try:
                yield from stage
                return
            except simpy.Interrupt as i:
                stage = self._recover(req, *i.cause)
            except _Gone:
                return

    def _recover(self, req: Request, kind: str, generated: int):
        """The next stage of ``req`` after a fault moved it (or nothing: it failed)."""
        f = req.fault
        f.pending = False
        f.retries += 1
        self.retried += f.retries == 1
        if f.first_token_s != f.first_token_s:    # the client's first token, kept
            f.first_token_s = req.first_token_s
        if req.gen % 2:       # it was running: a stopped generation (see DecodeInstance)
            req.gen += 1
        # (swap space dies with its engine; a write-through copy is ``f.source``'s)
        req.ctx0 = req.swapped = 0
        req.xfer = req.xproc = req.started = req.kv_granted = f.loaded = None
        if f.source is not None and kind != RESTORE:     # a restore that failed
            self._unrestore(req)
        if kind != RESTORE:   # (a restore keeps the record of the prompt's handoff)
            nan = math.nan
            req.transfer_start_s = req.transfer_end_s = req.kv_reserved_s = nan
            req.kv_ready_s = nan
        p = self.by_name.get(req.prefill_instance)
        if kind == REHANDOFF and p.name in self.crashed:   # its owner crashed meanwhile
            kind = REPREFILL
        why = ("retry_limit" if f.retries > self.retry_limit else
               "timeout" if self._late(req) else None)
        if why:
            if kind == REHANDOFF:       # the prefill side lets its copy go
                p.release(p.kv.blocks(req.input_tokens))
            if kind == RESTORE:
                self._let_go(f)
            req.fail(why)
            return iter(())
        like = self.by_name.get(req.decode_instance)    # (where its KV was converted for)
        req.decode_instance = ""
        if kind == REHANDOFF:
            self.transfers_retried += 1
            f.transfers += 1
            if req.state is not State.WAIT_KV:   # (it may still wait for its decode room)
                req.to(State.WAIT_KV)
            req.kv_blocks = p.kv.blocks(req.input_tokens)
            return self.sim._handoff(req, p, like)
        if kind in (RECOMPUTE, RESTORE):
            req.input_tokens += generated
            req.output_tokens -= generated
            req.reserve_out -= generated     # the client's limit counts what was written
        if kind == RESTORE:
            req.to(State.WAIT_KV)
            return self._restore(req)
        req.to(State.CREATED)
        return self._route(req)

    def _route(self, req: Request):
        """From routing (among live instances) to the request's end."""
        sim = self.sim
        target = ((yield from self.pick(sim.router_prefill, sim.entry, req))
                  if sim.prefills else None)
        yield from sim._stage(req, target)

    def reachable(self, p, candidates: list) -> list:
        """The ``candidates`` that are live and whose path from ``p`` crosses no link group
        that is down."""
        live = [d for d in candidates if not d.outages]
        if not self._down:
            return live
        path = self.sim.link.path
        return [d for d in live if self._down.isdisjoint(path(p, d)[0])]

    def pick_receiver(self, p, candidates: list, req: Request, prefer=None):
        """The decode instance the KV of ``req`` on prefill ``p`` goes to: ``prefer`` (chosen
        as the prefill began) if it is still reachable, else a reachable one (the sender sees
        a dead link at once: NOTE, an assumption as for the resend), else as ``pick`` (a
        path that is down stalls until the link is back)."""
        ok = self.reachable(p, candidates)
        if prefer is not None and prefer in ok:
            return prefer
        if ok:
            return self.sim.router_decode.pick(ok, req)
        return (yield from self.pick(self.sim.router_decode, candidates, req))

    def stream(self, req: Request, p, d):
        """A layer-wise handoff in its own process; a fault stops it (having given back what
        it held: ``_drop``)."""
        try:
            yield from self.sim.link.handoff(req, p, d)
        except simpy.Interrupt:
            pass

    def _late(self, req: Request) -> bool:
        return (self.timeout_s is not None
                and self.env.now >= req.arrival_s + self.timeout_s)

    def pick(self, router, candidates: list, req: Request):
        """``router``'s pick among the live ``candidates``; with none live, wait for a repair
        (failing the request at its timeout)."""
        env = self.env
        while True:
            live = [c for c in candidates if not c.outages]
            if live:
                return router.pick(live, req)
            wait = self.repaired
            if self.timeout_s is not None:
                left = req.arrival_s + self.timeout_s - env.now
                if left <= 0:
                    f = _hit(req)
                    if f.source is not None:        # a restore: its host copy goes
                        self._let_go(f)
                    elif req.state is State.WAIT_KV:   # its prompt's KV, held on prefill
                        p = self.by_name[req.prefill_instance]
                        p.release(p.kv.blocks(req.input_tokens))
                    req.fail("timeout")
                    raise _Gone
                wait = wait | env.timeout(left)
            yield wait

    # --- the end -------------------------------------------------------------------------
    def restore(self, reqs: list[Request]) -> None:
        """Each moved request's record shows what the client asked for and first saw."""
        for r in reqs:
            f = r.fault
            if f is not None:
                r.input_tokens, r.output_tokens = f.input_tokens, f.output_tokens
                if f.first_token_s == f.first_token_s:
                    r.first_token_s = f.first_token_s

    def stats(self) -> FaultStats:
        pools = {n: i.pool.name for n, i in self.by_name.items()}
        return FaultStats(self.applied, self.retried, self.transfers_retried,
                          self.recomputed_tokens, self.lost_prefill_tokens, self.kv_bytes_lost,
                          {n: tuple(v) for n, v in self.outages.items()}, pools,
                          tuple(self.link_faults),
                          tuple((r.id, f.retries, f.transfers, f.recomputed, f.lost_prefill,
                                 f.kv_bytes_lost, f.resent, f.restored)
                                for r in sorted(self.sim.struck, key=lambda r: r.id)
                                if (f := r.fault) is not None),
                          degrades=tuple(self.degrades), kv_bytes_resent=self.kv_bytes_resent,
                          restored=self.restored, kv_bytes_restored=self.kv_bytes_restored)
