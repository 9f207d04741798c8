"""Serving instances (one TP group each) as SimPy processes.

- ``PrefillInstance``: FIFO queue -> batched prefill under a token budget; the prompt's KV stays
  in its memory until the transfer to decode has completed (the sender owns it until then).
- ``DecodeInstance``: continuous batching; a decode step is O(1) in the batch size because only
  (batch, sum of contexts) enter the cost, and completions come off a heap keyed by step.
- ``MixedInstance``: colocated continuous batching with chunked prefill (the non-disaggregated
  baseline): each iteration fills its token budget with the decode tokens first, then prompt
  chunks, so long prompts slow the decodes that share the iteration. It also accepts KV handed
  over from a remote prefill pool (the length-threshold / PrfaaS pattern).
- ``OnDemandDecodeInstance``: KV grows block by block; when no block is free the newest
  sequence is preempted and later recomputed or swapped back from a host-DRAM tier.

Work that is not a model iteration but occupies the device (KV format conversion, staging
copies, swap and prefix-cache transfers) is queued with ``add_work`` and runs inside the next
iteration, so it delays every sequence on the instance, as it does on a real engine.
"""
from __future__ import annotations

import heapq
from collections import deque

import simpy

from ..perf import StepModel
from .memory import BlockPool
from .request import Request, State

__all__ = ["PrefillInstance", "DecodeInstance", "MixedInstance", "OnDemandDecodeInstance"]


class _Instance:
    def __init__(self, env: simpy.Environment, name: str, pool, step: StepModel):
        self.env, self.name, self.pool, self.step = env, name, pool, step
        spec = pool.spec
        self.max_tokens, self.max_seqs = spec.max_batch_tokens, spec.max_seqs
        self.kv = BlockPool(env, pool.memory.kv_blocks, spec.block_size)
        self.busy_s = 0.0
        self.iterations = 0
        self.decode_tokens = 0        # decode tokens produced
        self.decode_token_s = 0.0     # sum over decode steps of step time x batch
        self.load_tokens = 0   # outstanding token work, for routers
        self.n_requests = 0    # requests assigned and not finished here
        self.role = spec.role
        self.port = None       # KV-transfer NIC (disaggregated placements)
        self.work_s = 0.0      # non-iteration work done (conversion, copies, swaps)
        self._work: list[tuple[float, simpy.Event]] = []
        self._wake: simpy.Event | None = None
        env.process(self._run())

    def add_work(self, seconds: float) -> simpy.Event:
        """Queue device work (e.g. a KV conversion pass); fires when the iteration running it
        ends. Zero work fires at once."""
        ev = self.env.event()
        if seconds <= 0:
            ev.succeed()
            return ev
        self._work.append((seconds, ev))
        self._notify()
        return ev

    def _take_work(self) -> tuple[float, list]:
        if not self._work:
            return 0.0, []
        work, self._work = self._work, []
        t = sum(w for w, _ in work)
        self.work_s += t
        return t, [ev for _, ev in work]

    def _notify(self) -> None:
        if self._wake is not None:
            ev, self._wake = self._wake, None
            ev.succeed()

    def _sleep(self) -> simpy.Event:
        self._wake = self.env.event()
        return self._wake

    def _iterate(self, t: float):
        self.busy_s += t
        self.iterations += 1
        return self.env.timeout(t)

    def _work_only(self):
        """An iteration that runs only queued device work."""
        t, evs = self._take_work()
        yield self._iterate(t)
        for ev in evs:
            ev.succeed()

    def _prefix(self, req: Request) -> None:
        """Set the prompt tokens served from the prefix cache (whole blocks, at least one token
        left to compute so the prompt yields logits)."""
        pc = self.pool.spec.prefix_cache
        if pc is not None and pc.hit_rate > 0:
            bs = self.kv.block_size
            req.cached_tokens = min(req.input_tokens - 1,
                                    int(pc.hit_rate * req.input_tokens) // bs * bs)

    def fetch_time(self, req: Request) -> float:
        """Prefix-cache fetch from host memory before the prompt can run (0 if HBM-resident):
        every rank pulls its shard of the cached KV over its own host link."""
        pc = self.pool.spec.prefix_cache
        if pc is None or pc.residency != "host" or not req.cached_tokens:
            return 0.0
        link = self.pool.cache_link
        nbytes = req.cached_tokens * self.pool.memory.kv_bytes_per_token
        return link.latency + nbytes / link.bandwidth


class PrefillInstance(_Instance):
    def __init__(self, *a):
        self.queue: deque[Request] = deque()
        self.on_start = None     # hook(request) -> extra seconds fused into its iteration
        self.held = 0            # blocks of finished prompts still owned here (staging)
        self.held_peak = 0
        self.timeline: list[tuple[float, int]] = []   # (time, held blocks) at each change
        self._held_area = 0.0
        self._held_last = 0.0
        super().__init__(*a)

    def _hold(self, delta: int) -> None:
        now = self.env.now
        self._held_area += self.held * (now - self._held_last)
        self._held_last = now
        self.held += delta
        self.held_peak = max(self.held_peak, self.held)
        self.timeline.append((now, self.held))

    def mean_held(self, until: float) -> float:
        """Mean blocks held over [0, until] (``until`` >= the last change); changes nothing."""
        area = self._held_area + self.held * (until - self._held_last)
        return area / until if until > 0 else 0.0

    def fits(self, req: Request) -> bool:
        return self.kv.blocks(req.input_tokens) <= self.kv.capacity

    def submit(self, req: Request) -> simpy.Event:
        """Queue a prompt; the returned event fires when its prefill (first token) is done."""
        req.to(State.QUEUED)
        req.prefill_instance = self.name
        req.done = self.env.event()
        self._prefix(req)
        self.queue.append(req)
        self.load_tokens += req.input_tokens
        self.n_requests += 1
        self._notify()
        return req.done

    def release(self, blocks: int) -> None:
        """The consumer has the KV (or the request ended here): free the prompt's blocks."""
        self._hold(-blocks)
        self.kv.release(blocks)
        self.n_requests -= 1

    def _run(self):
        env, q = self.env, self.queue
        while True:
            if not q:
                if self._work:
                    yield from self._work_only()
                    continue
                yield self._sleep()
                continue
            batch, tokens = [], 0
            while q and len(batch) < self.max_seqs:
                r = q[0]
                if batch and tokens + r.input_tokens > self.max_tokens:
                    break
                blocks = self.kv.blocks(r.input_tokens)
                if not self.kv.try_reserve(blocks):
                    break
                q.popleft()
                r.kv_blocks = blocks
                r.to(State.PREFILLING)
                r.prefill_start_s = env.now
                batch.append(r)
                tokens += r.input_tokens
            if not batch:  # head of queue waits for KV held by earlier prompts to leave
                if self._work:
                    yield from self._work_only()
                    continue
                yield self.kv.wait_release()
                continue
            work, evs = self._take_work()
            t = (self.step.time([(r.input_tokens - r.cached_tokens, r.input_tokens)
                                 for r in batch], n_logits_prefill=len(batch))
                 + sum(self.fetch_time(r) for r in batch) + work)
            if self.on_start is not None:
                t += sum(self.on_start(r) for r in batch)
            for r in batch:
                r.prefill_end_expected = env.now + t
                if r.started is not None:
                    r.started.succeed()
            yield self._iterate(t)
            for ev in evs:
                ev.succeed()
            self._hold(sum(r.kv_blocks for r in batch))
            for r in batch:
                r.prefill_end_s = r.first_token_s = env.now
                self.load_tokens -= r.input_tokens
                r.done.succeed()


class DecodeInstance(_Instance):
    def __init__(self, *a):
        self.pending: deque[Request] = deque()
        self.active: list[tuple[int, int, Request]] = []   # heap of (done_step, id, request)
        self.step_no = 0
        self.ctx_sum = 0
        super().__init__(*a)

    def fits(self, req: Request) -> bool:
        return self.kv.blocks(req.input_tokens + req.output_tokens) <= self.kv.capacity

    def reserve(self, req: Request) -> simpy.Event:
        """Reserve KV blocks for the whole request (prompt + output) before the pull."""
        req.kv_blocks = self.kv.blocks(req.input_tokens + req.output_tokens)
        req.decode_instance = self.name
        self.load_tokens += req.input_tokens + req.output_tokens
        self.n_requests += 1
        return self.kv.reserve(req.kv_blocks)

    def join(self, req: Request) -> simpy.Event:
        """The KV has arrived; the event fires at the request's last token."""
        req.to(State.DECODING)
        req.done = self.env.event()
        self.pending.append(req)
        self._notify()
        return req.done

    def _admit(self) -> None:
        while self.pending and len(self.active) < self.max_seqs:
            r = self.pending.popleft()
            r.decode_start_s = self.env.now
            # the first token came from prefill; output_tokens - 1 steps remain
            r.done_step = self.step_no + r.output_tokens - 1
            heapq.heappush(self.active, (r.done_step, r.id, r))
            self.ctx_sum += r.input_tokens + 1

    def _complete(self, r: Request) -> None:
        """Last token produced: release the request's KV and hand it back."""
        r.last_token_s = self.env.now
        self.kv.release(r.kv_blocks)
        self.load_tokens -= r.input_tokens + r.output_tokens
        self.n_requests -= 1
        r.to(State.COMPLETED)
        r.done.succeed()

    def _finish(self) -> None:
        active = self.active
        while active and active[0][0] <= self.step_no:
            _, _, r = heapq.heappop(active)
            self.ctx_sum -= r.input_tokens + r.output_tokens
            self._complete(r)

    def _run(self):
        while True:
            self._admit()
            n = len(self.active)
            if n == 0:
                if self._work:
                    yield from self._work_only()
                else:
                    yield self._sleep()
                continue
            assert self.kv.used <= self.kv.capacity, "KV blocks over-committed"
            t = self.step.decode_time(n, self.ctx_sum)
            self.decode_tokens += n
            self.decode_token_s += t * n
            if self._work:
                work, evs = self._take_work()
                yield self._iterate(t + work)
                for ev in evs:
                    ev.succeed()
            else:
                yield self._iterate(t)
            self.step_no += 1
            self.ctx_sum += n
            self._finish()


class MixedInstance(DecodeInstance):
    """Colocated prefill + decode with chunked prefill (Sarathi-Serve / vLLM style)."""

    def __init__(self, *a):
        self.waiting: deque[Request] = deque()
        self.prefilling: list[list] = []   # [request, tokens already prefilled]
        self._fetch = 0.0                  # prefix-cache fetches for the next iteration
        super().__init__(*a)

    def fits(self, req: Request) -> bool:
        return DecodeInstance.fits(self, req)

    def submit(self, req: Request) -> simpy.Event:
        req.to(State.QUEUED)
        req.prefill_instance = req.decode_instance = self.name
        req.done = self.env.event()
        self._prefix(req)
        self.waiting.append(req)
        self.load_tokens += req.input_tokens + req.output_tokens
        self.n_requests += 1
        self._notify()
        return req.done

    def _plan_chunks(self):
        """Fill the iteration's token budget: decodes first, running prompts, then new ones."""
        budget = self.max_tokens - len(self.active)
        seqs = len(self.active) + len(self.prefilling)
        queued = sum(r.input_tokens - done for r, done in self.prefilling)
        while self.waiting and seqs < self.max_seqs and queued < budget:
            r = self.waiting[0]
            blocks = self.kv.blocks(r.input_tokens + r.output_tokens)
            if not self.kv.try_reserve(blocks):
                break
            self.waiting.popleft()
            r.kv_blocks = blocks
            r.to(State.PREFILLING)
            r.prefill_start_s = self.env.now
            self.prefilling.append([r, r.cached_tokens])
            self._fetch += self.fetch_time(r)
            queued += r.input_tokens - r.cached_tokens
            seqs += 1
        chunks, plan = [], []
        for entry in self.prefilling:
            if budget <= 0:
                break
            r, done = entry
            c = min(r.input_tokens - done, budget)
            chunks.append((c, done + c))
            plan.append((entry, c))
            budget -= c
        return chunks, plan

    def _run(self):
        env = self.env
        while True:
            self._admit()
            chunks, plan = self._plan_chunks()
            n = len(self.active)
            if n == 0 and not chunks:
                if self._work:
                    yield from self._work_only()
                    continue
                yield (self._sleep() if not self.waiting else self.kv.wait_release())
                continue
            finishing = [e for e, c in plan if e[1] + c == e[0].input_tokens]
            work, evs = self._take_work()
            t = self.step.time(chunks, len(finishing), n, self.ctx_sum)
            self.decode_tokens += n
            self.decode_token_s += t * n
            yield self._iterate(t + work + self._fetch)
            self._fetch = 0.0
            for ev in evs:
                ev.succeed()
            self.step_no += 1
            self.ctx_sum += n
            self._finish()
            for entry, c in plan:
                entry[1] += c
            for entry in finishing:
                r = entry[0]
                self.prefilling.remove(entry)
                r.prefill_end_s = r.first_token_s = env.now
                if r.output_tokens == 1:
                    self._complete(r)
                else:
                    r.to(State.DECODING)
                    self.pending.append(r)


class OnDemandDecodeInstance(DecodeInstance):
    """Decode with KV that grows one block at a time (vLLM's PagedAttention scheduler).

    A request is admitted with blocks for its prompt plus the first generated token. Before each
    step the requests whose context crosses a block boundary take one more block; when none is
    free the most recently admitted sequence is preempted (vLLM's LIFO victim):
    - ``recompute``: its KV is dropped; on re-admission the instance re-prefills prompt +
      generated tokens (a chunk of that many tokens in its next iteration);
    - ``swap``: its KV is copied to the host tier over the host link (the copy occupies the
      iteration), and copied back on re-admission; if the host tier is full it is recomputed.
    Preempted requests are re-admitted before newly arrived ones, and while any waits no new KV
    reservation (an incoming transfer) is granted. Growth events come off a heap keyed by step,
    so the cost is O(blocks), not O(tokens).
    """

    def __init__(self, *a):
        self.grow: list = []             # heap of (step needing a block, id, gen, request)
        self.order: list = []            # admission order, for LIFO victims: (gen, request)
        self.preempted: deque[Request] = deque()
        self.running = 0                 # live sequences (the heaps hold stale entries too)
        self.preemptions = 0
        self.swapped_bytes = 0.0
        self.recomputed_tokens = 0
        self.preemption_s = 0.0          # device time spent swapping and recomputing
        self._extra = 0.0                # swap / recompute time for the next iteration
        super().__init__(*a)
        spec = self.pool.spec
        self.policy = spec.preemption_policy
        self.host = BlockPool(self.env, 0, spec.block_size)
        if spec.kv_offload is not None:
            self.host.capacity = int(spec.kv_offload.capacity_gb * 1e9 // (
                self.pool.memory.kv_bytes_per_token * self.pool.spec.tp * spec.block_size))
        self.host_link = self.pool.offload_link
        self.kv.gate = lambda: not self.preempted

    def reserve(self, req: Request) -> simpy.Event:
        req.kv_blocks = self.kv.blocks(req.input_tokens + 1)
        req.decode_instance = self.name
        self.load_tokens += req.input_tokens + req.output_tokens
        self.n_requests += 1
        return self.kv.reserve(req.kv_blocks)

    def _start(self, r: Request, ctx: int, remaining: int) -> None:
        """Put ``r`` in the running batch at context ``ctx`` with ``remaining`` steps to go."""
        r.gen += 1
        r.ctx0, r.step0 = ctx, self.step_no
        r.done_step = self.step_no + remaining
        heapq.heappush(self.active, (r.done_step, r.id, r.gen, r))
        self.order.append((r.gen, r))
        self.running += 1
        self.ctx_sum += ctx
        self._schedule_growth(r)

    def _schedule_growth(self, r: Request) -> None:
        # context at step k is ctx0 + k - step0; a block is needed when it exceeds the blocks held
        k = r.step0 + r.kv_blocks * self.kv.block_size + 1 - r.ctx0
        if k < r.done_step:
            heapq.heappush(self.grow, (k, r.id, r.gen, r))

    def _ctx(self, r: Request) -> int:
        return r.ctx0 + self.step_no - r.step0

    def _admit(self) -> None:
        bs, kv = self.kv.block_size, self.kv
        while self.preempted and self.running < self.max_seqs:
            r = self.preempted[0]
            need = kv.blocks(r.ctx0)
            if need > kv.free:
                break
            self.preempted.popleft()
            kv._take(need)
            r.kv_blocks = need
            if r.swapped:
                self.host.release(r.swapped)
                self._extra += self._swap_time(r.swapped * bs)
                r.swapped = 0
            else:   # recompute the KV of everything but the token this step writes
                self._extra += (self.step.time([(r.ctx0 - 1, r.ctx0 - 1)])
                                - self.step.pm.iteration_overhead)
                self.recomputed_tokens += r.ctx0 - 1
            self._start(r, r.ctx0, r.remaining)
        if not self.preempted:
            self.kv.grant()      # the gate opened: queued reservations may go now
        while self.pending and self.running < self.max_seqs:
            r = self.pending.popleft()
            r.decode_start_s = self.env.now
            self._start(r, r.input_tokens + 1, r.output_tokens - 1)

    def _swap_time(self, tokens: int) -> float:
        """Each rank copies its shard over its own host link."""
        link = self.host_link
        return link.latency + tokens * self.pool.memory.kv_bytes_per_token / link.bandwidth

    @staticmethod
    def _live(gen: int, r: Request) -> bool:
        return r.gen == gen and r.state is State.DECODING

    def _preempt_one(self) -> Request | None:
        while self.order:
            gen, v = self.order.pop()
            if self._live(gen, v):
                break
        else:
            return None
        ctx = self._ctx(v)
        self.running -= 1
        v.remaining = v.done_step - self.step_no
        v.ctx0 = ctx
        v.gen += 1
        self.ctx_sum -= ctx
        v.preemptions += 1
        self.preemptions += 1
        blocks, held = v.kv_blocks, ctx - 1
        if self.policy == "swap" and self.host.try_reserve(self.host.blocks(held)):
            v.swapped = self.host.blocks(held)
            self._extra += self._swap_time(held)
            self.swapped_bytes += held * self.pool.memory.kv_bytes_per_token * self.pool.spec.tp
        self.kv.release(blocks)
        v.kv_blocks = 0
        self.preempted.appendleft(v)
        return v

    def _grow(self) -> None:
        grow, kv = self.grow, self.kv
        while grow and grow[0][0] <= self.step_no:
            _, _, gen, r = heapq.heappop(grow)
            if not self._live(gen, r):
                continue
            while kv.free < 1:
                v = self._preempt_one()
                assert v is not None, "a running sequence must be preemptible"
                if v is r:
                    break
            if r.gen != gen:   # it was the victim
                continue
            kv._take(1)
            r.kv_blocks += 1
            self._schedule_growth(r)
        assert kv.used <= kv.capacity, "KV blocks over-committed"

    def _finish(self) -> None:
        active = self.active
        while active and active[0][0] <= self.step_no:
            _, _, gen, r = heapq.heappop(active)
            if not self._live(gen, r):
                continue
            self.ctx_sum -= self._ctx(r)
            self.running -= 1
            r.gen += 1
            self._complete(r)

    def _run(self):
        while True:
            self._admit()
            self._grow()
            n = self.running
            if n == 0:
                if self._work or self._extra:
                    self.preemption_s += self._extra
                    self._work.append((self._extra, self.env.event()))
                    self._extra = 0.0
                    yield from self._work_only()
                elif self.preempted:
                    yield self.kv.wait_release() | self._sleep()
                else:
                    yield self._sleep()
                continue
            work, evs = self._take_work()
            t = self.step.decode_time(n, self.ctx_sum)
            self.decode_tokens += n
            self.decode_token_s += t * n
            extra, self._extra = self._extra, 0.0
            self.preemption_s += extra
            yield self._iterate(t + work + extra)
            for ev in evs:
                ev.succeed()
            self.step_no += 1
            self.ctx_sum += n
            self._finish()
