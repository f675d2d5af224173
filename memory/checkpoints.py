"""The cycle checkpointer (``$VOLT_HOME/checkpoints.db``), a cache of the ledger.

Checkpoints only let a killed cycle resume where it stopped: everything a cycle commits is
in the ledger too, and fills are idempotent per ``portfolio:as_of:symbol``. So a damaged
checkpoint file is not fatal: :func:`set_aside` moves it away and the caller restarts the
cycle from the ledger. Every SQLite failure of the saver names the file
(:class:`~graph.errors.StorageError`), and a checkpoint that cannot be decoded counts as
damage.

With ``VOLT_DATABASE_URL`` (a :class:`~memory.db.DatabaseURL`) the checkpoints live in that
PostgreSQL database (``langgraph-checkpoint-postgres``), where every worker sharing it can
resume a cycle another one started; its failures name the URL without its password.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver

from graph.errors import StorageError
from memory.db import DatabaseURL, require_postgres, verify
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


def open_saver(path: Path | DatabaseURL):
    """The saver on its own connection. WAL + synchronous=NORMAL: every checkpoint survives
    a killed process (what resuming needs) without an fsync per write. A damaged file is
    refused here (``PRAGMA quick_check``), before the cycle starts. A :class:`DatabaseURL`
    gives a ``PostgresSaver`` (:func:`open_postgres_saver`)."""
    if isinstance(path, DatabaseURL):
        require_postgres(path)
        return open_postgres_saver(path)
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


_pg_ready: set[str] = set()  # URLs whose checkpoint tables this process has set up


def open_postgres_saver(url: DatabaseURL):
    """``PostgresSaver`` on its own autocommit connection, its tables created or migrated
    (``.setup()``) once per process under a session advisory lock: its migrations include
    ``CREATE INDEX CONCURRENTLY`` (no transaction possible), and two workers starting at
    once must not both run them. Failures are one-line :class:`StorageError`\\ s."""
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    from memory.pg import CONNECT_TIMEOUT_S, advisory_key
    from memory.pg import storage_error as pg_error

    class GuardedPostgresSaver(PostgresSaver):
        """``PostgresSaver`` whose failures are one-line :class:`StorageError`\\ s naming the URL."""

        path = url

        @contextmanager
        def _cursor(self, *, pipeline: bool = False):
            try:
                with super()._cursor(pipeline=pipeline) as cur:
                    yield cur
            except psycopg.Error as exc:
                raise (pg_error(exc, url) or exc) from exc

    conn = None
    try:
        extra = {} if "connect_timeout" in url.url else {"connect_timeout": CONNECT_TIMEOUT_S}
        conn = psycopg.connect(url.url, autocommit=True, prepare_threshold=0, row_factory=dict_row, **extra)
        saver = GuardedPostgresSaver(conn)
        if url.url not in _pg_ready:
            key = advisory_key("volt:checkpoint-setup")
            # try, don't wait: a session waiting in pg_advisory_lock is a transaction, and the
            # holder's CREATE INDEX CONCURRENTLY waits for every transaction: a deadlock
            deadline = time.monotonic() + 60
            while not conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (key,)).fetchone()["ok"]:
                if time.monotonic() > deadline:
                    raise StorageError(f"{url}: another process has been setting up the checkpoint tables "
                                       "for 60 s: check the database and run again", path=url, kind="busy")
                time.sleep(0.1)
            try:
                saver.setup()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            _pg_ready.add(url.url)
        return saver
    except psycopg.Error as exc:
        if conn is not None:
            conn.close()
        raise (pg_error(exc, url) or exc) from None


def is_damage(exc: BaseException, path: Path | DatabaseURL) -> bool:
    """True when ``exc`` says the checkpoint file at ``path`` is damaged (never for a
    database URL: a server reports its own damage, and nothing is moved aside there)."""
    if isinstance(path, DatabaseURL):
        return False
    return (isinstance(exc, StorageError) and exc.kind == DAMAGED and exc.path is not None
            and Path(exc.path).resolve() == Path(path).resolve())


def set_aside(path: Path) -> Path:
    """Move a damaged checkpoint file (and its ``-wal``/``-shm``) aside; returns its new path."""
    return move_aside(path, companions=("-wal", "-shm"))
