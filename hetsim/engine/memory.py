"""KV memory of one instance as a pool of fixed-size blocks with FIFO reservations."""
from __future__ import annotations

from collections import deque
from typing import Callable

import simpy

__all__ = ["BlockPool"]


class BlockPool:
    """Blocks of KV memory. Invariant (asserted on every take): 0 <= used <= capacity.

    ``reserve`` queues FIFO, so a large request at the head is not starved by small ones.
    ``gate`` (optional, () -> bool) closes the queue: while it returns False no queued or new
    reservation is granted (``take`` still works; it is for the owner's own re-admissions).

    A block holds ``block_size`` tokens of the full-attention layers' KV. ``window`` (a model
    with sliding-window layers: (window tokens, windowed layers, full-attention layers)) adds
    the windowed layers' blocks to :meth:`blocks`: the last min(tokens, window) tokens' KV in
    the same blocks (vLLM's hybrid allocator frees a windowed layer's blocks once they leave
    the window); ``whole_window`` charges a full window from the first token instead.
    ``state`` (a model with linear-attention layers) is the blocks each sequence's constant
    recurrent state takes, from its first token to its last (:func:`hetsim.engine.loop.
    kv_state_blocks`): admission, capacity checks and preemption see it as any other block.
    """

    def __init__(self, env: simpy.Environment, capacity: int, block_size: int,
                 gate: Callable[[], bool] | None = None,
                 window: tuple[int, int, int] | None = None, whole_window: bool = False,
                 state: int = 0):
        self.env, self.capacity, self.block_size, self.gate = env, capacity, block_size, gate
        self.window, self.whole_window, self.state = window, whole_window, state
        self.used = 0
        self.peak = 0
        self._waiters: deque[tuple[int, simpy.Event]] = deque()
        self._released: simpy.Event | None = None
        self._area = 0.0   # integral of used blocks over time, for mean occupancy
        self._last = 0.0

    def blocks(self, tokens: int) -> int:
        """Blocks that hold a sequence of ``tokens`` tokens (its windowed layers and its
        recurrent state too)."""
        n = -(-int(tokens) // self.block_size) + self.state
        return n + self.window_blocks(tokens) if self.window else n

    def fixed_blocks(self, tokens: int) -> int:
        """Blocks of a sequence of ``tokens`` tokens that its full-attention KV does not
        take: its windowed layers' and its recurrent state's."""
        return self.window_blocks(tokens) + self.state

    def window_blocks(self, tokens: int) -> int:
        """Blocks a sequence of ``tokens`` tokens holds for its windowed layers (0: none)."""
        if not self.window:
            return 0
        size, layers, full = self.window
        held = size if self.whole_window else min(int(tokens), size)
        return -(-held * layers // (full * self.block_size))

    @property
    def free(self) -> int:
        return self.capacity - self.used

    @property
    def queued(self) -> int:
        """Reservations waiting in the queue."""
        return len(self._waiters)

    @property
    def queued_blocks(self) -> int:
        """Blocks the queued reservations ask for."""
        return sum(n for n, _ in self._waiters)

    def _account(self, at: float | None = None) -> None:
        now = self.env.now if at is None else at
        self._area += self.used * (now - self._last)
        self._last = now

    def take(self, n: int, at: float | None = None) -> None:
        """Take ``n`` free blocks now (or as of ``at``, not before the last change: a decode
        span's growth, applied late), past the queue and the gate (the caller checked
        ``free``)."""
        self._account(at)
        self.used += n
        assert self.used <= self.capacity, "KV blocks over-committed"
        if self.used > self.peak:
            self.peak = self.used

    def try_reserve(self, n: int) -> bool:
        """Reserve now if the blocks are free, nobody queues ahead and the gate is open."""
        if self._waiters or n > self.capacity - self.used or (
                self.gate is not None and not self.gate()):
            return False
        self.take(n)
        return True

    def reserve(self, n: int) -> simpy.Event:
        """An event that succeeds once ``n`` blocks are reserved (FIFO)."""
        assert n <= self.capacity, "reservation larger than the pool"
        ev = self.env.event()
        if self.try_reserve(n):
            ev.succeed()
        else:
            self._waiters.append((n, ev))
        return ev

    def release(self, n: int) -> None:
        """Give back ``n`` blocks: queued reservations that now fit are granted in order, then
        whoever waits for a release is woken."""
        self._account()
        self.used -= n
        assert self.used >= 0, "released more KV blocks than were taken"
        self.grant()
        if self._released is not None:
            ev, self._released = self._released, None
            ev.succeed()

    def grant(self) -> None:
        """Grant queued reservations, in order, while they fit and the gate is open."""
        gate, waiters = self.gate, self._waiters
        while waiters and waiters[0][0] <= self.capacity - self.used and (gate is None or gate()):
            m, ev = waiters.popleft()
            self.take(m)
            ev.succeed()

    def wait_release(self) -> simpy.Event:
        """An event that succeeds at the next release."""
        if self._released is None:
            self._released = self.env.event()
        return self._released

    def clear(self) -> None:
        """Everything is gone (a crash): no block used, no reservation queued (whoever waited
        for one is moved elsewhere by the caller)."""
        self._account()
        self.used = 0
        self._waiters.clear()
        self._released = None

    def cancel(self, ev: simpy.Event) -> bool:
        """Withdraw a queued reservation (its requester has gone); True if it was queued.
        Those behind it may now be granted."""
        for i, (_, e) in enumerate(self._waiters):
            if e is ev:
                del self._waiters[i]
                self.grant()
                return True
        return False

    def occupancy(self) -> float:
        """Used fraction now."""
        return self.used / self.capacity if self.capacity else 0.0

    def mean_occupancy(self, until: float) -> float:
        """Mean used fraction over [0, until] (``until`` >= the last change); changes nothing."""
        area = self._area + self.used * (until - self._last)
        return area / (self.capacity * until) if until > 0 and self.capacity else 0.0
