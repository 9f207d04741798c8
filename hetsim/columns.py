"""Numeric columns of a CSV or Parquet file read strictly: traces and length histograms (and,
later, any table a user hands hetsim). Every bad cell is a one-line ConfigError naming
``file:line`` (a Parquet file: ``file:row``, its first row 1) and the column; nothing is
rounded, clipped, shifted or replaced. Both are read a chunk at a time."""
from __future__ import annotations

import csv
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .errors import ConfigError

__all__ = ["read_columns"]


#: rows parsed at a time: a long trace never sits in memory as text, only as the float
#: columns asked for (8 bytes a cell), and each chunk's text is dropped once checked
CHUNK_ROWS = 65536


def read_columns(path: Path, columns: dict[str, tuple[Callable, str]], where: str
                 ) -> dict[str, np.ndarray]:
    """Read the named numeric ``columns`` of a CSV file, or of a Parquet file (a ``.parquet``
    name), others ignored, each checked by its rule ``(check on the floats -> bool array,
    words for the error)``, plus ``line``: each row's line in a CSV file (blank lines are
    skipped but counted), its row number in a Parquet file. Read :data:`CHUNK_ROWS` rows at a
    time."""
    read = _parquet_parts if Path(path).suffix.lower() == ".parquet" else _csv_parts
    parts = read(path, columns, where)
    out = {c: np.concatenate([p[c] for p in parts]) for c in [*columns, "line"]} if parts \
        else {"line": np.zeros(0, np.int64)}
    if not len(out["line"]):
        raise ConfigError("has a header but no rows", file=str(path))
    return out


def _csv_parts(path: Path, columns: dict[str, tuple[Callable, str]], where: str
               ) -> list[dict[str, np.ndarray]]:
    """A CSV file's chunks, each checked by :func:`_chunk`."""
    import pandas as pd
    parts: list[dict[str, np.ndarray]] = []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
        # blank lines are kept (and dropped below) so row i is line i + 2 of the file; a row
        # longer than the header would be cut (or shift a column into the index): refused
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            with pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True,
                             skip_blank_lines=False, index_col=False,
                             chunksize=CHUNK_ROWS) as chunks:
                for df in chunks:   # (each chunk's index goes on from the last one's)
                    parts.append(_chunk(df, header, columns, path))
    except ConfigError:     # a chunk's own error (ConfigError is a ValueError)
        raise
    except pd.errors.ParserWarning:
        raise ConfigError(f"more fields than the header's {len(header)}",
                          file=f"{path}:{_long_row(path, len(header))}") from None
    except FileNotFoundError:
        raise ConfigError(f"file not found: {path}", path=where) from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder, not a CSV file", path=where) from None
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", file=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text (a binary file?)", file=str(path)) from None
    except pd.errors.EmptyDataError:
        raise ConfigError(f"empty; needs a header {','.join(columns)} and rows",
                          file=str(path)) from None
    except (pd.errors.ParserError, ValueError, csv.Error) as e:
        raise ConfigError(f"not a CSV file: {str(e).strip().splitlines()[-1]}",
                          file=str(path)) from None
    return parts


def _parquet_parts(path: Path, columns: dict[str, tuple[Callable, str]], where: str
                   ) -> list[dict[str, np.ndarray]]:
    """A Parquet file's rows, :data:`CHUNK_ROWS` at a time (row groups are never read
    whole): each asked column must be stored as numbers; a null or a number its rule refuses
    is an error naming the row (first row 1) and column."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        f = pq.ParquetFile(path)
    except FileNotFoundError:
        raise ConfigError(f"file not found: {path}", path=where) from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder, not a Parquet file", path=where) from None
    except (pa.ArrowException, OSError) as e:
        raise ConfigError(f"not a Parquet file: {str(e).strip().splitlines()[-1]}",
                          file=str(path)) from None
    schema = f.schema_arrow
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise ConfigError(f"needs columns {','.join(columns)}; missing {','.join(missing)} "
                          f"(has {','.join(schema.names)})", file=str(path))
    for col in columns:
        t = schema.field(col).type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
            raise ConfigError(f"stored as {t}; needs numbers (integer or float)",
                              file=str(path), path=col)
    parts, row = [], 1
    for batch in f.iter_batches(batch_size=CHUNK_ROWS, columns=list(columns)):
        part = {}
        for col, (ok, rule) in columns.items():
            a = batch.column(col)
            x = a.to_numpy(zero_copy_only=False).astype(float)    # a null becomes NaN
            i = _first_bad(x, ok)
            if i is not None:
                raise ConfigError(f"{rule}, got {a[i].as_py()!r}", file=f"{path}:{row + i}",
                                  path=col)
            part[col] = x
        part["line"] = np.arange(row, row + batch.num_rows)
        parts.append(part)
        row += batch.num_rows
    return parts


def _first_bad(x: np.ndarray, ok: Callable) -> int | None:
    """The first index whose value is not finite or fails ``ok``; None when all pass."""
    with np.errstate(invalid="ignore"):
        good = np.isfinite(x) & ok(np.nan_to_num(x, nan=-1.0))
    return None if good.all() else int(np.argmin(good))


def _chunk(df, header: list[str], columns: dict[str, tuple[Callable, str]], path: Path
           ) -> dict[str, np.ndarray]:
    """One chunk of rows (as text) checked and converted: the asked columns as floats and
    ``line``; the first bad cell is an error naming its line and column."""
    import pandas as pd
    names = [c.strip() for c in header]
    dup = next((c for c in names if names.count(c) > 1), None)
    if dup is not None:    # pandas would rename the second one and the first would win
        raise ConfigError(f"column {dup!r} appears twice in the header", file=f"{path}:1")
    df.columns = [str(c).strip() for c in df.columns]
    df = df[~(df == "").all(axis=1)]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(f"needs columns {','.join(columns)}; missing {','.join(missing)} "
                          f"(has {','.join(map(str, df.columns))})", file=str(path))
    out = {}
    for col, (ok, rule) in columns.items():
        raw = df[col].str.strip()
        x = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        i = _first_bad(x, ok)
        if i is not None:
            raise ConfigError(f"{rule}, got {raw.iloc[i]!r}", file=f"{path}:{df.index[i] + 2}",
                              path=col)
        out[col] = x
    out["line"] = df.index.to_numpy() + 2
    return out


def _long_row(path: Path, fields: int) -> int:
    """The line of the first row with more than ``fields`` fields (an error path only)."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        return next((reader.line_num for row in reader if len(row) > fields), 0)
