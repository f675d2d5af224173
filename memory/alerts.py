"""Alerts: something an operator must hear about (a breaker opened, every model failed for a
whole cycle, a halt). Each alert is stored in ``$VOLT_HOME/ops.db``, logged as one ERROR
line on the ``volt.alerts`` logger, and, when ``VOLT_ALERT_WEBHOOK`` is set, POSTed as JSON
to that URL from one background thread.

Delivery never blocks the caller: alerts go into a bounded queue (a full queue drops the
alert's delivery, not the alert: it is stored and logged either way); the worker retries
with :mod:`tenacity` (bounded attempts, exponential waits, a short timeout per attempt),
then gives up and records ``failed``. :func:`raise_alert` never raises: an alert about a
problem must not become a second problem.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tenacity import Retrying, stop_after_attempt, wait_exponential

from memory.ops_db import ops_db

WEBHOOK_ENV = "VOLT_ALERT_WEBHOOK"
log = logging.getLogger("volt.alerts")

BREAKER_OPEN = "breaker_open"
ALL_MODELS_FAILED = "all_models_failed"
HALT = "halt"


class Deliverer:
    """One daemon thread POSTing alerts, fed by a bounded queue.

    ``attempts`` tries per alert, waits ``backoff_s * 2**n`` (at most ``max_wait_s``)
    between them, each try bounded by ``timeout_s``. :meth:`flush` waits (bounded) until
    the queue is empty: for a process about to exit, and for tests.
    """

    def __init__(self, *, attempts: int = 4, timeout_s: float = 3.0, backoff_s: float = 0.5,
                 max_wait_s: float = 10.0, maxsize: int = 100):
        self.attempts, self.timeout_s = attempts, timeout_s
        self.backoff_s, self.max_wait_s = backoff_s, max_wait_s
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._pending = 0
        self._done = threading.Condition()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, home: Path, alert_id: int | None, url: str, payload: dict) -> bool:
        """Queue one delivery; False (and a WARNING) when the queue is full."""
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="volt-alerts", daemon=True)
                self._thread.start()
        with self._done:
            try:
                self._queue.put_nowait((home, alert_id, url, payload))
            except queue.Full:
                log.warning("alert queue full: alert %s stored but not sent to the webhook", alert_id)
                return False
            self._pending += 1
        return True

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued delivery is done or given up; False on timeout."""
        end = time.monotonic() + timeout_s
        with self._done:
            while self._pending:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._done.wait(left)
        return True

    def _post(self, url: str, payload: dict) -> None:
        request = urllib.request.Request(
            url, data=json.dumps(payload, default=str).encode(), method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "volt-alerts"},
        )
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - http(s) only
            response.read(1024)  # a non-2xx answer raises HTTPError, which is retried

    def _run(self) -> None:
        while True:
            home, alert_id, url, payload = self._queue.get()
            status = "failed"
            try:
                for attempt in Retrying(
                    stop=stop_after_attempt(self.attempts),
                    wait=wait_exponential(multiplier=self.backoff_s, max=self.max_wait_s),
                    reraise=True,
                ):
                    with attempt:
                        self._post(url, payload)
                status = "delivered"
            except Exception as exc:  # every attempt failed: give up, say so once
                log.warning("alert %s not delivered to the webhook after %d attempts: %s",
                            alert_id, self.attempts, type(exc).__name__)
            try:
                _set_delivery(home, alert_id, status)
            finally:
                with self._done:
                    self._pending -= 1
                    self._done.notify_all()


_deliverer = Deliverer()


def deliverer() -> Deliverer:
    """The process's deliverer (tests replace its timing attributes)."""
    return _deliverer


def flush_alerts(timeout_s: float = 10.0) -> bool:
    """Wait (bounded) for queued webhook deliveries: call before the process exits."""
    return _deliverer.flush(timeout_s)


def _webhook(explicit: str | None) -> str | None:
    url = (explicit if explicit is not None else os.environ.get(WEBHOOK_ENV, "")).strip()
    if not url:
        return None
    if not url.lower().startswith(("http://", "https://")):
        log.warning("%s is not an http(s) URL: alerts are stored and logged only", WEBHOOK_ENV)
        return None
    return url


def _set_delivery(home: Path, alert_id: int | None, status: str) -> None:
    if alert_id is None:
        return
    try:
        with ops_db(home) as conn:
            conn.execute("UPDATE alerts SET delivery = ? WHERE id = ?", (status, alert_id))
    except Exception as exc:  # the alert was sent; its bookkeeping is best effort
        log.warning("could not record the delivery of alert %s: %s", alert_id, exc)


def _recent(home: Path, kind: str, key: str, within_s: float) -> bool:
    with ops_db(home) as conn:
        row = conn.execute(
            "SELECT 1 FROM alerts WHERE kind = ? AND json_extract(details, '$.key') IS ? AND created_at >= ?",
            (kind, key, time.time() - within_s),
        ).fetchone()
    return row is not None


def raise_alert(
    home: Path,
    kind: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    *,
    webhook: str | None = None,
    dedupe_key: str | None = None,
    dedupe_s: float = 0.0,
) -> int | None:
    """Store, log and (optionally) send one alert; returns its id, or None when it could
    not be stored (or was a repeat). Never raises, never waits for the network.

    ``webhook`` overrides ``$VOLT_ALERT_WEBHOOK``. With ``dedupe_key`` and ``dedupe_s`` > 0,
    an alert of the same kind and key raised within the last ``dedupe_s`` seconds makes
    this one a repeat: logged at WARNING only (a dead model server must not page every cycle).
    """
    try:
        info = dict(details or {})
        if dedupe_key is not None:
            info["key"] = dedupe_key
            if dedupe_s > 0 and _recent(home, kind, dedupe_key, dedupe_s):
                log.warning("alert %s (repeat, not sent again): %s", kind, message)
                return None
        url = _webhook(webhook)
        now = time.time()
        with ops_db(home) as conn:
            alert_id = conn.execute(
                "INSERT INTO alerts(created_at, kind, message, details, delivery) VALUES (?, ?, ?, ?, ?)",
                (now, kind, message, json.dumps(info, default=str), "pending" if url else "stored"),
            ).lastrowid
        log.error("ALERT %s: %s", kind, message, extra={"alert_id": alert_id, "alert_kind": kind})
        if url:
            payload = {"id": alert_id, "kind": kind, "message": message, "details": info,
                       "created_at": datetime.fromtimestamp(now, UTC).isoformat(),
                       "host": socket.gethostname(), "source": "volt", "home": str(home)}
            _deliverer.submit(home, alert_id, url, payload)
        return alert_id
    except Exception as exc:  # storage trouble: still say it, once, on the log
        log.error("ALERT %s: %s (not stored: %s)", kind, message, exc)
        return None


def list_alerts(home: Path, limit: int = 50) -> list[dict]:
    """The newest alerts first (``details`` parsed)."""
    with ops_db(home) as conn:
        rows = conn.execute("SELECT * FROM alerts ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    return [{**dict(r), "details": json.loads(r["details"])} for r in rows]


def all_models_failed(state: Mapping[str, Any]) -> bool:
    """True when the cycle had models configured, LLM agents answered, and not one answer
    came from a model (every agent fell back to its quantitative prior). A chain left empty
    on purpose (``VOLT_MODELS=``) is not a failure."""
    status = state.get("model_status") or {}
    if not (status.get("usable") or status.get("missing")):
        return False
    sources = []
    for decision in state.get("decisions") or []:
        sources += [v.get("source") for v in decision.values() if isinstance(v, dict) and "degraded" in v]
    macro = state.get("macro")
    if isinstance(macro, dict) and "degraded" in macro:
        sources.append(macro.get("source"))
    return bool(sources) and "model" not in sources and "prior" in sources


def alert_if_all_models_failed(home: Path, state: Mapping[str, Any], *, dedupe_s: float = 3600.0) -> int | None:
    """Raise ``all_models_failed`` for a finished cycle's state when :func:`all_models_failed`;
    repeats within ``dedupe_s`` seconds are logged, not sent."""
    if not all_models_failed(state):
        return None
    status = state.get("model_status") or {}
    errors = state.get("errors") or []
    message = (f"every model failed for the whole cycle {state.get('as_of', '?')}: agents used their "
               f"quantitative priors ({status.get('note') or 'see the cycle report'})")
    details = {"portfolio": state.get("portfolio_id"), "as_of": state.get("as_of"),
               "usable": status.get("usable"), "missing": status.get("missing"),
               "errors": len(errors), "categories": sorted({e.get("category", "?") for e in errors})}
    return raise_alert(home, ALL_MODELS_FAILED, message, details,
                       dedupe_key=str(state.get("portfolio_id")), dedupe_s=dedupe_s)
