"""Exception hierarchy. Each class maps to an action, like freqtrade's:

- ``TemporaryError``: retry or fall back (next model, then the quantitative prior).
- ``DataError``: skip the affected symbol for this cycle, never trade on it.
- ``OperationalError``: halt the run and tell the user (CLI exit code 2).
"""

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
