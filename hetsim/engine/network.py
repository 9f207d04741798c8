"""KV transfers as flows sharing ports max-min fairly (progressive filling).

A flow crosses a set of ports (the sender's egress, the receiver's ingress); each port has a
capacity in B/s. Whenever a flow starts or ends, every flow's rate is recomputed, so concurrent
transfers each get their fair share and a transfer's time follows the load it meets.

A tracked flow (``transfer(..., track=True)``) also accounts its time to the ``step`` of the
port that bounds its rate in each interval (the steps of a pipelined stream: serialize, wire,
deserialize), so the per-step times sum to the flow's duration.
"""
from __future__ import annotations

from operator import attrgetter
from typing import NamedTuple

import simpy

__all__ = ["Port", "PortStats", "Network"]

# A flow is finished when what is left would take under a nanosecond (or under one byte):
# float time cannot resolve less, and waiting for it would stall the clock.
_EPS_S = 1e-9
_INF = float("inf")


_capacity = attrgetter("capacity")


def _finished(f) -> bool:
    return f.remaining <= max(1.0, f.rate * _EPS_S)


class Port:
    """A capacity some flows share: a NIC direction, a host link, a fabric link, or one flow's
    own rate cap (``group`` None: not reported as a link). ``step`` names the transfer step it
    stands for in a tracked flow's accounting."""
    __slots__ = ("name", "capacity", "bytes", "busy_area", "active", "group", "step")

    def __init__(self, name: str, capacity: float, group: str | None = None,
                 step: str = "wire"):
        self.name, self.capacity, self.group, self.step = name, capacity, group, step
        self.bytes = 0.0       # bytes that crossed this port
        self.busy_area = 0.0   # integral of utilisation over time
        self.active = 0        # flows crossing it now


class _Flow:
    __slots__ = ("ports", "size", "remaining", "rate", "event", "bound", "steps")

    def __init__(self, ports, nbytes, event, steps=None):
        self.ports, self.remaining, self.rate, self.event = ports, nbytes, 0.0, event
        self.size = nbytes
        self.bound = None     # the port that set its rate (progressive filling froze it there)
        self.steps = steps    # tracked: {step: seconds bound by a port of that step}


class PortStats(NamedTuple):
    """A port at the end of a run."""
    name: str
    group: str | None
    capacity: float
    bytes: float
    busy_area: float   # integral of utilisation over time (s)

    @classmethod
    def of(cls, p: Port) -> "PortStats":
        return cls(p.name, p.group, p.capacity, p.bytes, p.busy_area)


class Network:
    def __init__(self, env: simpy.Environment):
        self.env = env
        self._flows: list[_Flow] = []
        self._last = 0.0
        self._version = 0
        self._caps: dict[simpy.Event, Port] = {}   # capped transfers not yet uncapped
        self._cancelled: set[simpy.Event] = set()   # cancelled during their setup

    def transfer(self, ports: tuple[Port, ...], nbytes: float, setup_s: float,
                 cap: float | None = None, track: bool = False) -> simpy.Event:
        """Event that succeeds when ``nbytes`` have crossed ``ports`` after ``setup_s``.

        ``cap`` limits the flow's own rate (B/s) until :meth:`uncap` (a layer-wise stream that
        cannot run ahead of the prefill producing it). ``track``: the event's value is
        {port step: seconds that step bound the flow}."""
        done = self.env.event()
        steps = {} if track else None
        if nbytes <= 0:
            self.env.timeout(setup_s).callbacks.append(lambda _: done.succeed(steps))
            return done
        if cap:
            self._caps[done] = port = Port("cap", cap)
            ports = (*ports, port)

        def start(_):
            if self._cancelled and done in self._cancelled:
                self._cancelled.discard(done)
                return
            self._advance()
            for p in ports:
                p.active += 1
            self._flows.append(_Flow(ports, float(nbytes), done, steps))
            self._reschedule()
        self.env.timeout(setup_s).callbacks.append(start)
        return done

    def uncap(self, transfer: simpy.Event) -> None:
        """Lift a transfer's rate cap from now on."""
        port = self._caps.pop(transfer, None)
        if port is None or transfer.triggered:
            return
        self._advance()
        port.capacity = _INF
        if self._flows:
            self._reschedule()

    def set_capacity(self, port: Port, capacity: float) -> None:
        """A link fault changes ``port``'s capacity from now on (hetsim.engine.faults)."""
        self._advance()
        port.capacity = capacity
        if self._flows:
            self._reschedule()

    def cancel(self, transfer: simpy.Event) -> float:
        """Stop a transfer whose end has failed (hetsim.engine.faults): its bytes stop
        crossing and its event never fires. Returns the bytes that had crossed."""
        if transfer.triggered:
            return 0.0
        self._advance()
        for f in self._flows:
            if f.event is transfer:
                self._flows.remove(f)
                for p in f.ports:
                    p.active -= 1
                self._caps.pop(transfer, None)
                self._reschedule()
                return f.size - f.remaining
        self._cancelled.add(transfer)      # still in its setup
        return 0.0

    def sent(self, transfer: simpy.Event) -> float:
        """The fraction of a transfer's bytes that has crossed by now (0 in its setup),
        moving no flow (see stats_now)."""
        for f in self._flows:
            if f.event is transfer:
                return (f.size - f.remaining + f.rate * (self.env.now - self._last)) / f.size
        return 1.0 if transfer.triggered else 0.0

    def stats_now(self, p: Port) -> PortStats:
        """``p``'s statistics as of now without moving any flow (a mid-run snapshot: moving
        the flows here would split their float sums and change later event times)."""
        dt = self.env.now - self._last
        moved = sum(f.rate * dt for f in self._flows if p in f.ports)
        busy = moved / p.capacity if p.capacity != _INF else 0.0
        return PortStats(p.name, p.group, p.capacity, p.bytes + moved, p.busy_area + busy)

    def _advance(self) -> None:
        """Move every flow forward at its current rate up to now."""
        now = self.env.now
        dt = now - self._last
        if dt > 0:
            for f in self._flows:
                moved = f.rate * dt
                f.remaining -= moved
                if f.steps is not None:
                    step = f.bound.step
                    f.steps[step] = f.steps.get(step, 0.0) + dt
                for p in f.ports:
                    p.bytes += moved
                    if p.capacity != _INF:
                        p.busy_area += f.rate / p.capacity * dt
        self._last = now

    def _rates(self) -> None:
        """Max-min fair rates by progressive filling over the ports: the port with the least
        capacity per unfrozen flow crossing it freezes those flows at that share; repeat.
        NOTE: flows are taken in list order and ports in each flow's order, so ties and float
        sums come out the same in every run."""
        flows = self._flows
        if len(flows) <= 1:
            if flows:
                # NOTE: a lone flow freezes at its tightest port's capacity (cap / 1), the
                # first such port on ties, as the loop below does; a flow's ports are
                # distinct (two instances' own ports and shared fabric)
                f = flows[0]
                f.bound = port = min(f.ports, key=_capacity)
                f.rate = float(port.capacity)
            return
        cap = {}
        for f in flows:
            f.rate = 0.0
            for p in f.ports:
                cap[p] = p.capacity
        unfrozen = flows
        while unfrozen:
            count: dict[Port, int] = {}
            for f in unfrozen:
                for p in f.ports:
                    count[p] = count.get(p, 0) + 1
            port = min(count, key=lambda p: cap[p] / count[p])
            share = cap[port] / count[port]
            left = []
            for f in unfrozen:
                if port in f.ports:
                    f.rate = share
                    f.bound = port
                    for p in f.ports:
                        cap[p] -= share
                else:
                    left.append(f)
            unfrozen = left

    def _reschedule(self) -> None:
        finished = [f for f in self._flows if _finished(f)]
        if finished:
            self._flows = [f for f in self._flows if not _finished(f)]
            for f in finished:
                for p in f.ports:
                    p.active -= 1
                if self._caps:
                    self._caps.pop(f.event, None)
                f.event.succeed(f.steps)
        self._rates()
        self._version += 1
        if self._flows:
            v = self._version
            t = min(f.remaining / f.rate for f in self._flows)
            self.env.timeout(t).callbacks.append(lambda _: self._on_timer(v))

    def _on_timer(self, version: int) -> None:
        if version == self._version:
            self._advance()
            self._reschedule()
