"""Per-request records as columns: one numpy array per ``RequestRecord`` field, indexed by
request id, stored only where it carries information.

A request that ends (completed, dropped or failed) writes its fields into its row
(:meth:`RecordWriter.write`, a block of rows at a time) and its live ``Request`` is let go.
Strings (state, drop reason, instance names) are stored as small integer codes into a
vocabulary built during the run. A column is allocated only once its values say something
(issue 19): until then it is either one constant (every row so far wrote the same value, bit
for bit: a drop reason where nothing is dropped, the conversion time where nothing
converts, a colocated placement's transfer times) or the same as another column (``SAME``:
times the engine sets at one instant in the usual path). The first row that differs
allocates the column, filled with what it stood for, so every reader sees exactly the
values written. On the speed benchmark a run stores 8 of the 19 fields, ~70 B a request
(the full table took ~125). ``Records`` is the frozen table a run returns: metrics read its
columns (:meth:`Records.column`, :meth:`Records.stored`, :meth:`Records.codes`); iterating
or indexing it builds ``RequestRecord``s on demand, for callers that want records.
"""
from __future__ import annotations

from collections.abc import Iterator
from operator import attrgetter

import numpy as np

from .request import RECORD_COLUMNS, TERMINAL, Request, RequestRecord, State

__all__ = ["Records", "RecordWriter", "SAME"]

#: how each field is stored: numeric fields as themselves, strings as codes
_INTS = ("input_tokens", "output_tokens", "cached_tokens", "preemptions")
_CODED = ("state", "drop_reason", "prefill_instance", "decode_instance")
_FLOATS = tuple(f for f in RECORD_COLUMNS if f not in _INTS + _CODED + ("id",))
#: a state code no request ends in: a row still holding it was never written
_UNWRITTEN = 255
_STATES = tuple(s.value for s in State)
_STATE_CODE = {s: i for i, s in enumerate(State)}
#: columns kept as another column while every row has the same value in both (a
#: disaggregated request's transfer starts as its prefill ends, when decode room is free at
#: once; the KV is ready as the transfer ends without a conversion; its first token is its
#: first decode step). NOTE: a source is never itself in ``SAME`` (no chains).
SAME = {"transfer_start_s": "prefill_end_s", "kv_reserved_s": "prefill_end_s",
        "kv_ready_s": "transfer_end_s", "first_token_s": "decode_start_s"}
#: the fields after id and state, in the order a buffered row holds them
_ROW = (*_CODED[1:], *_FLOATS, *_INTS)


def _bits(x) -> np.ndarray:
    """float64 values as their bits (NaNs of different payloads differ, -0.0 differs from 0.0)."""
    return np.ascontiguousarray(x, dtype=np.float64).view(np.uint64)


class RecordWriter:
    """The columns of one run, written as requests end.

    A row's state code is written at once (so a second write of it is caught there); its
    other fields wait in ``_rows`` (one tuple a request) and are written into the columns a
    block of ``_BLOCK`` rows at a time: one numpy assignment per column and block instead of
    twenty scalar ones per request. NOTE: the block goes through one float64 array, which holds
    every field exactly: the floats are Python floats, and the token counts and codes are
    integers below 2^31 (workload.MAX_TOKENS), exact in float64 and back in int32.

    A field not yet allocated (``_arrays[f] is None``) is ``SAME[f]`` or the constant
    ``_const[f]`` (the first value written); a block that breaks that allocates it."""
    _BLOCK = 4096

    def __init__(self, n: int):
        self.n = n
        self.state = np.full(n, _UNWRITTEN, np.uint8)
        self._arrays: dict[str, np.ndarray | None] = {f: None for f in _ROW}
        self._const: dict[str, float] = {}
        self._vocab = {f: {"": 0} for f in _CODED[1:]}   # string -> code ("" is 0)
        self._get = attrgetter(*_ROW)
        self._rows: list[tuple] = []

    def _dtype(self, field: str):
        """How ``field`` is stored: float64; int32 token counts (workload.MAX_TOKENS =
        2^31 - 1); codes in one byte while the vocabulary fits, else int32."""
        if field in _FLOATS:
            return np.float64
        if field in self._vocab and len(self._vocab[field]) <= 256:
            return np.uint8
        return np.int32

    def _code(self, field: str, s: str) -> int:
        v = self._vocab[field]
        c = v.get(s)
        if c is None:
            c = v[s] = len(v)
            a = self._arrays[field]
            if c == 256 and a is not None:     # a 257th string: the codes need int32
                self._arrays[field] = a.astype(np.int32)
        return c

    def write(self, r: Request) -> None:
        """``r`` has ended: its row takes its fields (each row is written once)."""
        i = r.id
        assert r.state in TERMINAL, f"request {i} recorded in state {r.state}"
        state = self.state
        assert state[i] == _UNWRITTEN, f"request {i} recorded twice"
        state[i] = _STATE_CODE[r.state]
        reason, pre, dec, *rest = self._get(r)
        self._rows.append((i, self._code("drop_reason", reason),
                           self._code("prefill_instance", pre),
                           self._code("decode_instance", dec), *rest))
        if len(self._rows) == self._BLOCK:
            self._flush()

    def _flush(self) -> None:
        """Write the buffered rows into the columns (allocating those the rows break)."""
        if not self._rows:
            return
        block = np.array(self._rows, dtype=np.float64)
        self._rows = []
        ids = block[:, 0].astype(np.intp)
        at = {f: j for j, f in enumerate(_ROW, 1)}
        for f, j in at.items():
            vals = block[:, j]
            if self._arrays[f] is None:
                if f in SAME:
                    if (_bits(vals) == _bits(block[:, at[SAME[f]]])).all():
                        continue
                    self._arrays[f] = np.array(self._values(SAME[f]), self._dtype(f))
                else:
                    c = self._const.setdefault(f, vals[0])
                    if (_bits(vals) == _bits(c)).all():
                        continue
                    self._arrays[f] = np.full(self.n, c, self._dtype(f))
            self._arrays[f][ids] = vals     # (cast to the column's dtype: exact, see above)

    def _values(self, field: str):
        """What ``field`` holds so far: its array, or its constant."""
        a = self._arrays[field]
        return a if a is not None else np.full(self.n, self._const.get(field, np.nan))

    def table(self) -> Records:
        """The finished table (asserts every row was written)."""
        self._flush()
        assert (self.state != _UNWRITTEN).all(), "requests never recorded"
        vocab = {"state": _STATES,
                 **{f: tuple(sorted(v, key=v.__getitem__)) for f, v in self._vocab.items()}}
        cols: dict = {"state": self.state}
        for f in _ROW:
            a = self._arrays[f]
            if a is not None:
                cols[f] = a
            elif f in SAME and f not in self._const:
                cols[f] = SAME[f]
            else:   # (no row at all: the constant is moot)
                cols[f] = (self._const.get(f, 0), self._dtype(f))
        for a in cols.values():
            if isinstance(a, np.ndarray):
                a.flags.writeable = False
        return Records(self.n, cols, vocab)


class Records:
    """One run's records by request id: columns, read-only. ``len``, iteration and indexing
    give ``RequestRecord``s (built on demand); ``==`` compares the tables.

    A column is stored as an array, as the name of the column it equals (``SAME``), or as
    ``(value, dtype)``, one value for every row (read as a broadcast view: no memory)."""
    __slots__ = ("_n", "_cols", "_vocab")

    def __init__(self, n: int, cols: dict, vocab: dict[str, tuple[str, ...]]):
        self._n, self._cols, self._vocab = n, cols, vocab

    def __len__(self) -> int:
        return self._n

    def _array(self, field: str) -> np.ndarray:
        """``field`` as stored, by id (read-only)."""
        c = self._cols[field]
        if isinstance(c, np.ndarray):
            return c
        if isinstance(c, str):
            return self._array(c)
        value, dtype = c
        return np.broadcast_to(np.array(value, dtype), (self._n,))

    def column(self, field: str, rows: slice = slice(None)) -> np.ndarray:
        """One field for every request (or the ids in ``rows``, a slice), by id: float64
        (read-only, not copied: the run's array, a view of it, or a broadcast constant), int64
        or (strings) object."""
        if field == "id":
            return np.arange(self._n, dtype=np.int64)[rows]
        a = self._array(field)[rows]
        if field in self._vocab:
            return np.array(self._vocab[field], dtype=object)[a]
        return a.astype(np.int64) if field in _INTS else a

    def codes(self, field: str) -> tuple[np.ndarray, tuple[str, ...]]:
        """A string field as stored: (codes by id, read-only; the strings they index)."""
        return self._array(field), self._vocab[field]

    def stored(self, field: str) -> np.ndarray:
        """A numeric field as stored, read-only, not copied (token counts as int32)."""
        assert field not in self._vocab, f"{field} is stored as codes: see codes()"
        return self._array(field)

    def nbytes(self) -> int:
        """Bytes the columns hold (those stored as arrays)."""
        return sum(c.nbytes for c in self._cols.values() if isinstance(c, np.ndarray))

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
        v = self._array(field)[i].item()
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
