"""Assemble a calibrated profile: fit a profile's efficiency curves and overheads to
measurements (:mod:`.fit`, :mod:`.curves`), and say how accurate the result is.

The fitted model keeps the performance model's structure (roofline, tile and wave
quantization) and calibrates what a datasheet cannot know:
- ``efficiency.hbm`` from the device copy, ``efficiency.kernel_overhead_us`` from a trivial
  kernel, ``efficiency.iteration_overhead_ms`` from a tiny reference-transformer iteration;
- shape-aware throughput corrections (:class:`hetsim.hardware.Curve`): GEMM compute vs m (small-m
  kernels, wave effects the tile model misses), prefill attention compute vs query tokens
  (short contexts), decode attention compute vs FLOPs and memory throughput vs bytes read.
  Each path's correction is fitted from the measurements that path binds. A knot is the median,
  over the measured shapes at that x, of (model time / measured time); knots are constrained so
  that more work never takes less time (the correction grows at most linearly in x, and the
  memory-bound GEMM correction never grows with m).
Accuracy is measured on held-out shapes: one (n, k) pair in three and every fourth m (GEMM),
every third shape (attention), fitted on the rest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from ..config import build, to_dict
from ..errors import ConfigError
from ..hardware import Accelerator
from ..perf import PerfModel
from ..precision import unsupported
from .csvio import CLASSES
from .curves import fit_curves, held_out, op_errors, with_curves
from .fit import fit_allreduce, fit_scalars, with_overheads

__all__ = ["FitResult", "base_accelerator", "fit_profile"]


@dataclass
class FitResult:
    profile: dict                      # YAML-ready, loadable as an Accelerator
    accuracy: dict                     # op class -> {n, before_median, before_p90, after_...}
    base: Accelerator
    fitted: Accelerator
    held_out: list[dict] = field(default_factory=list)


def base_accelerator(raw: dict) -> Accelerator:
    """The datasheet profile a raw profile dict describes (a calibrated one is stripped back to
    its base: its calibration removed and its original efficiency restored)."""
    raw = dict(raw)
    cal = raw.pop("calibration", None)
    if cal and cal.get("base_efficiency"):
        raw["efficiency"] = cal["base_efficiency"]
    return build(Accelerator, raw)


def fit_profile(base_raw: dict, rows: list[dict], *, name: str | None = None, device: str = "?",
                torch_version: str = "", driver: str = "", grid: str = "",
                measurements: str = "", timing: str = "",
                measured: str | None = None) -> FitResult:
    """Fit ``rows`` (measurement dicts) on top of the datasheet profile ``base_raw``."""
    base = base_accelerator(base_raw)
    for r in rows:
        why = unsupported(base, r["precision"]) if r["op"] in CLASSES else None
        if why:
            raise ConfigError(f"{why}; measured {r['op']} rows in it")
    # held-out accuracy: fit on the training part, score the held-out part
    mask = held_out(rows)
    train = [r for r, h in zip(rows, mask) if not h]
    held = [r for r, h in zip(rows, mask) if h and r["op"] in CLASSES]
    s1, from_gemms = fit_scalars(base, train)
    s1, _ = with_overheads(s1, train, from_gemms)
    fitted_train = with_curves(s1, fit_curves(s1, train))
    accuracy = op_errors(PerfModel(base, link=None), PerfModel(fitted_train, link=None), held)
    # the profile: fit on everything
    s1, from_gemms = fit_scalars(base, rows)
    s1, small_us = with_overheads(s1, rows, from_gemms)
    curves = fit_curves(s1, rows)
    base_eff = {k: v for k, v in to_dict(base.efficiency).items()}
    when = measured or date.today().isoformat()
    cal = dict(device=device, torch=torch_version, driver=driver, date=when,
               base_profile=base.name, grid=grid, measurements=measurements,
               accuracy={k: {kk: float(f"{vv:.4g}") for kk, vv in v.items()}
                         for k, v in accuracy.items()},
               allreduce=fit_allreduce(rows),
               engine_overhead_ms=base.efficiency.iteration_overhead_ms,
               small_kernel_us=small_us,
               notes="held-out accuracy: fitted without the held-out shapes"
               + (f"; timing: {timing}" if timing else ""))
    fitted = with_curves(s1, curves, **cal)
    out = to_dict(fitted)
    out["calibration"]["base_efficiency"] = base_eff
    if name:
        out["name"] = name
    out["description"] = base.description.replace(" (datasheet-level)", "").removesuffix(
        " (calibrated)") + " (calibrated)"
    out["aliases"] = []
    eff = out["efficiency"]
    eff["note"] = (f"calibrated by hetsim calibrate on {device}: hbm from the better of a "
                   f"device copy and weight-streaming GEMMs, kernel overhead from the GEMMs' "
                   f"fixed cost (else a trivial kernel), iteration overhead = the base's engine "
                   f"overhead + the device's own (1- and 3-layer probes); shape-aware curves "
                   f"under calibration")
    out["sources"] = [s for s in out.get("sources") or [] if s.get("key") != "CAL"] + [{
        "key": "CAL", "ref": f"hetsim calibrate, {device}, torch {torch_version}, {when}",
        "note": f"raw: {measurements}"}]
    return FitResult(out, accuracy, base, fitted, held)
