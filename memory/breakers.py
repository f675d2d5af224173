"""Breakers that outlive a restart: :class:`tools.circuit.Breaker` over ``$VOLT_HOME/ops.db``.

One breaker per model spec (``model:<spec>``) and per Finnhub endpoint (``endpoint:<path>``).
Every read and write of a breaker's state goes to SQLite, so a restarted process (or a
second one on the same home) sees an open breaker as open until its cool-down has passed.
When a breaker opens from closed, one alert is raised (:mod:`memory.alerts`); a failed probe
re-opening it is a WARNING line, not another alert, so a dead dependency does not page every
cool-down.

Functions for the runner and the report: :func:`model_breaker`, :func:`endpoint_breakers`
(a factory for the Finnhub gateway), :func:`breaker_states`, :func:`open_breakers`,
:func:`reset_breaker`.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pybreaker

from graph.errors import StorageError
from graph.settings import VoltSettings
from memory.alerts import BREAKER_OPEN, raise_alert
from memory.ops_db import ops_db, ops_path
from tools.circuit import STATE_CLOSED, STATE_OPEN, Breaker, MemoryStorage

log = logging.getLogger("volt.breakers")

MODEL, ENDPOINT = "model", "endpoint"


class SqliteBreakerStorage(pybreaker.CircuitBreakerStorage):
    """pybreaker's storage interface over one row of ``ops.db``'s ``breakers`` table."""

    def __init__(self, home: Path, kind: str, target: str):
        super().__init__(f"{kind}:{target}")
        self.home = Path(home)
        with ops_db(self.home) as conn:
            conn.execute(
                "INSERT OR IGNORE INTO breakers(name, kind, target, updated_at) VALUES (?, ?, ?, ?)",
                (self.name, kind, target, time.time()),
            )

    def _get(self, column: str) -> Any:
        with ops_db(self.home) as conn:
            row = conn.execute(f"SELECT {column} FROM breakers WHERE name = ?", (self.name,)).fetchone()
        return row[0] if row is not None else None

    def _set(self, assignment: str, *args: Any) -> None:
        with ops_db(self.home) as conn:
            conn.execute(f"UPDATE breakers SET {assignment}, updated_at = ? WHERE name = ?",
                         (*args, time.time(), self.name))

    @property
    def state(self) -> str:
        return self._get("state") or STATE_CLOSED

    @state.setter
    def state(self, state: str) -> None:
        self._set("state = ?", str(state))

    def increment_counter(self) -> None:
        self._set("fail_counter = fail_counter + 1")

    def reset_counter(self) -> None:
        self._set("fail_counter = 0")

    def increment_success_counter(self) -> None:
        self._set("success_counter = success_counter + 1")

    def reset_success_counter(self) -> None:
        self._set("success_counter = 0")

    @property
    def counter(self) -> int:
        return int(self._get("fail_counter") or 0)

    @property
    def success_counter(self) -> int:
        return int(self._get("success_counter") or 0)

    @property
    def opened_at(self) -> datetime | None:
        value = self._get("opened_at")
        return datetime.fromtimestamp(value, UTC) if value is not None else None

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        self._set("opened_at = ?", value.timestamp())

    @property
    def probe_until(self) -> float | None:
        return self._get("probe_until")

    @probe_until.setter
    def probe_until(self, value: float | None) -> None:
        self._set("probe_until = ?", value)

    def set_last_error(self, text: str) -> None:
        self._set("last_error = ?", text[:300])


class _Notify(pybreaker.CircuitBreakerListener):
    """Alert once when a breaker opens from closed; log the other transitions."""

    def __init__(self, home: Path):
        self.home = home

    def failure(self, cb: pybreaker.CircuitBreaker, exc: BaseException) -> None:
        storage = cb._state_storage  # our own storage: remember why, for the report
        if isinstance(storage, SqliteBreakerStorage):
            storage.set_last_error(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        old = getattr(old_state, "name", None)
        new = getattr(new_state, "name", None)
        if new == STATE_OPEN and old == STATE_CLOSED:
            message = (f"breaker {cb.name} opened after {cb.fail_counter} failures in a row: "
                       f"not called for {cb.reset_timeout:.0f}s, then one probe")
            raise_alert(self.home, BREAKER_OPEN, message,
                        {"breaker": cb.name, "failures": cb.fail_counter, "reset_s": cb.reset_timeout,
                         "last_error": _last_error(cb)})
        elif new == STATE_OPEN:
            log.warning("breaker %s: the probe failed; open for another %.0fs", cb.name, cb.reset_timeout)
        elif new == STATE_CLOSED and old is not None:
            log.info("breaker %s closed: the probe succeeded", cb.name)
        elif new is not None and old is not None:
            log.info("breaker %s %s: letting one probe through", cb.name, new)


def _last_error(cb: pybreaker.CircuitBreaker) -> str | None:
    storage = cb._state_storage
    return storage._get("last_error") if isinstance(storage, SqliteBreakerStorage) else None


_registry: dict[tuple[str, str], Breaker] = {}
_registry_lock = threading.Lock()
_warned: set[str] = set()


def get_breaker(home: Path, kind: str, target: str, *, fail_max: int, reset_s: float,
                counts: Callable[[BaseException], bool] | None = None) -> Breaker:
    """The process's breaker for ``kind:target`` in ``home`` (its state in ``ops.db``).

    When ``ops.db`` cannot be used (read-only home, damaged file) the breaker still works,
    in memory for this process, after one WARNING line."""
    name = f"{kind}:{target}"
    key = (str(ops_path(home).resolve()), name)
    with _registry_lock:
        breaker = _registry.get(key)
        if breaker is None:
            try:
                storage: pybreaker.CircuitBreakerStorage = SqliteBreakerStorage(home, kind, target)
            except (StorageError, sqlite3.Error, OSError) as exc:
                if key[0] not in _warned:
                    _warned.add(key[0])
                    log.warning("breaker state kept in memory only (%s)", exc)
                storage = MemoryStorage()
            breaker = Breaker(name, fail_max=fail_max, reset_s=reset_s, storage=storage,
                              listeners=[_Notify(Path(home))], counts=counts)
            _registry[key] = breaker
        # settings may differ between runs in one process (tests, the backtest): follow them
        breaker.fail_max, breaker.reset_timeout = fail_max, reset_s
        return breaker


def model_breaker(settings: VoltSettings, spec: str) -> Breaker:
    """The breaker of one model spec (``settings.breaker_fail_max``, ``breaker_reset_s``)."""
    return get_breaker(settings.home, MODEL, spec, fail_max=settings.breaker_fail_max,
                       reset_s=settings.breaker_reset_s)


def endpoint_breakers(settings: VoltSettings, counts: Callable[[BaseException], bool] | None = None
                      ) -> Callable[[str], Breaker]:
    """``endpoint -> Breaker`` for ``FinnhubGateway(breaker_for=...)``, persisted in ``ops.db``."""

    def get(endpoint: str) -> Breaker:
        return get_breaker(settings.home, ENDPOINT, endpoint, fail_max=settings.breaker_fail_max,
                           reset_s=settings.breaker_reset_s, counts=counts)

    return get


def breaker_states(home: Path) -> list[dict]:
    """Every breaker recorded in ``home/ops.db``: name, kind, target, state, failures,
    opened_at and updated_at (unix s), last_error. Empty when there is no ``ops.db``."""
    if not ops_path(home).exists():
        return []
    with ops_db(home) as conn:
        rows = conn.execute(
            "SELECT name, kind, target, state, fail_counter AS failures, opened_at, updated_at, last_error"
            " FROM breakers ORDER BY name").fetchall()
    return [dict(r) for r in rows]


def open_breakers(home: Path) -> list[dict]:
    """The breakers that are not closed (open or half-open), from :func:`breaker_states`."""
    return [b for b in breaker_states(home) if b["state"] != STATE_CLOSED]


def reset_breaker(home: Path, name: str) -> bool:
    """Close one breaker by name (an operator who fixed the dependency); True if it existed."""
    with ops_db(home) as conn:
        changed = conn.execute(
            "UPDATE breakers SET state = 'closed', fail_counter = 0, success_counter = 0, opened_at = NULL,"
            " probe_until = NULL, updated_at = ? WHERE name = ?", (time.time(), name)).rowcount
    return bool(changed)


def forget_process_breakers() -> None:
    """Drop this process's breaker objects (tests simulating a restart)."""
    with _registry_lock:
        _registry.clear()
