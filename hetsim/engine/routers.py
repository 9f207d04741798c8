"""Routers pick an instance for a request. A registry keyed by the YAML name.

A router is a small class with ``pick(instances, request) -> instance``; one is made per
placement and stage, with its own random stream and the placement's router settings, so it holds
no global state. Instances expose ``role``, ``load_tokens`` (outstanding token work),
``n_requests`` (requests in the instance), ``kv`` (its block pool: ``free``, ``capacity``,
``queued_blocks``) and ``port`` (its NIC or None, whose ``active`` counts the transfers crossing
it). Adding a router is one class with ``@register`` whose constructor takes
``(rng, spec)``: its random stream and the placement's router settings (or None).
"""
from __future__ import annotations

from operator import attrgetter
from typing import Protocol

import numpy as np

__all__ = ["Router", "ROUTERS", "register", "make_router"]


class Router(Protocol):
    def pick(self, instances: list, request) -> object: ...


ROUTERS: dict[str, type] = {}
_LOAD = attrgetter("load_tokens")     # (min's key in C: routing runs twice per request)


def register(name: str):
    def deco(cls):
        if name in ROUTERS:
            raise ValueError(f"router {name!r} registered twice")
        ROUTERS[name] = cls
        return cls
    return deco


def make_router(name: str, rng: np.random.Generator, spec=None) -> Router:
    return ROUTERS[name](rng, spec)


@register("round-robin")
class RoundRobin:
    def __init__(self, rng, spec=None):
        self._next = 0

    def pick(self, instances, request):
        inst = instances[self._next % len(instances)]
        self._next += 1
        return inst


@register("least-loaded")
class LeastLoaded:
    """Fewest outstanding tokens (queued prompt tokens, or reserved KV tokens on decode)."""

    def __init__(self, rng, spec=None):
        pass

    def pick(self, instances, request):
        return min(instances, key=_LOAD)


@register("join-shortest-queue")
class JoinShortestQueue:
    def __init__(self, rng, spec=None):
        pass

    def pick(self, instances, request):
        return min(instances, key=lambda i: i.n_requests)


@register("power-of-two")
class PowerOfTwo:
    """Sample two instances at random, take the one with fewer outstanding tokens."""

    def __init__(self, rng, spec=None):
        self.rng = rng

    def pick(self, instances, request):
        if len(instances) == 1:
            return instances[0]
        a, b = self.rng.choice(len(instances), size=2, replace=False)
        ia, ib = instances[a], instances[b]
        return ia if ia.load_tokens <= ib.load_tokens else ib


@register("kv-aware")
class KVAware:
    """Decode handoffs: the most free KV memory (after queued reservations), discounted by the
    transfers already crossing the instance's NIC (each one halves what a new one would get)."""

    def __init__(self, rng, spec=None):
        pass

    @staticmethod
    def score(inst) -> float:
        inst.settle()    # (a decode span's growth, as of now)
        kv = inst.kv
        free = (kv.free - kv.queued_blocks) / kv.capacity
        port = inst.port
        flows = port.active if port is not None else 0
        return free / (1 + flows)

    def pick(self, instances, request):
        return max(instances, key=self.score)


@register("length-threshold")
class LengthThreshold:
    """PrfaaS: prompts shorter than ``threshold_tokens`` stay on the local mixed (or decode)
    instances; long ones go to the (remote) prefill pool. Least-loaded within each side."""

    def __init__(self, rng, spec=None):
        self.threshold = spec.threshold_tokens if spec else 2048

    def pick(self, instances, request):
        threshold = self.threshold
        want = "prefill" if request.input_tokens >= threshold else "mixed"
        side = [i for i in instances if i.role == want] or instances
        return min(side, key=_LOAD)
