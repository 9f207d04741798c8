"""Where simulations run: this process, local worker processes, or a Ray cluster.

An executor maps a module-level function over argument tuples and returns the results in the
order of the tuples, whatever order they finish in. Every task hetsim sends is a pure function
of its arguments (a scenario as plain data, a seed, a rate), so the results are identical on
every executor, with any number of workers. ``map`` may be called from several threads at
once (the goodput search drives one placement per thread).

- ``local`` with ``jobs=1``: in this process, one task after another.
- ``local`` with ``jobs=N``: N worker processes (``spawn``: no state forked from a threaded
  parent), started on first use and kept until :meth:`close`.
- ``ray``: tasks on a Ray cluster (``pip install 'hetsim[ray]'``); ``address`` as
  ``ray.init`` takes it (``auto``, ``ray://host:port``), or none for a local Ray instance.
  Workers need hetsim installed and the scenario's files at the same paths.
"""
from __future__ import annotations

import os
import socket
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from .errors import ConfigError

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "make_executor", "check_kind",
           "serialized", "EXECUTORS"]

EXECUTORS = ("local", "ray")


class Executor:
    """Runs ``fn(*args)`` for each args tuple; results in input order."""
    workers = 1     # tasks at once
    here = 1        # of them on this machine (what memory checks multiply by)

    def map(self, fn: Callable, items: Sequence[tuple],
            done: Callable[[int, Any], None] | None = None) -> list:
        """``[fn(*a) for a in items]``; ``done(i, result)`` is called in this thread as each
        task finishes (in any order), so results can be kept before the others end."""
        out = []
        for i, a in enumerate(items):
            out.append(fn(*a))
            if done:
                done(i, out[-1])
        return out

    @property
    def parallel(self) -> bool:
        return self.workers > 1

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LocalExecutor(Executor):
    """``jobs`` worker processes on this machine (``jobs=1``: this process)."""

    def __init__(self, jobs: int = 1):
        self.workers = self.here = jobs
        self._pool = None
        self._lock = threading.Lock()

    def _get_pool(self):
        with self._lock:
            if self._pool is None:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor
                self._pool = ProcessPoolExecutor(self.workers,
                                                 mp_context=multiprocessing.get_context("spawn"))
            return self._pool

    def map(self, fn, items, done=None):
        if self.workers == 1:
            return super().map(fn, items, done)
        from concurrent.futures import as_completed
        futures = {self._get_pool().submit(fn, *a): i for i, a in enumerate(items)}
        out: list[Any] = [None] * len(items)
        failed = _Failures()
        try:
            for f in as_completed(futures):
                i = futures[f]
                if f.cancelled():
                    continue
                try:
                    out[i] = f.result()
                except Exception as e:
                    for g, j in futures.items():     # later tasks will not be needed
                        if j > i:
                            g.cancel()
                    failed.add(i, e)
                    continue
                if done:
                    done(i, out[i])
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        failed.throw()
        return out

    def close(self):
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)
                self._pool = None


class RayExecutor(Executor):
    """Tasks on a Ray cluster; connects on creation (an unreachable address is a ConfigError)."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        try:
            import ray
        except ImportError:
            raise ConfigError("the ray executor needs Ray: pip install 'hetsim[ray]'",
                              path="--executor") from None
        self._ray = ray
        self._owned = False
        if not ray.is_initialized():
            env = os.environ.get("RAY_ADDRESS")
            _reachable(address or env, "--address" if address or not env else "$RAY_ADDRESS")
            try:
                with warnings.catch_warnings():    # its own warnings: the error line says it
                    warnings.simplefilter("ignore")
                    ray.init(address=address, num_cpus=None if address else num_cpus,
                             include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                             configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ConfigError(f"cannot reach a Ray cluster at {address or 'local'}: {first}",
                                  path="--address") from None
            self._owned = True
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        # a local instance's tasks run here; a cluster's do not
        self.here = 1 if address or os.environ.get("RAY_ADDRESS") else self.workers
        self._remote: dict = {}

    def map(self, fn, items, done=None):
        ray = self._ray
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = ray.remote(fn)
        refs = [remote.remote(*a) for a in items]
        index = {r: i for i, r in enumerate(refs)}
        out: list[Any] = [None] * len(items)
        pending, failed = list(refs), _Failures()
        try:
            while pending:
                # every result ready within a short wait, not one per call: a call scans the
                # whole pending list
                ready, pending = ray.wait(pending, num_returns=len(pending), timeout=0.2)
                for r in ready:
                    i = index[r]
                    try:
                        out[i] = ray.get(r)
                    except ray.exceptions.TaskCancelledError:
                        continue
                    except ray.exceptions.RayTaskError as e:
                        for p in pending:
                            if index[p] > i:
                                ray.cancel(p)
                        cause = getattr(e, "cause", None)
                        failed.add(i, cause if isinstance(cause, Exception) else e)
                        continue
                    if done:
                        done(i, out[i])
        except BaseException:
            for r in pending:
                ray.cancel(r)
            raise
        failed.throw()
        return out

    def close(self):
        if self._owned:
            self._ray.shutdown()
            self._owned = False


class _Failures:
    """Task failures of one ``map``: the one raised is the lowest-index one, so which error a
    user sees does not depend on which worker finished first (later tasks are cancelled, the
    earlier ones run to the end)."""

    def __init__(self):
        self.first: tuple[int, Exception] | None = None

    def add(self, i: int, e: Exception) -> None:
        if self.first is None or i < self.first[0]:
            self.first = (i, e)

    def throw(self) -> None:
        if self.first is not None:
            raise self.first[1]


def serialized(progress: Callable) -> Callable:
    """A ``progress`` callback safe to call from several threads; after its first write error
    (a closed terminal or pipe) it stays silent, since progress is never the result."""
    lock, broken = threading.Lock(), [False]

    def call(*args) -> None:
        with lock:
            if broken[0]:
                return
            try:
                progress(*args)
            except (OSError, ValueError):
                broken[0] = True
    return call


def _reachable(address: str | None, flag: str = "--address", timeout_s: float = 5.0) -> None:
    """A ``ray://host:port`` or ``host:port`` that does not answer fails in seconds, not after
    Ray's own timeouts (half a minute to forever, logging as it retries)."""
    if not address or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "localhost", int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as e:
        why = ("not auto, host:port or ray://host:port" if isinstance(e, ValueError)
               else (e.strerror or str(e)))
        raise ConfigError(f"cannot reach a Ray cluster at {address}: {why}",
                          path=flag) from None


def check_kind(kind: str, address: str | None = None) -> None:
    """A ConfigError unless ``kind`` names an executor that takes ``address``."""
    if kind not in EXECUTORS:
        raise ConfigError(f"unknown executor {kind!r}; one of {', '.join(EXECUTORS)}",
                          path="--executor")
    if kind == "local" and address:
        raise ConfigError("an address is for the ray executor", path="--address")


def make_executor(kind: str = "local", jobs: int | None = None, address: str | None = None
                  ) -> Executor:
    """``local`` (``jobs`` processes; default 1) or ``ray`` (``address``; none: a local Ray
    instance, or the cluster ``$RAY_ADDRESS`` names)."""
    check_kind(kind, address)
    if kind == "local":
        return LocalExecutor(jobs or 1)
    return RayExecutor(address, num_cpus=jobs)


def cpu_count() -> int:
    """CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
