"""Calibrate the performance model against a real device with small torch reference kernels.

Imports only torch (lazily, when measuring), numpy, yaml and hetsim's profile schema and
performance model: no SimPy or pandas, so it runs on GPU machines that have only torch.

    hetsim calibrate --device cpu --quick --out cpu.yaml            # measure + fit + check
    hetsim calibrate --accelerator h100-sxm --device cuda --out hardware_profiles/calibrated/h100-sxm.yaml
    hetsim calibrate --from-csv measurements.csv --accelerator h100-sxm --out h100.yaml

Modules: ``grid`` (the shapes), ``timer`` (timing jobs: repeats interleaved across shapes,
outliers, noise), ``measure`` (the torch jobs: GEMMs, attention, copies, all-reduce; host load),
``reference`` (a Llama-architecture forward pass with a KV cache), ``csvio`` (the measurement
CSV), ``curves`` (shape-aware corrections, held-out error), ``fit`` (scalar and probe fits:
bandwidth, overheads, all-reduce), ``profile`` (the calibrated profile assembled),
``gates`` (when a profile is not written: noisy timings, a busy host, a fit worse than its
base), ``cli`` (arguments, progress, files; run by :mod:`hetsim.cli`).
"""
from .csvio import CSV_COLUMNS, read_csv, write_csv
from .profile import FitResult, fit_profile

__all__ = ["CSV_COLUMNS", "FitResult", "fit_profile", "read_csv", "write_csv"]
