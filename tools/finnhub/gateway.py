"""Finnhub REST gateway: rate-limited, cached, plan-aware, and it never leaks the API key.

Every call goes through ``finnhub.Client`` (finnhub-python); this module adds what a trading
loop needs around it:

- a client-side rate limiter (``calls_per_minute`` per 60 s, default 60 as on the free plan,
  and Finnhub's 30 calls per second), shared by every thread;
- HTTP 429 (and 5xx): exponential backoff and retry, bounded (``Retry-After`` honoured);
  both in :mod:`tools.finnhub.throttle`;
- a deadline (:meth:`FinnhubGateway.deadline_in`, the cycle's): no backoff or rate-limit wait
  goes past it; a call that would have to fails at once with a ``TemporaryError``; a request
  in flight times out at it (its HTTP timeout is cut to what is left);
- a circuit breaker per endpoint (:mod:`tools.circuit`): after ``fail_max`` calls in a row
  that ended in rate limiting, a 5xx or no answer, the endpoint is not called for a cool-down
  (:class:`FinnhubBreakerOpen`, no request), then one probe;
- HTTP 401/403 ("You don't have access to this resource", the plan refuses the endpoint):
  the endpoint goes into ``gateway.unavailable`` and is never called again in this run;
  every call to it raises :class:`EndpointUnavailable`;
- network failures: :class:`FinnhubNetworkError` (a ``TemporaryError``), message redacted;
- a SQLite response cache (:mod:`tools.finnhub.cache`, its own file) with a TTL per
  endpoint; the cache key is the endpoint and its parameters, never the key;
- the key travels in the ``X-Finnhub-Token`` header, so request URLs (which urllib3 logs at
  DEBUG and puts in exception messages) do not contain it.

Methods return plain parsed data (dicts, lists, pandas frames), not Finnhub's raw shapes:
:mod:`tools.finnhub.responses` turns each body into them. The errors are in
:mod:`tools.finnhub.errors`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import finnhub
import pandas as pd

from graph.errors import VoltError
from graph.secrets import finnhub_api_key, install_log_redaction, redact
from tools.circuit import Breaker, in_memory_breakers
from tools.finnhub import responses
from tools.finnhub.cache import ResponseCache, cache_key
from tools.finnhub.errors import (
    REQUEST_EXCEPTIONS,
    EndpointUnavailable,
    FinnhubBreakerOpen,
    FinnhubDeadlineExceeded,
    breaker_counts,
    request_error,
)
from tools.finnhub.session import bound_request_timeouts, token_to_header
from tools.finnhub.throttle import PastDeadline, RateLimiter, call_with_backoff

log = logging.getLogger("volt.finnhub")

# Endpoint names are Finnhub's paths without the leading slash.
QUOTE = "quote"
STOCK_CANDLE = "stock/candle"
STOCK_SPLIT = "stock/split"
CRYPTO_CANDLE = "crypto/candle"
INDICATOR = "indicator"
COMPANY_NEWS = "company-news"
NEWS_SENTIMENT = "news-sentiment"
INSIDER_SENTIMENT = "stock/insider-sentiment"
RECOMMENDATION = "stock/recommendation"
BASIC_FINANCIALS = "stock/metric"
EARNINGS_CALENDAR = "calendar/earnings"
FOREX_RATES = "forex/rates"

CACHE_FILE = "finnhub_cache.db"  # in the data directory ($VOLT_HOME)
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
MIN_REQUEST_TIMEOUT_S = 0.05  # a request sent just before the deadline still gets this long
DEFAULT_TTLS: dict[str, float] = {
    QUOTE: 15.0,
    STOCK_CANDLE: 5 * MINUTE,
    STOCK_SPLIT: DAY,
    CRYPTO_CANDLE: 5 * MINUTE,
    INDICATOR: 5 * MINUTE,
    COMPANY_NEWS: 15 * MINUTE,
    NEWS_SENTIMENT: 15 * MINUTE,
    INSIDER_SENTIMENT: DAY,
    RECOMMENDATION: DAY,
    BASIC_FINANCIALS: DAY,
    EARNINGS_CALENDAR: 6 * HOUR,
    FOREX_RATES: 5 * MINUTE,
}


class FinnhubGateway:
    """All Finnhub REST access for VOLT. Thread-safe; one per run.

    ``client`` defaults to ``finnhub.Client(api_key)``; tests pass one whose ``API_URL`` points
    at a local server (or give ``base_url``). ``sleep`` and ``clock`` (monotonic, for the rate
    limiter and backoff) and ``wall_clock`` (the cache's TTLs, which outlive the process) are
    injectable so tests run instantly.
    """

    def __init__(
        self,
        api_key: str,
        cache_path: Path,
        *,
        calls_per_minute: int = 60,
        calls_per_second: int = 30,
        client: finnhub.Client | None = None,
        base_url: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        ttls: dict[str, float] | None = None,
        max_retries: int = 4,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 30.0,
        timeout_s: float = 10.0,
        breaker_for: Callable[[str], Breaker] | None = None,
    ):
        if not api_key or not api_key.strip():
            raise ValueError("api_key is empty")
        self._api_key = api_key.strip()
        install_log_redaction(self._api_key)
        self._client = client if client is not None else finnhub.Client(api_key=self._api_key)
        if base_url is not None:
            self._client.API_URL = base_url.rstrip("/")
        self._client.DEFAULT_TIMEOUT = timeout_s
        token_to_header(self._client, self._api_key)
        self._in_flight = threading.local()  # the deadline of this thread's request, on ``clock``
        bound_request_timeouts(self._client, self._request_timeout)
        self._sleep = sleep
        self._clock = clock
        # per endpoint; ``memory.breakers.endpoint_breakers`` persists them in ops.db
        self._breaker_for = breaker_for or in_memory_breakers()
        self.deadline: float | None = None  # on ``clock``; see deadline_in
        self._limiter = RateLimiter(
            [(calls_per_minute, 60.0), (calls_per_second, 1.0)], clock=clock, sleep=sleep
        )
        self.cache = ResponseCache(cache_path, clock=wall_clock)
        self.ttls = {**DEFAULT_TTLS, **(ttls or {})}
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.unavailable: set[str] = set()
        self.calls = 0  # real HTTP requests (retries included)
        self.cache_hits = 0
        self.backoffs: list[float] = []  # every backoff slept, in order
        self._count_lock = threading.Lock()

    # ---- plumbing ---------------------------------------------------------------------------

    def _request_timeout(self, timeout: Any) -> Any:
        """The HTTP timeout of this thread's request: the client's, cut to what is left before
        the cycle deadline (at least 0.05 s), so a request in flight never overruns it."""
        deadline = getattr(self._in_flight, "deadline", None)
        if deadline is None or not isinstance(timeout, int | float):
            return timeout
        return max(MIN_REQUEST_TIMEOUT_S, min(float(timeout), deadline - self._clock()))

    def redact(self, text: object) -> str:
        return redact(text, [self._api_key])

    def close(self) -> None:
        self.cache.close()
        close = getattr(self._client, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> FinnhubGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def is_available(self, endpoint: str) -> bool:
        return endpoint not in self.unavailable

    @contextmanager
    def deadline_in(self, seconds: float | None) -> Iterator[FinnhubGateway]:
        """``with gateway.deadline_in(cycle_deadline_s):`` no wait inside goes past ``seconds``
        from now (``None``: no deadline). Restores the previous deadline on exit."""
        previous = self.deadline
        self.deadline = None if seconds is None else self._clock() + max(0.0, seconds)
        try:
            yield self
        finally:
            self.deadline = previous

    def _fetch(self, endpoint: str, params: dict[str, Any], call: Callable[[], Any]) -> Any:
        """Cached, rate-limited, retried, breaker-guarded ``call()``; ``params`` are what the
        call sends (the cache key)."""
        if endpoint in self.unavailable:
            raise EndpointUnavailable(endpoint)
        key = cache_key(endpoint, params)
        ttl = self.ttls.get(endpoint, 5 * MINUTE)
        if ttl > 0:
            hit, body = self.cache.get(key, ttl)
            if hit:
                with self._count_lock:
                    self.cache_hits += 1
                return body
        deadline = self.deadline
        if deadline is not None and self._clock() >= deadline:
            raise FinnhubDeadlineExceeded(f"Finnhub {endpoint}: the cycle deadline has passed; not called")
        breaker = self._breaker_for(endpoint)
        if not breaker.admit():
            raise FinnhubBreakerOpen(
                f"Finnhub {endpoint}: breaker open after repeated failures; not called "
                f"(next probe in {breaker.retry_in_s():.0f}s)")
        failure: VoltError | None = None
        try:
            body = call_with_backoff(
                lambda: self._attempt(endpoint, call, deadline), endpoint,
                max_retries=self.max_retries, backoff_base_s=self.backoff_base_s,
                backoff_max_s=self.backoff_max_s, deadline=deadline, clock=self._clock,
                sleep=self._sleep, on_backoff=self.backoffs.append)
        except VoltError as exc:  # already redacted, raised without the original as context
            failure = exc
        if failure is None:
            breaker.succeeded()
            if ttl > 0:
                self.cache.put(key, endpoint, body)
            return body
        if breaker_counts(failure):
            breaker.failed(failure)
        elif isinstance(failure, FinnhubDeadlineExceeded):
            breaker.release()  # our deadline, not the endpoint's failure
        else:
            breaker.succeeded()  # Finnhub answered (a refusal, a bad request): it is up
        if isinstance(failure, EndpointUnavailable):
            log.warning("%s; not calling it again in this run", failure)
        else:
            log.warning("%s", failure)
        raise failure

    def _attempt(self, endpoint: str, call: Callable[[], Any], deadline: float | None) -> Any:
        """One rate-limited request; Finnhub's and the network's exceptions as VOLT errors."""
        failure: VoltError | None = None
        try:
            self._limiter.acquire(deadline)
        except PastDeadline as exc:
            failure = FinnhubDeadlineExceeded(
                f"Finnhub {endpoint}: the rate limit allows the next call in {exc.args[0]:.0f}s, "
                "past the cycle deadline; not called")
        if failure is not None:
            raise failure
        with self._count_lock:
            self.calls += 1
        # Turned into a VOLT error outside the ``except`` block: the original is not chained.
        self._in_flight.deadline = deadline
        try:
            return call()
        except REQUEST_EXCEPTIONS as exc:
            failure = request_error(endpoint, exc, self.redact)
        finally:
            self._in_flight.deadline = None
        if isinstance(failure, EndpointUnavailable):
            self.unavailable.add(endpoint)
        raise failure

    # ---- endpoints: fetch here, parse in tools.finnhub.responses -----------------------------

    def quote(self, symbol: str) -> dict[str, Any]:
        """Latest quote: ``c`` current, ``h``/``l``/``o`` of the day, ``pc`` previous close,
        ``d``/``dp`` change, ``t`` unix seconds, plus ``symbol``. An unknown symbol has ``c == 0``."""
        symbol = _stock(symbol)
        body = self._fetch(QUOTE, {"symbol": symbol}, lambda: self._client.quote(symbol))
        return responses.parse_quote(body, symbol)

    def daily_candles(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        """Daily OHLCV, ``start``..``end`` inclusive, indexed by (naive) date. Empty on no_data;
        :class:`EndpointUnavailable` when the plan refuses candles (the free plan does)."""
        symbol = _stock(symbol)
        params = {"symbol": symbol, "resolution": "D", "from": _unix(start), "to": _unix(end, end_of_day=True)}
        body = self._fetch(
            STOCK_CANDLE, params, lambda: self._client.stock_candles(symbol, "D", params["from"], params["to"])
        )
        frame = responses.candle_frame(body, f"{symbol} daily", daily=True)
        lo, hi = pd.Timestamp(start), pd.Timestamp(end)
        return frame[(frame.index >= lo) & (frame.index <= hi)]

    def stock_splits(self, symbol: str, start: date, end: date) -> list[dict[str, Any]]:
        """Splits effective ``start``..``end``: ``[{"date": "YYYY-MM-DD", "ratio": new/old}]``
        (``ratio`` 2.0 for 2:1, 0.1 for a 1:10 reverse split), oldest first. Entries that are
        not a date with finite positive factors are dropped (untrusted input).
        :class:`EndpointUnavailable` when the plan refuses the endpoint."""
        symbol = _stock(symbol)
        params = {"symbol": symbol, "from": f"{start:%Y-%m-%d}", "to": f"{end:%Y-%m-%d}"}
        body = self._fetch(
            STOCK_SPLIT, params, lambda: self._client.stock_splits(symbol, _from=params["from"], to=params["to"])
        )
        return responses.parse_splits(body, start, end)

    def intraday_candles(
        self, symbol: str, resolution: str | int, start: date | datetime | float, end: date | datetime | float
    ) -> pd.DataFrame:
        """Intraday OHLCV (``resolution`` 1, 5, 15, 30, 60 minutes), indexed by UTC time."""
        symbol = _stock(symbol)
        res = str(resolution)
        params = {"symbol": symbol, "resolution": res, "from": _unix(start), "to": _unix(end, end_of_day=True)}
        body = self._fetch(
            STOCK_CANDLE, params, lambda: self._client.stock_candles(symbol, res, params["from"], params["to"])
        )
        return responses.candle_frame(body, f"{symbol} {res}", daily=res.upper() in ("D", "W", "M"))

    def crypto_candles(
        self, symbol: str, resolution: str | int, start: date | datetime | float, end: date | datetime | float
    ) -> pd.DataFrame:
        """Crypto OHLCV for e.g. ``BINANCE:BTCUSDT``; daily resolutions indexed by date, else UTC time."""
        symbol = symbol.strip()
        res = str(resolution)
        params = {"symbol": symbol, "resolution": res, "from": _unix(start), "to": _unix(end, end_of_day=True),
                  "format": "json"}
        body = self._fetch(
            CRYPTO_CANDLE, params, lambda: self._client.crypto_candles(symbol, res, params["from"], params["to"])
        )
        return responses.candle_frame(body, f"{symbol} {res}", daily=res.upper() in ("D", "W", "M"))

    def company_news(self, symbol: str, start: date, end: date, *, limit: int | None = None) -> list[dict]:
        """Articles newest first: ``headline``, ``summary``, ``source``, ``datetime`` (ISO UTC),
        ``url``, ``id``, ``category``, ``related``."""
        symbol = _stock(symbol)
        params = {"symbol": symbol, "from": start.isoformat(), "to": end.isoformat()}
        body = self._fetch(
            COMPANY_NEWS, params, lambda: self._client.company_news(symbol, _from=params["from"], to=params["to"])
        )
        return responses.parse_company_news(body, symbol, limit)

    def news_sentiment(self, symbol: str) -> dict[str, Any]:
        """News buzz and sentiment (a premium endpoint; the free plan refuses it)."""
        symbol = _stock(symbol)
        body = self._fetch(NEWS_SENTIMENT, {"symbol": symbol}, lambda: self._client.news_sentiment(symbol))
        return responses.parse_news_sentiment(body, symbol)

    def insider_sentiment(self, symbol: str, start: date, end: date) -> list[dict[str, Any]]:
        """Monthly insider sentiment, oldest first: ``year``, ``month``, ``change`` (net shares),
        ``mspr`` (monthly share purchase ratio, -100..100)."""
        symbol = _stock(symbol)
        params = {"symbol": symbol, "from": start.isoformat(), "to": end.isoformat()}
        body = self._fetch(
            INSIDER_SENTIMENT, params,
            lambda: self._client.stock_insider_sentiment(symbol, params["from"], params["to"]),
        )
        return responses.parse_insider_sentiment(body, symbol)

    def recommendation_trends(self, symbol: str) -> list[dict[str, Any]]:
        """Analyst recommendation counts per month, newest first."""
        symbol = _stock(symbol)
        body = self._fetch(RECOMMENDATION, {"symbol": symbol}, lambda: self._client.recommendation_trends(symbol))
        return responses.parse_recommendations(body, symbol)

    def basic_financials(self, symbol: str) -> dict[str, Any]:
        """The useful metrics (see :data:`tools.finnhub.responses.FINANCIAL_METRICS`), ``None``
        where Finnhub has none."""
        symbol = _stock(symbol)
        params = {"symbol": symbol, "metric": "all"}
        body = self._fetch(
            BASIC_FINANCIALS, params, lambda: self._client.company_basic_financials(symbol, "all")
        )
        return responses.parse_basic_financials(body, symbol)

    def earnings_calendar(self, start: date, end: date, symbol: str | None = None) -> list[dict[str, Any]]:
        """Earnings releases in ``start``..``end`` (one symbol or all), by date."""
        sym = _stock(symbol) if symbol else None
        params = {"from": start.isoformat(), "to": end.isoformat(), "symbol": sym, "international": "false"}
        body = self._fetch(
            EARNINGS_CALENDAR, params,
            lambda: self._client.earnings_calendar(_from=params["from"], to=params["to"], symbol=sym),
        )
        return responses.parse_earnings_calendar(body)

    def forex_rates(self, base: str = "USD") -> dict[str, float]:
        """Units of each currency per one ``base``."""
        base = base.strip().upper()
        body = self._fetch(FOREX_RATES, {"base": base}, lambda: self._client.forex_rates(base=base))
        return responses.parse_forex_rates(body, base)


def open_gateway(home: Path, api_key: str | None = None, **kwargs: Any) -> FinnhubGateway:
    """A gateway caching in ``home/finnhub_cache.db``; the key from :func:`finnhub_api_key`
    (environment, then ``./.env``) unless given. Raises ``MissingApiKeyError`` without one."""
    key = api_key if api_key is not None else finnhub_api_key()
    return FinnhubGateway(key, Path(home) / CACHE_FILE, **kwargs)


# ---- helpers -------------------------------------------------------------------------------------


def _stock(symbol: str) -> str:
    cleaned = str(symbol).strip().upper()
    if not cleaned:
        raise ValueError("empty symbol")
    return cleaned


def _unix(value: date | datetime | float | int, *, end_of_day: bool = False) -> int:
    """Unix seconds: a datetime as is (naive = UTC), a date at 00:00 UTC (23:59:59 for an end)."""
    if isinstance(value, datetime):
        ts = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(ts.timestamp())
    if isinstance(value, date):
        start = datetime(value.year, value.month, value.day, tzinfo=UTC)
        return int(start.timestamp()) + (86399 if end_of_day else 0)
    return int(value)
