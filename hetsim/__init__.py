"""hetsim: a discrete-event simulator of heterogeneous prefill/decode LLM inference clusters.

The simulator entry points load lazily (``run``, ``goodput``, ``plan``, ``sweep``: each takes a
file path, a mapping or a loaded object, and ``overrides={key path: value}``),
so ``hetsim.precision``, ``hetsim.hardware``, ``hetsim.perf`` and ``hetsim.calibrate`` import
without SimPy or pandas (calibration runs on GPU machines with torch, numpy, yaml and tqdm).
"""
from .errors import ConfigError
from .hardware import Accelerator, Interconnect, list_profiles, load_accelerator, load_interconnect
from .models import ModelConfig, list_models, load_model
from .perf import MemoryPlan, PerfModel, StepModel, memory_plan
from .precision import Formats

__version__ = "0.1.0"

__all__ = ["ConfigError", "Accelerator", "Interconnect", "load_accelerator", "load_interconnect",
           "list_profiles", "ModelConfig", "load_model", "list_models", "PerfModel", "StepModel",
           "Formats", "MemoryPlan", "memory_plan", "__version__", "run", "Result", "Scenario",
           "load_scenario", "as_scenario", "goodput", "GoodputResult", "plan", "PlanResult",
           "load_plan_spec", "sweep", "SweepResult", "load_sweep", "make_executor"]

_LAZY = {"run": "api", "Result": "api", "Scenario": "scenario", "load_scenario": "resolve",
         "as_scenario": "scenario", "goodput": "goodput_search", "GoodputResult": "goodput_search",
         "plan": "planner", "PlanResult": "planner", "load_plan_spec": "planner",
         "sweep": "sweeps", "SweepResult": "sweeps", "load_sweep": "sweeps",
         "make_executor": "executors"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'hetsim' has no attribute {name!r}")
