"""Numeric formats: the byte table, a pool's formats by runtime role, and the support check.

One idea, one module, below every user of it (hardware profiles, model sizes, the performance
model, the scenario schema, calibration): a *format* is a name in :data:`PRECISION_BYTES`
(``"bf16"``, ``"fp8"``, ...); :class:`Precision` is what a scenario writes (``precision: fp8``
or ``{compute, weights, kv}``) and :class:`Formats` the resolved triple every model computes with.

Imports only :mod:`hetsim.errors` and :mod:`hetsim.config`; the support check reads an
accelerator by duck type (``name``, ``precisions``, ``supports``), so this module sits below
:mod:`hetsim.hardware`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .config import meta
from .errors import ConfigError, suggest

__all__ = ["PRECISION_BYTES", "Formats", "Precision", "unknown_precision", "unsupported"]

#: Bytes per element of each numeric format hetsim knows.
#: ``mxfp4`` (OCP microscaling): 4-bit e2m1 values plus one 8-bit e8m0 scale per 32 values,
#: 4.25 bits; a storage format (gpt-oss's experts), so no accelerator profile lists it as a
#: compute precision and :func:`unsupported` refuses it as ``compute``; as ``weights`` it is a
#: weight-only format (dequantized to the compute format, as vLLM's mxfp4 MoE does on Hopper).
#: ``fp8-block``: fp8 values with one fp32 scale per 128 x 128 block (DeepSeek-V3's and Qwen3's
#: FP8 checkpoints; the scales, 1/4096 of a byte per value, are left out): a weight format,
#: computed in fp8, that selects the block-scaled kernels (``weights: fp8-block``).
#: ``fp8-static``: per-tensor fp8 weights whose checkpoint carries static activation scales
#: (NVIDIA's ModelOpt FP8 releases): computed in fp8 like ``fp8``, with the activations quantized
#: by the stored scale, so a runtime GEMM pays no scale computation (``PerfModel.gemm_time``).
#: ``int4-g32``: symmetric 4-bit integers with one bf16 scale per group of 32 along k, 4.5 bits
#: (compressed-tensors ``pack-quantized``, group_size 32: Kimi-K2.5's routed experts); like
#: mxfp4 a storage format only (weight-only: dequantized to the compute format).
PRECISION_BYTES = {"fp32": 4.0, "tf32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0,
                   "fp4": 0.5, "int4": 0.5, "mxfp4": 4.25 / 8, "fp8-block": 1.0,
                   "fp8-static": 1.0, "int4-g32": 4.5 / 8}


def unknown_precision(name: str) -> str | None:
    """``"unknown precision 'bf61' (did you mean 'bf16'?)"``, or None for a known format."""
    if name in PRECISION_BYTES:
        return None
    return f"unknown precision {name!r}" + suggest(name, PRECISION_BYTES)


def unsupported(acc, precision: str) -> str | None:
    """Why ``acc`` (an :class:`~hetsim.hardware.Accelerator`) cannot compute in ``precision``,
    or None when its matrix units can:
    ``"a100-sxm does not compute in fp8 (supports fp32, tf32, bf16, fp16, int8)"``."""
    if acc.supports(precision):
        return None
    return f"{acc.name} does not compute in {precision} (supports {', '.join(acc.precisions)})"


@dataclass(frozen=True)
class Formats:
    """Numeric formats of one pool, by runtime role (each a key of :data:`PRECISION_BYTES`)."""
    compute: str = "bf16"   # GEMM inputs and math
    weights: str = "bf16"   # stored weights (weight-only quantization when narrower)
    kv: str = "bf16"        # KV cache

    @classmethod
    def of(cls, precision: "str | Formats") -> "Formats":
        """``"fp8"`` -> fp8 for every role; a :class:`Formats` as it is."""
        if isinstance(precision, Formats):
            return precision
        return cls(precision, precision, precision)


def _check_known(k: str, v: str | None) -> None:
    msg = None if v is None else unknown_precision(v)
    if msg:
        raise ConfigError(msg, path=k)


@dataclass(frozen=True)
class Precision:
    """A pool's ``precision:`` section, per runtime role; ``precision: bf16`` is shorthand for
    all three. :meth:`formats` resolves the defaults."""
    compute: str = field(default="bf16", metadata=meta("GEMM compute format"))
    weights: str | None = field(default=None, metadata=meta(
        "stored weight format (default: compute)"))
    kv: str | None = field(default=None, metadata=meta("KV-cache format (default: compute)"))

    def __post_init__(self):
        for k in ("compute", "weights", "kv"):
            _check_known(k, getattr(self, k))
        for k in ("compute", "kv"):
            if getattr(self, k) == "fp8-static":
                raise ConfigError("fp8-static is a weight format (fp8 weights with static "
                                  "activation scales)", path=k)
        if self.weights == "fp8-static" and self.compute != "fp8":
            raise ConfigError(f"fp8-static weights compute in fp8 (their activations are "
                              f"quantized by the stored scale), not {self.compute}",
                              path="weights")
        if self.weights and PRECISION_BYTES[self.weights] > PRECISION_BYTES[self.compute]:
            raise ConfigError(f"weights ({self.weights}) are wider than compute ({self.compute});"
                              f" weight-only quantization stores weights narrower than compute",
                              path="weights")

    def formats(self) -> Formats:
        return Formats(self.compute, self.weights or self.compute, self.kv or self.compute)
