"""Errors that the CLI turns into one line on stderr and exit code 2.

Every user-facing input problem is a :class:`ConfigError` carrying the file and the dotted key
path, so the message reads ``scenarios/x.yaml: placements.disagg.pools.decode.tp: must be ...``.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["ConfigError", "suggest", "match_name", "MAX_MESSAGE"]

#: Longest error line: a value quoted back is cut, so the line stays readable.
MAX_MESSAGE = 2000


class ConfigError(ValueError):
    """Bad user input: a file, a key path inside it and what is wrong."""

    def __init__(self, message: str, *, file: str | None = None, path: str = ""):
        self.file = file
        self.path = path
        self.message = message
        super().__init__(self.format())

    def __reduce__(self):
        # keyword-only fields: rebuilt whole when it crosses to another process (an executor)
        return (_rebuild, (self.message, self.file, self.path))

    def format(self) -> str:
        """One short line, always: control characters from user keys or values are escaped,
        and a huge value quoted back (an expanded YAML alias) is cut to MAX_MESSAGE."""
        parts = [p for p in (self.file, self.path) if p]
        text = ": ".join([*parts, self.message])
        text = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
        return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 20] + " ... (cut)"

    def with_file(self, file: str | None) -> "ConfigError":
        """Return the same error attributed to ``file`` (keeps an existing attribution;
        ``None``, e.g. a scenario built in Python, adds none)."""
        return self if self.file or not file else ConfigError(self.message, file=file,
                                                              path=self.path)

    def under(self, prefix: str) -> "ConfigError":
        """Return the same error with ``prefix`` prepended to its key path."""
        path = f"{prefix}.{self.path}" if self.path and prefix else (prefix or self.path)
        return ConfigError(self.message, file=self.file, path=path)


def _rebuild(message: str, file: str | None, path: str) -> ConfigError:
    return ConfigError(message, file=file, path=path)


def suggest(name: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest choice, or '' when nothing is close."""
    choices = sorted(map(str, choices))
    name = str(name)
    # a name that starts exactly one choice (rate -> rate_rps) beats a merely similar one
    prefixed = [c for c in choices if name and c.startswith(name)]
    match = prefixed if len(prefixed) == 1 else difflib.get_close_matches(name, choices, n=1,
                                                                          cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def match_name(name: str, choices: Iterable[str], kind: str, *, file: str | None = None,
               path: str = "") -> str:
    """The choice ``name`` means: itself, else the one choice equal to it ignoring case;
    otherwise a ConfigError with a suggestion and the choices."""
    choices = list(choices)
    if name in choices:
        return name
    folded = [c for c in choices if c.casefold() == str(name).casefold()]
    if len(folded) == 1:
        return folded[0]
    hint = (f" (matches {', '.join(map(repr, folded))} ignoring case; give one exactly)"
            if folded else suggest(name, choices))
    listing = f"; one of {', '.join(choices)}" if len(choices) <= 12 else ""
    raise ConfigError(f"unknown {kind} {name!r}{hint}{listing}", file=file, path=path)
