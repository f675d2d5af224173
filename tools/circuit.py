"""Circuit breakers: after ``fail_max`` failures in a row a dependency (a model, a data
endpoint) is skipped at no cost for ``reset_s`` seconds; then exactly one probe goes through.
A successful probe closes the breaker, a failed one opens it for another cool-down.

Built on :mod:`pybreaker` (its states, its storage interface, its listeners), with one
difference: ``pybreaker.CircuitBreaker.call`` holds the breaker's lock for the whole guarded
call, which would serialize every call to a model across the parallel agents and park them
all behind a hung probe. Here the lock is held only to decide (:meth:`Breaker.admit`) and to
record the outcome (:meth:`Breaker.succeeded`, :meth:`Breaker.failed`); the call runs outside.

The storage decides persistence: :class:`MemoryStorage` lives as long as the process;
``memory.breakers`` stores the same fields in ``$VOLT_HOME/ops.db`` so a restart keeps an
open breaker open. Storages may carry ``probe_until`` (unix seconds): the half-open probe's
lease, so a second caller is turned away while the probe is in flight.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import pybreaker
from pybreaker import STATE_CLOSED, STATE_HALF_OPEN, STATE_OPEN

from graph.errors import ErrorCategory, TemporaryError

T = TypeVar("T")


class BreakerOpen(TemporaryError):
    """The dependency's breaker is open: it was not called (no request, no timeout)."""

    category = ErrorCategory.NETWORK

    def __init__(self, name: str, retry_in_s: float):
        super().__init__(f"breaker open for {name}: not called; next probe in {max(0.0, retry_in_s):.0f}s")
        self.name = name
        self.retry_in_s = retry_in_s


class MemoryStorage(pybreaker.CircuitMemoryStorage):
    """pybreaker's in-memory storage plus the probe lease."""

    def __init__(self, state: str = STATE_CLOSED):
        super().__init__(state)
        self.probe_until: float | None = None


class Breaker(pybreaker.CircuitBreaker):
    """A :class:`pybreaker.CircuitBreaker` whose guarded call runs outside its lock.

    ``probe_lease_s`` (default ``reset_s``) bounds how long one half-open probe keeps others
    out: a probe whose process died mid-call does not block the breaker for ever.
    ``counts(exc)`` says whether an exception is the dependency's failure (default: all);
    one that is not (a 4xx for a bad symbol) proves the dependency answered, a success.
    """

    def __init__(
        self,
        name: str,
        *,
        fail_max: int = 3,
        reset_s: float = 300.0,
        storage: pybreaker.CircuitBreakerStorage | None = None,
        listeners: Iterable[pybreaker.CircuitBreakerListener] = (),
        probe_lease_s: float | None = None,
        counts: Callable[[BaseException], bool] | None = None,
    ):
        if fail_max < 1 or reset_s <= 0:
            raise ValueError("fail_max must be >= 1 and reset_s > 0")
        super().__init__(
            fail_max=fail_max,
            reset_timeout=reset_s,
            state_storage=storage if storage is not None else MemoryStorage(),
            listeners=list(listeners),
            name=name,
            throw_new_error_on_trip=False,
        )
        self.probe_lease_s = probe_lease_s
        self._counts = counts or (lambda exc: True)

    # ---- deciding ---------------------------------------------------------------------------

    def retry_in_s(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when closed or due)."""
        opened = self._state_storage.opened_at
        if self.current_state != STATE_OPEN or opened is None:
            return 0.0
        return max(0.0, opened.timestamp() + self.reset_timeout - time.time())

    def admit(self) -> bool:
        """May the caller make the call now? Closed: yes. Open: no, until the cool-down has
        passed; then the breaker turns half-open and this caller is the probe. Half-open:
        only while no other probe holds the lease."""
        with self._lock:
            state = self.current_state
            if state == STATE_CLOSED:
                return True
            now = time.time()
            if state == STATE_OPEN:
                if self.retry_in_s() > 0:
                    return False
                self.half_open()  # pybreaker's transition: storage and listeners
            lease = getattr(self._state_storage, "probe_until", None)
            if lease is not None and now < lease:
                return False
            self._set_lease(now + (self.probe_lease_s or self.reset_timeout))
            return True

    def guard(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``func(*args, **kwargs)`` if admitted, else :class:`BreakerOpen`; the outcome is
        recorded. Exceptions are re-raised unchanged."""
        if not self.admit():
            raise BreakerOpen(self.name or "?", self.retry_in_s())
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            self.record(exc)
            raise
        self.succeeded()
        return result

    # ---- recording --------------------------------------------------------------------------

    def record(self, exc: BaseException | None) -> None:
        """Record an outcome: ``None`` or an exception that does not count is a success."""
        if exc is not None and self._counts(exc):
            self.failed(exc)
        else:
            self.succeeded()

    def succeeded(self) -> None:
        with self._lock:
            if self.current_state == STATE_CLOSED:
                if self.fail_counter:
                    self._state_storage.reset_counter()
            else:  # the probe (or a call admitted before it opened) answered: close
                self.close()
            self._set_lease(None)
            for listener in self.listeners:
                listener.success(self)

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self._state_storage.increment_counter()
            for listener in self.listeners:
                listener.failure(self, exc)
            state = self.current_state
            if state == STATE_HALF_OPEN or (state == STATE_CLOSED and self.fail_counter >= self.fail_max):
                self.open()  # pybreaker's transition: opened_at, storage, listeners
            self._set_lease(None)

    def release(self) -> None:
        """Give up an admitted call without an outcome (the caller failed, not the dependency):
        a half-open breaker lets the next caller probe."""
        with self._lock:
            self._set_lease(None)

    def _set_lease(self, until: float | None) -> None:
        if hasattr(self._state_storage, "probe_until"):
            self._state_storage.probe_until = until

    def snapshot(self) -> dict[str, Any]:
        """State for reports: name, state, failures in a row, opened_at (unix s), retry_in_s."""
        opened = self._state_storage.opened_at
        return {
            "name": self.name,
            "state": self.current_state,
            "failures": self.fail_counter,
            "opened_at": opened.timestamp() if opened is not None else None,
            "retry_in_s": round(self.retry_in_s(), 1),
        }


def in_memory_breakers(fail_max: int = 3, reset_s: float = 300.0, **kwargs: Any) -> Callable[[str], Breaker]:
    """A factory of per-name breakers kept in this process only (``name -> Breaker``)."""
    made: dict[str, Breaker] = {}
    lock = threading.Lock()

    def get(name: str) -> Breaker:
        with lock:
            if name not in made:
                made[name] = Breaker(name, fail_max=fail_max, reset_s=reset_s, **kwargs)
            return made[name]

    return get


__all__ = ["STATE_CLOSED", "STATE_HALF_OPEN", "STATE_OPEN", "Breaker", "BreakerOpen", "MemoryStorage",
           "in_memory_breakers"]
