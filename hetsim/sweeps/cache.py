"""The sweep cache: one JSON file per finished (point, seed), keyed by the hash of the point's
scenario text and of everything it reads, written atomically as each task finishes."""
from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import ConfigError
from ..hardware import profile_dirs
from ..outputs import write_text_atomic
from ..scenario import Scenario

__all__ = ["default_cache_dir", "inputs_digest", "key", "ready", "read", "write", "PACKAGE"]

#: hetsim's own code and data (the model catalog among them): a change anywhere in it is a miss
PACKAGE = Path(__file__).resolve().parent.parent

def default_cache_dir() -> Path:
    """``$HETSIM_CACHE_DIR``, else ``$XDG_CACHE_HOME/hetsim``, else ``~/.cache/hetsim``."""
    env = os.environ.get("HETSIM_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hetsim"


def _tree_digest(folder: str) -> str:
    """Hash of every file's path and content under ``folder`` (hetsim's code and data)."""
    h = hashlib.sha256()
    root = Path(folder)
    for f in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def inputs_digest(sc: Scenario, memo: dict) -> str:
    """What a point reads besides its own text: hetsim's package and shipped profiles, every
    profile folder searched, files the scenario names (workload traces, model files; hashed
    by the name as written and their content). ``memo`` keeps folder and file digests for one
    sweep."""
    import simpy

    def digest(kind: str, path: Path) -> str:
        key = (kind, str(path.resolve()))
        if key not in memo:
            memo[key] = (_tree_digest(key[1]) if kind == "tree"
                         else hashlib.sha256(path.read_bytes()).hexdigest())
        return memo[key]
    h = hashlib.sha256(f"{__version__} {np.__version__} {pd.__version__} {simpy.__version__} "
                       f"{platform.python_version()}".encode())
    for d in [PACKAGE, *profile_dirs([sc.base_dir / d for d in sc.hardware_profiles])]:
        if d.is_dir():
            h.update(digest("tree", d).encode())

    def named(v):
        if isinstance(v, dict):
            for x in v.values():
                yield from named(x)
        elif isinstance(v, list):
            for x in v:
                yield from named(x)
        elif isinstance(v, str) and (sc.base_dir / v).is_file():
            yield v
    for v in sorted(set(named(sc.to_dict()))):
        h.update(v.encode() + b"\0" + digest("file", sc.base_dir / v).encode())
    return h.hexdigest()


def key(text: str, measure: str, placements: tuple, tolerance: float, inputs: str) -> str:
    return hashlib.sha256(json.dumps([text, measure, list(placements), tolerance, inputs]
                                     ).encode()).hexdigest()


def ready(folder: Path) -> Path:
    """``folder``, created if missing; a ConfigError if it cannot hold the cache (checked before
    anything is simulated)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        why = "is a file, not a folder" if folder.is_file() or isinstance(
            e, (FileExistsError, NotADirectoryError)) else f"cannot be written ({e.strerror})"
        raise ConfigError(f"the sweep cache {folder} {why}; give --cache-dir another "
                          f"folder or --no-cache", path="--cache-dir") from None
    return folder


def read(folder: Path | None, key: str) -> list[dict] | None:
    if folder is None:
        return None
    try:
        return json.loads((folder / key[:2] / f"{key}.json").read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        return None       # absent or unreadable: computed again


def write(folder: Path | None, key: str, rows: list[dict]) -> None:
    if folder is None:
        return
    (folder / key[:2]).mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / key[:2] / f"{key}.json",
                      json.dumps({"hetsim": __version__, "rows": rows}, allow_nan=True))


