"""Per-request records as columns: one preallocated numpy array per ``RequestRecord`` field,
indexed by request id.

A request that ends (completed, dropped or failed) writes its fields into its row
(:meth:`RecordWriter.write`, a block of rows at a time) and its live ``Request`` is let go,
so a run holds ~120 bytes per request besides the requests in flight. Strings (state, drop reason, instance names) are
stored as small integer codes into a vocabulary built during the run. ``Records`` is the
frozen table a run returns: metrics read its columns (:meth:`Records.columns`); iterating or
indexing it builds ``RequestRecord``s on demand, for callers that want records.
"""
from __future__ import annotations

from collections.abc import Iterator
from operator import attrgetter

import numpy as np

from .request import RECORD_COLUMNS, TERMINAL, Request, RequestRecord, State

__all__ = ["Records", "RecordWriter"]

#: how each field is stored: numeric fields as themselves, strings as codes
_INTS = ("input_tokens", "output_tokens", "cached_tokens", "preemptions")
_CODED = ("state", "drop_reason", "prefill_instance", "decode_instance")
_FLOATS = tuple(f for f in RECORD_COLUMNS if f not in _INTS + _CODED + ("id",))
#: a state code no request ends in: a row still holding it was never written
_UNWRITTEN = 255
_STATES = tuple(s.value for s in State)
_STATE_CODE = {s: i for i, s in enumerate(State)}


class RecordWriter:
    """The columns of one run, written as requests end.

    A row's state code is written at once (so a second write of it is caught there); its
    other fields wait in ``_rows`` (one tuple a request) and are written into the columns a
    block of ``_BLOCK`` rows at a time: one numpy assignment per column and block instead of
    twenty scalar ones per request. NOTE: the block goes through one float64 array, which holds
    every field exactly: the floats are Python floats, and the token counts and codes are
    integers below 2^31 (workload.MAX_TOKENS), exact in float64 and back in int32."""
    _BLOCK = 4096

    def __init__(self, n: int):
        self.n = n
        self.floats = {f: np.full(n, np.nan) for f in _FLOATS}
        # NOTE: token counts fit in int32 (workload.MAX_TOKENS = 2^31 - 1), as do codes
        self.ints = {f: np.zeros(n, np.int32) for f in _INTS}
        self.codes = {"state": np.full(n, _UNWRITTEN, np.uint8),
                      **{f: np.zeros(n, np.int32) for f in _CODED[1:]}}
        self._vocab = {f: {"": 0} for f in _CODED[1:]}   # string -> code ("" is 0)
        #: the columns a buffered row's fields go to, in the row's order after its id
        self._cols = (*(self.codes[f] for f in _CODED[1:]), *self.floats.values(),
                      *self.ints.values())
        self._get = attrgetter(*_CODED[1:], *_FLOATS, *_INTS)
        self._rows: list[tuple] = []

    def _code(self, field: str, s: str) -> int:
        v = self._vocab[field]
        c = v.get(s)
        if c is None:
            c = v[s] = len(v)
        return c

    def write(self, r: Request) -> None:
        """``r`` has ended: its row takes its fields (each row is written once)."""
        i = r.id
        assert r.state in TERMINAL, f"request {i} recorded in state {r.state}"
        state = self.codes["state"]
        assert state[i] == _UNWRITTEN, f"request {i} recorded twice"
        state[i] = _STATE_CODE[r.state]
        reason, pre, dec, *rest = self._get(r)
        self._rows.append((i, self._code("drop_reason", reason),
                           self._code("prefill_instance", pre),
                           self._code("decode_instance", dec), *rest))
        if len(self._rows) == self._BLOCK:
            self._flush()

    def _flush(self) -> None:
        """Write the buffered rows into the columns."""
        if not self._rows:
            return
        block = np.array(self._rows, dtype=np.float64)
        self._rows = []
        ids = block[:, 0].astype(np.intp)
        for j, col in enumerate(self._cols, 1):
            col[ids] = block[:, j]      # (cast to the column's dtype: exact, see above)

    def table(self) -> Records:
        """The finished table (asserts every row was written)."""
        self._flush()
        assert (self.codes["state"] != _UNWRITTEN).all(), "requests never recorded"
        vocab = {"state": _STATES,
                 **{f: tuple(sorted(v, key=v.__getitem__)) for f, v in self._vocab.items()}}
        cols = {**self.floats, **self.ints, **self.codes}
        for a in cols.values():
            a.flags.writeable = False
        return Records(self.n, cols, vocab)


class Records:
    """One run's records by request id: columns, read-only. ``len``, iteration and indexing
    give ``RequestRecord``s (built on demand); ``==`` compares the tables."""
    __slots__ = ("_n", "_cols", "_vocab")

    def __init__(self, n: int, cols: dict[str, np.ndarray], vocab: dict[str, tuple[str, ...]]):
        self._n, self._cols, self._vocab = n, cols, vocab

    def __len__(self) -> int:
        return self._n

    def column(self, field: str, rows: slice = slice(None)) -> np.ndarray:
        """One field for every request (or the ids in ``rows``, a slice), by id: float64
        (the run's own read-only array, or a view of it), int64 or (strings) object."""
        if field == "id":
            return np.arange(self._n, dtype=np.int64)[rows]
        a = self._cols[field][rows]
        if field in self._vocab:
            return np.array(self._vocab[field], dtype=object)[a]
        return a.astype(np.int64) if field in _INTS else a

    def codes(self, field: str) -> tuple[np.ndarray, tuple[str, ...]]:
        """A string field as stored: (codes by id, read-only; the strings they index)."""
        return self._cols[field], self._vocab[field]

    def stored(self, field: str) -> np.ndarray:
        """A numeric field as stored, read-only, not copied (token counts as int32)."""
        assert field not in self._vocab, f"{field} is stored as codes: see codes()"
        return self._cols[field]

    def columns(self, rows: slice = slice(None)) -> dict[str, np.ndarray]:
        """Every field (of the ids in ``rows``), in ``RECORD_COLUMNS`` order (what
        ``metrics.records_frame`` reads)."""
        return {f: self.column(f, rows) for f in RECORD_COLUMNS}

    def __iter__(self) -> Iterator[RequestRecord]:
        cols = [self.column(f).tolist() for f in RECORD_COLUMNS]
        return (RequestRecord(*row) for row in zip(*cols))

    def __getitem__(self, i: int | slice) -> RequestRecord | tuple[RequestRecord, ...]:
        if isinstance(i, slice):   # as the tuple of records a run returned before issue 19
            return tuple(self[j] for j in range(*i.indices(self._n)))
        if not -self._n <= i < self._n:
            raise IndexError(i)
        i %= self._n
        return RequestRecord(i, *(self._value(f, i) for f in RECORD_COLUMNS[1:]))

    def _value(self, field: str, i: int):
        v = self._cols[field][i].item()
        return self._vocab[field][v] if field in self._vocab else v

    def __eq__(self, other) -> bool:
        if not isinstance(other, Records):
            return NotImplemented
        return len(self) == len(other) and all(
            np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
            for a, b in zip(self.columns().values(), other.columns().values()))

    __hash__ = None

    def __repr__(self) -> str:
        return f"Records({self._n} requests)"
