"""Measurement CSVs: the columns, the ops and the shapes each needs, and a strict reader.

Every problem in a file is a one-line ConfigError naming the file, line and column. Imports
only hetsim's errors and the precision table (no numpy, no torch).
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from ..errors import ConfigError, suggest
from ..precision import unknown_precision

__all__ = ["CSV_COLUMNS", "OP_SHAPES", "CLASSES", "csv_text", "write_csv", "read_csv"]

CSV_COLUMNS = ("op", "precision", "m", "n", "k", "batch", "seq", "kv_len", "heads", "kv_heads",
               "head_dim", "bytes", "devices", "kernels", "seconds", "noise")
#: optional columns: read where present (older files and other tools may lack them). ``noise``
#: is the relative spread of a timing's repeats (interquartile range / median)
#: Largest shape value (m, n, k, ...) a measurement row may give: far past any real kernel.
MAX_SHAPE = 2 ** 40
OPTIONAL = {"kernels": (int, "a whole number", lambda v: True),
            "noise": (float, "a number >= 0", lambda v: math.isfinite(v) and v >= 0)}
#: which shape columns each op needs
OP_SHAPES = {"gemm": ("m", "n", "k"), "attn_prefill": ("batch", "seq", "heads", "kv_heads",
                                                       "head_dim"),
             "attn_decode": ("batch", "kv_len", "heads", "kv_heads", "head_dim"),
             "copy": ("bytes",), "h2d": ("bytes",), "d2h": ("bytes",), "launch": (),
             "ref_prefill": ("batch", "seq"), "ref_decode": ("batch", "kv_len"),
             "probe": ("batch", "kv_len"), "probe_deep": ("batch", "kv_len"),
             "allreduce": ("bytes", "devices")}
CLASSES = {"gemm": "gemm", "attn_prefill": "attention_prefill", "attn_decode": "attention_decode"}


def csv_text(rows) -> str:
    """The measurements as CSV text (columns :data:`CSV_COLUMNS`)."""
    f = io.StringIO(newline="")
    w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in CSV_COLUMNS})
    return f.getvalue()


def write_csv(rows, path) -> None:
    with open(path, "w", newline="") as f:
        f.write(csv_text(rows))


def read_csv(path) -> list[dict]:
    """Read measurements; every problem is a one-line ConfigError naming file, line, column."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", file=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text (a binary file?)", file=str(path)) from None
    if "\0" in text:
        raise ConfigError("binary file (holds NUL bytes), not a CSV", file=str(path))
    try:
        return _read_rows(csv.DictReader(io.StringIO(text, newline="")), path)
    except csv.Error as e:
        raise ConfigError(f"not a CSV file: {e}", file=str(path)) from None


def _read_rows(reader, path) -> list[dict]:
    reader.fieldnames = [c.strip() for c in reader.fieldnames or []]
    cols = reader.fieldnames
    dup = next((c for c in cols if cols.count(c) > 1), None)
    if dup is not None:
        raise ConfigError(f"column {dup!r} appears twice in the header", file=f"{path}:1")
    for need in ("op", "precision", "seconds"):
        if need not in cols:
            raise ConfigError(f"missing column {need!r}; columns are "
                              f"{', '.join(CSV_COLUMNS)} (see docs/calibration.md)",
                              file=str(path))
    rows = []
    for raw in reader:
        where = f"{path}:{reader.line_num}"    # the file's line, blank lines counted
        op = (raw.get("op") or "").strip()
        if op not in OP_SHAPES:
            raise ConfigError(f"unknown op {op!r}" + suggest(op, OP_SHAPES)
                              + f"; one of {', '.join(OP_SHAPES)}", file=where, path="op")
        prec = (raw.get("precision") or "").strip()
        why = unknown_precision(prec)
        if why:
            raise ConfigError(why, file=where, path="precision")
        row = {"op": op, "precision": prec}
        for c in (*OP_SHAPES[op], "seconds"):
            v = (raw.get(c) or "").strip()
            try:
                x = float(v)
            except ValueError:
                raise ConfigError(f"{op} needs a number in column {c!r}, got {v!r}",
                                  file=where, path=c) from None
            if not math.isfinite(x) or x <= 0:
                raise ConfigError(f"must be > 0, got {v}", file=where, path=c)
            if c != "seconds" and (x != int(x) or x > MAX_SHAPE):
                raise ConfigError(f"a shape must be a whole number up to {MAX_SHAPE}, "
                                  f"got {v}", file=where, path=c)
            row[c] = x if c == "seconds" else int(x)
        for c, (kind, what, ok) in OPTIONAL.items():
            v = (raw.get(c) or "").strip()
            if v:
                try:
                    row[c] = kind(v)
                except ValueError:
                    row[c] = None
                if row[c] is None or not ok(row[c]):
                    raise ConfigError(f"column {c!r} must be {what}, got {v!r}",
                                      file=where, path=c)
        rows.append(row)
    if not any(r["op"] in CLASSES for r in rows):
        raise ConfigError("no gemm or attention measurements to fit", file=str(path))
    return rows
