"""SQLite connection and schema for the ledger database (``$VOLT_HOME/volt.db``).

Migrations are numbered and applied in order on open, tracked by ``PRAGMA user_version``,
so a newer VOLT upgrades an older file in place and nothing is lost.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MIGRATIONS: list[str] = [
    # 1: ledger, message log, weights
    """
    CREATE TABLE portfolios (
        id TEXT PRIMARY KEY,
        starting_cash REAL NOT NULL,
        cash REAL NOT NULL,
        peak_equity REAL NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    CREATE TABLE positions (
        portfolio TEXT NOT NULL REFERENCES portfolios(id),
        symbol TEXT NOT NULL,
        qty REAL NOT NULL,
        avg_cost REAL NOT NULL,
        PRIMARY KEY (portfolio, symbol)
    );
    CREATE TABLE orders (
        order_id TEXT PRIMARY KEY,          -- portfolio:as_of:symbol, the idempotency key
        portfolio TEXT NOT NULL,
        as_of TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        qty_requested REAL NOT NULL,
        status TEXT NOT NULL,               -- FILLED or UNFILLED
        reason TEXT,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    CREATE TABLE fills (
        order_id TEXT PRIMARY KEY REFERENCES orders(order_id),
        portfolio TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        qty REAL NOT NULL,
        reference_price REAL NOT NULL,
        price REAL NOT NULL,
        slippage_pct REAL NOT NULL,
        fee REAL NOT NULL,
        realized_pnl REAL NOT NULL,
        fill_date TEXT NOT NULL,
        latency_ms REAL NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    CREATE INDEX fills_by_symbol ON fills(portfolio, symbol, fill_date);
    CREATE TABLE cycles (
        portfolio TEXT NOT NULL,
        as_of TEXT NOT NULL,
        equity REAL NOT NULL,
        cash REAL NOT NULL,
        reward REAL NOT NULL,
        completed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        PRIMARY KEY (portfolio, as_of)
    );
    CREATE TABLE agent_messages (
        message_id TEXT PRIMARY KEY,
        cycle_id TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        from_agent TEXT NOT NULL,
        to_agent TEXT NOT NULL,
        message_type TEXT NOT NULL,
        priority TEXT NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX agent_messages_by_cycle ON agent_messages(cycle_id);
    CREATE TABLE agent_weights (
        agent TEXT PRIMARY KEY,
        weight REAL NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    """,
]


def connect(path: Path) -> sqlite3.Connection:
    """Open (and migrate) the database. One short-lived connection per unit of work."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys=ON")
    # WAL + NORMAL: a committed transaction survives a killed process; only an OS crash
    # can lose the last commits.
    conn.execute("PRAGMA synchronous=NORMAL")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version < len(MIGRATIONS):
        conn.execute("PRAGMA journal_mode=WAL")  # persistent: set once, when the file is new
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
            conn.execute("ROLLBACK")
            raise
    return conn


@contextmanager
def open_db(path: Path) -> Iterator[sqlite3.Connection]:
    """A migrated connection in autocommit mode, closed on exit."""
    conn = connect(Path(path))
    try:
        yield conn
    finally:
        conn.close()
