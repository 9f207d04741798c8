"""Workloads: arrival processes and length distributions -> an identical request stream.

Each random source (arrival gaps, input lengths, output lengths) gets its own
``numpy.random.Generator`` spawned from one ``SeedSequence``, so every placement sees the same
requests and changing one source never shifts another.

Modules, each importing only those above it: ``presets`` (named length distributions, data),
``spec`` (the schema and its limits), ``files`` (CSV traces and histograms), ``draw``
(:func:`generate`: the request stream).
"""
from .draw import Requests, generate, sample_lengths
from .presets import PRESETS
from .spec import (DEFAULT_REQUESTS, MAX_TIME_S, MAX_TOKENS, Arrival, Lengths, Warmup,
                   WorkloadSpec, check_rate_varies, load_workload, written)

__all__ = ["Arrival", "Lengths", "Warmup", "WorkloadSpec", "Requests", "generate", "PRESETS",
           "load_workload", "written", "DEFAULT_REQUESTS", "MAX_TOKENS", "MAX_TIME_S",
           "sample_lengths", "check_rate_varies"]
