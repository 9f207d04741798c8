"""The instance kinds: what each one's iteration holds and what it does when one ends.

- ``PrefillInstance``: FIFO queue -> batched prefill under a token budget; the prompt's KV stays
  in its memory until the transfer to decode has completed (the sender owns it until then).
- ``DecodeInstance``: continuous batching; a decode step is O(1) in the batch size because only
  (batch, sum of contexts) enter the cost, and completions come off a heap keyed by step.
- ``MixedInstance``: colocated continuous batching with chunked prefill (the non-disaggregated
  baseline): each iteration fills its token budget with the decode tokens first, then prompt
  chunks, so long prompts slow the decodes that share the iteration. It also accepts KV handed
  over from a remote prefill pool (the length-threshold / PrfaaS pattern).
The on-demand decode variant is in :mod:`hetsim.engine.ondemand`.
"""
from __future__ import annotations

import heapq
from bisect import bisect_right
from collections import deque
from itertools import accumulate

import simpy

from ..runtimes import pad_batch
from .environment import at
from .loop import Instance, attention_ranks
from .request import Request, State
from .stats import InstanceStats, Timeline

__all__ = ["PrefillInstance", "DecodeInstance", "MixedInstance"]

SPAN_MAX = 16    # iterations a decode span works out ahead at most (DecodeInstance._span_from)


class PrefillInstance(Instance):
    """Owns besides the base: its prompt queue, the KV of finished prompts it still holds, and
    ``on_start(instance, request) -> seconds``, called as a prompt's iteration forms (to route
    it early); the seconds are fused into that iteration."""
    role = "prefill"
    begins = True

    def __init__(self, *a, on_start=None, first_elsewhere: bool = False,
                 takes_work: bool = False, **kw):
        self.queue: deque[Request] = deque()
        self.on_start = on_start
        #: device work may be queued here (a stepwise transfer's encode): a head waiting for
        #: KV must also wake for it, as only that work's transfer may free the KV
        self.takes_work = takes_work
        self.first_elsewhere = first_elsewhere   # the decode side shows the first token
        self.held = 0            # blocks of finished prompts still owned here (staging)
        self.held_peak = 0
        self.timeline = Timeline()   # (time, held blocks) at each change
        self._held_area = 0.0
        self._held_last = 0.0
        self._batch: list[Request] = []
        self._batch_blocks = 0
        super().__init__(*a, **kw)

    def _hold(self, delta: int) -> None:
        now = self.env.now
        self._held_area += self.held * (now - self._held_last)
        self._held_last = now
        self.held += delta
        self.held_peak = max(self.held_peak, self.held)
        self.timeline.append(now, self.held)

    def mean_held(self, until: float) -> float:
        """Mean blocks held over [0, until] (``until`` >= the last change); changes nothing."""
        area = self._held_area + self.held * (until - self._held_last)
        return area / until if until > 0 else 0.0

    def fits(self, req: Request) -> bool:
        return self.kv.blocks(req.input_tokens) <= self.rank_capacity

    def submit(self, req: Request) -> simpy.Event:
        """Queue a prompt; the returned event fires when its prefill (first token) is done."""
        self.queue.append(req)
        return self._queue_prompt(req, req.input_tokens)

    def prefilled(self, r: Request) -> int:
        """Prompt tokens of ``r`` (prefilling here) whose prefill has run or is running: the
        whole prompt but its prefix-cache hits (one iteration computes it)."""
        return r.input_tokens - r.cached_tokens

    def release(self, blocks: int) -> None:
        """The consumer has the KV (or the request ended here): free the prompt's blocks."""
        self._hold(-blocks)
        self.kv.release(blocks)
        self.n_requests -= 1

    def _idle(self) -> simpy.Event:
        # a non-empty queue whose head did not fit waits for KV held by earlier prompts
        if not self.queue:
            return self._sleep()
        # (without work to wake for, the bare release event: same-time order as before)
        return self.kv.wait_release() | self._sleep() if self.takes_work else \
            self.kv.wait_release()

    def _schedule(self) -> float | None:
        batch = self._batch = self.policy.prefill_batch(self)
        if not batch:
            return None
        # the prompts' own blocks here: a layer-wise handoff reserves decode-side room (and
        # sets ``kv_blocks`` to it) before this iteration ends
        self._batch_blocks = sum(r.kv_blocks for r in batch)
        t = (self.step.time([(r.input_tokens - r.cached_tokens, r.input_tokens)
                             for r in batch], n_logits_prefill=len(batch))
             + sum(self.fetch_time(r) for r in batch))
        if self.on_start is not None:
            self._extra = sum(self.on_start(self, r) for r in batch)
        return t

    def _begin(self, t: float) -> None:
        end = self.env.now + t
        for r in self._batch:
            r.prefill_end_expected = end
            if r.started is not None:
                r.started.succeed()

    def _after(self) -> None:
        batch, now = self._batch, self.env.now
        self._hold(self._batch_blocks)
        for r in batch:
            r.prefill_end_s = now
            if not self.first_elsewhere:
                r.first_token_s = now
            self.load_tokens -= r.input_tokens
            r.done.succeed()

    def reset(self) -> None:
        super().reset()
        self.queue.clear()
        self._batch = []
        if self.held:
            self._hold(-self.held)

    def restart_peaks(self) -> None:
        super().restart_peaks()
        self.held_peak = self.held

    def stats(self, until: float) -> InstanceStats:
        return super().stats(until, held_peak=self.held_peak, held_mean=self.mean_held(until),
                             timeline=self.timeline.frozen())


class DecodeInstance(Instance):
    """Owns besides the base: sequences waiting to join (``pending``) and the running batch,
    a heap of (done step, id, gen, request); ``gen`` tells a live entry from a stale one.

    With sliding-window layers (or sparse attention: top-k for the window) it also keeps
    ``win_sum`` = sum over running sequences of min(context, window) exactly, in O(1) per
    step: ``n_below`` sequences still short of the window each add one per step, and leave
    that count off a heap keyed by the step their context reaches the window (``crossing``;
    stale entries skipped by ``gen`` as above)."""
    role = "decode"
    every_step = False   # _admit runs before every iteration, not only when sequences wait
    spans = True

    def __init__(self, *a, first_token: bool = False, **kw):
        self.pending: deque[Request] = deque()
        self.active: list[tuple[int, int, int, Request]] = []
        self.first_token = first_token   # the client's first token comes from here
        self._first: list[tuple[int, Request]] = []   # (gen, request) awaiting it
        self.running = 0
        self.step_no = 0
        self.ctx_sum = 0
        self._n = 0              # sequences in the running iteration
        self.win_sum = 0         # sum of min(context, window) (windowed layers' reads)
        self.n_below = 0         # running sequences whose context is below the window
        self.crossing: list[tuple[int, int, int, Request]] = []
        super().__init__(*a, **kw)
        #: the most context some layers read (sliding window, sparse attention's top-k; 0:
        #: none), for ``win_sum``
        self.window = self.step.read_window
        r = self.rules
        #: vLLM's disaggregated proxy: the decode side samples the first token again
        self.resample = r is not None and r.name == "vllm"
        # a decode-only step runs padded to the next captured graph size; with attention DP
        # each rank pads its own share: dp x the padded ceil(n / dp) (the step model's split)
        dp = attention_ranks(self.pool.spec)
        self._pad = ([pad_batch(r, n) for n in range(r.graph_sizes[-1] + 1)] if dp == 1 else
                     [dp * pad_batch(r, -(-n // dp)) for n in range(dp * r.graph_sizes[-1] + 1)]
                     ) if r is not None and r.cuda_graphs and r.graph_padding else None

    def fits(self, req: Request) -> bool:
        """The KV reserved for ``req`` (prompt + the output a reserving scheduler assumes)
        fits in the whole cache (one attention-DP rank's share: a request lives on one)."""
        return self.kv.blocks(req.input_tokens + req.reserve_out) <= self.rank_capacity

    def refusal(self, req: Request, whose: str = "the instance's") -> str:
        """Why ``req`` does not fit here (``fits`` is False)."""
        return f"prompt + output exceed {whose} KV capacity"

    def _blocks_on_arrival(self, req: Request) -> int:
        """Blocks reserved before the KV arrives: the whole request (prompt + the output it
        may write: the clients' limit where the workload states one)."""
        return self.kv.blocks(req.input_tokens + req.reserve_out)

    def reserve(self, req: Request) -> simpy.Event:
        """Reserve the request's KV blocks before the pull."""
        req.kv_blocks = self._blocks_on_arrival(req)
        req.decode_instance = self.name
        self.load_tokens += req.input_tokens + req.output_tokens
        self.n_requests += 1
        return self.kv.reserve(req.kv_blocks)

    def join(self, req: Request) -> simpy.Event:
        """The KV has arrived; the event fires at the request's last token."""
        req.to(State.DECODING)
        req.done = self.env.event()
        self.pending.append(req)
        self.cut()
        self._notify()
        return req.done

    def start_decode(self, r: Request) -> None:
        """The policy admitted ``r``: the first token came from prefill; output - 1 steps
        remain. Where the client sees the first token from here (``first_token``) it is
        streamed now, as SGLang PD and TRT-LLM's disaggregated server forward the prefill's
        token; vLLM's proxy drops that token and the decode side samples it again
        (``resample``: output steps, the first token at the end of the first)."""
        now = r.decode_start_s = self.env.now
        if r.fault is not None and r.fault.loaded is not None:   # restored from a host copy
            self._restart(r)
            return
        if self.first_token and r.first_token_s != r.first_token_s:     # NaN: not yet seen
            if self.resample:
                self._start(r, r.input_tokens, r.output_tokens)
                return
            r.first_token_s = now
        self._start(r, r.input_tokens + 1, r.output_tokens - 1)

    def _restart(self, r: Request) -> None:
        """``r`` arrived restored from a host copy of its first ``fault.loaded`` tokens
        (:mod:`hetsim.engine.faults`): the KV of the rest but the token this step writes is
        recomputed inside the next iteration (as a preempted sequence's is on resuming), and
        it decodes on from its context (prompt + generated: ``input_tokens``)."""
        f, ctx = r.fault, r.input_tokens
        n = ctx - 1 - f.loaded
        f.loaded = None
        if n > 0:
            self._extra += self.step.time([(n, ctx - 1)]) - self.step.pm.iteration_overhead
        self._start(r, ctx, r.output_tokens)

    def _start(self, r: Request, ctx: int, remaining: int) -> None:
        """Put ``r`` in the running batch at context ``ctx`` with ``remaining`` steps to go."""
        r.gen += 1
        r.ctx0, r.step0 = ctx, self.step_no
        r.done_step = self.step_no + remaining
        heapq.heappush(self.active, (r.done_step, r.id, r.gen, r))
        self.running += 1
        self.ctx_sum += ctx
        if self.first_token and r.first_token_s != r.first_token_s:   # NaN: resampled here
            self._first.append((r.gen, r))
        if self.window:
            self._window_start(r, ctx)

    def _window_start(self, r: Request, ctx: int) -> None:
        w = self.window
        self.win_sum += min(ctx, w)
        if ctx < w:
            self.n_below += 1
            heapq.heappush(self.crossing, (self.step_no + w - ctx, r.id, r.gen, r))

    def _window_stop(self, ctx: int) -> None:
        """A sequence at context ``ctx`` leaves the batch (its crossing entry goes stale)."""
        w = self.window
        self.win_sum -= min(ctx, w)
        if ctx < w:
            self.n_below -= 1

    def _window_step(self) -> None:
        """Every running sequence gained a token: those below the window read one more."""
        self.win_sum += self.n_below
        crossing = self.crossing
        while crossing and crossing[0][0] <= self.step_no:
            _, _, gen, r = heapq.heappop(crossing)
            if r.gen == gen:
                self.n_below -= 1

    def _ctx(self, r: Request) -> int:
        return r.ctx0 + self.step_no - r.step0

    def _complete(self, r: Request) -> None:
        """Last token produced: release the request's KV and hand it back."""
        r.last_token_s = self.env.now
        self.kv.release(r.kv_blocks)
        self.load_tokens -= r.input_tokens + r.output_tokens
        self.n_requests -= 1
        r.to(State.COMPLETED)
        r.done.succeed()

    def _finish(self) -> None:
        """Complete the sequences whose last step has run (stale entries are skipped)."""
        active = self.active
        while active and active[0][0] <= self.step_no:
            _, _, gen, r = heapq.heappop(active)
            if r.gen != gen:
                continue
            ctx = r.ctx0 + self.step_no - r.step0    # its context (see _ctx)
            self.ctx_sum -= ctx
            if self.window:
                self._window_stop(ctx)
            self.running -= 1
            r.gen += 1
            self._complete(r)

    def _admit(self) -> None:
        self.policy.admit(self)

    def _schedule(self) -> float | None:
        # NOTE: hot path: the policy is asked only when sequences wait (or, for a kind that
        # admits ``every_step``, always)
        if self.pending or self.every_step:
            self._admit()
        self._n = self.running
        t = self._step_time()
        if t is None:
            return None
        n = self._n         # the sequences that decode in this step
        self.decode_tokens += n
        self.decode_token_s += t * n / self.speed     # (as it runs: see Instance.speed)
        return t

    def _step_time(self) -> float | None:
        """The next iteration's model time (None: nothing to run)."""
        n = self.running
        if n == 0:
            return None
        assert self.kv.used <= self.kv.capacity, "KV blocks over-committed"
        pad = self._pad     # NOTE: hot path, so the lookup is written out (see _padded)
        if pad is not None and n < len(pad):
            n = pad[n]
        return self.step.decode_time(n, self.ctx_sum, self.win_sum)

    def _padded(self, n: int) -> int:
        """The batch a decode-only step of ``n`` sequences runs as (CUDA-graph padding)."""
        pad = self._pad
        return pad[n] if pad is not None and n < len(pad) else n

    def _after(self) -> None:
        """Every running sequence gained a token (unless the step held none of them)."""
        if not self._n:
            return
        if self._first:
            self._first_tokens()
        self.step_no += 1
        self.ctx_sum += self._n
        if self.window:
            self._window_step()
        active = self.active
        if active and active[0][0] <= self.step_no:   # (most steps complete nobody)
            self._finish()

    # --- spans (the loop's ``_span_from``) ----------------------------------------------
    def _span_from(self, t: float) -> float | None:
        """The iterations from this one to the next whose end completes a sequence run as one
        span where nothing else would change between them: no sequence waits to join (a
        join, or queued work, cuts the span: ``cut``), none sees its first token here, no
        sliding window. Each one's time is the one its own iteration would take: the same
        calls, the same sums in the same order (``t`` over ``speed``, ends added one by
        one), so every record and counter is as if each had been its own event.
        ``_span`` = [iterations applied, their model times, their ends, the speed]; at
        most ``SPAN_MAX`` iterations (a cut wastes the times worked out past it)."""
        active = self.active
        k = active[0][0] - self.step_no   # iterations to the first end (a stale top: sooner)
        if k < 2 or self.pending or self._first or self.window:
            return None
        n, speed = self._n, self.speed
        times = self.step.decode_times(self._padded(n), self.ctx_sum, n, min(k, SPAN_MAX) - 1,
                                       self.win_sum)
        # each end the one before plus its time (accumulate adds left to right)
        ends = list(accumulate(times if speed == 1.0 else [u / speed for u in times],
                               initial=self.env.now + t))
        self._span = [0, times, ends, speed]
        return ends[-1]

    def _settle(self, now: float) -> None:
        """Apply the span's iterations begun by ``now`` (as ``_after``, ``_schedule`` and
        ``_iterate`` would have at their starts)."""
        sp = self._span
        i, times, ends, speed = sp
        j = bisect_right(ends, now, i, len(times))   # ends[i:j] <= now: begun
        if j == i:
            return
        n, m = self._n, j - i
        self.step_no += m
        self.ctx_sum += n * m
        self.decode_tokens += n * m
        self.iterations += m
        # the float sums one iteration at a time, as each would have added its own
        # (``u * n / 1.0`` is ``u * n``)
        busy, tok = self.busy_s, self.decode_token_s
        if speed == 1.0:
            for u in times[i:j]:
                tok += u * n
                busy += u
        else:
            for u in times[i:j]:
                tok += u * n / speed
                busy += u / speed
        self.busy_s, self.decode_token_s = busy, tok
        self._step_end = ends[j]
        sp[0] = j

    def _cut(self) -> None:
        """The span ends with the iteration in progress: the loop's event moves there."""
        self._settle(self.env.now)
        i, times, ends, _ = self._span
        if i == len(times):
            return
        del times[i:], ends[i + 1:]
        # NOTE: the loop's process waits on the span's event; it waits on one at the new
        # end instead (as SimPy's own interrupt takes a process off its target)
        proc = self.proc
        proc._target.callbacks.remove(proc._resume)
        ev = proc._target = at(self.env, ends[i])
        ev.callbacks.append(proc._resume)

    def _first_tokens(self) -> None:
        """The sequences that joined before this step show the client their first token."""
        now = self.env.now
        for gen, r in self._first:
            if r.gen == gen:    # else preempted before it ran: listed again on resuming
                r.first_token_s = now
        self._first = []

    def generated(self, r: Request) -> int:
        """Tokens ``r`` holds past its prompt here (the prefill's first token included)."""
        self.settle()
        if r.gen % 2:     # running (an odd gen: started and not stopped since)
            return self._ctx(r) - r.input_tokens
        return max(1, r.ctx0 - r.input_tokens)   # waiting to join, or preempted

    def reset(self) -> None:
        super().reset()
        self.pending.clear()
        self.active, self._first, self.crossing = [], [], []
        self.running = self.ctx_sum = self._n = self.win_sum = self.n_below = 0

    def stats(self, until: float, **kind) -> InstanceStats:
        return super().stats(until, running=self.running, **kind)


class MixedInstance(DecodeInstance):
    """Colocated prefill + decode with chunked prefill (Sarathi-Serve / vLLM style). Owns
    besides a decode instance: prompts waiting (``waiting``) and being prefilled
    (``prefilling``: [request, tokens already prefilled]).

    Under a runtime's rules a step may hold prompts only (``paused``: SGLang's prefill steps
    pause the decodes), and the client may see a prompt's first token ``first_token_delay_steps``
    steps after the step that computed it (TRT-LLM's overlap scheduler: ``_late``)."""
    role = "mixed"
    spans = False     # prompt chunks change the iterations

    def __init__(self, *a, **kw):
        self.waiting: deque[Request] = deque()
        self.prefilling: list[list] = []
        self.paused = False       # the policy made this step prompts-only
        self._plan: list = []
        self._finishing: list = []
        self._late: list[Request] = []   # first token computed, shown after the next step
        super().__init__(*a, **kw)
        self.delay_first = self.rules is not None and self.rules.first_token_delay_steps > 0
        self.chunked = self.rules is None or self.rules.chunked_prefill

    def accepts(self, req: Request) -> bool:
        """``req``'s prompt can run here: its KV fits, and without chunked prefill the prompt
        is within the budget (a KV handed over from a remote prefill needs ``fits`` only)."""
        return self.fits(req) and (self.chunked or req.input_tokens <= self.chunk_tokens)

    def refusal(self, req: Request, whose: str = "the instance's") -> str:
        if not self.fits(req):
            return super().refusal(req, whose)
        return (f"prompt over the token budget ({self.chunk_tokens}) without chunked prefill "
                f"(the runtime rejects it)")

    def submit(self, req: Request) -> simpy.Event:
        self.waiting.append(req)
        req.decode_instance = self.name
        return self._queue_prompt(req, req.input_tokens + req.output_tokens)

    def admit_prompt(self, req: Request, blocks: int) -> None:
        super().admit_prompt(req, blocks)
        self.prefilling.append([req, req.cached_tokens])
        self._extra += self.fetch_time(req)

    def prefilled(self, r: Request) -> int:
        """Prompt tokens of ``r`` (prefilling here) whose prefill has run or is running: the
        chunks done, plus its chunk in the iteration in progress (prefix-cache hits are not
        computed)."""
        entry = next(e for e in self.prefilling if e[0] is r)
        done = entry[1]
        if self.env.now < self._step_end:     # an iteration is running (or frozen by a hang)
            done += sum(c for e, c in self._plan if e is entry)
        return done - r.cached_tokens

    def _idle(self) -> simpy.Event:
        # a head waiting for KV waits for a release, and for KV handed over from a prefill
        # pool (``join``), which needs no new blocks
        return self.kv.wait_release() | self._sleep() if self.waiting else self._sleep()

    def _step_time(self) -> float | None:
        self.paused = False
        chunks, plan = self.policy.chunk(self)
        n = self._n = 0 if self.paused else self.running
        if n == 0 and not chunks:
            return None
        self._plan = plan
        finishing = self._finishing = [e for e, c in plan if e[1] + c == e[0].input_tokens]
        if not chunks:
            n = self._padded(n)
        return self.step.time(chunks, len(finishing), n, self.ctx_sum, self.win_sum)

    def reset(self) -> None:
        super().reset()
        self.waiting.clear()
        self.prefilling, self._plan, self._finishing, self._late = [], [], [], []
        self.paused = False

    def _after(self) -> None:
        now = self.env.now
        if self._late:
            for r in self._late:
                r.first_token_s = now
            self._late = []
        super()._after()
        for entry, c in self._plan:
            entry[1] += c
        for entry in self._finishing:
            r = entry[0]
            self.prefilling.remove(entry)
            r.prefill_end_s = now
            if self.delay_first and r.output_tokens > 1:
                self._late.append(r)
            else:
                r.first_token_s = now
            if r.output_tokens == 1:
                self._complete(r)
            else:
                r.to(State.DECODING)
                self.pending.append(r)
