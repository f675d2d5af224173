"""PostgreSQL behind :func:`memory.db.open_db`: a connection with sqlite3's surface.

The stores write SQL both engines accept (``ON CONFLICT ... DO NOTHING/UPDATE``, ``?``
parameters); what differs is handled here, in one place:

- parameters: ``?`` and ``:name`` become psycopg's ``%s`` and ``%(name)s`` (a literal ``%``
  becomes ``%%``), outside quoted strings;
- ``BEGIN IMMEDIATE`` (SQLite's write lock, which the ledger relies on for idempotent fills:
  check, then write, with no other writer in between) becomes ``BEGIN`` plus a
  transaction-scoped advisory lock that every such transaction takes: one writer at a
  time, as in SQLite, across every process sharing the database; ``memory.db.begin_write``
  with a scope (a portfolio) lets writers of different portfolios run side by side;
- rows are readable by name and by index, and ``dict(row)`` works (as ``sqlite3.Row``);
  ``numeric`` results (``AVG`` of an integer column) load as float, Python bools are sent
  as integers (SQLite's 0/1 columns);
- migrations: a ``schema_version`` table, applied in one transaction under
  ``pg_advisory_xact_lock`` so two processes racing to migrate are safe;
- failures: the server down, authentication refused, the disk full, a read-only server
  are one-line :class:`~graph.errors.StorageError`\\ s naming the URL without its password.

Connections are autocommit (a transaction is an explicit ``BEGIN`` ... ``COMMIT``, as with
``sqlite3``'s ``isolation_level=None``), pooled per process; nested :func:`open_pg` in one
thread shares the outer connection and so its transaction, like the SQLite per-thread pool.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import TransactionStatus
from psycopg.types.numeric import FloatLoader

from graph.errors import StorageError
from memory.db import DatabaseURL, redact
from memory.schema import MIGRATIONS
from memory.schema_pg import PG_MIGRATIONS
from memory.storage import BUSY, DAMAGED, FULL, READ_ONLY, UNAVAILABLE


def advisory_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for ``name`` (stable across processes and hosts)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


WRITE_LOCK = advisory_key("volt:write")  # BEGIN IMMEDIATE: one writer at a time
MIGRATE_LOCK = advisory_key("volt:migrate")
CONNECT_TIMEOUT_S = 10
LOCK_TIMEOUT_S = 30  # as SQLite's busy timeout: a writer waits this long, then a "busy" StorageError
MAX_IDLE = 8  # idle connections kept per URL per process


def all_migrations() -> list[str]:
    """PostgreSQL's migrations: its own DDL for 1-4, the shared SQL from 5 on."""
    return [*PG_MIGRATIONS, *MIGRATIONS[len(PG_MIGRATIONS):]]


# ------------------------------------------------------------------------------- rows, SQL


class Row(tuple):
    """A result row readable by index and by column name, like ``sqlite3.Row``."""

    def __new__(cls, values, index: dict[str, int]):
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key):
        if isinstance(key, str):
            try:
                key = self._index[key]
            except KeyError:
                raise IndexError(f"no column named {key!r}") from None
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: psycopg.Cursor):
    index: dict[str, int] = {}
    for i, column in enumerate(cursor.description or ()):
        index.setdefault(column.name, i)  # a repeated name reads the first, as sqlite3.Row
    return lambda values: Row(values, index)


class _BoolAsInt(Dumper):
    """SQLite stores Python bools as 0/1 in INTEGER columns; so does this (int8)."""

    oid = psycopg.postgres.types["int8"].oid

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|::|\?|:[A-Za-z_]\w*|%")


def _token(match: re.Match) -> str:
    text = match.group()
    if text[0] in "'\"":
        return text.replace("%", "%%")
    if text == "::":
        return text
    if text == "?":
        return "%s"
    if text == "%":
        return "%%"
    return f"%({text[1:]})s"


@lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """sqlite3's parameter style (``?``, ``:name``) in psycopg's (``%s``, ``%(name)s``)."""
    return _TOKENS.sub(_token, sql)


def _is_begin_immediate(sql: str) -> bool:
    return " ".join(sql.split()).upper().rstrip(";") == "BEGIN IMMEDIATE"


class PgConnection:
    """The subset of ``sqlite3.Connection`` the stores use, over a psycopg connection."""

    def __init__(self, raw: psycopg.Connection, url: DatabaseURL):
        self.raw = raw
        self.url = url
        self.total_changes = 0  # rows inserted, updated or deleted through this wrapper

    def _count(self, cur: psycopg.Cursor) -> psycopg.Cursor:
        if cur.rowcount > 0 and (cur.statusmessage or "").startswith(("INSERT", "UPDATE", "DELETE")):
            self.total_changes += cur.rowcount
        return cur

    def execute(self, sql: str, params: Any = ()) -> psycopg.Cursor:
        if _is_begin_immediate(sql):
            return self.begin_write(None)
        cur = self.raw.cursor()
        cur.execute(translate(sql), params if isinstance(params, dict) else tuple(params))
        return self._count(cur)

    def executemany(self, sql: str, rows) -> psycopg.Cursor:
        """``rowcount`` afterwards is the total over all rows (as sqlite3's)."""
        cur = self.raw.cursor()
        cur.executemany(translate(sql), [r if isinstance(r, dict) else tuple(r) for r in rows])
        return self._count(cur)

    def begin_write(self, scope: str | None = None) -> psycopg.Cursor:
        """BEGIN, then the writers' advisory locks (released at COMMIT/ROLLBACK, or when the
        session dies): unscoped, :data:`WRITE_LOCK` exclusively (one writer at a time, as
        SQLite); scoped, ``WRITE_LOCK`` shared then the scope's own lock exclusively. Always
        in that order, so two writers never wait on each other in a cycle."""
        cur = self.raw.cursor()
        cur.execute("BEGIN")
        if scope is None:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        else:
            cur.execute("SELECT pg_advisory_xact_lock_shared(%s), pg_advisory_xact_lock(%s)",
                        (WRITE_LOCK, advisory_key(f"volt:write:{scope}")))
        return cur

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def __enter__(self) -> PgConnection:
        return self

    def __exit__(self, *exc: object) -> None:  # as sqlite3's: end the transaction, keep the connection
        if not (self.raw.closed or self.raw.broken) and self.in_transaction:
            self.raw.execute("ROLLBACK" if exc[0] else "COMMIT")

    def close(self) -> None:
        self.raw.close()


# ------------------------------------------------------------------------------ errors

_STATE_KINDS = (  # SQLSTATE (or its class) -> storage-failure kind
    ("53100", FULL), ("25006", READ_ONLY), ("42501", READ_ONLY), ("40P01", BUSY), ("55P03", BUSY),
    ("53300", BUSY), ("XX001", DAMAGED), ("XX002", DAMAGED), ("08", UNAVAILABLE), ("28", UNAVAILABLE),
    ("3D000", UNAVAILABLE), ("53", FULL), ("57", UNAVAILABLE), ("58", UNAVAILABLE),
)
_ADVICE = {
    FULL: "free space on the database server and run again",
    READ_ONLY: "the server or role refuses writes: use a writable primary and a role that may write",
    BUSY: "another process holds the lock: wait for it to finish and run again",
    DAMAGED: "the server reports damaged data: restore the database from a backup",
    UNAVAILABLE: "check that the server is running and the URL (host, port, user, password, database)",
}


def storage_error(exc: BaseException, url: DatabaseURL) -> StorageError | None:
    """The one-line :class:`StorageError` for a psycopg failure on ``url`` (named without
    its password), or None when ``exc`` is not a storage failure (a SQL bug: a traceback)."""
    if isinstance(exc, StorageError):
        return exc
    if not isinstance(exc, psycopg.Error):
        return None
    state = getattr(exc, "sqlstate", None) or ""
    kind = next((k for prefix, k in _STATE_KINDS if state.startswith(prefix)), None)
    if kind is None and isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and not state:
        kind = UNAVAILABLE  # no SQLSTATE: the connection failed or was lost
    if kind is None:
        return None
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = redact(lines[0] if lines else type(exc).__name__)
    if url.url in detail:
        detail = detail.replace(url.url, url.redacted)
    return StorageError(f"{url.redacted}: {detail}: {_ADVICE[kind]}", path=url, kind=kind)


# ------------------------------------------------------------------------- connections


def connect(url: DatabaseURL) -> psycopg.Connection:
    """A new autocommit connection with VOLT's row and type adaptation (not migrated)."""
    extra = {} if "connect_timeout" in url.url else {"connect_timeout": CONNECT_TIMEOUT_S}
    raw = psycopg.connect(url.url, autocommit=True, row_factory=_row_factory, **extra)
    raw.adapters.register_loader("numeric", FloatLoader)
    raw.adapters.register_dumper(bool, _BoolAsInt)
    raw.execute(f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'")
    return raw


def schema_version(raw: psycopg.Connection) -> int:
    if raw.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0]:
        row = raw.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0]) if row else 0
    return 0


def migrate(raw: psycopg.Connection) -> int:
    """Bring the schema up to date in one transaction under an advisory lock; returns the
    version. A process that waited for another's migration finds nothing left to do."""
    migrations = all_migrations()
    if schema_version(raw) >= len(migrations):
        return len(migrations)
    raw.execute("BEGIN")
    try:
        raw.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        raw.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        version = schema_version(raw)
        if raw.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 0:
            raw.execute("INSERT INTO schema_version(version) VALUES (0)")
        for number in range(version, len(migrations)):
            for statement in migrations[number].split(";"):
                if statement.strip():
                    raw.execute(statement)
            raw.execute("UPDATE schema_version SET version = %s", (number + 1,))
        raw.execute("COMMIT")
    except BaseException:
        with suppress(psycopg.Error):
            raw.execute("ROLLBACK")
        raise
    return len(migrations)


def has_schema(url: DatabaseURL) -> bool:
    """True when the database holds VOLT's tables; a :class:`StorageError` when unreachable."""
    try:
        with connect(url) as raw:
            return schema_version(raw) > 0
    except psycopg.Error as exc:
        raise (storage_error(exc, url) or exc) from None


_pool_lock = threading.Lock()
_idle: dict[str, list[psycopg.Connection]] = {}
_migrated: set[str] = set()
_abandoned: list = []  # a forked child must not close its parent's sockets (that ends their sessions)
_local = threading.local()


def _after_fork() -> None:
    global _pool_lock
    _pool_lock = threading.Lock()
    _abandoned.extend(_idle.values())
    _abandoned.extend(getattr(_local, "held", {}).values())
    _idle.clear()
    _local.__dict__.clear()


os.register_at_fork(after_in_child=_after_fork)


def _borrow(url: DatabaseURL) -> PgConnection:
    with _pool_lock:
        idle = _idle.get(url.url, [])
        while idle:
            raw = idle.pop()
            if not (raw.closed or raw.broken):
                return PgConnection(raw, url)
    raw = connect(url)
    try:
        if url.url not in _migrated:
            migrate(raw)
            with _pool_lock:
                _migrated.add(url.url)
    except BaseException:
        raw.close()
        raise
    return PgConnection(raw, url)


def _give_back(conn: PgConnection) -> None:
    raw = conn.raw
    if raw.closed or raw.broken or conn.in_transaction:
        with suppress(Exception):
            raw.close()
        return
    with _pool_lock:
        idle = _idle.setdefault(conn.url.url, [])
        if len(idle) < MAX_IDLE:
            idle.append(raw)
            return
    raw.close()


@contextmanager
def open_pg(url: DatabaseURL) -> Iterator[PgConnection]:
    """A migrated connection for the ``with`` block (see :func:`memory.db.open_db`)."""
    held: dict[str, PgConnection] = _local.__dict__.setdefault("held", {})
    outer = held.get(url.url)
    if outer is not None:  # nested in this thread: the same connection and transaction
        yield outer
        return
    try:
        conn = _borrow(url)
    except psycopg.Error as exc:
        raise (storage_error(exc, url) or exc) from None
    held[url.url] = conn
    try:
        yield conn
    except psycopg.Error as exc:
        error = storage_error(exc, url)
        if error is None:
            raise
        raise error from exc
    finally:
        del held[url.url]
        if not (conn.raw.closed or conn.raw.broken) and conn.in_transaction:
            with suppress(psycopg.Error):
                conn.raw.execute("ROLLBACK")
        _give_back(conn)


def close_pool() -> None:
    """Close this process's idle connections (tests dropping a database; a process exiting)."""
    with _pool_lock:
        pools = list(_idle.values())
        _idle.clear()
        _migrated.clear()
    for idle in pools:
        for raw in idle:
            with suppress(Exception):
                raw.close()
