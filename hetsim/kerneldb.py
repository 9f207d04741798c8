"""aiconfigurator-core's measured kernel tables (the ``aic`` extra), read as data.

The package (``pip install 'hetsim[aic]'``, Apache-2.0) ships kernel timings measured per
system x runtime x version under ``aiconfigurator_core/systems/data/<system>/<family>/<runtime>/
<version>/<table>.parquet``. This module only finds and reads them: which systems, runtimes and
versions exist, which version a request means, and each op table in hetsim's units (seconds,
hetsim precision names). Fitting them into a profile is calibration's job.

The package is located with ``importlib.util.find_spec`` and never imported (its native module
is not needed to read the tables).
"""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from .config import read_yaml
from .errors import ConfigError, match_name

__all__ = ["OPS", "RUNTIMES", "DTYPES", "SYSTEMS", "INSTALL", "SHAPE_COLUMNS", "KernelTables",
           "data_root", "catalog", "select", "read_op", "split_key", "held_out"]

INSTALL = "pip install 'hetsim[aic]'"
RUNTIMES = ("vllm", "sglang", "trtllm")

#: aiconfigurator system name -> the hetsim datasheet profile of the same part (every system
#: aiconfigurator-core 0.12.0 has kernel tables for; tests/test_kerneldb.py checks both sides)
SYSTEMS = {"a100_sxm": "a100-sxm", "b200_sxm": "b200", "b300_sxm": "b300", "b60": "arc-pro-b60",
           "gb200": "gb200", "gb300": "gb300", "h100_sxm": "h100-sxm", "h200_sxm": "h200-sxm",
           "l40s": "l40s", "rtx_pro_6000_server": "rtx-pro-6000-server"}

#: op -> (family folder, table file stem). Latencies in the tables are milliseconds.
#: MLA: the attention core alone (``context_mla_perf`` / ``generation_mla_perf``: TRT-LLM,
#: SGLang from 0.5.14; ``num_heads`` there is already per rank, ``tp_size`` only says which
#: shard of a 64- or 128-head model it was; aiconfigurator queries them with ``128 // tp``).
#: vLLM has only ``mla_*_module_perf``: the whole attention module of one model (DeepSeek-V3)
#: with its projection GEMMs, which hetsim counts as GEMMs of their own; the MLA core is
#: derived from it by taking them out (``calibrate.aic._mla_module``). Older SGLang's
#: ``wideep_*`` tables (DeepEP wide expert parallelism) are not read. Quantize: ``scale_matrix`` is a static fp8
#: quantization of an m x k activation, ``compute_scale`` what computing the scale from the
#: activation (dynamic quantization) adds to it.
OPS = {
    "gemm": ("gemm", "gemm_perf"),
    "context_attention": ("attention", "context_attention_perf"),
    "generation_attention": ("attention", "generation_attention_perf"),
    "allreduce": ("comm", "custom_allreduce_perf"),
    "moe": ("moe", "moe_perf"),
    "context_mla": ("mla", "context_mla_perf"),
    "generation_mla": ("mla", "generation_mla_perf"),
    "context_mla_module": ("mla", "mla_context_module_perf"),
    "generation_mla_module": ("mla", "mla_generation_module_perf"),
    "compute_scale": ("quantize", "computescale_perf"),
    "scale_matrix": ("quantize", "scale_matrix_perf"),
    # Gated DeltaNet (Qwen3.5's linear attention): each kernel of a layer timed alone
    # (``kernel_source``: the causal convolution, the chunked scan or the decode recurrence;
    # ``phase`` context or generation), heads per rank, no dtype column (bf16 activations, the
    # runtime's default float32 state)
    "gdn": ("linear_attention", "gdn_perf"),
}

#: the tables' dtype names (every one aiconfigurator-core 0.12.0 uses) -> hetsim's names:
#: a plain precision where precision.PRECISION_BYTES has it, else weights-activations form
#: (``w4a16`` = 4-bit weights, 16-bit activations), so no format is silently merged into another
DTYPES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "fp8": "fp8",
          "fp8_block": "fp8-block", "nvfp4": "fp4", "int8_wo": "w8a16-int", "int4_wo": "w4a16-int",
          "sq": "w8a8-int-smoothquant", "w4a16_mxfp4": "w4a16-mxfp4",
          "w4a8_mxfp4_mxfp8": "w4a8-mxfp4", "w4afp8": "w4a8-int-fp8"}
#: op -> the columns that name one measured shape (dtypes included; latency and the kernel
#: that was timed excluded), for splitting held-out rows by shape
SHAPE_COLUMNS = {
    "gemm": ("gemm_dtype", "m", "n", "k"),
    "context_attention": ("attn_dtype", "kv_cache_dtype", "batch_size", "isl", "num_heads",
                          "num_key_value_heads", "head_dim", "window_size", "step"),
    "generation_attention": ("attn_dtype", "kv_cache_dtype", "batch_size", "isl", "num_heads",
                             "num_key_value_heads", "head_dim", "window_size", "step"),
    "allreduce": ("allreduce_dtype", "num_gpus", "message_size"),
    "moe": ("moe_dtype", "num_tokens", "hidden_size", "inter_size", "topk", "num_experts",
            "moe_tp_size", "moe_ep_size", "distribution"),
    # per-rank heads: one kernel shape whichever TP shard it was timed as
    "context_mla": ("mla_dtype", "kv_cache_dtype", "batch_size", "isl", "num_heads", "step"),
    "generation_mla": ("mla_dtype", "kv_cache_dtype", "batch_size", "isl", "num_heads", "step"),
    "context_mla_module": ("mla_dtype", "kv_cache_dtype", "gemm_type", "batch_size", "isl",
                           "num_heads", "step"),
    "generation_mla_module": ("mla_dtype", "kv_cache_dtype", "gemm_type", "batch_size", "isl",
                              "num_heads", "step"),
    "compute_scale": ("quant_dtype", "m", "k"),
    "scale_matrix": ("quant_dtype", "m", "k"),
    # (not the kernel: a point's convolution and recurrence are held out together)
    "gdn": ("phase", "batch_size", "seq_len", "num_k_heads", "head_k_dim", "num_v_heads",
            "head_v_dim", "d_conv"),
}
_DTYPE_COLUMNS = ("gemm_dtype", "attn_dtype", "kv_cache_dtype", "allreduce_dtype", "moe_dtype",
                  "mla_dtype", "quant_dtype", "gemm_type")


@dataclasses.dataclass(frozen=True)
class KernelTables:
    """One system x runtime at one version: op -> (version the table came from, its path).
    An op the version lacks is served by the newest older version that has it (backward fill,
    as aiconfigurator itself does), and the version used is kept for provenance."""
    system: str
    runtime: str
    version: str
    tables: dict[str, tuple[str, Path]]


def data_root() -> Path:
    """The package's ``systems`` folder; a one-line error with the install command if absent."""
    spec = importlib.util.find_spec("aiconfigurator_core")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"aiconfigurator-core is not installed; {INSTALL}")
    root = Path(next(iter(spec.submodule_search_locations))) / "systems"
    if not (root / "data").is_dir():
        raise ConfigError(f"{root}/data: no kernel tables in this aiconfigurator-core install")
    return root


def _version_key(v: str):
    from packaging.version import InvalidVersion, Version  # in the aic extra
    try:
        return (1, Version(v), v)
    except InvalidVersion:
        return (0, None, v)  # unparseable names sort first and are never "newest"


def catalog(root: Path | None = None) -> pd.DataFrame:
    """Every table present: columns system, op, runtime, version, path (sorted)."""
    root = data_root() if root is None else root
    rows = []
    for op, (family, stem) in OPS.items():
        for path in (root / "data").glob(f"*/{family}/*/*/{stem}.parquet"):
            system, _, runtime, version = path.relative_to(root / "data").parts[:4]
            if runtime in RUNTIMES:
                rows.append((system, op, runtime, version, path))
    df = pd.DataFrame(rows, columns=["system", "op", "runtime", "version", "path"])
    return df.sort_values(["system", "runtime", "op", "version"], ignore_index=True)


def _current(root: Path, system: str, runtime: str) -> str | None:
    """The version the package declares current for (system, runtime), if it declares one."""
    path = root / "query_versions.yaml"
    if not path.is_file():
        return None
    q = read_yaml(path) or {}
    slot = ((q.get("overrides") or {}).get(system) or {}).get(runtime) or \
        (q.get("defaults") or {}).get(runtime) or {}
    return slot.get("current")


def select(system: str, runtime: str, version: str | None = None,
           root: Path | None = None) -> KernelTables:
    """The tables for ``system`` x ``runtime`` at ``version`` (default: the package's declared
    current version, else the newest present). Unknown names: one line listing what exists."""
    root = data_root() if root is None else root
    cat = catalog(root)
    system = match_name(system, sorted(set(cat.system)), "aiconfigurator system")
    have = cat[cat.system == system]
    runtime = match_name(runtime, sorted(set(have.runtime)), f"runtime for {system}")
    have = have[have.runtime == runtime]
    versions = sorted(set(have.version), key=_version_key)
    if version is None:
        declared = _current(root, system, runtime)
        version = declared if declared in versions else versions[-1]
    elif version not in versions:
        raise ConfigError(f"{system} has no {runtime} tables at version {version!r}; it has "
                          f"{', '.join(versions)}")
    upto = _version_key(version)
    tables = {}
    for op, rows in have.groupby("op"):
        older = [r for r in rows.itertuples() if _version_key(r.version) <= upto]
        if older:
            best = max(older, key=lambda r: _version_key(r.version))
            tables[op] = (best.version, best.path)
    return KernelTables(system, runtime, version, dict(sorted(tables.items())))


def read_op(tables: KernelTables, op: str) -> pd.DataFrame:
    """One op's table: ``latency_s`` (seconds) in place of ``latency`` (ms), dtype columns in
    hetsim precision names. A dtype name this module does not know is an error, not dropped."""
    if op not in tables.tables:
        raise ConfigError(f"{tables.system}/{tables.runtime} {tables.version} has no {op} "
                          f"table; it has {', '.join(tables.tables) or 'none'}")
    version, path = tables.tables[op]
    df = pd.read_parquet(path)
    if "latency" not in df.columns:
        raise ConfigError(f"{path}: no latency column")
    df = df.assign(latency_s=df["latency"].astype(float) / 1e3).drop(columns="latency")
    for col in _DTYPE_COLUMNS:
        if col in df.columns:
            names = df[col].astype(str)
            unknown = sorted(set(names) - set(DTYPES))
            if unknown:
                raise ConfigError(f"{path}: {col}: unknown dtype {unknown[0]!r}; known: "
                                  f"{', '.join(DTYPES)}")
            df[col] = names.map(DTYPES)
    return df


def split_key(df: pd.DataFrame, op: str, seed: int = 0) -> np.ndarray:
    """A number in [0, 1) per row, a hash of ``seed`` and the row's shape (its
    :data:`SHAPE_COLUMNS` as text; a column the table lacks counts as 0, as older attention
    tables' missing ``window_size`` and ``step`` are): the same for the same shape in every run,
    table version and process, so a split by it never depends on row order."""
    if not 0 <= seed < 10**10:
        raise ConfigError(f"split seed must be an integer in [0, 1e10), got {seed}")
    text = pd.Series("", index=df.index, dtype=object)
    for col in SHAPE_COLUMNS[op]:
        if col not in df.columns:
            value = "0"
        else:   # 128 and 128.0 are one shape: whole numbers hash as integers whatever the dtype
            c = df[col]
            if pd.api.types.is_float_dtype(c) and c.notna().all() and (c % 1 == 0).all():
                c = c.astype(np.int64)
            value = c.astype(str).astype(object)
        text = text + "|" + value
    h = pd.util.hash_pandas_object(text, index=False, hash_key=f"hetsim{seed:010d}")
    return (h.to_numpy(np.uint64) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def held_out(df: pd.DataFrame, op: str, fraction: float, seed: int = 0) -> np.ndarray:
    """Rows held out from a fit (a ``fraction`` of shapes, chosen by :func:`split_key`); a fit
    uses the others. Deterministic; the held-out set grows with ``fraction``."""
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"held-out fraction must be in [0, 1], got {fraction}")
    return split_key(df, op, seed) < fraction
