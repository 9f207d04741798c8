"""hetsim: a discrete-event simulator of heterogeneous prefill/decode LLM inference clusters."""
from .errors import ConfigError
from .hardware import Accelerator, Interconnect, list_profiles, load_accelerator, load_interconnect
from .models import ModelConfig, list_models, load_model
from .perf import Formats, MemoryPlan, PerfModel, StepModel, memory_plan

__version__ = "0.1.0"

__all__ = ["ConfigError", "Accelerator", "Interconnect", "load_accelerator", "load_interconnect",
           "list_profiles", "ModelConfig", "load_model", "list_models", "PerfModel", "StepModel",
           "Formats", "MemoryPlan", "memory_plan", "__version__"]
from .api import Result, run  # noqa: E402
from .scenario import Scenario, load_scenario  # noqa: E402

__all__ += ["run", "Result", "Scenario", "load_scenario"]
