"""Exception hierarchy. Each class maps to an action, like freqtrade's:

- ``TemporaryError``: retry or fall back (next model, then the quantitative prior).
- ``DataError``: skip the affected symbol for this cycle, never trade on it.
- ``ExchangeError``: the broker could not fill; the order expires, the next cycle decides again.
- ``MarketHaltError``: a market condition (drawdown or market breaker, regime) halts new buys.
- ``OperationalError``: halt the run and tell the user (CLI exit code 2).

:func:`classify` is the one place an exception becomes an error category and its recovery
action; every error record (agents, data, the runner) goes through it.
"""

import errno
import sqlite3
from enum import StrEnum


class ErrorCategory(StrEnum):
    """Error categories from the VOLT design (seed 000, section 4.1)."""

    NETWORK = "network"
    EXCHANGE = "exchange"
    MODEL = "model"
    LOGIC = "logic"
    DATA = "data"
    MARKET = "market"


class VoltError(Exception):
    """Base class of every error VOLT raises on purpose."""

    category: ErrorCategory = ErrorCategory.LOGIC


class TemporaryError(VoltError):
    """Worth another try, or a fallback."""


class ModelUnavailableError(TemporaryError):
    """No connection to the model server (refused, DNS, timeout)."""

    category = ErrorCategory.NETWORK


class InvalidModelOutputError(TemporaryError):
    """The model answered, but not with a valid structured output."""

    category = ErrorCategory.MODEL


class DataError(VoltError):
    """Bad market data for one symbol: the symbol is skipped this cycle."""

    category = ErrorCategory.DATA

    def __init__(self, symbol: str, reason: str):
        super().__init__(f"DATA {symbol}: {reason}")
        self.symbol = symbol
        self.reason = reason


class ExchangeError(VoltError):
    """The broker (paper or live quote) could not fill an order: it expires unfilled."""

    category = ErrorCategory.EXCHANGE


class MarketHaltError(VoltError):
    """A market condition stops new risk this cycle (drawdown breaker, market breaker, regime)."""

    category = ErrorCategory.MARKET


class OperationalError(VoltError):
    """Halt and notify: the run cannot go on (exit code 2)."""


class DataFileError(OperationalError):
    """A market-data file that cannot be parsed at all."""

    category = ErrorCategory.DATA


class PortfolioBusyError(OperationalError):
    """Another run holds this portfolio's lock."""


class CycleDateError(OperationalError):
    """The requested as-of date cannot be traded for this portfolio."""


class StorageError(OperationalError):
    """A data file or directory VOLT cannot use: halt with one line naming the file and what
    to do (exit 2). Raised at the storage boundaries (``memory.db``, the checkpointer, the
    situation memory, the data directory) before anything is written to the ledger.

    ``kind`` says what is wrong: ``damaged`` (not a database, malformed), ``read-only``,
    ``full`` (disk or quota), ``not-a-directory``, ``busy`` (locked past the timeout) or
    ``unavailable`` (any other I/O failure). ``path`` is the file or directory concerned.
    """

    category = ErrorCategory.DATA

    def __init__(self, message: str, *, path: object = None, kind: str = "unavailable"):
        super().__init__(message)
        self.path = path
        self.kind = kind


def settings_error_line(exc: Exception) -> str:
    """One line for invalid settings, naming the variable: pydantic's ``ValidationError``
    lists each field on several lines; the first problem is enough to fix and rerun."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return f"invalid configuration: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    first = errors()[0]
    field = ".".join(str(p) for p in first.get("loc", ())) or "settings"
    name = field.split(".")[0]
    variable = "OLLAMA_HOST" if name == "ollama_host" else f"VOLT_{name.upper()}"
    value = first.get("input")
    secret = any(word in name for word in ("key", "token", "secret", "password"))
    shown = f"={value!r}"[:80] if isinstance(value, str | int | float) and not secret else ""
    return f"invalid configuration: {variable}{shown} ({field}): {first.get('msg', 'invalid')}"


# What happens after an error of each category (the default; a caller may name a more precise
# one, e.g. "fallback to <next model>").
RECOVERY: dict[ErrorCategory, str] = {
    ErrorCategory.NETWORK: "retried, then the next model or the quantitative prior",
    ErrorCategory.EXCHANGE: "order not filled: it expires, the next cycle decides again",
    ErrorCategory.MODEL: "next model or the quantitative prior",
    ErrorCategory.LOGIC: "halt: a bug, the traceback is in the log",
    ErrorCategory.DATA: "symbol skipped this cycle",
    ErrorCategory.MARKET: "new buys halted this cycle; exits still run",
}
HALT_RUN = "halt the run (exit 2): fix the cause named and start again"

_NETWORK_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ETIMEDOUT, errno.EHOSTUNREACH,
                   errno.ENETUNREACH, errno.EPIPE, errno.ECONNABORTED}


def _is_network(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS:
        return True
    # httpx / requests / urllib3 without importing them here: their class names say it
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"TimeoutException", "ConnectError", "NetworkError", "RequestException",
                         "HTTPError", "URLError", "ProtocolError", "ReadTimeout", "ConnectTimeout"})


def classify(exc: BaseException) -> tuple[ErrorCategory, str]:
    """``(category, recovery_action)`` for any exception: the single mapping used everywhere.

    VOLT's own errors carry their category (``ModelAttemptError`` and other objects with an
    ``ErrorCategory`` ``category`` attribute too); an :class:`OperationalError` halts the run
    whatever its category. Other exceptions: connection failures and timeouts are NETWORK,
    a storage failure (``sqlite3.Error``, other ``OSError``) is DATA and halts, anything else
    is a bug (LOGIC). Never raises."""
    category = getattr(exc, "category", None)
    if isinstance(exc, OperationalError):
        return (category if isinstance(category, ErrorCategory) else ErrorCategory.LOGIC), HALT_RUN
    if isinstance(category, ErrorCategory):
        return category, RECOVERY[category]
    if _is_network(exc):
        return ErrorCategory.NETWORK, RECOVERY[ErrorCategory.NETWORK]
    if isinstance(exc, sqlite3.Error | OSError):
        return ErrorCategory.DATA, HALT_RUN
    return ErrorCategory.LOGIC, RECOVERY[ErrorCategory.LOGIC]
