"""Measured kernel times a profile carries: grids per op and per fixed part of the shape.

A runtime profile (``hetsim calibrate --from-aiconfigurator``) keeps the kernel tables it was
fitted to as :class:`KernelGrid` s in one ``.npz`` file beside its YAML. Each grid times one op
for one *key* (the part of the shape a model fixes: dtypes, heads per rank, head dim, GPU
count, an MoE layer's sizes) over its *axes* (the part a batch varies: tokens, batch, context
length), every axis cell filled (holes were filled before saving; ``measured`` says which
cells were not). The step model picks a grid by key and reads it through
:mod:`hetsim.perf.measured` (:class:`hetsim.perf.grid.LogGrid` is the reference reading).

This module is data and file format only: which grid serves which model shape, and what carries
the time past a grid's edge, is :mod:`hetsim.perf.measured_ops`' and :mod:`hetsim.perf.step`'s
job.

File format (a deflated ``.npz``; nothing pickled): ``index`` is a JSON list, one
``{"op", "key", "axes", "shape", "filled"}`` per grid in file order (axes: axis names; shape:
their lengths; filled: whether it carries a measured mask). ``axes`` (float64) holds every
grid's axis values one after another (each axis increasing, > 0); ``seconds`` every grid's
times (float32, C order, one after another) as 4 x n bytes, byte j of every little-endian
float32 in row j (the sign-and-exponent bytes of similar times repeat, so deflate packs them;
lossless); ``measured`` (packed bits) one bit per cell of each grid with ``filled``, 1 where
the time was measured, 0 where it was filled. One array each for all grids, not per grid: an
MoE table makes thousands of small grids, and a zip entry per array cost more than the
numbers. ``meta`` is a JSON object (provenance: source package and version, tables and rows).
"""
from __future__ import annotations

import functools
import json
import math
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .grid import LogGrid

__all__ = ["OPS", "KernelGrid", "MeasuredKernels", "load_kernels"]

#: op -> (key fields, axis names). Keys and axes are in these units: dtypes as hetsim precision
#: names (``hetsim.kerneldb.DTYPES``' values), heads per rank, ``window`` in tokens (0: full
#: attention), ``kv`` = cached tokens each sequence attends to, ``bytes`` per GPU.
OPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "gemm": (("dtype",), ("m", "n", "k")),
    "context_attention": (("dtype", "kv_dtype", "heads", "kv_heads", "head_dim", "window"),
                          ("batch", "isl")),
    "generation_attention": (("dtype", "kv_dtype", "heads", "kv_heads", "head_dim", "window"),
                             ("batch", "kv")),
    "allreduce": (("dtype", "gpus"), ("bytes",)),
    "moe": (("dtype", "hidden", "inter", "topk", "experts", "tp", "ep", "distribution"),
            ("tokens",)),
    "context_mla": (("dtype", "kv_dtype", "heads"), ("batch", "isl")),
    "generation_mla": (("dtype", "kv_dtype", "heads"), ("batch", "kv")),
    "quantize": (("dtype",), ("m", "k")),
    # the scale computation a dynamically quantized GEMM's activations pay (in the fp8 GEMM
    # tables' time; a static-scale checkpoint's do not)
    "compute_scale": (("dtype",), ("m", "k")),
    # Gated DeltaNet (linear attention), one layer's two kernels per phase summed: heads per
    # rank, head dims, the convolution's width; context over (sequences, tokens each)
    "context_gdn": (("k_heads", "head_k_dim", "v_heads", "head_v_dim", "conv"),
                    ("batch", "isl")),
    "generation_gdn": (("k_heads", "head_k_dim", "v_heads", "head_v_dim", "conv"), ("batch",)),
}


@dataclass(frozen=True, eq=False)
class KernelGrid:
    """Seconds of one op at one key over every combination of its axes' values."""
    op: str
    key: tuple
    axes: tuple[np.ndarray, ...]
    seconds: np.ndarray
    #: True where ``seconds`` was measured, False where it was filled (a hole between or past
    #: measurements: e.g. long-KV x large-batch decode, never timed); None: all measured
    measured: np.ndarray | None = None

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"unknown op {self.op!r}; known: {', '.join(OPS)}")
        fields, names = OPS[self.op]
        if len(self.key) != len(fields) or len(self.axes) != len(names):
            raise ValueError(f"{self.op}: key {fields} and axes {names} expected")
        LogGrid(self.axes, self.seconds)     # validates shapes, order and positivity
        if self.measured is not None and (
                np.shape(self.measured) != np.shape(self.seconds)
                or np.asarray(self.measured).dtype != bool):
            raise ValueError(f"{self.op}: measured must be a bool mask shaped like seconds")

    @property
    def named_key(self) -> dict:
        return dict(zip(OPS[self.op][0], self.key))

    @functools.cached_property
    def grid(self) -> LogGrid:
        return LogGrid(self.axes, self.seconds)


class MeasuredKernels:
    """A profile's grids, looked up by op and key; ``meta`` is the file's provenance."""

    def __init__(self, grids: Iterable[KernelGrid], meta: dict | None = None):
        self.meta = dict(meta or {})
        self._by: dict[str, dict[tuple, KernelGrid]] = {}
        for g in grids:
            slot = self._by.setdefault(g.op, {})
            if g.key in slot:
                raise ValueError(f"two {g.op} grids for key {g.key}")
            slot[g.key] = g

    def ops(self) -> list[str]:
        return [op for op in OPS if op in self._by]

    def grids(self, op: str) -> list[KernelGrid]:
        """Every grid of ``op`` (none: empty)."""
        return list(self._by.get(op, {}).values())

    def get(self, op: str, key: tuple) -> KernelGrid | None:
        return self._by.get(op, {}).get(tuple(key))

    def __len__(self) -> int:
        return sum(len(v) for v in self._by.values())

    def save(self, path: str | Path) -> None:
        """Write the ``.npz`` at ``path`` (deterministic bytes for the same grids and meta).
        Written in place: a caller replacing a user's file goes through
        ``hetsim.outputs.write_atomic``, as ``calibrate`` does."""
        index, axes, seconds, measured = [], [], [], []
        for g in (g for op in self.ops() for g in self._by[op].values()):
            index.append({"op": g.op, "key": [_plain(v) for v in g.key],
                          "axes": list(OPS[g.op][1]), "shape": [len(a) for a in g.axes],
                          "filled": g.measured is not None})
            axes += [np.asarray(a, dtype=np.float64) for a in g.axes]
            seconds.append(np.asarray(g.seconds, dtype=np.float32).ravel())
            if g.measured is not None:
                measured.append(np.asarray(g.measured, dtype=bool).ravel())
        t = np.concatenate(seconds or [np.zeros(0, np.float32)]).astype("<f4")
        arrays = {"axes": np.concatenate(axes or [np.zeros(0)]),
                  "seconds": np.ascontiguousarray(t.view(np.uint8).reshape(-1, 4).T),
                  "measured": np.packbits(np.concatenate(measured or [np.zeros(0, bool)])),
                  "index": np.array(json.dumps(index, sort_keys=True))}
        arrays["meta"] = np.array(json.dumps(self.meta, sort_keys=True))
        _save_npz(Path(path), arrays)


def _plain(v):
    """A key value as JSON keeps it (numpy scalars to Python ones)."""
    return v.item() if isinstance(v, np.generic) else v


def _save_npz(path: Path, arrays: dict) -> None:
    # NOTE: np.savez_compressed stamps zip entries with the current time; a fixed stamp keeps
    # the file byte-identical across rebuilds (the re-derivation test compares bytes)
    from io import BytesIO
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name in sorted(arrays):
            buf = BytesIO()
            np.save(buf, arrays[name], allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, buf.getvalue())


def _read(path: str) -> MeasuredKernels:
    try:
        with np.load(path, allow_pickle=False) as z:
            index = json.loads(str(z["index"]))
            meta = json.loads(str(z["meta"]))
            planes = z["seconds"]
            if planes.dtype != np.uint8 or planes.ndim != 2 or planes.shape[0] != 4:
                raise ValueError("seconds: 4 x n bytes expected")
            all_axes = z["axes"]
            all_t = np.ascontiguousarray(planes.T).view("<f4").ravel().astype(np.float64)
            bits = np.unpackbits(z["measured"]).astype(bool) if "measured" in z.files \
                else np.zeros(0, bool)
            grids, ia, it, im = [], 0, 0, 0
            for entry in index:
                shape = [int(n) for n in entry["shape"]]
                axes = []
                for n in shape:
                    axes.append(all_axes[ia:ia + n])
                    ia += n
                size = math.prod(shape)
                if ia > len(all_axes) or it + size > len(all_t):
                    raise ValueError("index names more values than the file holds")
                mask = None
                if entry.get("filled"):
                    if im + size > len(bits):
                        raise ValueError("index names more measured cells than the file holds")
                    mask = bits[im:im + size].reshape(shape)
                    im += size
                grids.append(KernelGrid(entry["op"], tuple(entry["key"]), tuple(axes),
                                        all_t[it:it + size].reshape(shape), mask))
                it += size
            # packbits pads the last byte with at most 7 zero bits
            if ia != len(all_axes) or it != len(all_t) or not 0 <= len(bits) - im < 8:
                raise ValueError("values the index does not name")
    except (OSError, KeyError, ValueError, TypeError, json.JSONDecodeError,
            zipfile.BadZipFile) as e:
        raise ConfigError(f"unreadable kernel grids: {e}", file=path) from None
    return MeasuredKernels(grids, meta)


@functools.lru_cache(maxsize=64)
def _cached(path: str, mtime_ns: int, size: int) -> MeasuredKernels:
    return _read(path)


def load_kernels(path: str | Path) -> MeasuredKernels:
    """The grids in ``path`` (memoized by file identity: a rewritten file is read again).
    NOTE: the result is shared; treat it as read-only."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise ConfigError("kernel grids file not found", file=str(p)) from None
    return _cached(str(p.resolve()), st.st_mtime_ns, st.st_size)
