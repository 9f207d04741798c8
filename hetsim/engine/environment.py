"""The simulation's SimPy environment: SimPy's own, with its event loop written out.

``Environment.run()`` to the end (``until`` None: every run of a ``Simulation``) pops each event
and calls its callbacks in place of one ``step()`` call per event, which is most of what SimPy
spends an event on besides the event itself (issue 19). Nothing else changes: it does what
``step`` does (SimPy 4.1), in the same order, so every event is processed as it was. Any other
``until`` runs SimPy's own loop.
"""
from __future__ import annotations

from heapq import heappop, heappush

import simpy
from simpy.core import BoundClass
from simpy.events import NORMAL

__all__ = ["Environment", "at"]


def at(env: simpy.Environment, time: float) -> simpy.Event:
    """An event that fires at ``time`` (not before ``env.now``), as a ``Timeout`` made then
    would: scheduled at that very float (``env.timeout(time - env.now)`` fires at
    ``now + (time - now)``, which may round to another). Any SimPy environment."""
    ev = simpy.Event(env)
    ev._ok, ev._value = True, None
    heappush(env._queue, (time, NORMAL, next(env._eid), ev))
    return ev


class Environment(simpy.Environment):
    def __init__(self, initial_time=0):
        super().__init__(initial_time)
        # SimPy binds its event makers (``timeout``, ``event``, ...) to the instance so that a
        # call skips the descriptor, but only those in the instance's own class's dict: not a
        # subclass's. Bound here, ``env.timeout`` costs what it does on SimPy's Environment.
        for name, obj in vars(simpy.Environment).items():
            if isinstance(obj, BoundClass):
                setattr(self, name, getattr(self, name))

    def run(self, until=None):
        if until is not None:
            return super().run(until)
        # NOTE: as ``simpy.Environment.step``, event after event, until none is left. No
        # StopSimulation is caught: only an ``until`` raises it (nothing in hetsim does).
        queue = self._queue
        while queue:
            self._now, _, _, event = heappop(queue)
            # callbacks set to None first: a callback that looks sees the event processed
            callbacks, event.callbacks = event.callbacks, None
            for callback in callbacks:
                callback(event)
            if not event._ok and not hasattr(event, "_defused"):
                # a failure nobody handled ends the run, with a copy of the exception (SimPy's)
                exc = type(event._value)(*event._value.args)
                exc.__cause__ = event._value
                raise exc
        return None
