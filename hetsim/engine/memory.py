"""KV memory of one instance as a pool of fixed-size blocks with FIFO reservations."""
from __future__ import annotations

from collections import deque

import simpy

__all__ = ["BlockPool"]


class BlockPool:
    """Blocks of KV memory. Invariant (asserted on every reservation): used <= capacity.

    ``reserve`` queues FIFO, so a large request at the head is not starved by small ones.
    """

    def __init__(self, env: simpy.Environment, capacity: int, block_size: int):
        self.env, self.capacity, self.block_size = env, capacity, block_size
        self.used = 0
        self.peak = 0
        self._waiters: deque[tuple[int, simpy.Event]] = deque()
        self._released: simpy.Event | None = None
        self._area = 0.0   # integral of used blocks over time, for mean occupancy
        self._last = 0.0
        self.gate = None   # optional () -> bool: may queued reservations be granted now?

    def blocks(self, tokens: int) -> int:
        return -(-int(tokens) // self.block_size)

    @property
    def free(self) -> int:
        return self.capacity - self.used

    def _account(self):
        now = self.env.now
        self._area += self.used * (now - self._last)
        self._last = now

    def _take(self, n: int) -> None:
        self._account()
        self.used += n
        assert self.used <= self.capacity, "KV blocks over-committed"
        self.peak = max(self.peak, self.used)

    def try_reserve(self, n: int) -> bool:
        """Reserve now if the blocks are free, nobody queues ahead and the gate is open."""
        if self._waiters or n > self.free or (self.gate is not None and not self.gate()):
            return False
        self._take(n)
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
        self._account()
        self.used -= n
        assert self.used >= 0
        self.grant()
        if self._released is not None:
            ev, self._released = self._released, None
            ev.succeed()

    def grant(self) -> None:
        """Grant queued reservations, in order, while they fit and the gate is open."""
        gate = self.gate
        while self._waiters and self._waiters[0][0] <= self.free and (gate is None or gate()):
            m, ev = self._waiters.popleft()
            self._take(m)
            ev.succeed()

    def wait_release(self) -> simpy.Event:
        """An event that succeeds at the next release."""
        if self._released is None:
            self._released = self.env.event()
        return self._released

    def mean_occupancy(self, until: float) -> float:
        """Mean used fraction over [0, until] (``until`` >= the last change); changes nothing."""
        area = self._area + self.used * (until - self._last)
        return area / (self.capacity * until) if until > 0 and self.capacity else 0.0
