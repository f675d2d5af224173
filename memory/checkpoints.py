"""The cycle checkpointer (``$VOLT_HOME/checkpoints.db``), a cache of the ledger.

Checkpoints only let a killed cycle resume where it stopped: everything a cycle commits is
in the ledger too, and fills are idempotent per ``portfolio:as_of:symbol``. So a damaged
checkpoint file is not fatal: :func:`set_aside` moves it away and the caller restarts the
cycle from the ledger. Every SQLite failure of the saver names the file
(:class:`~graph.errors.StorageError`), and a checkpoint that cannot be decoded counts as
damage.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver

from graph.errors import StorageError
from memory.db import verify
from memory.storage import DAMAGED, ensure_dir, move_aside, storage_error

CHECKPOINTS_DAMAGED = "it only caches the ledger: move it aside and run again"


class GuardedSaver(SqliteSaver):
    """``SqliteSaver`` whose failures are one-line :class:`StorageError`\\ s naming its file."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        super().__init__(conn)
        self.path = Path(path)

    def _error(self, exc: BaseException) -> BaseException:
        return storage_error(exc, self.path, damaged=CHECKPOINTS_DAMAGED) or exc

    @contextmanager
    def cursor(self, transaction: bool = True) -> Iterator[sqlite3.Cursor]:
        try:
            with super().cursor(transaction) as cur:
                yield cur
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def get_tuple(self, config):
        try:
            return super().get_tuple(config)
        except StorageError:
            raise
        except Exception as exc:  # the row is there but its blob does not decode
            raise StorageError(
                f"{self.path} is damaged (a checkpoint cannot be read: {type(exc).__name__}): "
                f"{CHECKPOINTS_DAMAGED}", path=self.path, kind=DAMAGED) from exc


def open_saver(path: Path) -> GuardedSaver:
    """The saver on its own connection. WAL + synchronous=NORMAL: every checkpoint survives
    a killed process (what resuming needs) without an fsync per write. A damaged file is
    refused here (``PRAGMA quick_check``), before the cycle starts."""
    path = Path(path)
    ensure_dir(path.parent)
    conn = None
    try:
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        verify(conn, path, damaged=CHECKPOINTS_DAMAGED)
    except (sqlite3.Error, StorageError) as exc:
        if conn is not None:
            conn.close()
        error = storage_error(exc, path, damaged=CHECKPOINTS_DAMAGED)
        if error is None:
            raise
        raise error from exc
    return GuardedSaver(conn, path)


def is_damage(exc: BaseException, path: Path) -> bool:
    """True when ``exc`` says the checkpoint file at ``path`` is damaged."""
    return (isinstance(exc, StorageError) and exc.kind == DAMAGED and exc.path is not None
            and Path(exc.path).resolve() == Path(path).resolve())


def set_aside(path: Path) -> Path:
    """Move a damaged checkpoint file (and its ``-wal``/``-shm``) aside; returns its new path."""
    return move_aside(path, companions=("-wal", "-shm"))
