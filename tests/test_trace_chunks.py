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
