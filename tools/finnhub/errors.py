"""The errors of VOLT's Finnhub layer, and which of them count toward an endpoint's breaker.

Every Finnhub failure is a :class:`FinnhubError` (a ``VoltError``, category EXCHANGE unless
said otherwise); the ones worth another try later are also ``TemporaryError``.
:func:`request_error` turns what finnhub-python and requests raise into them, redacted: no
message carries the API key.
"""

from __future__ import annotations

from collections.abc import Callable

import finnhub
import requests

from graph.errors import ErrorCategory, TemporaryError, VoltError

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REFUSED_STATUSES = frozenset({401, 403})
# What one request through finnhub-python can raise; anything else is a bug and propagates.
# ValueError: a body that is not JSON despite its content type.
REQUEST_EXCEPTIONS = (finnhub.FinnhubAPIException, finnhub.FinnhubRequestException,
                      requests.RequestException, ValueError)


class FinnhubError(VoltError):
    """A Finnhub request that failed in a way another try will not fix (bad request, bad body)."""

    category = ErrorCategory.EXCHANGE


class EndpointUnavailable(FinnhubError):
    """The plan refuses this endpoint (HTTP 401/403): skip this data source for the run."""

    def __init__(self, endpoint: str, status: int | None = None, detail: str = ""):
        why = f"HTTP {status}" + (f": {detail}" if detail else "") if status else "refused earlier in this run"
        super().__init__(f"Finnhub endpoint '{endpoint}' is not available on this plan ({why})")
        self.endpoint = endpoint
        self.status = status


class FinnhubTemporaryError(FinnhubError, TemporaryError):
    """Worth another try later: network trouble, rate limit exhausted, server errors."""

    category = ErrorCategory.NETWORK


class FinnhubNetworkError(FinnhubTemporaryError):
    """No answer from Finnhub (refused, DNS, timeout, TLS)."""


class FinnhubRateLimited(FinnhubTemporaryError):
    """Still HTTP 429 (or 5xx) after every backoff (or the next one would pass the deadline).
    ``retry_after``: the server's ``Retry-After`` in seconds, when it sent one."""

    category = ErrorCategory.EXCHANGE

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class FinnhubDeadlineExceeded(FinnhubTemporaryError):
    """The deadline has passed, or a rate-limit wait would pass it: not called."""


class FinnhubBreakerOpen(FinnhubTemporaryError):
    """The endpoint's breaker is open: not called (no request, no wait)."""

    category = ErrorCategory.EXCHANGE


def breaker_counts(exc: BaseException) -> bool:
    """Which failures count toward an endpoint's breaker: rate limited or 5xx after retries,
    no answer. Not a refused plan, a bad request, a bad body (Finnhub did answer), nor a
    deadline that passed before any request."""
    return isinstance(exc, FinnhubTemporaryError) and not isinstance(
        exc, FinnhubDeadlineExceeded | FinnhubBreakerOpen)


def request_error(endpoint: str, exc: BaseException, redact: Callable[[object], str]) -> FinnhubError:
    """The VOLT error for ``exc`` (one of :data:`REQUEST_EXCEPTIONS`) from a request to
    ``endpoint``: HTTP 401/403 :class:`EndpointUnavailable`, 429/5xx :class:`FinnhubRateLimited`
    (with ``Retry-After``), another status or a bad body :class:`FinnhubError`, no answer
    :class:`FinnhubNetworkError`. Texts go through ``redact`` and are cut to a few hundred
    characters. The caller raises it outside its ``except`` block, so the original (whose text
    may hold a URL) is not even chained as context."""
    if isinstance(exc, finnhub.FinnhubAPIException):
        status = int(getattr(exc, "status_code", 0) or 0)
        detail = redact(getattr(exc, "message", "") or "")
        if status in REFUSED_STATUSES:
            return EndpointUnavailable(endpoint, status, detail)
        if status in RETRY_STATUSES:
            return FinnhubRateLimited(f"Finnhub {endpoint}: HTTP {status} ({detail})", retry_after(exc))
        return FinnhubError(f"Finnhub {endpoint}: HTTP {status} ({detail})")
    if isinstance(exc, finnhub.FinnhubRequestException):
        return FinnhubError(f"Finnhub {endpoint}: invalid response ({redact(exc)[:200]})")
    if isinstance(exc, requests.RequestException):
        return FinnhubNetworkError(f"Finnhub {endpoint}: no answer ({type(exc).__name__}: {redact(exc)[:300]})")
    return FinnhubError(f"Finnhub {endpoint}: invalid JSON ({redact(exc)[:200]})")


def retry_after(exc: BaseException) -> float | None:
    """The ``Retry-After`` header (seconds, >= 0) of the HTTP response ``exc`` carries, if any."""
    response = getattr(exc, "response", None)
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None
