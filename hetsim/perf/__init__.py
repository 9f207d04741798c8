"""Analytical performance model: operator rooflines -> iteration times -> memory plan."""
from .memory import MemoryPlan, memory_plan
from .ops import PerfModel
from .step import Formats, StepModel

__all__ = ["PerfModel", "StepModel", "Formats", "MemoryPlan", "memory_plan"]
