"""One serving instance (one TP group) as a SimPy process running one iteration loop.

Every instance kind runs the same loop; a kind says only what its next iteration holds
(``_schedule``: the model time, or None when there is nothing to run), what to do when idle
(``_idle``), as the iteration begins (``_begin``) and once it ends (``_after``). Which requests
join an iteration is the scheduler policy's choice (:mod:`hetsim.engine.policy`).

Work that is not a model iteration but occupies the device (KV format conversion, staging
copies) is queued with ``add_work`` and runs inside the next iteration, so it delays every
sequence on the instance, as it does on a real engine. ``_extra`` is device time the kind
itself adds to the next iteration (prefix-cache fetches, swaps, recomputation, conversion).

Faults (:mod:`hetsim.engine.faults`) interrupt the loop's process: a ``Hang`` freezes the
iteration in progress for its duration (then it ends as it would have), a crash ends the
process (``reset`` empties the instance; a new process starts on repair). A degrade sets
``speed``, which the iterations that start while it lasts run at.
"""
from __future__ import annotations

import math

import simpy

from ..perf import StepModel
from .environment import at
from .memory import BlockPool
from .policy import SchedulerPolicy, policy_for
from .request import Request, State
from .stats import InstanceStats, KVStats

__all__ = ["Instance", "Hang", "kv_window", "kv_state_blocks", "attention_ranks"]


class Hang(float):
    """An interrupt's cause: the instance stops iterating for this many seconds (any other
    cause is a crash)."""


def kv_window(model) -> tuple[int, int, int] | None:
    """A :class:`BlockPool`'s ``window`` for ``model``: (window tokens, windowed layers,
    full-attention layers), or None without sliding-window layers."""
    w = model.sliding_window
    return (w.size, w.layers, model.full_attention_layers) if w else None


def kv_state_blocks(step: StepModel, block_size: int) -> int:
    """A :class:`BlockPool`'s ``state`` for ``step``'s model at its KV format and TP: the
    blocks one sequence's linear-attention state takes (0 without such layers), its
    ``kv_tokens(0)`` (the state in tokens of full-attention KV) rounded up to whole blocks.
    NOTE: one elastic pool holds both, as aiconfigurator-core 0.12.0 sizes Qwen3.5's memory."""
    m = step.model
    if m.linear_attention is None:
        return 0
    return math.ceil(m.kv_tokens(0, *kv_format(step)) / block_size)


def attention_ranks(spec) -> int:
    """A pool spec's attention data-parallel ranks per instance (1 where it sets none)."""
    return getattr(spec, "attention_dp", None) or 1


def kv_format(step: StepModel) -> tuple[str, int]:
    """(KV format, TP): the arguments of ``model.kv_tokens`` for a sequence on ``step``'s
    instance (they matter only to a linear-attention model's state)."""
    return step.formats.kv, step.attn_tp


class Instance:
    """What every kind owns: its KV block pool, its ports (``ports``: the KV-transfer NIC and
    friends, None when colocated), a push staging buffer (``staging``, or None), the device
    work queue, and the counters its statistics snapshot reads."""
    role = ""
    begins = False   # the kind has a _begin (checked, not called, on the hot path)
    spans = False    # the kind runs quiet iterations as one event (``_span_from``)
    whole_window = False   # KV blocks: a whole window per sequence (see BlockPool)

    def __init__(self, env: simpy.Environment, name: str, pool, step: StepModel, *,
                 ports=None, staging: BlockPool | None = None,
                 policy: SchedulerPolicy | None = None):
        self.env, self.name, self.pool, self.step = env, name, pool, step
        spec = pool.spec
        # NOTE: with attention DP each of the dp ranks is its own scheduler with these limits:
        # the instance runs up to dp x each, one prompt chunk at most one rank's budget
        # (``chunk_tokens``); its step model splits the batch over the ranks
        dp = attention_ranks(spec)
        self.max_tokens, self.max_seqs = spec.max_batch_tokens * dp, spec.max_seqs * dp
        self.chunk_tokens = spec.max_batch_tokens
        #: attention DP ranks: a request lives on one, so its KV must fit one rank's share
        #: of the block pool (``rank_capacity``), though the pool is the N ranks' together
        self.dp = dp
        self.rules = rules = pool.rules      # the serving runtime's (None: idealised)
        self.policy = policy if policy is not None else policy_for(rules)
        self.overlap = rules is not None and rules.overlap
        #: the runtime's per-request time outside the engine (frontend; the simulation pays
        #: it before routing)
        self.frontend_s = rules.request_overhead_s if rules is not None else 0.0
        self.kv = BlockPool(env, pool.memory.kv_blocks, spec.block_size, gate=self._gate(),
                            window=kv_window(step.model), whole_window=self.whole_window,
                            state=kv_state_blocks(step, spec.block_size))
        self._kv_format = kv_format(step)
        self.ports, self.staging = ports, staging
        self.port = ports.nic if ports is not None else None   # what routers look at
        self.busy_s = 0.0
        self.iterations = 0
        self.work_s = 0.0      # device work done besides iterations (add_work)
        self.decode_tokens = 0        # decode tokens produced
        self.decode_token_s = 0.0     # sum over decode steps of step time x batch
        self.load_tokens = 0   # outstanding token work, for routers
        self.n_requests = 0    # requests assigned and not finished here
        self._extra = 0.0
        self._work: list[tuple[float, simpy.Event]] = []
        self._wake: simpy.Event | None = None
        self._step_end = 0.0   # when the running iteration ends
        self._hung_until = 0.0  # when the last hang ends (the iteration then runs its rest)
        self.outages = 0       # faults holding it down now (routers skip it while > 0)
        #: 1, or the product of the factors of the degrades on it now (faults): an iteration
        #: takes 1/speed as long; one in progress keeps the speed it started with
        self.speed = 1.0
        self.resets = 0        # crashes that emptied it (a handoff checks none came between)
        self._span = None      # the span of iterations running (``_span_from``), or None
        self.proc = env.process(self._run())

    def _gate(self):
        """The KV pool's gate (None: reservations are granted whenever they fit)."""
        return None

    # --- device work ---------------------------------------------------------------------
    def add_work(self, seconds: float) -> simpy.Event:
        """Queue device work (e.g. a KV conversion pass); fires when the iteration running it
        ends. Zero work fires at once."""
        ev = self.env.event()
        if seconds <= 0:
            ev.succeed()
            return ev
        self.cut()
        self._work.append((seconds, ev))
        self._notify()
        return ev

    def _take_work(self) -> tuple[float, list | tuple]:
        if not self._work:
            return 0.0, ()
        work, self._work = self._work, []
        t = sum(w for w, _ in work)
        self.work_s += t
        return t, [ev for _, ev in work]

    def _take_extra(self) -> float:
        extra, self._extra = self._extra, 0.0
        return extra

    # --- the loop ------------------------------------------------------------------------
    def _notify(self) -> None:
        if self._wake is not None:
            ev, self._wake = self._wake, None
            ev.succeed()

    def _sleep(self) -> simpy.Event:
        self._wake = self.env.event()
        return self._wake

    def _iterate(self, t: float, end: float | None = None):
        """Begin an iteration of ``t`` seconds: the event the loop waits on fires when it
        ends, or at ``end`` where the kind runs a span of iterations from it (``_span_from``)."""
        self.busy_s += t
        self.iterations += 1
        self._step_end = self.env.now + t
        return self.env.timeout(t) if end is None else at(self.env, end)

    def _run(self):
        # NOTE: the order of the sums below is part of the golden result (float addition).
        # A fault interrupts one of the three waits (try costs nothing until one does).
        while True:
            t = self._schedule()
            if t is None:    # nothing to compute: run queued device work, or wait
                if self._work or self._extra:
                    work, evs = self._take_work()
                    try:
                        yield self._iterate((work + self._take_extra()) / self.speed)
                    except simpy.Interrupt as i:
                        if not (yield from self._fault(i.cause)):
                            return
                    for ev in evs:
                        ev.succeed()
                else:
                    try:
                        yield self._idle()
                    except simpy.Interrupt as i:
                        if not (yield from self._fault(i.cause)):
                            return
                continue
            evs = ()
            plain = True       # the model's iteration alone (a span may start from it)
            if self._work:
                work, evs = self._take_work()
                t += work
                plain = False
            if self._extra:
                t += self._take_extra()
                plain = False
            if self.speed != 1.0:    # degraded (faults): everything on the device slower
                t /= self.speed
            if self.begins:
                self._begin(t)
            try:
                yield self._iterate(t, self._span_from(t) if plain and self.spans else None)
            except simpy.Interrupt as i:
                if not (yield from self._fault(i.cause)):
                    return
            for ev in evs:
                ev.succeed()
            if self._span is not None:
                self._end_span()
            self._after()

    def _fault(self, cause):
        """A fault struck the loop: False for a crash (the process ends), else (a hang) wait
        it out, plus what was left of the iteration in progress, and say True to go on.
        Hangs that overlap freeze it until the last of them ends (their union, not their sum:
        it is down exactly while a hang's outage lasts)."""
        env = self.env
        left = max(0.0, self._step_end - env.now)    # of the iteration, frozen meanwhile
        until = env.now
        while isinstance(cause, Hang):
            until = max(until, env.now + cause)
            self._hung_until, self._step_end = until, until + left
            try:
                yield env.timeout(self._step_end - env.now)
                return True
            except simpy.Interrupt as i:   # struck again while hung
                cause = i.cause
        return False

    # --- spans: quiet iterations as one event -------------------------------------------
    def _span_from(self, t: float) -> float | None:
        """Where an iteration of ``t`` begins now and the ones after it would run unchanged
        (the same sequences, nothing added), the kind may run them as one span: it returns
        when the last ends (the loop's event fires then), keeps their times in ``_span``,
        and applies each one's effects as it would have begun (``settle``). None: one
        iteration, as always."""
        return None

    def settle(self) -> None:
        """Bring the counters and state up to now inside a span (every iteration begun by
        now applied): anything that reads them from outside the loop calls this first."""
        if self._span is not None:
            self._settle(self.env.now)

    def cut(self) -> None:
        """Something changed what the next iteration would run (a sequence joined, work was
        queued, a fault struck, the speed changed): the span ends with the iteration in
        progress, and the loop goes on from there as it would have."""
        if self._span is not None:
            self._cut()

    def _settle(self, now: float) -> None:
        raise NotImplementedError

    def _cut(self) -> None:
        raise NotImplementedError

    def _end_span(self) -> None:
        self._settle(self.env.now)
        self._span = None

    def _schedule(self) -> float | None:
        raise NotImplementedError

    def _idle(self) -> simpy.Event:
        return self._sleep()

    def _begin(self, t: float) -> None:
        """The iteration about to run lasts ``t`` (called only where ``begins`` is set)."""

    def _after(self) -> None:
        raise NotImplementedError

    @property
    def rank_capacity(self) -> int:
        """KV blocks one attention data-parallel rank holds: what one request may take (the
        whole pool without attention DP)."""
        return self.kv.capacity // self.dp

    def reset(self) -> None:
        """A crash: everything on the instance is gone (its requests are moved by
        :mod:`hetsim.engine.faults`); it comes back cold. Counters for statistics stay."""
        self.settle()
        self.kv.clear()
        if self.staging is not None:
            self.staging.clear()
        self.resets += 1
        # busy_s counted the iteration in progress whole as it started: its rest never runs
        self.busy_s -= self.running_s(self.env.now)
        self._work, self._extra, self._wake, self._span = [], 0.0, None, None
        self.load_tokens = self.n_requests = 0
        self._step_end = self._hung_until = self.env.now    # (a hang ends with the crash)

    # --- prompts -------------------------------------------------------------------------
    def _prefix(self, req: Request) -> None:
        """Set the prompt tokens served from the prefix cache (whole blocks, at least one token
        left to compute so the prompt yields logits)."""
        pc = self.pool.spec.prefix_cache
        if pc is not None and pc.hit_rate > 0:
            bs = self.kv.block_size
            # NOTE: a recompute after a crash (faults) prefills prompt + generated tokens; the
            # generated ones were on the dead instance only, so the hits are the prompt's
            n = req.input_tokens if req.fault is None else req.fault.input_tokens
            req.cached_tokens = min(req.input_tokens - 1, int(pc.hit_rate * n) // bs * bs)

    def fetch_time(self, req: Request) -> float:
        """Prefix-cache fetch from host memory before the prompt can run (0 if HBM-resident):
        every rank pulls its shard of the cached KV over its own host link."""
        pc = self.pool.spec.prefix_cache
        if pc is None or pc.residency != "host" or not req.cached_tokens:
            return 0.0
        link = self.pool.cache_link
        tokens = self.step.model.kv_tokens(req.cached_tokens, *self._kv_format)  # window, state
        nbytes = tokens * self.pool.memory.kv_bytes_per_token
        return link.latency + nbytes / link.bandwidth

    def _queue_prompt(self, req: Request, load_tokens: int) -> simpy.Event:
        """A prompt arrives: queued; the returned event fires when this instance is done with
        it (first token on prefill, last token on mixed)."""
        req.to(State.QUEUED)
        req.prefill_instance = self.name
        req.done = self.env.event()
        if self.overlap:   # arrived while a step ran: the one scheduled beside it is formed
            req.eligible = self.iterations + (self.env.now < self._step_end)
        self._prefix(req)
        self.load_tokens += load_tokens
        self.n_requests += 1
        self._notify()
        return req.done

    def admit_prompt(self, req: Request, blocks: int) -> None:
        """The policy put ``req`` in the next iteration with ``blocks`` KV blocks reserved."""
        req.kv_blocks = blocks
        req.to(State.PREFILLING)
        req.prefill_start_s = self.env.now

    # --- statistics ----------------------------------------------------------------------
    def running_s(self, now: float) -> float:
        """The part of the running iteration still to run after ``now`` (0 when idle):
        ``busy_s`` counts an iteration whole as it starts; a hang in progress is not part of it."""
        return max(self._step_end - max(now, self._hung_until), 0.0)

    def restart_peaks(self) -> None:
        """Peaks count from now (the measured window opens)."""
        self.kv.peak = self.kv.used

    def stats(self, until: float, **kind) -> InstanceStats:
        """The snapshot metrics read, over [0, until] (inside a span: as it stands now)."""
        self.settle()
        kv = self.kv
        return InstanceStats(
            self.name, self.pool.name, self.role, self.busy_s, self.iterations, self.work_s,
            self.decode_tokens, self.decode_token_s,
            KVStats(kv.capacity, kv.used, kv.peak, kv.mean_occupancy(until)), **kind)
