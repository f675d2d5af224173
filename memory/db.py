"""Connection and schema for the ledger database: ``$VOLT_HOME/volt.db`` (SQLite, the
default) or a PostgreSQL database named by ``VOLT_DATABASE_URL``.

Migrations (:mod:`memory.schema`) are numbered and applied in order on open, tracked by
``PRAGMA user_version``, so a newer VOLT upgrades an older file in place and nothing is lost.
On PostgreSQL (:mod:`memory.pg`) the same numbering is tracked in a ``schema_version`` table;
migrations 1-4 have their own DDL there (:mod:`memory.schema_pg`), 5 and later run as written.

A store takes a *target*: a :class:`~pathlib.Path` (SQLite) or a :class:`DatabaseURL`
(PostgreSQL); :func:`open_db` gives a connection with sqlite3's surface for either.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from graph.errors import StorageError
from memory.schema import MIGRATIONS  # read as memory.db.MIGRATIONS (tests patch it there)
from memory.storage import ensure_dir, storage_error

LEDGER_DAMAGED = "restore it from a backup, or move it aside to start a new ledger"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class DatabaseURL:
    """A PostgreSQL database named by URL, standing where a SQLite file's Path would
    (``settings.ledger_path``, ``Ledger(...)``). ``str()`` is the URL WITHOUT its password,
    so it is safe in messages and logs; :attr:`url` is the full one, for connecting."""

    __slots__ = ("url", "redacted")

    def __init__(self, url: str):
        url = str(url).strip()
        if not url.lower().startswith(POSTGRES_SCHEMES):
            raise ValueError(f"not a PostgreSQL URL (postgresql://user:password@host:port/db): {redact(url)}")
        self.url = url
        self.redacted = redact(url)

    def __str__(self) -> str:
        return self.redacted

    def __repr__(self) -> str:
        return f"DatabaseURL({self.redacted!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DatabaseURL) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def exists(self) -> bool:
        """True when the database holds VOLT's tables (what ``volt.db`` existing means).
        An unreachable server is a :class:`StorageError`, not False."""
        require_postgres(self)
        from memory.pg import has_schema

        return has_schema(self)

    is_file = exists


def redact(url: str) -> str:
    """``url`` with its password (in the authority or a ``password=`` parameter) as ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = re.sub(r"(?i)(^|&)(password)=[^&]*", r"\1\2=***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def require_postgres(url: DatabaseURL) -> None:
    """A one-line :class:`StorageError` when the ``postgres`` extra (psycopg, langgraph's
    Postgres checkpointer) is not installed but ``url`` asks for PostgreSQL."""
    try:
        import langgraph.checkpoint.postgres  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise StorageError(f"{url}: PostgreSQL needs the extra 'postgres' ({exc.name} is missing): "
                           "pip install -e '.[postgres]'", path=url, kind="unavailable") from None


def as_target(value: Path | str | DatabaseURL) -> Path | DatabaseURL:
    """A store's target: a :class:`DatabaseURL` for a ``postgresql://`` URL, else a Path."""
    if isinstance(value, DatabaseURL):
        return value
    if isinstance(value, str) and value.lower().startswith(POSTGRES_SCHEMES):
        return DatabaseURL(value)
    return Path(value)


def begin_write(conn, scope: str | None = None) -> None:
    """Start a write transaction that no other writer interleaves with: SQLite's ``BEGIN
    IMMEDIATE`` (the file's one write lock). On PostgreSQL (:meth:`memory.pg.PgConnection.
    begin_write`) ``scope`` (a portfolio) narrows it: writers of other portfolios go on, those
    of the same portfolio and every unscoped writer wait. A store checks-then-writes inside it
    (a fill exactly once per order id)."""
    if isinstance(conn, sqlite3.Connection):
        conn.execute("BEGIN IMMEDIATE")
    else:
        conn.begin_write(scope)


def utc_stamp() -> str:
    """Now in UTC as SQLite's ``strftime('%Y-%m-%dT%H:%M:%fZ','now')`` writes it
    (milliseconds): for timestamps a writer sets in SQL both engines accept."""
    now = datetime.now(UTC)
    return f"{now:%Y-%m-%dT%H:%M:%S}.{now.microsecond // 1000:03d}Z"


def connect(path: Path) -> sqlite3.Connection:
    """Open (and migrate) the database. Callers use :func:`open_db`, which reuses it.

    A damaged, read-only or unreachable file, or a full disk, is a one-line
    :class:`~graph.errors.StorageError` naming the file; a damaged file is refused before
    anything is written to it (``PRAGMA quick_check``, once per file per process)."""
    ensure_dir(path.parent)
    conn = None
    try:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        return _prepare(conn, path)
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        error = storage_error(exc, path, damaged=LEDGER_DAMAGED)
        if error is None:
            raise
        raise error from exc


_checked: set[tuple] = set()
_checked_lock = threading.Lock()


def verify(conn: sqlite3.Connection, path: Path, *, damaged: str = LEDGER_DAMAGED) -> None:
    """Refuse a damaged SQLite file: ``PRAGMA quick_check`` (about 3 ms per MB), once per
    file (device, inode) per process."""
    try:
        st = os.stat(path)
        ident = (str(Path(path).resolve()), st.st_dev, st.st_ino)
    except OSError:
        return  # a file still to be created
    with _checked_lock:
        if ident in _checked:
            return
    result = conn.execute("PRAGMA quick_check").fetchone()[0]
    if result != "ok":
        raise StorageError(f"{path} is damaged ({str(result).splitlines()[0]}): {damaged}",
                           path=Path(path), kind="damaged")
    with _checked_lock:
        _checked.add(ident)


def _set_wal(conn: sqlite3.Connection, wait_s: float = 30.0) -> None:
    """``PRAGMA journal_mode=WAL``, retried for ``wait_s`` seconds: the switch needs the file
    to itself and answers "database is locked" at once, without SQLite's busy wait, when
    another process (a second worker starting on the same new home) has it open."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _prepare(conn: sqlite3.Connection, path: Path) -> sqlite3.Connection:
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys=ON")
    # WAL + NORMAL: a committed transaction survives a killed process; only an OS crash
    # can lose the last commits.
    conn.execute("PRAGMA synchronous=NORMAL")
    verify(conn, path)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version < len(MIGRATIONS):
        _set_wal(conn)  # persistent: set once, when the file is new
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for number in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return conn


_local = threading.local()


@contextmanager
def open_db(path: Path | DatabaseURL) -> Iterator[sqlite3.Connection]:
    """A migrated connection in autocommit mode, reused by this thread for this file.

    Reuse matters: closing the last connection to a WAL database checkpoints the WAL, which
    cost about 0.6 ms per open/close, sixty times a cycle. A transaction the caller left
    open (an exception between BEGIN and COMMIT) is rolled back on exit, as a close would.
    A connection whose file was deleted or replaced is reopened.

    For a :class:`DatabaseURL` the connection is :class:`memory.pg.PgConnection`, with the
    same surface (``?`` and ``:name`` parameters, rows by name and index, ``BEGIN
    IMMEDIATE`` as one writer at a time), borrowed from a small per-process pool.
    """
    if isinstance(path, DatabaseURL):
        require_postgres(path)
        from memory.pg import open_pg

        with open_pg(path) as conn:
            yield conn
        return
    key = str(Path(path).resolve())
    pool: dict[str, tuple[sqlite3.Connection, tuple]] = _local.__dict__.setdefault("pool", {})
    conn, ident = pool.get(key, (None, None))
    try:
        st = os.stat(key)
        current = (st.st_dev, st.st_ino, len(MIGRATIONS))  # same file, same schema code
    except OSError:  # not there yet (or a file in the way: connect says so)
        current = None
    if conn is None or ident != current:
        if conn is not None:
            conn.close()
        conn = connect(Path(path))
        st = os.stat(key)
        pool[key] = (conn, (st.st_dev, st.st_ino, len(MIGRATIONS)))
    try:
        yield conn
    except sqlite3.Error as exc:
        # a damaged page, a full disk or a read-only file met mid-query: one line naming the file
        error = storage_error(exc, Path(path), damaged=LEDGER_DAMAGED)
        if error is None:
            raise
        raise error from exc
    finally:
        if conn.in_transaction:
            # SQLite may have rolled back already (e.g. after SQLITE_FULL): nothing was committed
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
