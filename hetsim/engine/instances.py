"""Serving instances (one TP group each) as SimPy processes.

- ``PrefillInstance``: FIFO queue -> batched prefill under a token budget; the prompt's KV stays
  in its memory until the transfer to decode has completed (the sender owns it until then).
- ``DecodeInstance``: continuous batching; a decode step is O(1) in the batch size because only
  (batch, sum of contexts) enter the cost, and completions come off a heap keyed by step.
- ``MixedInstance``: colocated continuous batching with chunked prefill (the non-disaggregated
  baseline): each iteration fills its token budget with the decode tokens first, then prompt
  chunks, so long prompts slow the decodes that share the iteration.
"""
from __future__ import annotations

import heapq
from collections import deque

import simpy

from ..perf import StepModel
from .memory import BlockPool
from .request import Request, State

__all__ = ["PrefillInstance", "DecodeInstance", "MixedInstance"]


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
        self._wake: simpy.Event | None = None
        env.process(self._run())

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


class PrefillInstance(_Instance):
    def __init__(self, *a):
        self.queue: deque[Request] = deque()
        super().__init__(*a)

    def fits(self, req: Request) -> bool:
        return self.kv.blocks(req.input_tokens) <= self.kv.capacity

    def submit(self, req: Request) -> simpy.Event:
        """Queue a prompt; the returned event fires when its prefill (first token) is done."""
        req.to(State.QUEUED)
        req.prefill_instance = self.name
        req.done = self.env.event()
        self.queue.append(req)
        self.load_tokens += req.input_tokens
        self.n_requests += 1
        self._notify()
        return req.done

    def release(self, blocks: int) -> None:
        """The consumer has the KV (or the request ended here): free the prompt's blocks."""
        self.kv.release(blocks)
        self.n_requests -= 1

    def _run(self):
        env, q = self.env, self.queue
        while True:
            if not q:
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
                yield self.kv.wait_release()
                continue
            yield self._iterate(self.step.prefill_time([r.input_tokens for r in batch]))
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
                yield self._sleep()
                continue
            t = self.step.decode_time(n, self.ctx_sum)
            self.decode_tokens += n
            self.decode_token_s += t * n
            yield self._iterate(t)
            self.step_no += 1
            self.ctx_sum += n
            self._finish()


class MixedInstance(DecodeInstance):
    """Colocated prefill + decode with chunked prefill (Sarathi-Serve / vLLM style)."""

    def __init__(self, *a):
        self.waiting: deque[Request] = deque()
        self.prefilling: list[list] = []   # [request, tokens already prefilled]
        super().__init__(*a)

    def fits(self, req: Request) -> bool:
        return DecodeInstance.fits(self, req)

    def submit(self, req: Request) -> simpy.Event:
        req.to(State.QUEUED)
        req.prefill_instance = req.decode_instance = self.name
        req.done = self.env.event()
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
            self.prefilling.append([r, 0])
            queued += r.input_tokens
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
                yield (self._sleep() if not self.waiting else self.kv.wait_release())
                continue
            finishing = [e for e, c in plan if e[1] + c == e[0].input_tokens]
            t = self.step.time(chunks, len(finishing), n, self.ctx_sum)
            self.decode_tokens += n
            self.decode_token_s += t * n
            yield self._iterate(t)
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
