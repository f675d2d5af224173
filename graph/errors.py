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
