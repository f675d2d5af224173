"""What ``python -m graph.run --loop`` needs to run unattended: stop signals and the calendar.

Stop signals (:class:`StopSignals`): the first SIGTERM or SIGINT (Ctrl-C) only *requests* a
stop. A sleeping loop wakes at once; a running cycle stops at its next step boundary (the
graph's checkpoint after that step is saved, so the next start resumes the cycle there; fills
are idempotent per portfolio, day and symbol, so nothing fills twice). A second signal stops
at once (``KeyboardInterrupt``, caught by the runner: still one line).

Calendar (:func:`session_after`, :func:`next_bar_at`): the New York Stock Exchange's sessions
from ``exchange_calendars`` (``XNYS``, data shipped with the package, no network): holidays
are skipped and half days close early (13:00 New York time). A live loop sleeps until the
next session's open plus :data:`BAR_SETTLE_S`, when that session's daily bar exists.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from types import FrameType
from typing import Any

import pandas as pd

from graph.errors import StorageError
from graph.logs import setup_logging
from graph.settings import VoltSettings
from graph.tracing import check_langsmith

CALENDAR = "XNYS"
BAR_SETTLE_S = 120.0  # after the open: the first trades (and quotes) of the day exist


def die_with_parent(parent: int | None = None, *, poll_s: float = 0.25) -> threading.Thread:
    """In a worker process: exit at once (``os._exit(1)``, no cleanup: SQLite writes are
    transactions) when its parent process is gone, checked every ``poll_s`` seconds by a
    daemon thread, so a killed backtest leaves no replay worker running or writing. The
    parent is gone when ``os.getppid()`` changes (re-parented to init or a subreaper)."""
    parent = os.getppid() if parent is None else parent

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    thread = threading.Thread(target=watch, name="volt-parent-watch", daemon=True)
    thread.start()
    return thread


class StopRequested(Exception):  # noqa: N818 - a request, not an error
    """Raised at a step boundary after a stop signal: the cycle's checkpoint is saved."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name


class StopSignals:
    """SIGTERM/SIGINT handling for the runner (a context manager, main thread only).

    ``requested`` is set by the first signal (``signal_name`` says which); :meth:`sleep`
    returns early when it is; :meth:`check` raises :class:`StopRequested` when it is. A
    second signal raises ``KeyboardInterrupt`` where the main thread is. Outside the main
    thread (an embedding caller), installing is skipped and only :meth:`request` stops."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested.is_set():
            raise KeyboardInterrupt  # second signal: now, not at the next step
        self.request(signal.Signals(signum).name)

    def request(self, name: str = "stop") -> None:
        self.signal_name = self.signal_name or name
        self.requested.set()

    def check(self) -> None:
        if self.requested.is_set():
            raise StopRequested(self.signal_name or "stop")

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when a stop was requested (at once, not after)."""
        return self.requested.wait(max(0.0, seconds))


@dataclass(frozen=True)
class Session:
    """One trading session: its day and its open and close (UTC-aware datetimes)."""

    day: date
    open: datetime
    close: datetime

    @property
    def half_day(self) -> bool:
        return self.close - self.open < timedelta(hours=6)


@lru_cache(maxsize=4)
def market_calendar(name: str = CALENDAR, year: int | None = None) -> Any:
    """The exchange calendar (``exchange_calendars``), covering ``year`` +- 2 years: its
    default span ends a year from today, which a test about 2030 would pass."""
    import exchange_calendars  # deferred: a one-shot run on replay data never needs it

    if year is None:
        return exchange_calendars.get_calendar(name)
    return exchange_calendars.get_calendar(name, start=f"{year - 2}-01-02", end=f"{year + 2}-12-30")


def _calendar_for(day: date, name: str) -> Any:
    cal = market_calendar(name)
    if cal.first_session.date() < day < cal.last_session.date():
        return cal
    return market_calendar(name, day.year)


def _session(cal: Any, label: pd.Timestamp) -> Session:
    return Session(label.date(), cal.session_open(label).to_pydatetime(), cal.session_close(label).to_pydatetime())


def session_on(day: date, name: str = CALENDAR) -> Session | None:
    """The session on ``day``, or None on a weekend or holiday."""
    cal = _calendar_for(day, name)
    label = pd.Timestamp(day)
    return _session(cal, label) if cal.is_session(label) else None


def session_after(day: date, name: str = CALENDAR) -> Session:
    """The first session strictly after ``day`` (Friday -> Monday, holidays skipped)."""
    cal = _calendar_for(day, name)
    label = pd.Timestamp(day)
    nxt = cal.next_session(label) if cal.is_session(label) else cal.date_to_session(label, direction="next")
    return _session(cal, nxt)


def next_bar_at(now: datetime, last_done: date | None, *, settle_s: float = BAR_SETTLE_S,
                name: str = CALENDAR) -> datetime:
    """When the next live cycle can run: the open (+ ``settle_s`` seconds) of the first
    session after ``last_done`` (the last completed cycle's day) that has not closed yet at
    ``now``. A time at or before ``now`` means: run now. ``now`` must be timezone-aware."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    today = now.astimezone(UTC).date()
    # a session on a day not completed yet, still open (or later today): start from it
    start = today - timedelta(days=1)
    if last_done is not None and last_done >= start:
        start = last_done
    session = session_after(start, name)
    while session.close <= now:  # already closed: its bar is history, wait for the next
        session = session_after(session.day, name)
    return session.open + timedelta(seconds=settle_s)


def wait_until(when: datetime, stop: StopSignals, *, now: Callable[[], datetime] | None = None,
               chunk_s: float = 3600.0) -> bool:
    """Sleep until ``when`` (in chunks, so a changed clock is noticed); True when stopped."""
    clock = now or (lambda: datetime.now(UTC))
    while (left := (when - clock()).total_seconds()) > 0:
        if stop.sleep(min(left, chunk_s)):
            return True
    return stop.requested.is_set()


class _StderrWarnings(logging.StreamHandler):
    """WARNING and worse from any logger on the current ``sys.stderr`` as one short line
    (what Python printed before a file handler existed), resolved per record."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def setup_operations(settings: VoltSettings) -> None:
    """JSON logs in ``$VOLT_HOME/logs`` (silently none when the home cannot hold them: the
    run's own storage check says why in one line), warnings on stderr, the LangSmith probe."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrWarnings)]:
        root.removeHandler(old)
    console = _StderrWarnings()
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root.addHandler(console)
    with contextlib.suppress(StorageError, OSError):
        setup_logging(settings.home, max_bytes=settings.log_max_bytes, backups=settings.log_backups)
    check_langsmith()
