"""Whether a pool can run at all: the one feasibility check shared by resolution and planning.

A pool of ``model`` on ``acc`` at tensor parallelism ``tp`` in ``formats`` is feasible when the
device computes in the compute format (and in the model's ``attention_weights``, if any), the
TP group fits in one scale-up domain, TP divides the attention heads, and the weights and
activations leave room for KV (:func:`memory_plan`).
:mod:`hetsim.resolve` raises the problem at the pool's key path; the planner skips the option.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..precision import Formats, unsupported
from .memory import MemoryPlan, memory_plan

__all__ = ["PoolProblem", "pool_fit", "pool_problem"]


@dataclass(frozen=True)
class PoolProblem:
    """Why a pool cannot run: the message, and the pool key it concerns (``"precision"``,
    ``"tp"``, or ``""`` for the pool as a whole: its memory)."""
    key: str
    message: str


def pool_fit(model, acc, tp: int, formats: "str | Formats", *,
             max_batched_tokens: int = 8192, max_seqs: int = 256,
             memory_utilization: float = 0.9, block_size: int = 16,
             kv_rule=None, attention_dp: int = 1) -> MemoryPlan | PoolProblem:
    """The pool's memory plan, or its first problem, checked in the order precision, scale-up
    domain, heads, memory. The keyword arguments are :func:`memory_plan`'s (with attention
    DP the heads are split tp / attention_dp ways)."""
    f = Formats.of(formats)
    why = unsupported(acc, f.compute)
    if why:
        return PoolProblem("precision", why)
    # the step model computes the attention projections in the checkpoint's own format where
    # the model fixes one (attention_weights), whatever the pool's
    aw = getattr(model, "attention_weights", None)
    if aw and unsupported(acc, aw):
        return PoolProblem("precision", f"{unsupported(acc, aw)}: the model's attention_weights "
                                        f"are computed in {aw}")
    if acc.scale_up and tp > acc.scale_up.domain_size:
        return PoolProblem("tp", f"tp={tp} exceeds {acc.name}'s scale-up domain of "
                                 f"{acc.scale_up.domain_size}")
    atp = tp // attention_dp
    if model.num_heads % atp:
        what = f"tp={tp}" if attention_dp == 1 else f"tp / attention_dp = {atp}"
        return PoolProblem("tp", f"{what} does not divide {model.name}'s {model.num_heads} "
                                 f"heads")
    try:
        return memory_plan(model, acc, tp, f, max_batched_tokens=max_batched_tokens,
                           max_seqs=max_seqs, memory_utilization=memory_utilization,
                           block_size=block_size, kv_rule=kv_rule, attention_dp=attention_dp)
    except ConfigError as e:
        return PoolProblem("", e.message)


def pool_problem(model, acc, tp: int, formats: "str | Formats", **sizes) -> PoolProblem | None:
    """The pool's first problem (see :func:`pool_fit`), or None when it can run."""
    fit = pool_fit(model, acc, tp, formats, **sizes)
    return fit if isinstance(fit, PoolProblem) else None

