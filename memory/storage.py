"""Storage failures as one line: which file, what is wrong, what to do.

Every place VOLT touches the disk (the ledger connection, the checkpointer, the situation
memory, the data directory and its lock files) turns SQLite and OS errors into a
:class:`~graph.errors.StorageError` here, so a CLI prints one line and exits 2 instead of
a traceback. Errors that are not storage failures (a programming error such as a wrong
SQL parameter count) are left alone: they are bugs and should show their traceback.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from graph.errors import StorageError

DAMAGED = "damaged"
READ_ONLY = "read-only"
FULL = "full"
NOT_A_DIRECTORY = "not-a-directory"
BUSY = "busy"
UNAVAILABLE = "unavailable"

# SQLite's primary result codes (extended codes such as SQLITE_CORRUPT_VTAB share the prefix)
_SQLITE_KINDS = (
    ("SQLITE_NOTADB", DAMAGED), ("SQLITE_CORRUPT", DAMAGED), ("SQLITE_READONLY", READ_ONLY),
    ("SQLITE_PERM", READ_ONLY), ("SQLITE_FULL", FULL), ("SQLITE_BUSY", BUSY), ("SQLITE_LOCKED", BUSY),
    ("SQLITE_CANTOPEN", UNAVAILABLE), ("SQLITE_IOERR", UNAVAILABLE),
)
# the same by message, for errors raised without a code (chromadb, older drivers)
_TEXT_KINDS = (
    ("not a database", DAMAGED), ("malformed", DAMAGED), ("corrupt", DAMAGED), ("no such table", DAMAGED),
    ("readonly", READ_ONLY), ("read-only", READ_ONLY), ("permission denied", READ_ONLY),
    ("disk is full", FULL), ("no space left", FULL), ("quota exceeded", FULL),
    ("database is locked", BUSY), ("unable to open database", UNAVAILABLE), ("disk i/o error", UNAVAILABLE),
)
_ERRNO_KINDS = {
    errno.ENOSPC: FULL, errno.EDQUOT: FULL, errno.EACCES: READ_ONLY, errno.EPERM: READ_ONLY,
    errno.EROFS: READ_ONLY, errno.ENOTDIR: NOT_A_DIRECTORY, errno.EEXIST: NOT_A_DIRECTORY,
}


def kind_of(exc: BaseException) -> str | None:
    """The storage-failure kind of ``exc``, or None when it is not a storage failure."""
    if isinstance(exc, StorageError):
        return exc.kind
    if isinstance(exc, OSError):
        return _ERRNO_KINDS.get(exc.errno or 0, UNAVAILABLE)
    name = getattr(exc, "sqlite_errorname", None) or ""
    for prefix, kind in _SQLITE_KINDS:
        if name.startswith(prefix):
            return kind
    text = str(exc).lower()
    for fragment, kind in _TEXT_KINDS:
        if fragment in text:
            return kind
    return None


def not_a_directory(path: Path) -> Path | None:
    """The first existing ancestor of ``path`` (or itself) that is not a directory."""
    for candidate in [*reversed(Path(path).parents), Path(path)]:
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return None


def storage_error(exc: BaseException, path: Path, *, damaged: str | None = None) -> StorageError | None:
    """The one-line :class:`StorageError` for ``exc`` on ``path``, or None when ``exc`` is
    not a storage failure. ``damaged``: what to do when the file is damaged (default:
    restore it from a backup or move it aside)."""
    if isinstance(exc, StorageError):
        return exc
    kind = kind_of(exc)
    if kind is None:
        return None
    path = Path(path)
    detail = getattr(exc, "strerror", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    if kind in (UNAVAILABLE, NOT_A_DIRECTORY) and (blocker := not_a_directory(path.parent)) is not None:
        kind, path = NOT_A_DIRECTORY, blocker
    if kind == UNAVAILABLE and path.parent.is_dir() and not os.access(path.parent, os.W_OK):
        kind = READ_ONLY
    if kind == DAMAGED:
        what = "not a SQLite database" if "not a database" in detail else detail
        message = f"{path} is damaged ({what}): {damaged or 'restore it from a backup or move it aside'}"
    elif kind == READ_ONLY:
        message = f"cannot write {path} (read-only: {detail}): make {path.parent} writable, or use --home DIR"
    elif kind == FULL:
        message = f"{path}: disk full ({detail}): free space and run again"
    elif kind == NOT_A_DIRECTORY:
        message = f"{path} is a file, not a directory: use --home DIR (a directory)"
    elif kind == BUSY:
        message = f"{path} is locked by another process ({detail}): wait for it to finish and run again"
    else:
        message = f"{path}: {detail}: check the disk and its permissions, and run again"
    return StorageError(message, path=path, kind=kind)


def ensure_dir(path: Path) -> Path:
    """``mkdir -p``, with a one-line :class:`StorageError` for a file in the way, a
    read-only parent or a full disk."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, path) from None
    return path


def move_aside(path: Path, *, companions: tuple[str, ...] = ()) -> Path:
    """Rename a damaged ``path`` to ``<path>.damaged-<UTC timestamp>`` (with its companion
    files, e.g. SQLite's ``-wal`` and ``-shm``, renamed alike so the set stays openable).
    Returns the new path. Nothing is deleted: the user may still want to inspect it."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    try:
        for suffix in companions:
            extra = path.with_name(path.name + suffix)
            if extra.exists():
                extra.rename(target.with_name(target.name + suffix))
        if path.exists():
            path.rename(target)
    except OSError as exc:
        raise storage_error(exc, path) from None
    return target
