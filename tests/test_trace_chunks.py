"""A long trace is read in chunks (issue 19), with the same strict per-row errors."""
import numpy as np
import pytest

from hetsim import columns
from hetsim.errors import ConfigError
from hetsim.workload.files import read_trace

ROWS = 100_000


@pytest.fixture
def trace(tmp_path):
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.exponential(0.01, ROWS))
    inp, out = rng.integers(1, 4000, ROWS), rng.integers(1, 500, ROWS)
    f = tmp_path / "trace.csv"
    lines = [f"{a!r},{b},{c}" for a, b, c in zip(t.tolist(), inp.tolist(), out.tolist())]
    lines.insert(50_000, "")     # a blank line is skipped but counted
    f.write_text("timestamp_s,input_tokens,output_tokens\n" + "\n".join(lines) + "\n")
    return f, t, inp, out


def _spy(monkeypatch, rows: int) -> list[int]:
    """Chunks of ``rows`` rows; returns the list each chunk's length is appended to."""
    seen, check = [], columns._chunk
    monkeypatch.setattr(columns, "CHUNK_ROWS", rows)

    def spy(df, *a):
        seen.append(len(df))
        return check(df, *a)
    monkeypatch.setattr(columns, "_chunk", spy)
    return seen


def test_a_100k_row_trace_is_read_in_chunks_and_gives_every_row(trace, monkeypatch):
    f, t, inp, out = trace
    seen = _spy(monkeypatch, 16_384)
    got_t, got_in, got_out = read_trace(f, None)
    # 100,001 lines after the header (one blank): 7 chunks, none larger than asked
    assert len(seen) == 7 and max(seen) == 16_384 and sum(seen) == ROWS + 1
    assert np.array_equal(got_t, t - t[0])      # floats exactly, as written (repr)
    assert got_in.tolist() == inp.tolist() and got_out.tolist() == out.tolist()
    assert got_in.dtype == np.int64


def test_the_default_chunk_is_smaller_than_a_long_trace(trace, monkeypatch):
    seen = _spy(monkeypatch, columns.CHUNK_ROWS)
    read_trace(trace[0], 10)
    assert len(seen) == -(-(ROWS + 1) // columns.CHUNK_ROWS) > 1


@pytest.mark.parametrize("line, cell, col", [(3, "x", "input_tokens"),
                                             (70_001, "-1", "output_tokens"),
                                             (100_002, "1.5", "input_tokens")])
def test_a_bad_row_in_any_chunk_names_its_line_and_column(trace, monkeypatch, line, cell, col):
    f = trace[0]
    rows = f.read_text().split("\n")
    fields = rows[line - 1].split(",")
    fields[["timestamp_s", "input_tokens", "output_tokens"].index(col)] = cell
    rows[line - 1] = ",".join(fields)
    f.write_text("\n".join(rows))
    _spy(monkeypatch, 16_384)
    with pytest.raises(ConfigError) as e:
        read_trace(f, None)
    assert str(e.value).startswith(f"{f}:{line}: {col}: ")
    assert repr(cell) in str(e.value)


# Parquet traces (a .parquet name): read a chunk of rows at a time across row groups, each
# asked column stored as numbers, and the same per-row errors naming the row (first row 1)
def _parquet(path, t, inp, out, row_group_size=30_000):
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"timestamp_s": t, "input_tokens": inp, "output_tokens": out,
                             "note": np.zeros(len(t))}), path, row_group_size=row_group_size)
    return path


def _spy_parquet(monkeypatch, rows: int) -> list[int]:
    """Rows of each chunk read (``read_columns`` checks the chunk's every column)."""
    import pyarrow.parquet as pq
    seen, iter_batches = [], pq.ParquetFile.iter_batches
    monkeypatch.setattr(columns, "CHUNK_ROWS", rows)

    def spy(self, *a, **k):
        for b in iter_batches(self, *a, **k):
            seen.append(b.num_rows)
            yield b
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    return seen


def test_a_100k_row_parquet_trace_is_read_in_chunks_and_gives_every_row(trace, tmp_path,
                                                                         monkeypatch):
    _, t, inp, out = trace
    f = _parquet(tmp_path / "trace.parquet", t, inp, out)
    seen = _spy_parquet(monkeypatch, 16_384)
    got_t, got_in, got_out = read_trace(f, None)
    # 100,000 rows in four row groups of 30,000 (the last 10,000), chunks never above 16,384
    assert max(seen) <= 16_384 and sum(seen) == ROWS and len(seen) >= -(-ROWS // 16_384)
    assert np.array_equal(got_t, t - t[0])
    assert got_in.tolist() == inp.tolist() and got_out.tolist() == out.tolist()
    # the same trace as CSV gives the same arrays
    assert all(np.array_equal(a, b) for a, b in zip(read_trace(trace[0], None),
                                                      (got_t, got_in, got_out)))


@pytest.mark.parametrize("row, value, col", [(2, 0, "input_tokens"),
                                             (70_000, -1, "output_tokens"),
                                             (100_000, None, "input_tokens")])
def test_a_bad_parquet_row_in_any_chunk_names_its_row_and_column(trace, tmp_path, monkeypatch,
                                                                 row, value, col):
    import pyarrow as pa
    _, t, inp, out = trace
    cols = {"input_tokens": inp.tolist(), "output_tokens": out.tolist()}
    cols[col][row - 1] = value
    f = _parquet(tmp_path / "bad.parquet", t, pa.array(cols["input_tokens"], pa.int64()),
                 pa.array(cols["output_tokens"], pa.int64()))
    _spy_parquet(monkeypatch, 16_384)
    with pytest.raises(ConfigError) as e:
        read_trace(f, None)
    assert str(e.value).startswith(f"{f}:{row}: {col}: ")
    assert repr(value) in str(e.value)


def test_a_parquet_column_stored_as_text_or_missing_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    f = tmp_path / "text.parquet"
    pq.write_table(pa.table({"timestamp_s": [0.0], "input_tokens": ["5"],
                             "output_tokens": [3]}), f)
    with pytest.raises(ConfigError, match=r"text.parquet: input_tokens: stored as string"):
        read_trace(f, None)
    pq.write_table(pa.table({"timestamp_s": [0.0], "input_tokens": [5]}), f)
    with pytest.raises(ConfigError, match="missing output_tokens"):
        read_trace(f, None)
    f.write_text("timestamp_s,input_tokens,output_tokens\n0,1,1\n")
    with pytest.raises(ConfigError, match="not a Parquet file"):
        read_trace(f, None)


def test_a_parquet_trace_going_back_in_time_names_its_row(tmp_path):
    f = _parquet(tmp_path / "back.parquet", np.array([0.0, 2.0, 1.0]), np.array([5, 5, 5]),
                 np.array([3, 3, 3]))
    with pytest.raises(ConfigError, match=rf"^{f}:3: timestamp_s: timestamps go back"):
        read_trace(f, None)
