"""Where results land: output folders and files that never destroy what hetsim did not write.

The rules (README "Outputs"), checked before any simulation starts:

- ``--out DIR``: a new or empty folder is filled; a folder holding a previous hetsim output
  (it has :data:`MANIFEST`) has hetsim's files replaced; any other non-empty folder is refused
  unless ``force``, and even then only the file names hetsim writes are replaced. Nothing else
  in the folder is ever removed, and an existing folder is never itself moved or removed.
- A single output file (``--junit``, ``--baseline`` with ``--update-baseline``, ``calibrate
  --out``) must not be a folder, lie under a file, or sit where nothing can be created.
- Everything is written to a staging folder first and moved into place by rename: a new
  folder appears whole; in an existing one each file is replaced by its own rename (so no
  file is ever half-written) and the manifest, written last, marks the output complete.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

__all__ = ["MANIFEST", "OutputDir", "check_output_dir", "check_output_file", "write_atomic",
           "write_text_atomic", "stream_csv", "stream_parquet"]

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


def _sibling(p: Path) -> Path:
    """A fresh hidden name beside ``p`` (created by the caller with the user's umask, unlike
    tempfile's private 0600/0700 modes)."""
    return p.parent / f".{p.name or 'out'}.{uuid.uuid4().hex[:12]}.tmp"


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file beside it and a rename."""
    def fill(tmp: Path) -> None:
        with open(tmp, "x") as fh:
            fh.write(text)
    return write_atomic(path, fill)


def write_atomic(path: str | Path, fill: Callable[[Path], None]) -> Path:
    """Write ``path`` by ``fill(tmp)`` on a fresh temporary file beside it, then a rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(p)
    try:
        fill(tmp)
        if p.exists():      # a replaced file keeps its permissions
            os.chmod(tmp, stat.S_IMODE(p.stat().st_mode))
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


def _manifest(folder: Path) -> dict[str, dict] | None:
    """{file: {command, size, mtime_ns}} of the hetsim output in ``folder``, or None."""
    try:
        data = json.loads((folder / MANIFEST).read_text())
        written = data["written"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(written, dict) or not all(
            isinstance(f, str) and "/" not in f and f not in ("", ".", "..") and
            isinstance(w, dict) and isinstance(w.get("command"), str)
            for f, w in written.items()):
        return None
    return written


def _stamp(f: Path) -> dict:
    st = f.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _unchanged(f: Path, entry: dict) -> bool:
    """Whether ``f`` is still the file hetsim wrote (same size and mtime as recorded)."""
    try:
        return f.is_file() and not f.is_symlink() and _stamp(f) == {
            "size": entry.get("size"), "mtime_ns": entry.get("mtime_ns")}
    except OSError:
        return False


@dataclass(frozen=True)
class OutputDir:
    """A checked ``--out`` folder; :meth:`write` fills it by the rules in the module doc."""
    path: Path
    force: bool = False
    flag: str = "--out"

    def write(self, command: str, fill: Callable[[Path], None]) -> list[str]:
        """Call ``fill(staging_dir)`` to write the results, then move them into place.
        Returns the file names written.

        NOTE: results are staged inside the folder when it exists (so mount points, symlinks
        and read-only parents work, and every rename stays on one filesystem) and beside it
        when it is new (the whole folder then appears by one rename)."""
        p = self.path
        new = not p.is_dir()
        if new:
            p.parent.mkdir(parents=True, exist_ok=True)
        tmp = _sibling(p) if new else p / f".hetsim-staging.{uuid.uuid4().hex[:12]}"
        tmp.mkdir()     # exclusive: fails rather than adopt a folder someone else made
        moved = False
        try:
            fill(tmp)
            files = sorted(f.name for f in tmp.iterdir())
            moved = new and self._move_folder(tmp, command, files)
            if not moved:
                self._move_files(tmp, command, files)
        finally:
            # NOTE: the only folder hetsim ever removes: the staging folder it made above,
            # never once it has become the output folder.
            if not moved:
                shutil.rmtree(tmp, ignore_errors=True)
        return files

    def _move_folder(self, tmp: Path, command: str, files: list[str]) -> bool:
        """A new folder appears whole; False when another writer created it meanwhile."""
        _write_manifest(tmp, command, {name: {"command": command, **_stamp(tmp / name)}
                                       for name in files})
        try:
            os.replace(tmp, self.path)
        except OSError:
            if not self.path.is_dir():
                raise
            (tmp / MANIFEST).unlink()
            return False
        return True

    def _move_files(self, tmp: Path, command: str, files: list[str]) -> None:
        """Replace our files one by one, each by rename; touch nothing else; manifest last.

        Files an earlier run of the same command wrote and this one did not are stale and
        removed, but only while they are still exactly what hetsim wrote (size and mtime as
        recorded); another command's files (``plan``'s plan.yaml beside a ``run`` of it) are
        kept and stay listed as hetsim's."""
        p = self.path
        written = {}
        for name, entry in (_manifest(p) or {}).items():
            if name in files or name == MANIFEST or not _unchanged(p / name, entry):
                continue
            if entry["command"] == command:
                (p / name).unlink()
            else:
                written[name] = entry
        for name in files:
            os.replace(tmp / name, p / name)
            written[name] = {"command": command, **_stamp(p / name)}
        _write_manifest(tmp, command, written)
        os.replace(tmp / MANIFEST, p / MANIFEST)


def _write_manifest(folder: Path, command: str, written: dict[str, dict]) -> None:
    """``written``: {file: {command, size, mtime_ns}} as each file landed."""
    from . import __version__
    (folder / MANIFEST).write_text(json.dumps(
        {"written_by": f"hetsim {__version__}", "command": command,
         "written": dict(sorted(written.items()))}, indent=2) + "\n")


def check_output_dir(path: str | Path, force: bool = False, flag: str = "--out") -> OutputDir:
    """Check an output folder before anything runs; raise a one-line ConfigError if hetsim
    may not write there."""
    p = Path(path)
    if p.is_symlink() and not p.exists():
        raise ConfigError(f"{p} is a link to {os.readlink(p)}, which does not exist", path=flag)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{p} is a file, not a folder", path=flag)
    if not p.exists():
        _existing_ancestor(p, flag)
        return OutputDir(p, force, flag)
    if not os.access(p, os.R_OK | os.W_OK | os.X_OK):
        raise ConfigError(f"{p} is not readable and writable", path=flag)
    try:
        entries = sorted(e.name for e in p.iterdir())
    except OSError as e:
        raise ConfigError(f"cannot list {p}: {e.strerror}", path=flag) from None
    if entries and _manifest(p) is None and not force:
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3
                                          else "")
        raise ConfigError(f"{p} is not empty and holds no hetsim output ({shown}); choose a new "
                          f"or empty folder, or add --force to replace only hetsim's own files "
                          f"there", path=flag)
    return OutputDir(p, force, flag)


def stream_csv(frames, path: Path) -> int:
    """Write DataFrames one after another as one CSV file (the header once, from the first;
    no index): the bytes ``pd.concat(frames).to_csv(path, index=False)`` writes, since each
    row's text depends on its own values only. Returns the rows written."""
    rows = 0
    with open(path, "w", newline="") as fh:
        for df in frames:
            df.to_csv(fh, header=rows == 0 and not fh.tell(), index=False)
            rows += len(df)
    return rows


def stream_parquet(frames, path: Path) -> int:
    """Write DataFrames one after another as one Parquet file, a row group each, with the
    first frame's schema (pandas metadata included, no index): read back, the concatenated
    frame. Returns the rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    writer, rows = None, 0
    try:
        for df in frames:
            t = pa.Table.from_pandas(df, preserve_index=False,
                                     schema=writer.schema if writer else None)
            if writer is None:
                writer = pq.ParquetWriter(path, t.schema)
            writer.write_table(t)
            rows += len(df)
    finally:
        if writer is not None:
            writer.close()
    return rows
