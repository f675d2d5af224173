"""``$VOLT_HOME/ops.db``: operational state that must outlive a restart (breakers, alerts).

A small SQLite file of its own (not ``volt.db``): the trading ledger's migrations stay
independent of it, and a damaged ``ops.db`` can be moved aside without touching money.
The schema version is ``PRAGMA user_version``; each entry of :data:`MIGRATIONS` moves it
up by one. One connection per file per process, shared by threads behind a lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from memory.storage import ensure_dir, storage_error

OPS_FILE = "ops.db"

MIGRATIONS = [
    # 1: breakers (pybreaker's storage fields, plus the probe lease) and alerts
    """
    CREATE TABLE breakers (
        name TEXT PRIMARY KEY,             -- kind:target, e.g. model:qwen2.5-coder:7b
        kind TEXT NOT NULL,                -- model, endpoint
        target TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'closed',
        fail_counter INTEGER NOT NULL DEFAULT 0,
        success_counter INTEGER NOT NULL DEFAULT 0,
        opened_at REAL,                    -- unix seconds
        probe_until REAL,                  -- unix seconds: a half-open probe holds the lease
        last_error TEXT,
        updated_at REAL NOT NULL
    );
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at REAL NOT NULL,          -- unix seconds
        kind TEXT NOT NULL,                -- breaker_open, all_models_failed, halt, ...
        message TEXT NOT NULL,
        details TEXT NOT NULL,             -- JSON object
        delivery TEXT NOT NULL             -- stored (no webhook), pending, delivered, failed
    );
    """,
]

_lock = threading.Lock()
_conns: dict[str, tuple[sqlite3.Connection, threading.Lock]] = {}


def ops_path(home: Path) -> Path:
    return Path(home) / OPS_FILE


def _open(path: Path) -> sqlite3.Connection:
    ensure_dir(path.parent)
    conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # another process may have migrated meanwhile: re-read under the write lock
            if conn.execute("PRAGMA user_version").fetchone()[0] >= number:
                conn.execute("COMMIT")
                continue
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return conn


@contextmanager
def ops_db(home: Path) -> Iterator[sqlite3.Connection]:
    """The process's connection to ``home/ops.db`` (created and migrated on first use),
    held exclusively for the ``with`` block. Storage failures raise a one-line
    :class:`~graph.errors.StorageError`."""
    path = ops_path(home)
    key = str(path.resolve())
    with _lock:
        entry = _conns.get(key)
        if entry is None:
            try:
                entry = (_open(path), threading.Lock())
            except (sqlite3.Error, OSError) as exc:
                raise (storage_error(exc, path) or exc) from None
            _conns[key] = entry
    conn, conn_lock = entry
    with conn_lock:
        try:
            yield conn
        except sqlite3.Error as exc:
            raise (storage_error(exc, path) or exc) from None


def close_all() -> None:
    """Close every cached connection (tests; a process about to exit)."""
    with _lock:
        for conn, _ in _conns.values():
            conn.close()
        _conns.clear()
