"""Overrides: set named key paths in a parsed YAML document, checked against its schema.

``placements.hetero.pools.decode.instances`` walks the schema (a dataclass from
:mod:`hetsim.config`) beside the document: a field must exist (else ``unknown key``, with a
suggestion), a named entry of a mapping of sections (a placement, a pool) must already be in the
document unless the override gives it whole (``inventory.b200={max: 4}``), and a list takes
``[i]`` indices. The value replaces what is there; ``None`` (YAML
``null``) removes the key, so its default applies again. Types and ranges are checked
afterwards, when the document is built, and errors then name the same key path.

Text forms (the CLI's ``--set PATH=VALUE``): :func:`parse_assignment` reads the value as YAML,
so ``4`` is an integer, ``fp8`` a string and ``{weights: fp8, kv: fp8}`` a mapping.
"""
from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Union

from .config import parse_yaml_text
from .errors import ConfigError, suggest

__all__ = ["apply_overrides", "parse_assignment", "split_path", "blame"]

_PATH = re.compile(r"(?:[^.\[\]\s]+|\[\d+\])(?:\.[^.\[\]\s]+|\[\d+\])*")
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def split_path(path: str) -> list[str | int]:
    """``a.b[2].c`` -> ["a", "b", 2, "c"]; a malformed path is a ConfigError at itself."""
    if not _PATH.fullmatch(path):
        raise ConfigError(f"not a key path: {path!r} (e.g. placements.NAME.pools.POOL.instances "
                          f"or hardware_profiles[0])", path=path)
    return [name if name else int(index) for name, index in _SEGMENT.findall(path)]


def parse_assignment(text: str) -> tuple[str, Any]:
    """``PATH=VALUE`` (VALUE in YAML) -> (PATH, value)."""
    path, eq, value = text.partition("=")
    if not eq or not path.strip():
        raise ConfigError(f"expected PATH=VALUE (e.g. workload.arrival.rate_rps=12), got "
                          f"{text!r}", path="--set")
    if not value.strip():
        raise ConfigError(f"{path.strip()}= has no value (null restores the default)",
                          path="--set")
    try:
        return path.strip(), parse_yaml_text(value, f"--set {path.strip()}")
    except ConfigError as e:
        raise ConfigError(e.message, path=f"--set {path.strip()}") from None


def _strip_optional(tp):
    if typing.get_origin(tp) in (Union, types.UnionType):
        return [a for a in typing.get_args(tp) if a is not type(None)]
    return [tp]


def _descend(tp, node, key, where: str):
    """(the type holding ``key``, the schema type under it) for a node of type ``tp``."""
    for t in _strip_optional(tp):
        origin = typing.get_origin(t)
        if dataclasses.is_dataclass(t):
            if not isinstance(key, str):
                continue
            hints = typing.get_type_hints(t)
            fields = [f.name for f in dataclasses.fields(t) if f.init and f.name in hints]
            if key not in fields:
                raise ConfigError("unknown key" + suggest(key, fields), path=where)
            return t, hints[key]
        if origin is dict and isinstance(key, str):
            return t, typing.get_args(t)[1]
        if origin in (list, tuple) and isinstance(key, int):
            return t, typing.get_args(t)[0]
        if t is Any:
            return t, Any
    kind = "an index [i]" if isinstance(key, int) else f"key {key!r}"
    raise ConfigError(f"takes no {kind}: it is a value, not a "
                      f"{'list' if isinstance(key, int) else 'section'}", path=where)


def _set(doc: dict, schema, parts: list, value, path: str) -> None:
    node, tp, where = doc, schema, ""
    for i, key in enumerate(parts):
        last = i == len(parts) - 1
        where = f"{where}[{key}]" if isinstance(key, int) else (f"{where}.{key}" if where else key)
        holder, tp = _descend(tp, node, key, where)
        if isinstance(key, int):
            if not isinstance(node, list) or not -len(node) <= key < len(node):
                n = len(node) if isinstance(node, list) else 0
                raise ConfigError(f"no item [{key}]: the list has {n}", path=where)
        elif typing.get_origin(holder) is dict and key not in node:
            value_type = typing.get_args(holder)[1]
            sections = any(dataclasses.is_dataclass(t) for t in _strip_optional(value_type))
            # a named section (placement, pool) must exist, unless given whole: a path into
            # one that is not there is a typo, not a new entry
            if (sections and not (last and isinstance(value, dict))) or not last:
                raise ConfigError(f"no entry {key!r}" + suggest(key, node)
                                  + (f"; one of {', '.join(map(str, node))}" if node else ""),
                                  path=where)
        if last:
            if value is None and not isinstance(key, int):
                node.pop(key, None)       # null: the default again
            else:
                node[key] = copy.deepcopy(value)
            return
        child = node[key] if (isinstance(key, int) or key in node) else None
        if child is None:
            child = node[key] = {}
        elif isinstance(child, str):
            # a bare name where the schema also takes a section with a name (runtime: vllm)
            named = [t for t in _strip_optional(tp) if dataclasses.is_dataclass(t)
                     and "name" in {f.name for f in dataclasses.fields(t)}]
            if not named:
                raise ConfigError(f"is {child!r}, not a mapping: set {where} as a whole",
                                  path=where)
            child = node[key] = {"name": child}
        elif not isinstance(child, (dict, list)):
            raise ConfigError(f"is {child!r}, a value, not a section", path=where)
        node = child


def apply_overrides(doc: Mapping, overrides: Mapping[str, Any], schema) -> dict:
    """A deep copy of ``doc`` with every ``{key path: value}`` of ``overrides`` set, in order.
    Paths are checked against ``schema`` (a config dataclass); errors carry the path."""
    if not isinstance(doc, Mapping):
        raise ConfigError(f"must be a mapping, got {type(doc).__name__}")
    out = copy.deepcopy(dict(doc))
    for path, value in overrides.items():
        if not isinstance(path, str):
            raise ConfigError(f"a key path must be a string, got {path!r}")
        _set(out, schema, split_path(path), value, path)
    return out


def blame(e: ConfigError, label: str, clean: Callable[[], object]) -> ConfigError:
    """``e`` (an error reading a document with overrides) with ``(set by LABEL)`` added unless
    ``clean()``, the same read without them, fails the same way: an error already in the file
    is never put on an override."""
    try:
        clean()
    except ConfigError as base:
        if (base.path, base.message) == (e.path, e.message):
            return e
    return ConfigError(f"{e.message} (set by {label})", file=e.file, path=e.path)
