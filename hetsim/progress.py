"""Progress on stderr for long commands: a tqdm bar on a terminal, plain lines elsewhere.

Only the command-line layer makes one; the library reports progress through plain callbacks
(``progress(label, done, total)``), so results and stdout never depend on it. Imports nothing
from hetsim.
"""
from __future__ import annotations

import sys

from tqdm import tqdm

__all__ = ["Progress"]

#: On a stream that is not a terminal, a new line at most every tenth of the total.
_LINE_STEPS = 10


class _Lines(tqdm):
    """tqdm on a stream that is not a terminal (a CI log, a pipe, a file): every state shown
    is one plain line, never a carriage return, at most one per tenth of the total (one per
    step when the total is unknown), and the last state once more on close if it was not
    shown yet."""

    def __init__(self, *args, **kwargs):
        self._shown_n = None      # set before tqdm's first display
        super().__init__(*args, leave=False, **kwargs)

    def display(self, msg=None, pos=None):
        if msg is not None:       # tqdm clears a line this way: nothing to clear in a log
            return False
        step = max(1, (self.total or 0) // _LINE_STEPS)
        if self._shown_n is not None and (self.n == self._shown_n or (
                self.n - self._shown_n < step and self.n != self.total)):
            return False
        self._shown_n = self.n
        self.fp.write(self.__str__() + "\n")
        self.fp.flush()
        return True

    def close(self):
        if not self.disable and self._shown_n is not None and self.n != self._shown_n:
            self._shown_n = None  # the final state, however small its step
            self.display()
        super().close()


class Progress:
    """A ``progress(label, done, total=None)`` callback drawing one bar per label on
    ``stream`` (default stderr); a new label closes the previous bar. Nothing is shown before
    ``delay_s`` has passed on a bar, nor at all when ``enabled`` is false. ``close()`` (or
    leaving a ``with`` block) ends the last bar."""

    def __init__(self, prefix: str = "", unit: str = "it", *, delay_s: float = 0.0,
                 enabled: bool = True, stream=None):
        self.prefix, self.unit, self.delay_s = prefix, unit, delay_s
        self.stream = stream
        # no stream at all (stderr closed before start): nothing to draw on
        self.enabled = enabled and (stream is not None or sys.stderr is not None)
        self._label = None
        self._bar = None

    def __call__(self, label: str, done: int, total: int | None = None) -> None:
        if not self.enabled:
            return
        try:
            if self._bar is None or label != self._label:
                self.close()
                self._label, self._bar = label, self._new_bar(label, done, total)
            else:
                self._bar.update(done - self._bar.n)
        except (OSError, ValueError):
            # stderr closed or full: progress is never the result, so it stops, the run goes on
            self.enabled, self._bar = False, None

    def _new_bar(self, label: str, done: int, total: int | None) -> tqdm:
        stream = self.stream if self.stream is not None else sys.stderr
        desc = f"{self.prefix}: {label}" if self.prefix else label
        tty = getattr(stream, "isatty", lambda: False)()
        # in a log too: elapsed time, and with a total the time left (tqdm's estimate)
        counted = ("{n_fmt}/{total_fmt} {unit} ({percentage:.0f}%) [{elapsed}, {remaining} left]"
                   if total else "{n_fmt} {unit} [{elapsed}]")
        kind, form = (tqdm, None) if tty else (_Lines, "{desc}: " + counted)
        return kind(total=total, initial=done, desc=desc, unit=self.unit, file=stream,
                    delay=self.delay_s, bar_format=form, dynamic_ncols=tty)

    def __bool__(self) -> bool:
        """A disabled progress is false, so callers skip building its per-event callback."""
        return self.enabled

    def close(self) -> None:
        if self._bar is not None:
            bar, self._bar = self._bar, None
            try:
                bar.close()
            except (OSError, ValueError):
                self.enabled = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
