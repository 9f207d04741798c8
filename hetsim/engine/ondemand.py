"""Decode with KV that grows one block at a time (vLLM's PagedAttention scheduler).

A request is admitted with blocks for its prompt plus the first generated token. Before each
step the requests whose context crosses a block boundary take one more block; when none is
free the policy's victim (vLLM: the most recently admitted sequence) is preempted:
- ``recompute``: its KV is dropped; on re-admission the instance re-prefills prompt +
  generated tokens (a chunk of that many tokens in its next iteration);
- ``swap``: its KV is copied to the host tier over the host link (the copy occupies the
  iteration), and copied back on re-admission; if the host tier is full it is recomputed.
Preempted requests are re-admitted before newly arrived ones, and while any waits no new KV
reservation (an incoming transfer) is granted. Growth events come off a heap keyed by step,
so the cost is O(blocks), not O(tokens).
"""
from __future__ import annotations

import heapq
from bisect import bisect_right
from collections import deque
from dataclasses import replace

import simpy

from .instances import DecodeInstance, MixedInstance
from .memory import BlockPool
from .network import Port
from .request import Request
from .stats import InstanceStats

__all__ = ["OnDemandDecodeInstance", "OnDemandMixedInstance", "WriteThroughDecodeInstance"]

#: stale entries ``order`` may gather beyond twice its live ones before it is compacted
_ORDER_SLACK = 64


class OnDemandDecodeInstance(DecodeInstance):
    """Owns besides a decode instance: the growth heap, the admission order (for victims),
    the preempted queue and the host-DRAM tier (a block pool over ``offload_link``).

    NOTE: with sliding-window layers a sequence holds a whole window's blocks from admission
    (``whole_window``), so only its full-attention blocks grow; it over-holds only while its
    context is shorter than the window (at most the window's blocks per sequence)."""
    whole_window = True
    every_step = True    # KV grows and preempted sequences come back before every step

    def __init__(self, *a, **kw):
        self.grow: list = []             # heap of (step needing a block, id, gen, request)
        self.order: list = []            # admission order, for LIFO victims: (gen, request)
        self._order_cap = _ORDER_SLACK   # ``order``'s length that triggers its compaction
        self.preempted: deque[Request] = deque()
        self.preemptions = 0
        self.swapped_bytes = 0.0
        self.recomputed_tokens = 0
        self.preemption_s = 0.0          # device time spent swapping and recomputing
        super().__init__(*a, **kw)
        spec = self.pool.spec
        self.preemption_policy = spec.preemption_policy
        self.host = BlockPool(self.env, 0, spec.block_size, window=self.kv.window,
                              state=self.kv.state)
        if spec.kv_offload is not None:
            self.host.capacity = int(spec.kv_offload.capacity_gb * 1e9 // (
                self.pool.memory.kv_bytes_per_token * spec.attn_tp * spec.block_size))
        self.host_link = self.pool.offload_link
        #: blocks taken per growth: token-granular pages (SGLang's page 1) grow 16 tokens at
        #: a time, one heap event per 16 tokens instead of per token (a sequence holds at most
        #: 15 tokens it has not written yet); larger blocks grow one at a time
        self.grain = 16 if spec.block_size == 1 else 1

    def _gate(self):
        return lambda: not self.preempted   # preempted sequences go before new reservations

    def _blocks_on_arrival(self, req: Request) -> int:
        return self.kv.blocks(req.input_tokens + 1)

    def fits(self, req: Request) -> bool:
        """The whole sequence it will grow to fits in the cache (nothing is reserved for an
        output limit: the KV grows as tokens come; one attention-DP rank's share)."""
        return self.kv.blocks(req.input_tokens + req.output_tokens) <= self.rank_capacity

    def _idle(self) -> simpy.Event:
        return self.kv.wait_release() | self._sleep() if self.preempted else self._sleep()

    def _charge(self, seconds: float) -> None:
        """Device time for a swap or a recompute, fused into the next iteration."""
        self._extra += seconds
        self.preemption_s += seconds

    def _start(self, r: Request, ctx: int, remaining: int) -> None:
        super()._start(r, ctx, remaining)
        order = self.order
        order.append((r.gen, r))
        if len(order) > self._order_cap:
            # NOTE: an entry whose gen is not its request's is stale for good (gen only grows)
            # and every victim pick skips it: dropping them changes no pick, and lets the
            # requests that ended go (amortised O(1): the cap doubles what stays)
            order[:] = [e for e in order if e[1].gen == e[0]]
            self._order_cap = 2 * len(order) + _ORDER_SLACK
        self._schedule_growth(r)

    def _schedule_growth(self, r: Request) -> None:
        k = self._next_growth(r, r.kv_blocks)
        if k < r.done_step:
            heapq.heappush(self.grow, (k, r.id, r.gen, r))

    def _admit(self) -> None:
        if self.preempted:
            self.policy.readmit(self)
        if not self.preempted:
            self.kv.grant()      # the gate is open: queued reservations may go now
        if self.pending:
            self.policy.admit(self)
        self._grow()
        # growth may have preempted the whole batch (max_seqs 1): the sequences that wait
        # would then wait on an idle instance; they run in the next step, as vLLM admits
        # nothing new in a step that preempted
        while self.pending and not self.running:
            waiting = len(self.pending)
            self.policy.admit(self)
            self._grow()
            if len(self.pending) == waiting:
                break

    def resume(self, r: Request, blocks: int) -> None:
        """The policy re-admits preempted ``r`` with ``blocks`` (its whole context)."""
        self.kv.take(blocks)
        r.kv_blocks = blocks
        if r.swapped:
            self.host.release(r.swapped)
            self._charge(self._swap_time(r.swapped * self.kv.block_size))
            r.swapped = 0
        else:   # recompute the KV of everything but the token this step writes
            self._charge(self.step.time([(r.ctx0 - 1, r.ctx0 - 1)])
                         - self.step.pm.iteration_overhead)
            self.recomputed_tokens += r.ctx0 - 1
        self._start(r, r.ctx0, r.remaining)

    def _swap_time(self, tokens: int) -> float:
        """Each rank copies its shard over its own host link."""
        link = self.host_link
        return link.latency + tokens * self.pool.memory.kv_bytes_per_token / link.bandwidth

    def _preempt(self, v: Request) -> None:
        """Stop ``v``: free its KV (swapped to the host tier if the policy and room allow)."""
        ctx = self._ctx(v)
        self.running -= 1
        v.remaining = v.done_step - self.step_no
        v.ctx0 = ctx
        v.gen += 1
        self.ctx_sum -= ctx
        if self.window:
            self._window_stop(ctx)
        v.preemptions += 1
        self.preemptions += 1
        blocks, held = v.kv_blocks, ctx - 1
        if self.preemption_policy == "swap" and self.host.try_reserve(self.host.blocks(held)):
            v.swapped = self.host.blocks(held)
            tokens = self.step.model.kv_tokens(held, *self._kv_format)   # window, state
            self._charge(self._swap_time(tokens))
            self.swapped_bytes += (tokens * self.pool.memory.kv_bytes_per_token
                                   * self.pool.spec.attn_tp)
        self.kv.release(blocks)
        v.kv_blocks = 0
        self.preempted.appendleft(v)

    def _grow(self, at: float | None = None) -> None:
        """Give each sequence crossing a block boundary this step its next blocks (``grain``
        at a time, fewer near its last token); ``at``: the time the step began (a span's
        step, applied late)."""
        grow, kv = self.grow, self.kv
        while grow and grow[0][0] <= self.step_no:
            _, _, gen, r = heapq.heappop(grow)
            if r.gen != gen:
                continue
            n = self._growth(r, r.kv_blocks)
            while kv.free < n:
                v = self.policy.victim(self)
                assert v is not None, "a running sequence must be preemptible"
                self._preempt(v)
                if v is r:
                    break
            if r.gen != gen:   # it was the victim
                continue
            kv.take(n, at)
            r.kv_blocks += n
            self._schedule_growth(r)
        assert kv.used <= kv.capacity, "KV blocks over-committed"

    def _growth(self, r: Request, held: int) -> int:
        """Blocks ``r`` takes at its next growth, holding ``held``: one, or with token pages
        up to the context of its last step, at most ``grain``."""
        if self.grain == 1:
            return 1
        kv = self.kv
        last = r.ctx0 + r.done_step - 1 - r.step0
        return min(self.grain, -(-last // kv.block_size) - (held - kv.fixed_blocks(r.ctx0)))

    def _next_growth(self, r: Request, held: int) -> int:
        """The step at which ``r``, holding ``held`` blocks, needs its next (its context at
        step k is ctx0 + k - step0: one past the blocks' tokens)."""
        full = held - self.kv.fixed_blocks(r.ctx0)   # the full-attention layers'
        return r.step0 + full * self.kv.block_size + 1 - r.ctx0

    # --- spans (``DecodeInstance._span_from``) -------------------------------------------
    def reserve(self, req: Request) -> simpy.Event:
        """A reservation that would take blocks a span's growth still counts on cuts it."""
        if self._span is not None:
            self._settle(self.env.now)
            if self.kv.free - self._blocks_on_arrival(req) < self._span_need:
                self._cut()
        return super().reserve(req)

    def _span_from(self, t: float) -> float | None:
        """As a reserving instance's span, through the steps where sequences grow: their
        blocks are worked out ahead without changing anything (the growth heap's order,
        copied), and the span stops before the first growth the free blocks would not cover
        (that step's boundary preempts, as always). Nothing may wait to come back."""
        if self.preempted:
            return None
        end = super()._span_from(t)
        self._span_need = 0           # blocks the span's growth still takes
        if end is None or not self.grow:
            return end
        s0, times = self.step_no, self._span[1]
        # at most: every entry grows every grain x block_size tokens, grain blocks each time
        grain, free = self.grain, self.kv.free
        most = len(self.grow) * grain * (1 + len(times) // (grain * self.kv.block_size))
        if most <= free:
            self._span_need = most
            return end
        last = s0 + len(times)        # the last step whose growth runs inside the span
        heap = [e for e in self.grow if e[0] <= last]
        if not heap:
            return end
        heapq.heapify(heap)
        need, held = 0, {}
        while heap:
            k, rid, gen, r = heapq.heappop(heap)
            if r.gen != gen:
                continue
            h = held.get(rid, r.kv_blocks)
            n = self._growth(r, h)
            if need + n > free:       # step k's boundary would preempt: the span ends there
                keep = k - s0 - 1     # iterations after the first that stay in the span
                if keep < 1:
                    self._span = None
                    return None
                del times[keep:], self._span[2][keep + 1:]
                end = self._span[2][-1]
                break
            need += n
            held[rid] = h + n
            nxt = self._next_growth(r, h + n)
            if nxt < r.done_step and nxt <= last:
                heapq.heappush(heap, (nxt, rid, gen, r))
        self._span_need = need
        return end

    def _settle(self, now: float) -> None:
        """Each step begun by ``now`` grows its sequences first, as of its start."""
        i, _, ends, _ = self._span
        j = bisect_right(ends, now, i, len(self._span[1]))
        grow, base = self.grow, self.step_no
        top = base + j - i            # the last step begun by now
        if grow and grow[0][0] <= top:
            used = self.kv.used
            while grow and grow[0][0] <= top:   # each step with growth, in order
                s = self.step_no = grow[0][0]
                self._grow(ends[s - base - 1 + i])   # as of that step's start
            self.step_no = base
            self._span_need -= self.kv.used - used
        super()._settle(now)

    def reset(self) -> None:
        # NOTE: a crash loses the host tier's copies too (the whole server restarts)
        super().reset()
        self.grow, self.order, self._order_cap = [], [], _ORDER_SLACK
        self.preempted.clear()
        self.host.clear()

    def stats(self, until: float) -> InstanceStats:
        return super().stats(until, preemptions=self.preemptions,
                             swapped_bytes=self.swapped_bytes,
                             recomputed_tokens=self.recomputed_tokens,
                             preemption_s=self.preemption_s)


class WriteThroughDecodeInstance(OnDemandDecodeInstance):
    """On-demand decode whose host tier is a KV store beside the engine (``kv_offload:
    {write_through: true}``: LMCache's server, Mooncake's store): each sequence's KV is
    written to it a chunk at a time as its chunks fill, and the store outlives an engine crash
    (:mod:`hetsim.engine.faults` restores from it). Owns besides an on-demand decode instance:
    ``copies`` (request id -> [tokens stored, host blocks held, still growing]),
    ``restoring`` (host blocks of copies a restore elsewhere still reads, kept across a
    crash) and ``host_port`` (the tier's read side, which a restore crosses).

    Invariant: ``host.used`` = the blocks of ``copies`` + ``restoring`` + swapped sequences'.
    Rule (stated in DESIGN.md): a write takes the host blocks of the chunks it adds or none;
    the first write that does not fit ends the copy's growth for good (it stays a prefix,
    the part of a sequence a store can serve). A copy is let go when its sequence completes
    here, or when a crash moves it (kept only while a restore reads it).
    NOTE (assumption): the writes overlap compute (asynchronous D2H copies on their own
    stream) and cost no iteration time; their bytes are counted (``written_bytes``)."""

    spans = False     # (its copies are written as each step fills their chunks)

    def __init__(self, *a, **kw):
        self.copies: dict[int, list] = {}
        self.restoring = 0
        self.written_bytes = 0.0
        super().__init__(*a, **kw)
        off = self.pool.spec.kv_offload
        self.chunk = off.chunk_tokens or self.kv.block_size
        tp = self.pool.spec.tp
        self.host_port = Port(f"{self.name}:host-tier", self.host_link.bandwidth * tp)

    def copy_bytes(self, tokens: int) -> float:
        """Bytes of a stored copy of ``tokens`` tokens (every shard of its rank's group)."""
        return (self.step.model.kv_tokens(tokens, *self._kv_format)
                * self.pool.memory.kv_bytes_per_token * self.pool.spec.attn_tp)

    def _schedule_growth(self, r: Request) -> None:
        # called as a sequence starts and at each block it takes: the chunks filled by then
        # are written (O(1) per block, no per-token event)
        self._store(r)
        super()._schedule_growth(r)

    def _store(self, r: Request) -> None:
        c = self.copies.get(r.id)
        if c is None:
            c = self.copies[r.id] = [0, 0, True]
        if not c[2]:
            return
        tokens = (self._ctx(r) - 1) // self.chunk * self.chunk   # (ctx - 1 tokens hold KV)
        if tokens <= c[0]:
            return
        need = self.host.blocks(tokens) - c[1]
        if not self.host.try_reserve(need):
            c[2] = False
            return
        self.written_bytes += self.copy_bytes(tokens) - self.copy_bytes(c[0])
        c[0], c[1] = tokens, c[1] + need

    def _complete(self, r: Request) -> None:
        c = self.copies.pop(r.id, None)
        if c is not None and c[1]:
            self.host.release(c[1])
        super()._complete(r)

    def reset(self, host_survives: bool = False) -> None:
        """A crash: the engine's state is gone; the store keeps only the copies restores
        read (``restoring``, counted by the caller before the reset) if it survives."""
        super().reset()
        self.copies = {}
        if not host_survives:
            self.restoring = 0
        elif self.restoring:
            self.host.take(self.restoring)

    def stats(self, until: float) -> InstanceStats:
        return replace(super().stats(until), host_written_bytes=self.written_bytes)


class OnDemandMixedInstance(MixedInstance, OnDemandDecodeInstance):
    """Colocated serving with on-demand KV (vLLM, SGLang): a prompt is admitted with its own
    KV only (the policy's rule), its decode KV grows a block at a time, and when none is free
    the policy's victim is preempted and later recomputed. Prompts being prefilled are never
    victims (only decoding sequences are)."""

    def _idle(self) -> simpy.Event:
        if self.preempted and not self.waiting:
            return OnDemandDecodeInstance._idle(self)
        return MixedInstance._idle(self)
