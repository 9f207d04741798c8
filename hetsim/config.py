"""Strict YAML -> frozen dataclass loading.

One frozen dataclass per YAML section; :func:`build` turns a parsed mapping into it, rejecting
unknown keys (with a suggestion), wrong types and failed field checks, and naming the key path in
every error. Field help text and checks live on the field itself::

    tp: int = field(default=1, metadata=meta("tensor-parallel degree", power_of_two))
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from .errors import ConfigError, suggest

__all__ = ["build", "meta", "read_yaml", "parse_yaml_text", "positive", "non_negative",
           "fraction", "power_of_two", "at_least_one", "read_json", "MAX_INPUT_BYTES"]


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


#: Input files larger than this are refused before parsing (scenarios, profiles and plans are
#: a few kB; traces are read separately and may be larger).
MAX_INPUT_BYTES = 10 * 1024 * 1024
#: Deeper nesting than any hetsim file needs is refused instead of parsed.
MAX_DEPTH = 32
#: Values a document may expand to: YAML aliases share one node many times, so a tiny file
#: can stand for billions of values ("billion laughs"); real hetsim files hold a few thousand.
MAX_VALUES = 1_000_000

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# YAML 1.2 core-schema scalars, replacing YAML 1.1's: numbers as people write them (5e0,
# 1e-3, 2.5E+3 are floats; 0100 is one hundred, not octal 64; 1:30 is text, not 90) and only
# true/false as booleans (yes/no/on/off stay text, so a placement named `on` keeps its name).
_TAG = "tag:yaml.org,2002:"
_CORE = {
    "bool": re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    "int": re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    "float": re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
}


class _StrictLoader(_Base):
    """A safe loader that refuses duplicate keys (naming both lines) and resolves scalars by
    the YAML 1.2 core schema. Class state is its own copy, so yaml's shared loaders are
    untouched."""
    yaml_implicit_resolvers = {
        k: [(tag, rx) for tag, rx in v if tag[len(_TAG):] not in _CORE]
        for k, v in _Base.yaml_implicit_resolvers.items()}
    yaml_constructors = dict(_Base.yaml_constructors)

    def construct_yaml_int(self, node):
        text = self.construct_scalar(node)
        return int(text, 0) if text[:2] in ("0o", "0x") else int(text, 10)

    def construct_yaml_bool(self, node):
        return self.construct_scalar(node).lower() == "true"

    def construct_mapping(self, node, deep=False):
        # NOTE: checked before merge keys (<<) are flattened: overriding a merged key is
        # the point of a merge, not a duplicate.
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                except TypeError:   # an unhashable key: the base class reports it
                    continue
                if first is not None:
                    raise ConfigError(f"duplicate key {key!r} at lines {first} and {line}; "
                                      f"the second would silently replace the first")
                seen[key] = line
        return super().construct_mapping(node, deep)


for _kind, _rx in _CORE.items():
    for _c in ("tTfF" if _kind == "bool" else "-+0123456789."):
        _StrictLoader.yaml_implicit_resolvers.setdefault(_c, []).append((_TAG + _kind, _rx))
_StrictLoader.yaml_constructors[_TAG + "int"] = _StrictLoader.construct_yaml_int
_StrictLoader.yaml_constructors[_TAG + "bool"] = _StrictLoader.construct_yaml_bool


def _read_text(path: str | Path) -> str:
    """A UTF-8 text file of at most MAX_INPUT_BYTES, or a one-line ConfigError."""
    p, path = Path(path), str(path) or "''"     # an empty argument is named, not dropped
    try:
        if p.is_dir():
            raise ConfigError("is a folder, not a file", file=str(path))
        with open(p, "rb") as fh:     # at most one byte past the limit (devices have no size)
            data = fh.read(MAX_INPUT_BYTES + 1)
        if len(data) > MAX_INPUT_BYTES:
            raise ConfigError(f"larger than the {MAX_INPUT_BYTES >> 20} MiB limit for this kind "
                              f"of file", file=str(path))
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", file=str(path)) from None
    if b"\0" in data:
        raise ConfigError("binary file (holds NUL bytes), not text", file=str(path))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ConfigError(f"not UTF-8 text: byte 0x{data[e.start]:02x} at line {line}",
                          file=str(path)) from None


def _check_depth(obj, file: str) -> None:
    """Refuse documents nested deeper than MAX_DEPTH or expanding (through aliases) to more
    than MAX_VALUES values. Each alias is walked every time it is used, as consumers would."""
    stack, count = [(obj, 1)], 0
    while stack:
        o, d = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(f"expands to more than {MAX_VALUES:,} values (through YAML "
                              f"aliases?)", file=file)
        if not isinstance(o, (dict, list)):
            continue
        if d > MAX_DEPTH:
            raise ConfigError(f"nested deeper than {MAX_DEPTH} levels", file=file)
        stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file strictly; every problem is a one-line ConfigError naming the file
    (and the line, for syntax errors and duplicate keys)."""
    return parse_yaml_text(_read_text(path), str(path))


def parse_yaml_text(text: str, file: str) -> Any:
    """:func:`read_yaml` for text already in hand (``file`` names it in errors)."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a safe loader)
    except ConfigError as e:
        raise e.with_file(file) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"YAML syntax error at {where}{problem}", file=file) from None
    except RecursionError:
        raise ConfigError(f"nested deeper than {MAX_DEPTH} levels", file=file) from None
    _check_depth(data, file)
    return data


def read_json(path: str | Path, missing: str = "file not found") -> Any:
    """Parse a JSON file strictly: duplicate keys, NaN/Infinity and deep nesting are errors."""
    try:
        text = _read_text(path)
    except ConfigError as e:
        if e.message == "file not found":
            raise ConfigError(missing, file=str(path)) from None
        raise

    def pairs(items):
        out = {}
        for k, v in items:
            if k in out:
                raise ConfigError(f"duplicate key {k!r}; the second would silently replace "
                                  f"the first", file=str(path))
            out[k] = v
        return out

    def constant(name):
        raise ConfigError(f"{name} is not a number JSON allows", file=str(path))
    try:
        data = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as e:
        raise ConfigError(f"not JSON: {e.msg} at line {e.lineno}", file=str(path)) from None
    except RecursionError:
        raise ConfigError(f"nested deeper than {MAX_DEPTH} levels", file=str(path)) from None
    _check_depth(data, str(path))
    return data


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
        out, first = {}, {}
        for k, v in value.items():
            if str(k) in out:        # `1:` and `'1':`, or `true:` and `'True':`
                raise ConfigError(f"keys {first[str(k)]!r} and {k!r} both mean {str(k)!r}",
                                  path=f"{path}.{k}" if path else str(k))
            first[str(k)] = k
            out[str(k)] = _convert(vt, v, f"{path}.{k}" if path else str(k))
        return out
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
