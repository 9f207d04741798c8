"""Where results land: output folders and files that never destroy what hetsim did not write.

The rules (README "Outputs"), checked before any simulation starts:

- ``--out DIR``: a new or empty folder is filled; a folder holding a previous hetsim output
  (it has :data:`MANIFEST`) is replaced; any other non-empty folder is refused unless
  ``force``, and even then only the file names hetsim writes are replaced. Nothing else in the
  folder is ever removed, and the current directory (or one above it) is never renamed away.
- A single output file (``--junit``, ``--baseline`` with ``--update-baseline``, ``calibrate
  --out``) must not be a folder, lie under a file, or sit where nothing can be created.
- Everything is written to a temporary sibling first and moved into place by rename, so a
  crash or Ctrl-C leaves either the old results or the new ones, never half of each.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

__all__ = ["MANIFEST", "OutputDir", "check_output_dir", "check_output_file", "write_text_atomic"]

#: Written last into every output folder; names the files hetsim wrote there.
MANIFEST = "hetsim-manifest.json"


def _existing_ancestor(p: Path, flag: str) -> Path:
    """The nearest existing ancestor of ``p``; it must be a writable folder."""
    a = p.parent
    while not a.exists():
        a = a.parent
    if not a.is_dir():
        raise ConfigError(f"{p} lies under {a}, which is a file, not a folder", path=flag)
    if not os.access(a, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot create {p}: {a} is not writable", path=flag)
    return a


def check_output_file(path: str | Path, flag: str) -> Path:
    """Check that ``path`` can be written as one file; raise a one-line ConfigError if not."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p} is a folder; give a file name", path=flag)
    if p.exists():
        if not os.access(p, os.W_OK) or not os.access(p.parent, os.W_OK | os.X_OK):
            raise ConfigError(f"{p} is not writable", path=flag)
    else:
        _existing_ancestor(p, flag)
    return p


def _sibling(p: Path, tag: str = "") -> Path:
    """A fresh hidden name beside ``p`` (created by the caller with the user's umask, unlike
    tempfile's private 0600/0700 modes)."""
    return p.parent / f".{p.name or 'out'}{tag}.{uuid.uuid4().hex[:12]}.tmp"


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file beside it and a rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(p)
    try:
        with open(tmp, "x") as fh:
            fh.write(text)
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


def _manifest_files(folder: Path) -> set[str] | None:
    """The files a previous hetsim output listed in its manifest, or None without one."""
    try:
        data = json.loads((folder / MANIFEST).read_text())
        files = data["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(files, list) or not all(isinstance(f, str) and "/" not in f and
                                              f not in ("", ".", "..") for f in files):
        return None
    return set(files)


def _holds_cwd(p: Path) -> bool:
    """Whether ``p`` is the current directory or one of its ancestors."""
    here, target = Path.cwd().resolve(), p.resolve()
    return here == target or target in here.parents


@dataclass(frozen=True)
class OutputDir:
    """A checked ``--out`` folder; :meth:`write` fills it by the rules in the module doc."""
    path: Path
    force: bool = False
    flag: str = "--out"

    def write(self, command: str, fill: Callable[[Path], None]) -> list[str]:
        """Call ``fill(staging_dir)`` to write the results, then move them into place.
        Returns the file names written."""
        p = self.path
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = _sibling(p)
        tmp.mkdir()
        try:
            fill(tmp)
            files = sorted(f.name for f in tmp.iterdir())
            from . import __version__
            (tmp / MANIFEST).write_text(json.dumps(
                {"written_by": f"hetsim {__version__}", "command": command, "files": files},
                indent=2) + "\n")
            self._commit(tmp, files)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return files

    def _commit(self, tmp: Path, files: list[str]) -> None:
        p = self.path
        if not p.exists():
            os.replace(tmp, p)
            return
        old = _manifest_files(p)
        present = {f.name for f in p.iterdir()}
        ours = (old or set()) | {MANIFEST}
        if present <= ours and not p.is_symlink() and not _holds_cwd(p):
            # Only hetsim's own files are there: swap the whole folder in two renames.
            trash = _sibling(p, ".old")
            os.replace(p, trash)
            os.replace(tmp, p)
            shutil.rmtree(trash, ignore_errors=True)
            return
        # A folder with other files (--force), or the current directory: replace our files
        # one by one (each by rename) and touch nothing else; the manifest goes last.
        for name in files:
            os.replace(tmp / name, p / name)
        for name in sorted((old or set()) - set(files) - {MANIFEST}):
            stale = p / name
            if stale.is_file():
                stale.unlink()
        os.replace(tmp / MANIFEST, p / MANIFEST)


def check_output_dir(path: str | Path, force: bool = False, flag: str = "--out") -> OutputDir:
    """Check an output folder before anything runs; raise a one-line ConfigError if hetsim
    may not write there."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{p} is a file, not a folder", path=flag)
    if not p.exists():
        _existing_ancestor(p, flag)
        return OutputDir(p, force, flag)
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(f"{p} is not writable", path=flag)
    if not os.access(p.resolve().parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write beside {p}: {p.resolve().parent} is not writable",
                          path=flag)
    entries = sorted(e.name for e in p.iterdir())
    if entries and _manifest_files(p) is None and not force:
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3
                                          else "")
        raise ConfigError(f"{p} is not empty and holds no hetsim output ({shown}); choose a new "
                          f"or empty folder, or add --force to replace only hetsim's own files "
                          f"there", path=flag)
    return OutputDir(p, force, flag)
