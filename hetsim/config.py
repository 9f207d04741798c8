"""Strict YAML -> frozen dataclass loading.

One frozen dataclass per YAML section; :func:`build` turns a parsed mapping into it, rejecting
unknown keys (with a suggestion), wrong types and failed field checks, and naming the key path in
every error. Field help text and checks live on the field itself::

    tp: int = field(default=1, metadata=meta("tensor-parallel degree", power_of_two))
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from .errors import ConfigError, suggest

__all__ = ["build", "meta", "read_yaml", "positive", "non_negative", "fraction", "power_of_two",
           "at_least_one"]


def meta(help: str, *checks) -> dict:
    """Field metadata: help text and zero or more checks (value -> error message or None)."""
    return {"help": help, "checks": checks}


def positive(v):
    return None if v > 0 else f"must be > 0, got {v}"


def non_negative(v):
    return None if v >= 0 else f"must be >= 0, got {v}"


def fraction(v):
    return None if 0 < v <= 1 else f"must be in (0, 1], got {v}"


def power_of_two(v):
    return None if v >= 1 and (v & (v - 1)) == 0 else f"must be a power of two, got {v}"


def at_least_one(v):
    return None if len(v) >= 1 else "must not be empty"


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; syntax errors become a one-line ConfigError with the line number."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", file=str(path)) from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"YAML syntax error at {where}{problem}", file=str(path)) from None


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _describe(tp) -> str:
    if tp in _TYPE_NAMES:
        return _TYPE_NAMES[tp]
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        return "a list"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(tp, value, path: str):
    """Convert ``value`` to type ``tp`` or raise ConfigError at ``path``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, path)
            except ConfigError as e:
                errors.append(e)
                # a mapping given where a section is allowed: its own error is the precise one
                if isinstance(value, dict) and (dataclasses.is_dataclass(arg)
                                                or typing.get_origin(arg) is dict):
                    raise
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError("must be " + " or ".join(_describe(a) for a in args
                                                    if a is not type(None)) +
                          f", got {value!r}", path=path)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"must be one of {', '.join(map(str, allowed))}, got {value!r}"
                              + suggest(value, map(str, allowed)), path=path)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"must be true or false, got {value!r}", path=path)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"must be an integer, got {value!r}", path=path)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"must be a number, got {value!r}", path=path)
        if not math.isfinite(value):
            raise ConfigError(f"must be a finite number, got {value!r}", path=path)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"must be a string, got {value!r}", path=path)
        return value
    if origin in (list, tuple):
        (item,) = typing.get_args(tp)[:1]
        if not isinstance(value, list):
            raise ConfigError(f"must be a list, got {value!r}", path=path)
        out = [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        _, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"must be a mapping, got {value!r}", path=path)
        return {str(k): _convert(vt, v, f"{path}.{k}" if path else str(k))
                for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build(tp, value, path)
    raise TypeError(f"unsupported config type {tp!r}")  # programming error, not user input


def build(cls, data, path: str = ""):
    """Build the frozen dataclass ``cls`` from a mapping, strictly."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"must be a mapping, got {data!r}", path=path)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            where = f"{path}.{key}" if path else str(key)
            raise ConfigError("unknown key" + suggest(key, fields), path=where)
    kwargs = {}
    for name, f in fields.items():
        where = f"{path}.{name}" if path else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError("required key is missing", path=where)
            continue
        value = _convert(hints[name], data[name], where)
        for check in f.metadata.get("checks", ()):
            msg = check(value) if value is not None else None
            if msg:
                raise ConfigError(msg, path=where)
        kwargs[name] = value
    try:
        obj = cls(**kwargs)
    except ConfigError as e:  # __post_init__ cross-field checks
        raise e.under(path) if path else e
    return obj


def to_dict(obj) -> Any:
    """Plain YAML-safe structure of a (nested) config dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not f.name.startswith("_")}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj
