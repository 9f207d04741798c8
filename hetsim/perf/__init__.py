"""Analytical performance model: operator rooflines -> iteration times -> memory plan.

``ops.PerfModel`` (operators on one device) <- ``step.StepModel`` (one engine iteration of a
model); ``memory`` (what fits in a device) and ``feasible`` (whether a pool can run at all)
need only the formats and the profiles. Nothing here imports the scenario, the engine or above.
"""
from .feasible import PoolProblem, pool_fit, pool_problem
from .memory import MemoryPlan, memory_plan, model_problem
from .ops import PerfModel
from .step import StepModel

__all__ = ["PerfModel", "StepModel", "MemoryPlan", "memory_plan", "PoolProblem", "pool_fit",
           "pool_problem", "model_problem"]
