"""One run per portfolio at a time: an exclusive, non-blocking file lock, or on PostgreSQL
(``VOLT_DATABASE_URL``) a session advisory lock, so that workers on different machines
sharing one database never run the same portfolio at once.

Either way the lock dies with its holder: the OS releases a dead process's file lock, and
the server releases a session's advisory locks when its connection drops (a killed worker's
socket is closed by its kernel), so a crash never leaves a portfolio stuck.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from graph.errors import PortfolioBusyError
from memory.db import DatabaseURL, require_postgres
from memory.storage import ensure_dir, storage_error

HOLDER_PREFIX = "volt-lock "  # application_name of a lock's session: who holds it


def _busy(portfolio: str, holder: str) -> PortfolioBusyError:
    return PortfolioBusyError(
        f"portfolio '{portfolio}' is in use by another run (pid {holder}); "
        "wait for it to finish or use --portfolio NAME"
    )


@contextmanager
def portfolio_lock(home: Path, portfolio: str, database: Path | DatabaseURL | None = None) -> Iterator[None]:
    """Hold ``portfolio``'s lock for the ``with`` block, or raise :class:`PortfolioBusyError`
    at once. ``database``: a :class:`DatabaseURL` takes the lock on that server (shared by
    every worker using it); anything else uses ``home/locks/<portfolio>.lock``."""
    if isinstance(database, DatabaseURL):
        require_postgres(database)
        with _advisory_lock(database, portfolio):
            yield
        return
    lock_dir = ensure_dir(Path(home) / "locks")  # a file in the way, read-only: one line
    path = lock_dir / f"{portfolio}.lock"
    try:
        handle = open(path, "a+")  # noqa: SIM115 - held for the whole run
    except OSError as exc:
        raise storage_error(exc, path) from None
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise _busy(portfolio, holder) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
        except OSError as exc:  # a full disk
            raise storage_error(exc, path) from None
        yield
    finally:
        handle.close()


def advisory_holder(url: DatabaseURL, portfolio: str, conn=None) -> str | None:
    """Who holds ``portfolio``'s lock on ``url`` ("<pid> on <host>", or "unknown"), or None
    when nobody does. Only reads (``pg_locks``)."""
    import psycopg

    from memory.pg import advisory_key

    key = advisory_key(f"volt:portfolio:{portfolio}")
    own = conn is None
    if own:
        conn = psycopg.connect(url.url, autocommit=True, connect_timeout=10)
    try:
        row = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database"
            " WHERE datname = current_database()) AND l.objsubid = 1 AND l.classid::bigint = %s"
            " AND l.objid::bigint = %s", ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)).fetchone()
    finally:
        if own:
            conn.close()
    if row is None:
        return None
    name = row[0] or ""
    return name[len(HOLDER_PREFIX):] if name.startswith(HOLDER_PREFIX) else "unknown"


@contextmanager
def _advisory_lock(url: DatabaseURL, portfolio: str) -> Iterator[None]:
    """``pg_try_advisory_lock`` on a connection of its own, held (idle) for the run. The
    session's ``application_name`` says which host and pid hold it, for the busy message."""
    import psycopg

    from memory.pg import CONNECT_TIMEOUT_S, advisory_key
    from memory.pg import storage_error as pg_error

    key = advisory_key(f"volt:portfolio:{portfolio}")
    me = f"{os.getpid()} on {socket.gethostname()}"
    extra = {} if "connect_timeout" in url.url else {"connect_timeout": CONNECT_TIMEOUT_S}
    try:
        conn = psycopg.connect(url.url, autocommit=True, application_name=(HOLDER_PREFIX + me)[:63], **extra)
    except psycopg.Error as exc:
        raise (pg_error(exc, url) or exc) from None
    try:
        try:
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
            if not got:
                raise _busy(portfolio, advisory_holder(url, portfolio, conn) or "unknown")
        except psycopg.Error as exc:
            raise (pg_error(exc, url) or exc) from None
        yield
    finally:
        with suppress(psycopg.Error):
            conn.close()  # ends the session: the server releases the lock
