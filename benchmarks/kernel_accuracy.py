"""hetsim's operator model against the kernel timings aiconfigurator-core measured (issue 14 §4).

Per system x runtime (the package's declared current version, older tables backward-filled as
``kerneldb.select`` does) x op class: the median (MdAPE) and p90 absolute percentage error of
each model on *held-out* rows, a fraction of shapes chosen by a hash of the shape
(``kerneldb.held_out``): the same split in every run and for every model, so a model fitted to
the tables is scored on shapes it did not see. A model is a :data:`Predictor` per op class
(rows -> seconds, NaN where it does not predict; ``per_row`` adapts a row function); today's
are the datasheet and torch-calibrated profiles (``generic_models``). A table-fitted model plugs
in as ``main(models=...)``.

Rows, read as aiconfigurator-core 0.12.0's loaders read them: gemm (m x k) @ (k x n) (fp8 block
scaling scored as fp8 compute, weight-only ints as bf16 compute with int weights, SmoothQuant
as int8); context attention: ``batch_size`` causal prompts of ``isl`` tokens after ``step``
cached; generation attention: one token per sequence against ``isl + step`` cached; all-reduce:
``message_size`` *elements* per GPU, CUDA-graph rows only (what serving replays); MoE: a layer's
routed experts at ``num_tokens`` tokens, scored by the table grid only (the generic models have
no single MoE op: the step model composes one from GEMMs for a whole model). Of several
kernels timed for one shape, the fastest.

    pip install 'hetsim[aic]'
    python benchmarks/kernel_accuracy.py [--system h100_sxm] [--runtime vllm] [--by-dtype]
    python benchmarks/kernel_accuracy.py --markdown --readme README.md   # README's table
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import types
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from hetsim import kerneldb, load_accelerator
from hetsim.calibrate.aic import fill_options
from hetsim.errors import ConfigError, match_name
from hetsim.hardware import list_profiles
from hetsim.perf import PerfModel
from hetsim.perf.grid import LogGrid, fill_log_grid
from hetsim.precision import PRECISION_BYTES

#: frame of table rows -> seconds per row (NaN: not predicted)
Predictor = Callable[[pd.DataFrame], np.ndarray]

SCORED = ("gemm", "context_attention", "generation_attention", "allreduce", "moe")
#: columns whose values split an op class when sampling (so each dtype keeps its share)
DTYPE_GROUP = {"gemm": ["gemm_dtype"], "context_attention": ["attn_dtype", "kv_cache_dtype"],
               "generation_attention": ["attn_dtype", "kv_cache_dtype"],
               "allreduce": ["allreduce_dtype"], "moe": ["moe_dtype"]}
#: table gemm dtype -> (compute precision, weight precision or None)
GEMM_FORMATS = {"bf16": ("bf16", None), "fp16": ("fp16", None), "fp8": ("fp8", None),
                "fp8-block": ("fp8", None), "fp4": ("fp4", None),
                "w8a16-int": ("bf16", "int8"), "w4a16-int": ("bf16", "int4"),
                "w8a8-int-smoothquant": ("int8", None)}
MODEL_ORDER = ("datasheet", "torch-calibrated", "table grid")
MARK = ("<!-- kernel_accuracy -->", "<!-- /kernel_accuracy -->")


def per_row(fn: Callable[[pd.Series], float]) -> Predictor:
    """A row -> seconds function as a :data:`Predictor`."""
    return lambda df: np.array([fn(r) for _, r in df.iterrows()], dtype=float)


# --- the tables --------------------------------------------------------------------------
def prepare(df: pd.DataFrame, op: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """One op's table as scored: defaults for columns older tables lack, eager all-reduce rows
    dropped, one row per shape (the fastest kernel). Returns the rows and what was dropped."""
    dropped = {}
    for col in ("window_size", "step"):
        if op.endswith("attention") and col not in df.columns:
            df = df.assign(**{col: 0})
    if op == "allreduce":
        # NOTE: a serving runtime replays decode as CUDA graphs, so where a shape was timed
        # both ways the graph row counts; a system timed only eagerly (Intel's B60) keeps those
        mode = (df["backend"] if "backend" in df.columns else df["kernel_source"]).astype(str)
        eager = mode.str.contains("eager")
        shape = [c for c in kerneldb.SHAPE_COLUMNS[op] if c in df.columns]
        graphed = df[~eager].set_index(shape).index
        drop = (eager & df.set_index(shape).index.isin(graphed)).to_numpy()
        dropped["eager all-reduce"] = int(drop.sum())
        df = df[~drop]
    shape = [c for c in kerneldb.SHAPE_COLUMNS[op] if c in df.columns]
    best = df.sort_values("latency_s", kind="stable").drop_duplicates(shape)
    dropped["merged: same shape, slower kernel"] = len(df) - len(best)
    return best.sort_index(), {k: v for k, v in dropped.items() if v}


def held_out_rows(df: pd.DataFrame, op: str, fraction: float, seed: int,
                  max_rows: int) -> pd.DataFrame:
    """The held-out rows; with ``max_rows``, at most that many per dtype group (the ones with
    the smallest split key: a deterministic sample, nested as ``max_rows`` grows)."""
    key = kerneldb.split_key(df, op, seed)
    out = df.assign(_key=key)[key < fraction]
    if max_rows:
        out = out.sort_values("_key").groupby(DTYPE_GROUP[op], sort=False).head(max_rows)
    return out.sort_index().drop(columns="_key")


# --- the generic models ------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class OpModel:
    """One op class of hetsim's :class:`PerfModel` on one profile as a :data:`Predictor`;
    ``reasons`` says which rows it does not predict, and why."""
    pm: PerfModel
    op: str

    def _unsupported(self, precisions: pd.Series) -> pd.Series:
        acc = self.pm.acc
        return precisions.map(lambda p: "" if acc.supports(p) else f"{acc.name} has no {p}")

    def reasons(self, df: pd.DataFrame) -> pd.Series:
        """Why each row is not predicted ("" where it is)."""
        if self.op == "gemm":
            fmt = df["gemm_dtype"].map(lambda d: GEMM_FORMATS.get(d, (None, None))[0])
            why = self._unsupported(fmt.fillna("bf16"))
            return why.where(fmt.notna(), "no hetsim format: " + df["gemm_dtype"].astype(str))
        if self.op == "allreduce":
            return pd.Series("" if self.pm.link else "no scale-up link", df.index)
        why = self._unsupported(df["attn_dtype"])
        return why.where(df["window_size"] <= 0, "sliding window")

    def _row(self, r) -> float:
        pm, op = self.pm, self.op
        if op == "gemm":
            p, w = GEMM_FORMATS[r.gemm_dtype]
            return pm.gemm_time(int(r.m), int(r.n), int(r.k), p, w)
        if op == "allreduce":
            nbytes = float(r.message_size) * PRECISION_BYTES[r.allreduce_dtype]
            return pm.allreduce_time(nbytes, int(r.num_gpus))
        heads = (int(r.num_heads), int(r.num_key_value_heads), int(r.head_dim))
        if op == "context_attention":
            q, kv = int(r.isl), int(r.isl) + int(r.step)
            return pm.attention_chunks_time([(q, kv)] * int(r.batch_size), *heads,
                                            r.attn_dtype, r.kv_cache_dtype)
        return pm.attention_decode_time(int(r.batch_size), int(r.isl) + int(r.step),
                                        *heads, r.attn_dtype, r.kv_cache_dtype)

    def __call__(self, df: pd.DataFrame) -> np.ndarray:
        ok = (self.reasons(df) == "").to_numpy()
        out = np.full(len(df), np.nan)
        out[ok] = [self._row(r) for r in df[ok].itertuples(index=False)]
        return out


def op_models(pm: PerfModel) -> dict[str, Predictor]:
    """Every op class but MoE (hetsim has no single MoE op: the step model composes one from
    GEMMs, with routing, for a whole model)."""
    return {op: OpModel(pm, op) for op in SCORED if op != "moe"}


def generic_models(system: str, runtime: str) -> dict[str, dict[str, Predictor]]:
    """The datasheet model and, where one is committed, the torch-calibrated one (none for a
    system without a hetsim profile yet: ``kerneldb.SYSTEMS``)."""
    name = kerneldb.SYSTEMS.get(system)
    if name not in list_profiles("accelerator"):
        return {}
    out = {"datasheet": op_models(PerfModel(load_accelerator(name + "@datasheet")))}
    acc = load_accelerator(name)
    if acc.calibration is not None:
        out["torch-calibrated"] = op_models(PerfModel(acc))
    return out


#: op -> (the shape columns that pick a grid, the columns it spans), as the shipped profiles
#: keep them (``hetsim.perf.kernels.OPS``); attention's KV length is ``isl + step``, as
#: aiconfigurator reads it
GRID_KEYS = {"gemm": (("gemm_dtype",), ("m", "n", "k")),
             "context_attention": (ATTN_KEY := ("attn_dtype", "kv_cache_dtype", "num_heads",
                                                "num_key_value_heads", "head_dim",
                                                "window_size"), ("batch_size", "isl")),
             "generation_attention": (ATTN_KEY, ("batch_size", "kv")),
             "allreduce": (("allreduce_dtype", "num_gpus"), ("message_size",)),
             "moe": (("moe_dtype", "hidden_size", "inter_size", "topk", "num_experts",
                      "moe_tp_size", "moe_ep_size", "distribution"), ("num_tokens",))}
#: how a table-grid model reads its grid: "log" interpolates log time; "ratio" interpolates
#: log(measured / datasheet model) and multiplies the model's time at the query back in
GRID_MODES = ("log", "ratio")


@dataclasses.dataclass
class TableGrid:
    """The kernel-table model of one op, fitted here as a profile ships it: per key (dtype;
    attention's dtypes, heads, KV heads, head dim and window; all-reduce's dtype and GPU count)
    a :class:`LogGrid` over the shapes NOT held out (held-out shapes are holes, filled from
    their neighbours), the datasheet model carrying the edges. A held-out row whose key has no
    fit rows takes the nearest key's grid scaled by the model (``fallback`` counts them).
    Scored on the held-out rows only, so its figures are what a table-backed profile would
    reach on shapes it was not given."""
    op: str
    fit: pd.DataFrame
    edge: OpModel
    mode: str = "ratio"

    def __post_init__(self):
        self.fit = _with_kv(self.fit)
        keys, _ = GRID_KEYS[self.op]
        self._rows = {k: part for k, part in self.fit.groupby(list(keys))}
        self._grids = {}
        self.fallback = 0

    def model(self, key: tuple):
        """The datasheet time of a shape at ``key`` (None where the model has none: MoE, whose
        grid interpolates log time and keeps its edge time past it; a profile carries it past
        the top with the step model's composed experts, which a table row has no model for)."""
        if self.op == "moe":
            return None
        keys, axes = GRID_KEYS[self.op]
        fields = dict(zip(keys, key))
        probe = pd.DataFrame([{**fields, **{a: 1 for a in axes}, "isl": 1, "step": 0}])
        if (self.edge.reasons(probe.assign(window_size=0) if "window_size" in probe else probe)
                != "").any():
            return None

        window = fields.get("window_size", 0)

        def seconds(point) -> float:
            row = dict(fields, **dict(zip(axes, point)))
            if "kv" not in row:
                t = self.edge._row(types.SimpleNamespace(**row, step=0))
                isl = row.get("isl", 0)
                if 0 < window < isl:     # query pairs within the window, of isl^2 / 2
                    t *= (isl * window - window * window / 2) / (isl * isl / 2)
                return t
            # NOTE: the op model has no window: a windowed decode attends to at most
            # ``window`` tokens, so the base does too (the table saturates there)
            kv = min(row.pop("kv"), window) if window > 0 else row.pop("kv")
            return self.edge._row(types.SimpleNamespace(**row, isl=kv, step=0))
        return seconds

    def _grid(self, key) -> LogGrid | None:
        if key not in self._grids:
            rows = self._rows.get(key)
            if rows is None:
                self._grids[key] = None
                return None
            _, cols = GRID_KEYS[self.op]
            axes = [np.sort(rows[c].unique()).astype(float) for c in cols]
            cube = rows.pivot_table(index=list(cols), values="latency_s", aggfunc="min")
            if len(cols) > 1:
                cube = cube.reindex(pd.MultiIndex.from_product(axes))
            else:
                cube = cube.reindex(axes[0])
            cube = cube["latency_s"].to_numpy().reshape([len(a) for a in axes])
            model = self.model(key)
            base = model if self.mode == "ratio" else None
            t, _ = fill_log_grid(axes, cube, base, **fill_options(self.op, key))
            self._grids[key] = (LogGrid(axes, t, base), model)
        return self._grids[key]

    def _nearest(self, key: tuple) -> tuple | None:
        """The fitted key nearest ``key``: same dtypes and window, closest heads, KV heads and
        head dim in log distance (ties: the first in sorted order)."""
        if not self.op.endswith("attention"):
            return None
        same = [k for k in sorted(self._rows) if (k[0], k[1], k[5]) == (key[0], key[1], key[5])]
        dist = lambda k: sum(abs(np.log(a / b)) for a, b in zip(k[2:5], key[2:5]))
        return min(same, key=dist, default=None)

    def _predict(self, key: tuple, point: tuple) -> float:
        got = self._grid(key)
        if got is not None:
            grid, model = got
            return grid(point) if grid.base is not None else grid(point, model)
        near = self._nearest(key)
        if near is None:
            return float("nan")
        self.fallback += 1
        grid, model = self._grid(near)
        t = grid(point) if grid.base is not None else grid(point, model)
        here = self.model(key)
        return t if here is None or model is None else t * here(point) / model(point)

    def __call__(self, df: pd.DataFrame) -> np.ndarray:
        df = _with_kv(df)
        keys, axes = GRID_KEYS[self.op]
        out = np.full(len(df), np.nan)
        for i, r in enumerate(df.itertuples(index=False)):
            out[i] = self._predict(tuple(getattr(r, c) for c in keys),
                                   tuple(float(getattr(r, c)) for c in axes))
        return out


def _with_kv(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(kv=df.isl + df.step) if "step" in df.columns else df


def grid_models(split: Split, root: Path | None = None, mode: str = "ratio") -> Models:
    """The generic models plus the kernel-table grids (GEMM, context and generation
    attention, all-reduce, MoE) fitted on the rows ``split`` does not hold out."""
    def models(system: str, runtime: str) -> dict[str, dict[str, Predictor]]:
        out = generic_models(system, runtime)
        if not out:
            return out
        tables = kerneldb.select(system, runtime, root=root)
        pm = PerfModel(load_accelerator(kerneldb.SYSTEMS[system] + "@datasheet"))
        grids = {}
        for op in (op for op in GRID_KEYS if op in tables.tables):
            df, _ = prepare(kerneldb.read_op(tables, op), op)
            fit = df[~kerneldb.held_out(df, op, split.fraction, split.seed)]
            grids[op] = TableGrid(op, fit, OpModel(pm, op), mode)
        out["table grid"] = grids
        return out
    return models


# --- scoring -----------------------------------------------------------------------------
def score(measured, predicted) -> tuple[int, float, float, float]:
    """(n, MdAPE, p90 of the absolute percentage errors, median of predicted / measured) over
    the rows with a prediction, NaNs for none; the last says which way a model errs."""
    m, p = np.asarray(measured, float), np.asarray(predicted, float)
    ok = ~np.isnan(p)
    if not ok.any():
        return 0, float("nan"), float("nan"), float("nan")
    ratio = p[ok] / m[ok]
    e = np.abs(ratio - 1.0)
    return int(ok.sum()), float(np.median(e)), float(np.percentile(e, 90)), float(np.median(ratio))


@dataclasses.dataclass(frozen=True)
class Result:
    system: str
    runtime: str
    version: str
    op: str
    rows: int                         # held-out rows (after sampling)
    scores: dict[str, tuple[int, float, float, float]]   # model -> score(...)
    dropped: dict[str, int]           # table rows no model sees, by reason
    skipped: dict[str, dict[str, int]]  # model -> held-out rows it does not predict, by reason

    @property
    def scored(self) -> int:
        """Rows the model that scored most scored (0: none, or no profile)."""
        return max((sc[0] for sc in self.scores.values()), default=0)


def _counts(reasons: pd.Series) -> dict[str, int]:
    return {k: int(v) for k, v in reasons[reasons != ""].value_counts().items()}


@dataclasses.dataclass(frozen=True)
class Split:
    """Which rows are scored: ``fraction`` of shapes held out by ``seed``, at most ``max_rows``
    per op x dtype (0: all), optionally one result per dtype."""
    fraction: float = 0.2
    seed: int = 0
    max_rows: int = 2000
    by_dtype: bool = False


def _result(tables, op: str, label: str, rows: pd.DataFrame, models, dropped) -> Result:
    scores = {name: score(rows["latency_s"], preds[op](rows))
              for name, preds in models.items() if op in preds}
    skipped = {name: _counts(preds[op].reasons(rows)) if hasattr(preds[op], "reasons") else {}
               for name, preds in models.items() if op in preds}
    if not skipped:
        skipped = {"every model": {"not modelled": len(rows)}}
    return Result(tables.system, tables.runtime, tables.tables[op][0], label, len(rows),
                  scores, dropped, skipped)


def evaluate(tables: kerneldb.KernelTables, models: dict[str, dict[str, Predictor]],
             split: Split) -> list[Result]:
    """One system x runtime: every op table against every model's predictor."""
    out = []
    for op in (op for op in SCORED if op in tables.tables):
        df, dropped = prepare(kerneldb.read_op(tables, op), op)
        rows = held_out_rows(df, op, split.fraction, split.seed, split.max_rows)
        if not split.by_dtype:
            out.append(_result(tables, op, op, rows, models, dropped))
            continue
        for i, (key, part) in enumerate(rows.groupby(DTYPE_GROUP[op])):
            label = " ".join([op, *map(str, key)])
            out.append(_result(tables, op, label, part, models, {} if i else dropped))
    return out


# --- running and reporting ---------------------------------------------------------------
Models = Callable[[str, str], dict[str, dict[str, Predictor]]]


def run(systems, runtimes, models: Models, split: Split, root: Path | None = None
        ) -> list[Result]:
    """Every requested system x runtime (default: all the package has); a system without a
    model gets one result with ``op="no profile"``. Unknown names: ConfigError, one line."""
    cat = kerneldb.catalog(root)
    out = []
    for system in systems or sorted(set(cat.system)):
        system = match_name(system, sorted(set(cat.system)), "aiconfigurator system")
        have = sorted(set(cat[cat.system == system].runtime))
        chosen = [r for r in have if r in runtimes] if runtimes else have
        for runtime in chosen or runtimes[:1]:      # none: select names what the system has
            tables = kerneldb.select(system, runtime, root=root)
            ms = models(tables.system, tables.runtime)
            if not ms:
                out.append(Result(tables.system, tables.runtime, tables.version, "no profile",
                                  0, {}, {}, {}))
                continue
            out += evaluate(tables, ms, split)
    return out


def _pct(x: float) -> str:
    return "-" if np.isnan(x) else f"{100 * x:.1f}%"


def _model_names(results: list[Result]) -> list[str]:
    seen = [m for r in results for m in r.scores]
    return [m for m in MODEL_ORDER if m in seen] + \
        [m for m in dict.fromkeys(seen) if m not in MODEL_ORDER]


def _cells(s) -> list[str]:
    return [_pct(s[1]), _pct(s[2]), f"{s[3]:.2f}"] if s and s[0] else ["-"] * 3


def table(results: list[Result]) -> str:
    """The markdown table: one line per system x runtime x op class some model scored."""
    names = _model_names(results)
    head = ["system", "runtime", "op", "held-out rows", "scored"] + \
        [c for m in names for c in (f"{m} MdAPE", "p90", "pred/meas")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        if r.op == "no profile" or r.scored:
            cells = ["no hetsim profile", "", ""] if r.op == "no profile" else \
                [r.op, r.rows, r.scored]
            cells += [c for m in names for c in _cells(r.scores.get(m))]
            lines.append(f"| {r.system} | {r.runtime} {r.version} | " +
                         " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def unscored(results: list[Result]) -> str:
    """The op classes no model scored (left out of the table), with their held-out rows."""
    rows: dict[str, int] = {}
    for r in (r for r in results if r.op != "no profile" and not r.scored):
        rows[r.op] = rows.get(r.op, 0) + r.rows
    return "; ".join(f"{op}: not scored by any model ({n} held-out rows)"
                     for op, n in rows.items())


def preamble(split: Split) -> str:
    from importlib.metadata import version
    cap = f", at most {split.max_rows} per dtype" if split.max_rows else ""
    return (f"aiconfigurator-core {version('aiconfigurator-core')}; held out: "
            f"{split.fraction:.0%} of shapes (seed {split.seed}{cap}). Targets on held-out "
            "rows (issue 14, for the table-fitted model): GEMM MdAPE <= 5%, attention and "
            "all-reduce <= 8%, p90 <= 15%.")


def notes(results: list[Result]) -> str:
    """What was not scored, and why, per result and in all (a model's reasons are prefixed
    with its name unless every model gives the same)."""
    lines, total = [], {}
    for r in results:
        same = len({str(d) for d in r.skipped.values()}) <= 1
        why = {**r.dropped, **{(k if same else f"{m}: {k}"): v
                               for m, d in r.skipped.items() for k, v in d.items()}}
        for k, v in why.items():
            total[k] = total.get(k, 0) + v
        if why:
            lines.append(f"{r.system} {r.runtime} {r.op}: " +
                         ", ".join(f"{k} {v}" for k, v in why.items()))
    return "\n".join(lines + ["in all: " + ", ".join(f"{k} {v}" for k, v in
                                                      sorted(total.items()))])


def write_readme(path: Path, block: str, mark: tuple[str, str] = MARK) -> None:
    """Replace the region between ``mark``'s two lines of ``path`` with ``block``."""
    text = path.read_text(encoding="utf-8")
    head, a, rest = text.partition(mark[0] + "\n")
    _, b, tail = rest.partition(mark[1])
    if not (a and b):
        raise ConfigError(f"{path}: no {mark[0]} ... {mark[1]} region")
    path.write_text(head + a + block + "\n" + b + tail, encoding="utf-8")


def emit(block: str, readme: Path | None, mark: tuple[str, str]) -> None:
    """Print a benchmark's block and, with ``readme``, write it into that README's region."""
    print(block)
    if readme:
        write_readme(readme, block, mark)


def main(argv=None, models: Models = generic_models) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--system", action="append", help="aiconfigurator system (repeat; "
                    "default: all)")
    ap.add_argument("--runtime", action="append", choices=kerneldb.RUNTIMES,
                    help="default: every runtime the system has")
    ap.add_argument("--holdout", type=float, default=0.2, help="fraction of shapes held out")
    ap.add_argument("--seed", type=int, default=0, help="seed of the held-out split")
    ap.add_argument("--max-rows", type=int, default=2000,
                    help="held-out rows scored per system x runtime x op x dtype (0: all)")
    ap.add_argument("--by-dtype", action="store_true", help="one line per op x dtype")
    ap.add_argument("--markdown", action="store_true", help="only the README block")
    ap.add_argument("--readme", type=Path, help="write the block into this file's "
                    f"{MARK[0]} region")
    ap.add_argument("--root", type=Path, help="an aiconfigurator-core systems folder "
                    "(default: the installed package's)")
    ap.add_argument("--grid", action="store_true", help="also score the kernel-table grids "
                    "(GEMM, attention, all-reduce, MoE), fitted on the rows not held out "
                    "(issue 14's table-backed model)")
    ap.add_argument("--grid-mode", choices=GRID_MODES, default="ratio",
                    help="how the grids interpolate (TableGrid; default: ratio)")
    a = ap.parse_args(argv)
    split = Split(a.holdout, a.seed, a.max_rows, a.by_dtype)
    if a.grid:
        models = grid_models(split, a.root, a.grid_mode)
    try:
        results = run(a.system, a.runtime, models, split, a.root)
    except ConfigError as e:
        print(f"kernel_accuracy: {e}", file=sys.stderr)
        return 2
    block = preamble(split) + "\n\n" + table(results)
    block += "\n\n" + unscored(results) if unscored(results) else ""
    if a.readme:
        write_readme(a.readme, block)
    print(block if a.markdown else block + "\n\n" + notes(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
