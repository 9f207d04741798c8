"""Scheduler policies: which requests join an instance's next iteration.

The iteration loop (:mod:`hetsim.engine.loop`) owns the mechanics: queues, KV blocks, timing
and bookkeeping. A policy owns the choices a serving runtime's scheduler makes (vLLM, SGLang
and TRT-LLM differ here): forming a prefill batch, admitting sequences to the decode batch,
splitting prompts into chunks, and picking a sequence to preempt. It calls back the instance's
primitives (``admit_prompt``, ``start_decode``, ``resume``) to act on them.

``FcfsPolicy`` is the default: first come, first served under the token and sequence budgets,
KV reserved up front, decodes before prompt chunks, newest sequence preempted first. A pool
with a ``runtime:`` gets that runtime's scheduler (:func:`policy_for`; the rules and their
sources are in :mod:`hetsim.runtimes` and docs/runtime-rules.md):

- ``RuntimePolicy`` (vLLM V1): one token budget per step, running decodes first, then partial
  prompts, then new prompts FCFS; a prompt is admitted when its prompt's KV fits, the KV grows
  a block at a time and the newest sequence is preempted by recompute when it runs out.
- ``RuntimePolicy(chunked=False, reserve_output=True)`` (TRT-LLM in-flight batching,
  GUARANTEED_NO_EVICT): whole prompts join the running decodes while the budget holds, each
  admitted only when its prompt + output KV fits; stop at the first that does not.
- ``SglangPolicy``: a step is a prefill step (prompts packed up to the chunk size, the last
  one chunked) whenever a prompt can be admitted, else a decode step; admission estimates the
  running requests' future KV with a decaying ``new_token_ratio``.

With ``overlap`` (all three by default) a prompt that arrived while a step ran joins the step
after the next one, unless that one would otherwise be empty (``_ready``).
"""
from __future__ import annotations

from typing import Protocol

from .request import Request, State

__all__ = ["SchedulerPolicy", "FcfsPolicy", "RuntimePolicy", "SglangPolicy", "policy_for"]


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
    """First come, first served; the scheduler of the published disaggregated simulators.
    ``overlap``: the next step is scheduled while one runs (see :func:`_ready`)."""
    overlap = False

    def prefill_batch(self, inst) -> list[Request]:
        """FIFO under the token budget (a lone prompt may exceed it) and the sequence cap; the
        head of the queue waits when its KV does not fit, so later prompts never pass it."""
        q, kv = inst.queue, inst.kv
        batch, tokens = [], 0
        while q and len(batch) < inst.max_seqs:
            r = q[0]
            if batch and tokens + r.input_tokens > inst.max_tokens:
                break
            if self.overlap and not _ready(inst, r, bool(batch)):
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
            blocks = kv.blocks(r.input_tokens + r.reserve_out)
            if not kv.try_reserve(blocks):
                break
            waiting.popleft()
            inst.admit_prompt(r, blocks)
            queued += r.input_tokens - r.cached_tokens
            seqs += 1
        return _split(inst, budget)

    def victim(self, inst) -> Request | None:
        """vLLM's LIFO victim: the most recently admitted live sequence."""
        order = inst.order
        while order:
            gen, v = order.pop()
            if v.gen == gen and v.state is State.DECODING:
                return v
        return None


def _split(inst, budget: int) -> tuple[list, list]:
    """Running prompts in admission order take what is left of the step's token budget, each
    at most ``inst.chunk_tokens`` (one attention-DP rank's budget: a chunk runs on one rank;
    without attention DP the step's whole budget)."""
    chunks, plan = [], []
    cap = inst.chunk_tokens
    for entry in inst.prefilling:
        if budget <= 0:
            break
        r, done = entry
        c = min(r.input_tokens - done, budget, cap)
        chunks.append((c, done + c))
        plan.append((entry, c))
        budget -= c
    return chunks, plan


def _ready(inst, r: Request, busy: bool) -> bool:
    """Whether ``r`` may join the step being formed. Under overlap scheduling a prompt that
    arrived while a step ran (``r.eligible`` is the step count it waits for) misses the step
    scheduled alongside that one, unless nothing else would run (``busy`` false): an idle
    runtime schedules it at once."""
    return r.eligible <= inst.iterations or not busy


class RuntimePolicy(FcfsPolicy):
    """vLLM V1 (vllm 0.24.0 ``v1/core/sched/scheduler.py`` ``Scheduler.schedule``) and, with
    ``reserve_output`` and without ``chunked``, TRT-LLM's PyTorch executor
    (``GuaranteedNoEvictPolicy`` + ``PyMicroBatchScheduler``; docs/runtime-rules.md §1).

    The decodes take one token each of the step's budget, running prompts continue, then new
    prompts are admitted FCFS: with their prompt's KV (vLLM; the KV then grows on demand and
    the newest sequence is preempted by recompute) or their prompt + output KV (TRT-LLM, which
    never preempts), stopping at the first that does not fit. Without ``chunked`` a prompt
    joins only whole (a prompt over the whole budget is refused on arrival:
    ``MixedInstance.accepts``). Without ``mixed`` a step that holds prompts holds nothing else
    (``paused``: SGLang's prefill steps; the whole budget is the prompts')."""

    def __init__(self, chunked: bool = True, reserve_output: bool = False,
                 overlap: bool = True, mixed: bool = True):
        self.chunked, self.reserve_output, self.overlap = chunked, reserve_output, overlap
        self.mixed = mixed

    def chunk(self, inst) -> tuple[list, list]:
        plan = self._admit_chunks(inst)
        if inst.prefilling and not self.mixed:
            inst.paused = True
        return plan

    def _admit_chunks(self, inst) -> tuple[list, list]:
        budget = self._budget(inst)
        seqs = inst.running + len(inst.prefilling)
        queued = sum(r.input_tokens - done for r, done in inst.prefilling)
        waiting, kv, overlap = inst.waiting, inst.kv, self.overlap
        room = self._room(inst) if waiting and queued < budget else None
        while waiting and seqs < inst.max_seqs and queued < budget:
            r = waiting[0]
            need = r.input_tokens - r.cached_tokens
            if not self.chunked and queued + need > budget:
                break
            if room is not None:        # an admission estimate (SGLang)
                est = self._estimate(r)
                if est + kv.block_size >= room and seqs:   # (an idle engine takes it)
                    break
            if overlap and not _ready(inst, r, bool(seqs)):
                break
            if not self._received(r):
                break
            blocks = kv.blocks(r.input_tokens + (r.reserve_out if self.reserve_output else 0))
            if not kv.try_reserve(blocks):
                break
            waiting.popleft()
            inst.admit_prompt(r, blocks)
            if room is not None:
                room -= est
            queued += need
            seqs += 1
        return _split(inst, budget)

    def _received(self, r: Request) -> bool:
        """Whether the scheduler has taken ``r`` in (SGLang's receive interval); the waiting
        prompts it has are ahead of those it has not, so the first one not taken stops
        admission."""
        return True

    def _budget(self, inst) -> int:
        """The step's token budget left for prompts: the decodes take one token each (none
        in a prompts-only step)."""
        return inst.max_tokens - (inst.running if self.mixed else 0)

    def _room(self, inst) -> float | None:
        """KV tokens an admission estimate may still hand out this step (None: no estimate;
        admission needs only the blocks themselves)."""
        return None

    def _estimate(self, r: Request) -> float:
        """The KV tokens the estimate charges ``r``."""
        raise NotImplementedError


class SglangPolicy(RuntimePolicy):
    """SGLang's scheduler (sglang 0.5.14 ``managers/scheduler.py`` ``get_next_batch_to_run``,
    ``managers/schedule_policy.py`` ``PrefillAdder``; docs/runtime-rules.md §1). A step is a
    prefill step, prompts packed up to the chunk size (the last one chunked), whenever a
    prompt is running or can be admitted, and the decodes wait (``paused``); otherwise the
    running requests decode (``mixed``, enable_mixed_chunk: prompts join the decodes instead).
    A prompt is admitted when prompt + min(max_new_tokens, 4096) fits in the free KV less
    what the running requests are still expected to write: their remaining max_new_tokens
    (each clipped at 4096; max_new_tokens is the request's ``reserve_out``) x ``new_token_ratio``, which decays from 0.7 to 0.098 over 600 decode steps and
    restarts from the victim's progress when a request is retracted. The KV grows per token;
    when it runs out the request with the fewest outputs (ties: longest prompt) is retracted
    and recomputed later.

    ``recv_interval`` > 1 (``--scheduler-recv-interval``; sglang 0.5.14
    ``managers/scheduler_recv_skipper.py`` ``SchedulerRecvSkipper``, ``environ.py``
    SGLANG_SCHEDULER_RECV_SKIPPER_WEIGHT_*): the scheduler takes in the requests that reached
    it only when the steps since it last did weigh ``recv_interval`` (a decode step 1, any other
    1000: a prefill step is always followed by a receive), and at once when idle (an idle loop
    weighs 1 and spins). Under overlap the receive at a step's formation sees what arrived
    before the step beside which it is formed (:func:`_ready`)."""
    CLIP = 4096                    # SGLANG_CLIP_MAX_NEW_TOKENS_ESTIMATION
    INIT, MIN, DECAY_STEPS = 0.7, 0.7 * 0.14, 600
    PREFILL_WEIGHT = 1000          # SGLANG_SCHEDULER_RECV_SKIPPER_WEIGHT_DEFAULT (decode: 1)

    def __init__(self, mixed: bool = False, overlap: bool = True, chunked: bool = True,
                 recv_interval: int = 1):
        super().__init__(chunked=chunked, reserve_output=False, overlap=overlap, mixed=mixed)
        self._ratio0, self._since = self.INIT, 0   # ratio at decode step _since
        self.recv_interval = recv_interval
        self._counter = 0          # weight of the steps formed since the last receive
        self._weight = 1           # weight of the last step formed
        self._seen: set = set()    # waiting prompts the scheduler has taken in

    def chunk(self, inst) -> tuple[list, list]:
        if self.recv_interval <= 1:
            return super().chunk(inst)
        self._receive(inst)
        chunks, plan = super().chunk(inst)
        self._weight = self.PREFILL_WEIGHT if chunks else 1
        return chunks, plan

    def _receive(self, inst) -> None:
        idle = not (inst.running or inst.prefilling)
        self._counter += self._weight
        if self._counter < self.recv_interval and not idle:
            return
        self._counter = 0
        # (a prompt the instance no longer waits for drops out of the set here)
        self._seen = {r for r in inst.waiting
                      if idle or not self.overlap or r.eligible <= inst.iterations}

    def _received(self, r: Request) -> bool:
        return self.recv_interval <= 1 or r in self._seen

    def ratio(self, step_no: int) -> float:
        """``new_token_ratio`` at decode step ``step_no``."""
        decay = (self.INIT - self.MIN) / self.DECAY_STEPS
        return max(self.MIN, self._ratio0 - (step_no - self._since) * decay)

    def _expected(self, inst) -> float:
        """Tokens the running and prefilling requests are still expected to write."""
        clip, now = self.CLIP, inst.step_no
        # (max_new_tokens less the outputs so far: the steps left, plus the limit's slack)
        running = sum(min(done - now + r.reserve_out - r.output_tokens, clip)
                      for done, _, gen, r in inst.active if r.gen == gen)
        return (running * self.ratio(now)
                + sum(min(r.reserve_out, clip) for r, _ in inst.prefilling))

    def _room(self, inst) -> float:
        return inst.kv.free * inst.kv.block_size - self._expected(inst)

    def _estimate(self, r: Request) -> float:
        return r.input_tokens - r.cached_tokens + min(r.reserve_out, self.CLIP)

    def victim(self, inst) -> Request | None:
        best, key = None, None
        for done, _, gen, r in inst.active:
            if r.gen != gen:
                continue
            k = (r.output_tokens - (done - inst.step_no), -r.input_tokens)
            if key is None or k < key:
                best, key = r, k
        if best is not None:   # retract_decode resets the ratio from the retracted request
            self._ratio0 = min(1.0, (key[0] + 20) / max(1, best.reserve_out))
            self._since = inst.step_no
        return best


def policy_for(rules) -> SchedulerPolicy:
    """A new scheduler for one instance under a pool's runtime rules (None: FCFS)."""
    if rules is None:
        return FcfsPolicy()
    if rules.kv_admission == "estimate":
        return SglangPolicy(mixed=rules.mixed_batches, overlap=rules.overlap,
                            chunked=rules.chunked_prefill, recv_interval=rules.recv_interval)
    return RuntimePolicy(chunked=rules.chunked_prefill,
                         reserve_output=rules.kv_admission == "reserve-output",
                         overlap=rules.overlap, mixed=rules.mixed_batches)
