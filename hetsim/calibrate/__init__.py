"""Calibrate the performance model against a real device with small torch reference kernels.

Imports only torch (lazily, when measuring), numpy, yaml and hetsim's profile schema and
performance model: no SimPy or pandas, so it runs on GPU machines that have only torch.

    hetsim calibrate --device cpu --quick --out cpu.yaml            # measure + fit + check
    hetsim calibrate --accelerator h100-sxm --device cuda --out hardware_profiles/calibrated/h100-sxm.yaml
    hetsim calibrate --from-csv measurements.csv --accelerator h100-sxm --out h100.yaml

Modules: ``grid`` (the shapes), ``measure`` (torch timing of ops: repeats interleaved across
shapes, outliers, noise), ``reference`` (a Llama-architecture forward pass with a KV cache),
``fit`` (curves, held-out error, the profile), ``gates`` (when a profile is not written: noisy
timings, a busy host, a fit worse than its base), ``cli`` (arguments, progress, files).
"""
from .fit import CSV_COLUMNS, FitResult, fit_profile, read_csv, write_csv

__all__ = ["CSV_COLUMNS", "FitResult", "fit_profile", "read_csv", "write_csv"]
