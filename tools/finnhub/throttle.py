"""Waiting on Finnhub, both ways: our own rate limit before a call, backoff after a 429.

- :class:`RateLimiter`: sliding windows shared by every thread (Finnhub's free plan allows
  60 calls per minute, and 30 per second on any plan);
- :func:`call_with_backoff`: HTTP 429/5xx (as :class:`FinnhubRateLimited`) retried with
  :mod:`tenacity` after exponential, capped backoff, ``Retry-After`` honoured.

Both take a deadline on their ``clock``: a wait that would end past it is not slept.
Clocks and sleeps are injectable so tests run in zero real time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from tools.finnhub.errors import FinnhubRateLimited

log = logging.getLogger("volt.finnhub")
T = TypeVar("T")


class PastDeadline(Exception):
    """The rate limiter's wait would end after the deadline; ``args[0]``: the wait, seconds."""


class RateLimiter:
    """Sliding-window limiter: at most ``calls`` in any ``period_s`` window, for each window.

    Thread-safe. A caller over the limit sleeps (injectable ``sleep``) until the oldest call in
    the full window ages out; the lock is held while sleeping so waiters keep their order.
    """

    def __init__(
        self,
        windows: list[tuple[int, float]],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not windows or any(n < 1 or p <= 0 for n, p in windows):
            raise ValueError("each window needs at least 1 call per positive period")
        self._windows = [(int(n), float(p), deque()) for n, p in windows]
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self.waited_s = 0.0

    def acquire(self, deadline: float | None = None) -> float:
        """Take one call slot; returns how long this caller waited. With a ``deadline`` (the
        clock's time), a wait that would end after it raises :class:`PastDeadline` instead
        of sleeping."""
        waited = 0.0
        with self._lock:
            while True:
                now = self._clock()
                wait = 0.0
                for limit, period, stamps in self._windows:
                    while stamps and stamps[0] <= now - period:
                        stamps.popleft()
                    if len(stamps) >= limit:
                        wait = max(wait, stamps[0] + period - now)
                if wait <= 0:
                    for _, _, stamps in self._windows:
                        stamps.append(now)
                    self.waited_s += waited
                    return waited
                if deadline is not None and now + wait > deadline:
                    raise PastDeadline(wait)
                self._sleep(wait)
                waited += wait


def call_with_backoff(
    attempt: Callable[[], T],
    endpoint: str,
    *,
    max_retries: int,
    backoff_base_s: float,
    backoff_max_s: float,
    deadline: float | None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_backoff: Callable[[float], Any] | None = None,
) -> T:
    """``attempt()``, retried while it raises :class:`FinnhubRateLimited`: up to
    ``max_retries`` more times, after ``backoff_base_s * 2**n`` seconds (capped at
    ``backoff_max_s``; a longer ``Retry-After`` wins, within the cap). A wait that would end
    past ``deadline`` (on ``clock``; ``None``: none) is not slept: the 429 is raised at once,
    saying so. ``on_backoff(seconds)`` hears every wait before it is slept. The final
    :class:`FinnhubRateLimited` says how many attempts were made and is not chained."""
    past_deadline = False

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        seconds = min(backoff_max_s, backoff_base_s * 2 ** (state.attempt_number - 1))
        retry_after = getattr(exc, "retry_after", None)
        return min(backoff_max_s, max(seconds, retry_after)) if retry_after is not None else seconds

    def stop_at_deadline(state: RetryCallState) -> bool:
        nonlocal past_deadline
        past_deadline = deadline is not None and clock() + (state.upcoming_sleep or 0) > deadline
        return past_deadline

    def before_sleep(state: RetryCallState) -> None:
        if on_backoff is not None:
            on_backoff(state.upcoming_sleep)
        log.info("Finnhub %s throttled; retry %d/%d in %.1fs",
                 endpoint, state.attempt_number, max_retries, state.upcoming_sleep)

    retrying = Retrying(
        retry=retry_if_exception_type(FinnhubRateLimited),
        stop=stop_after_attempt(max_retries + 1) | stop_at_deadline,
        wait=wait,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    failure: FinnhubRateLimited | None = None
    try:
        return retrying(attempt)
    except FinnhubRateLimited as exc:
        failure = exc
    attempts = retrying.statistics.get("attempt_number", 1)
    why = "; the next retry would pass the cycle deadline" if past_deadline else ""
    # built outside the except block: no chained context
    raise FinnhubRateLimited(f"{failure} after {attempts} attempts{why}", failure.retry_after)

