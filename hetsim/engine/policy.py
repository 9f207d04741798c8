"""Scheduler policies: which requests join an instance's next iteration.

The iteration loop (:mod:`hetsim.engine.loop`) owns the mechanics: queues, KV blocks, timing
and bookkeeping. A policy owns the choices a serving runtime's scheduler makes (vLLM, SGLang
and TRT-LLM differ here): forming a prefill batch, admitting sequences to the decode batch,
splitting prompts into chunks, and picking a sequence to preempt. It calls back the instance's
primitives (``admit_prompt``, ``start_decode``, ``resume``) to act on them.

``FcfsPolicy`` is the default: first come, first served under the token and sequence budgets,
KV reserved up front, decodes before prompt chunks, newest sequence preempted first.
"""
from __future__ import annotations

from typing import Protocol

from .request import Request, State

__all__ = ["SchedulerPolicy", "FcfsPolicy"]


class SchedulerPolicy(Protocol):
    def prefill_batch(self, inst) -> list[Request]:
        """Prompts for a prefill instance's next iteration (each passed to
        ``inst.admit_prompt`` with its KV reserved)."""

    def admit(self, inst) -> None:
        """Move waiting sequences (``inst.pending``) into the running batch with
        ``inst.start_decode``. Called before an iteration, only while ``inst.pending`` holds
        any."""

    def readmit(self, inst) -> None:
        """On-demand decode: bring preempted sequences (``inst.preempted``) back with
        ``inst.resume`` while their KV fits. Called only while ``inst.preempted`` holds any."""

    def chunk(self, inst) -> tuple[list, list]:
        """Mixed instance: admit prompts (``inst.admit_prompt``) and split the iteration's
        token budget between them: ([(tokens, context after)], [(entry, tokens)])."""

    def victim(self, inst) -> Request | None:
        """On-demand decode: the running sequence to preempt when a block is needed."""


class FcfsPolicy:
    """First come, first served; the scheduler of the published disaggregated simulators."""

    def prefill_batch(self, inst) -> list[Request]:
        """FIFO under the token budget (a lone prompt may exceed it) and the sequence cap; the
        head of the queue waits when its KV does not fit, so later prompts never pass it."""
        q, kv = inst.queue, inst.kv
        batch, tokens = [], 0
        while q and len(batch) < inst.max_seqs:
            r = q[0]
            if batch and tokens + r.input_tokens > inst.max_tokens:
                break
            blocks = kv.blocks(r.input_tokens)
            if not kv.try_reserve(blocks):
                break
            q.popleft()
            inst.admit_prompt(r, blocks)
            batch.append(r)
            tokens += r.input_tokens
        return batch

    def admit(self, inst) -> None:
        pending = inst.pending
        while pending and inst.running < inst.max_seqs:
            inst.start_decode(pending.popleft())

    def readmit(self, inst) -> None:
        """Oldest preempted first; it blocks the others until its KV fits."""
        preempted, kv = inst.preempted, inst.kv
        while preempted and inst.running < inst.max_seqs:
            r = preempted[0]
            need = kv.blocks(r.ctx0)
            if need > kv.free:
                break
            preempted.popleft()
            inst.resume(r, need)

    def chunk(self, inst) -> tuple[list, list]:
        """Sarathi-Serve / vLLM chunked prefill: the decodes take one token each of the
        budget, then running prompts, then new ones (whose whole KV is reserved on entry)."""
        budget = inst.max_tokens - inst.running
        seqs = inst.running + len(inst.prefilling)
        queued = sum(r.input_tokens - done for r, done in inst.prefilling)
        waiting, kv = inst.waiting, inst.kv
        while waiting and seqs < inst.max_seqs and queued < budget:
            r = waiting[0]
            blocks = kv.blocks(r.input_tokens + r.output_tokens)
            if not kv.try_reserve(blocks):
                break
            waiting.popleft()
            inst.admit_prompt(r, blocks)
            queued += r.input_tokens - r.cached_tokens
            seqs += 1
        chunks, plan = [], []
        for entry in inst.prefilling:
            if budget <= 0:
                break
            r, done = entry
            c = min(r.input_tokens - done, budget)
            chunks.append((c, done + c))
            plan.append((entry, c))
            budget -= c
        return chunks, plan

    def victim(self, inst) -> Request | None:
        """vLLM's LIFO victim: the most recently admitted live sequence."""
        order = inst.order
        while order:
            gen, v = order.pop()
            if v.gen == gen and v.state is State.DECODING:
                return v
        return None
