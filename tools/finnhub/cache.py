"""The Finnhub response cache: parsed JSON bodies in SQLite (its own file), TTL per read.

The key is the endpoint and its parameters (:func:`cache_key`), never the API key. A row
older than ``keep_s`` (two days by default; no TTL is longer than a day) is dropped when the
cache opens. Thread-safe: one connection behind a lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

KEEP_S = 2 * 86400.0


class ResponseCache:
    """Parsed JSON responses in SQLite, keyed by endpoint and parameters, with a TTL on read."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time, keep_s: float = KEEP_S):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS responses ("
            " key TEXT PRIMARY KEY, endpoint TEXT NOT NULL, fetched_at REAL NOT NULL, body TEXT NOT NULL)"
        )
        # Nothing lives longer than a day; drop what no TTL can serve any more.
        self._conn.execute("DELETE FROM responses WHERE fetched_at < ?", (self._clock() - keep_s,))

    def get(self, key: str, ttl_s: float) -> tuple[bool, Any]:
        """``(True, body)`` when ``key`` was stored less than ``ttl_s`` seconds ago (on the
        clock), else ``(False, None)``; a row stamped in the future is a miss."""
        with self._lock:
            row = self._conn.execute("SELECT fetched_at, body FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return False, None
        age = self._clock() - row[0]
        if not 0 <= age < ttl_s:
            return False, None
        return True, json.loads(row[1])

    def put(self, key: str, endpoint: str, body: Any) -> None:
        data = json.dumps(body, separators=(",", ":"), sort_keys=True)
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO responses(key, endpoint, fetched_at, body) VALUES (?, ?, ?, ?)",
                (key, endpoint, self._clock(), data),
            )

    def clear(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM responses")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def cache_key(endpoint: str, params: dict[str, Any]) -> str:
    """``endpoint?sorted params``; ``None`` values are left out, as requests leaves them out."""
    return f"{endpoint}?{urlencode(sorted((k, v) for k, v in params.items() if v is not None))}"
