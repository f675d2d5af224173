"""Finnhub REST gateway: rate-limited, cached, plan-aware, and it never leaks the API key.

Every call goes through ``finnhub.Client`` (finnhub-python); this module adds what a trading
loop needs around it:

- a client-side rate limiter (sliding windows: ``calls_per_minute`` per 60 s, default 60 as
  on the free plan, and Finnhub's 30 calls per second), shared by every thread;
- HTTP 429 (and 5xx): exponential backoff and retry with :mod:`tenacity`, bounded
  (``Retry-After`` honoured);
- a deadline (:meth:`FinnhubGateway.deadline_in`, the cycle's): no backoff or rate-limit wait
  goes past it; a call that would have to fails at once with a ``TemporaryError``;
- a circuit breaker per endpoint (:mod:`tools.circuit`): after ``fail_max`` calls in a row
  that ended in rate limiting, a 5xx or no answer, the endpoint is not called for a cool-down
  (:class:`FinnhubBreakerOpen`, no request), then one probe;
- HTTP 401/403 ("You don't have access to this resource", the plan refuses the endpoint):
  the endpoint goes into ``gateway.unavailable`` and is never called again in this run;
  every call to it raises :class:`EndpointUnavailable`;
- network failures: :class:`FinnhubNetworkError` (a ``TemporaryError``), message redacted;
- a SQLite response cache (its own file) with a TTL per endpoint; the cache key is the
  endpoint and its parameters, never the key;
- the key travels in the ``X-Finnhub-Token`` header, so request URLs (which urllib3 logs at
  DEBUG and puts in exception messages) do not contain it.

Methods return plain parsed data (dicts, lists, pandas frames), not Finnhub's raw shapes.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import finnhub
import pandas as pd
import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from graph.errors import ErrorCategory, TemporaryError, VoltError
from graph.secrets import finnhub_api_key, install_log_redaction, redact
from tools.circuit import Breaker, in_memory_breakers

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
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REFUSED_STATUSES = frozenset({401, 403})
CANDLE_COLUMNS = ("open", "high", "low", "close", "volume")

# The metrics worth an agent's attention, each with Finnhub's metric names in order of preference.
# Ratios are in percent as Finnhub gives them (roeTTM 25.3 means 25.3%).
FINANCIAL_METRICS: dict[str, tuple[str, ...]] = {
    "eps_ttm": ("epsTTM", "epsBasicExclExtraItemsTTM", "epsInclExtraItemsTTM", "epsExclExtraItemsTTM"),
    "eps_growth_ttm_yoy": ("epsGrowthTTMYoy",),
    "pe_ttm": ("peTTM", "peBasicExclExtraTTM", "peExclExtraTTM"),
    "pb": ("pbQuarterly", "pbAnnual"),
    "roe_ttm": ("roeTTM", "roeRfy"),
    "roa_ttm": ("roaTTM", "roaRfy"),
    "gross_margin_ttm": ("grossMarginTTM", "grossMarginAnnual"),
    "operating_margin_ttm": ("operatingMarginTTM", "operatingMarginAnnual"),
    "net_margin_ttm": ("netProfitMarginTTM", "netProfitMarginAnnual"),
    "dividend_yield": ("dividendYieldIndicatedAnnual", "currentDividendYieldTTM"),
    "revenue_growth_ttm_yoy": ("revenueGrowthTTMYoy",),
    "current_ratio": ("currentRatioQuarterly", "currentRatioAnnual"),
    "debt_to_equity": ("totalDebt/totalEquityQuarterly", "totalDebt/totalEquityAnnual"),
    "beta": ("beta",),
    "week52_high": ("52WeekHigh",),
    "week52_low": ("52WeekLow",),
    "market_cap": ("marketCapitalization",),
}


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


class _PastDeadline(Exception):
    """The rate limiter's wait would end after the deadline."""


def breaker_counts(exc: BaseException) -> bool:
    """Which failures count toward an endpoint's breaker: rate limited or 5xx after retries,
    no answer. Not a refused plan, a bad request, a bad body (Finnhub did answer), nor a
    deadline that passed before any request."""
    return isinstance(exc, FinnhubTemporaryError) and not isinstance(
        exc, FinnhubDeadlineExceeded | FinnhubBreakerOpen)


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
        clock's time), a wait that would end after it raises instead of sleeping."""
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
                    raise _PastDeadline(wait)
                self._sleep(wait)
                waited += wait


class ResponseCache:
    """Parsed JSON responses in SQLite, keyed by endpoint and parameters, with a TTL on read."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time, keep_s: float = 2 * DAY):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS responses ("
            " key TEXT PRIMARY KEY, endpoint TEXT NOT NULL, fetched_at REAL NOT NULL, body TEXT NOT NULL)"
        )
        # Nothing lives longer than a day; drop what no TTL can serve any more.
        self._conn.execute("DELETE FROM responses WHERE fetched_at < ?", (self._clock() - keep_s,))

    def get(self, key: str, ttl_s: float) -> tuple[bool, Any]:
        with self._lock:
            row = self._conn.execute("SELECT fetched_at, body FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return False, None
        age = self._clock() - row[0]
        if not 0 <= age < ttl_s:
            return False, None
        return True, json.loads(row[1])

    def put(self, key: str, endpoint: str, body: Any) -> None:
        data = json.dumps(body, separators=(",", ":"), sort_keys=True)
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO responses(key, endpoint, fetched_at, body) VALUES (?, ?, ?, ?)",
                (key, endpoint, self._clock(), data),
            )

    def clear(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM responses")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def cache_key(endpoint: str, params: dict[str, Any]) -> str:
    """``endpoint?sorted params``; ``None`` values are left out, as requests leaves them out."""
    return f"{endpoint}?{urlencode(sorted((k, v) for k, v in params.items() if v is not None))}"


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
        _token_to_header(self._client, self._api_key)
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
            body = self._retrying(endpoint, call, deadline)
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

    def _retrying(self, endpoint: str, call: Callable[[], Any], deadline: float | None) -> Any:
        """``call()`` with tenacity: HTTP 429/5xx retried up to ``max_retries`` times after
        ``backoff_base_s * 2**n`` (capped at ``backoff_max_s``; a longer ``Retry-After`` wins,
        within the cap). A wait that would end past ``deadline`` is not slept: the 429 is
        raised at once, saying so."""
        past_deadline = False

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            seconds = min(self.backoff_max_s, self.backoff_base_s * 2 ** (state.attempt_number - 1))
            retry_after = getattr(exc, "retry_after", None)
            return min(self.backoff_max_s, max(seconds, retry_after)) if retry_after is not None else seconds

        def stop_at_deadline(state: RetryCallState) -> bool:
            nonlocal past_deadline
            past_deadline = deadline is not None and self._clock() + (state.upcoming_sleep or 0) > deadline
            return past_deadline

        def before_sleep(state: RetryCallState) -> None:
            self.backoffs.append(state.upcoming_sleep)
            log.info("Finnhub %s throttled; retry %d/%d in %.1fs",
                     endpoint, state.attempt_number, self.max_retries, state.upcoming_sleep)

        retrying = Retrying(
            retry=retry_if_exception_type(FinnhubRateLimited),
            stop=stop_after_attempt(self.max_retries + 1) | stop_at_deadline,
            wait=wait,
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        failure: VoltError | None = None
        try:
            return retrying(self._attempt, endpoint, call, deadline)
        except FinnhubRateLimited as exc:
            failure = exc
        attempts = retrying.statistics.get("attempt_number", 1)
        why = "; the next retry would pass the cycle deadline" if past_deadline else ""
        # built outside the except block: no chained context
        raise FinnhubRateLimited(f"{failure} after {attempts} attempts{why}", failure.retry_after)

    def _attempt(self, endpoint: str, call: Callable[[], Any], deadline: float | None) -> Any:
        """One rate-limited request; Finnhub's and the network's exceptions as VOLT errors."""
        failure: VoltError | None = None
        try:
            self._limiter.acquire(deadline)
        except _PastDeadline as exc:
            failure = FinnhubDeadlineExceeded(
                f"Finnhub {endpoint}: the rate limit allows the next call in {exc.args[0]:.0f}s, "
                "past the cycle deadline; not called")
        if failure is not None:
            raise failure
        with self._count_lock:
            self.calls += 1
        # Exceptions are turned into VOLT errors outside the ``except`` blocks, so the
        # originals (whose text may hold a URL) are not even chained as context.
        try:
            return call()
        except finnhub.FinnhubAPIException as exc:
            status = int(getattr(exc, "status_code", 0) or 0)
            detail = self.redact(getattr(exc, "message", "") or "")
            if status in REFUSED_STATUSES:
                self.unavailable.add(endpoint)
                failure = EndpointUnavailable(endpoint, status, detail)
            elif status in RETRY_STATUSES:
                failure = FinnhubRateLimited(f"Finnhub {endpoint}: HTTP {status} ({detail})", _retry_after(exc))
            else:
                failure = FinnhubError(f"Finnhub {endpoint}: HTTP {status} ({detail})")
        except finnhub.FinnhubRequestException as exc:
            failure = FinnhubError(f"Finnhub {endpoint}: invalid response ({self.redact(exc)[:200]})")
        except requests.RequestException as exc:
            failure = FinnhubNetworkError(
                f"Finnhub {endpoint}: no answer ({type(exc).__name__}: {self.redact(exc)[:300]})"
            )
        except ValueError as exc:  # a body that is not JSON despite its content type
            failure = FinnhubError(f"Finnhub {endpoint}: invalid JSON ({self.redact(exc)[:200]})")
        raise failure

    # ---- endpoints ----------------------------------------------------------------------------

    def quote(self, symbol: str) -> dict[str, Any]:
        """Latest quote: ``c`` current, ``h``/``l``/``o`` of the day, ``pc`` previous close,
        ``d``/``dp`` change, ``t`` unix seconds, plus ``symbol``. An unknown symbol has ``c == 0``."""
        symbol = _stock(symbol)
        body = self._fetch(QUOTE, {"symbol": symbol}, lambda: self._client.quote(symbol))
        if not isinstance(body, dict) or "c" not in body:
            raise FinnhubError(f"Finnhub quote {symbol}: unexpected response shape")
        out = {k: body.get(k) for k in ("c", "d", "dp", "h", "l", "o", "pc", "t")}
        for k in ("c", "h", "l", "o", "pc", "d", "dp"):
            out[k] = _float(out[k])
        out["t"] = int(body.get("t") or 0)
        out["symbol"] = symbol
        return out

    def daily_candles(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        """Daily OHLCV, ``start``..``end`` inclusive, indexed by (naive) date. Empty on no_data;
        :class:`EndpointUnavailable` when the plan refuses candles (the free plan does)."""
        symbol = _stock(symbol)
        params = {"symbol": symbol, "resolution": "D", "from": _unix(start), "to": _unix(end, end_of_day=True)}
        body = self._fetch(
            STOCK_CANDLE, params, lambda: self._client.stock_candles(symbol, "D", params["from"], params["to"])
        )
        frame = _candle_frame(body, f"{symbol} daily", daily=True)
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
        out: list[dict[str, Any]] = []
        for item in body if isinstance(body, list) else []:
            if not isinstance(item, dict):
                continue
            new, old, day = _float(item.get("toFactor")), _float(item.get("fromFactor")), item.get("date")
            try:
                when = date.fromisoformat(str(day))
            except ValueError:
                continue
            if new and old and new > 0 and old > 0 and start <= when <= end:
                out.append({"date": f"{when:%Y-%m-%d}", "ratio": new / old})
        return sorted(out, key=lambda x: x["date"])

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
        return _candle_frame(body, f"{symbol} {res}", daily=res.upper() in ("D", "W", "M"))

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
        return _candle_frame(body, f"{symbol} {res}", daily=res.upper() in ("D", "W", "M"))

    def company_news(self, symbol: str, start: date, end: date, *, limit: int | None = None) -> list[dict]:
        """Articles newest first: ``headline``, ``summary``, ``source``, ``datetime`` (ISO UTC),
        ``url``, ``id``, ``category``, ``related``."""
        symbol = _stock(symbol)
        params = {"symbol": symbol, "from": start.isoformat(), "to": end.isoformat()}
        body = self._fetch(
            COMPANY_NEWS, params, lambda: self._client.company_news(symbol, _from=params["from"], to=params["to"])
        )
        if not isinstance(body, list):
            raise FinnhubError(f"Finnhub company-news {symbol}: unexpected response shape")
        items = []
        for raw in body:
            if not isinstance(raw, dict) or not raw.get("headline"):
                continue
            ts = int(raw.get("datetime") or 0)
            items.append({
                "headline": str(raw.get("headline", "")).strip(),
                "summary": str(raw.get("summary") or "").strip(),
                "source": str(raw.get("source") or ""),
                "datetime": _iso(ts),
                "url": str(raw.get("url") or ""),
                "id": raw.get("id"),
                "category": str(raw.get("category") or ""),
                "related": str(raw.get("related") or ""),
                "_ts": ts,
            })
        items.sort(key=lambda i: i["_ts"], reverse=True)
        for item in items:
            del item["_ts"]
        return items[:limit] if limit is not None else items

    def news_sentiment(self, symbol: str) -> dict[str, Any]:
        """News buzz and sentiment (a premium endpoint; the free plan refuses it)."""
        symbol = _stock(symbol)
        body = self._fetch(NEWS_SENTIMENT, {"symbol": symbol}, lambda: self._client.news_sentiment(symbol))
        if not isinstance(body, dict):
            raise FinnhubError(f"Finnhub news-sentiment {symbol}: unexpected response shape")
        buzz = body.get("buzz") or {}
        sentiment = body.get("sentiment") or {}
        return {
            "symbol": symbol,
            "articles_in_last_week": _int(buzz.get("articlesInLastWeek")),
            "buzz": _float(buzz.get("buzz")),
            "weekly_average": _float(buzz.get("weeklyAverage")),
            "bullish_percent": _float(sentiment.get("bullishPercent")),
            "bearish_percent": _float(sentiment.get("bearishPercent")),
            "company_news_score": _float(body.get("companyNewsScore")),
            "sector_average_bullish_percent": _float(body.get("sectorAverageBullishPercent")),
            "sector_average_news_score": _float(body.get("sectorAverageNewsScore")),
        }

    def insider_sentiment(self, symbol: str, start: date, end: date) -> list[dict[str, Any]]:
        """Monthly insider sentiment, oldest first: ``year``, ``month``, ``change`` (net shares),
        ``mspr`` (monthly share purchase ratio, -100..100)."""
        symbol = _stock(symbol)
        params = {"symbol": symbol, "from": start.isoformat(), "to": end.isoformat()}
        body = self._fetch(
            INSIDER_SENTIMENT, params,
            lambda: self._client.stock_insider_sentiment(symbol, params["from"], params["to"]),
        )
        rows = body.get("data") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise FinnhubError(f"Finnhub insider-sentiment {symbol}: unexpected response shape")
        out = [
            {"year": _int(r.get("year")), "month": _int(r.get("month")), "change": _float(r.get("change")),
             "mspr": _float(r.get("mspr"))}
            for r in rows if isinstance(r, dict)
        ]
        return sorted(out, key=lambda r: (r["year"] or 0, r["month"] or 0))

    def recommendation_trends(self, symbol: str) -> list[dict[str, Any]]:
        """Analyst recommendation counts per month, newest first."""
        symbol = _stock(symbol)
        body = self._fetch(RECOMMENDATION, {"symbol": symbol}, lambda: self._client.recommendation_trends(symbol))
        if not isinstance(body, list):
            raise FinnhubError(f"Finnhub recommendation {symbol}: unexpected response shape")
        out = [
            {"period": str(r.get("period", "")), "strong_buy": _int(r.get("strongBuy")), "buy": _int(r.get("buy")),
             "hold": _int(r.get("hold")), "sell": _int(r.get("sell")), "strong_sell": _int(r.get("strongSell"))}
            for r in body if isinstance(r, dict)
        ]
        return sorted(out, key=lambda r: r["period"], reverse=True)

    def basic_financials(self, symbol: str) -> dict[str, Any]:
        """The useful metrics (see :data:`FINANCIAL_METRICS`), ``None`` where Finnhub has none."""
        symbol = _stock(symbol)
        params = {"symbol": symbol, "metric": "all"}
        body = self._fetch(
            BASIC_FINANCIALS, params, lambda: self._client.company_basic_financials(symbol, "all")
        )
        metric = body.get("metric") if isinstance(body, dict) else None
        if not isinstance(metric, dict):
            raise FinnhubError(f"Finnhub basic financials {symbol}: unexpected response shape")
        out: dict[str, Any] = {"symbol": symbol}
        for name, keys in FINANCIAL_METRICS.items():
            out[name] = next((v for k in keys if (v := _float(metric.get(k))) is not None), None)
        return out

    def earnings_calendar(self, start: date, end: date, symbol: str | None = None) -> list[dict[str, Any]]:
        """Earnings releases in ``start``..``end`` (one symbol or all), by date."""
        sym = _stock(symbol) if symbol else None
        params = {"from": start.isoformat(), "to": end.isoformat(), "symbol": sym, "international": "false"}
        body = self._fetch(
            EARNINGS_CALENDAR, params,
            lambda: self._client.earnings_calendar(_from=params["from"], to=params["to"], symbol=sym),
        )
        rows = body.get("earningsCalendar") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise FinnhubError("Finnhub earnings calendar: unexpected response shape")
        out = [
            {"symbol": str(r.get("symbol", "")), "date": str(r.get("date", "")), "hour": str(r.get("hour") or ""),
             "eps_estimate": _float(r.get("epsEstimate")), "eps_actual": _float(r.get("epsActual")),
             "revenue_estimate": _float(r.get("revenueEstimate")),
             "revenue_actual": _float(r.get("revenueActual")),
             "quarter": _int(r.get("quarter")), "year": _int(r.get("year"))}
            for r in rows if isinstance(r, dict)
        ]
        return sorted(out, key=lambda r: (r["date"], r["symbol"]))

    def forex_rates(self, base: str = "USD") -> dict[str, float]:
        """Units of each currency per one ``base``."""
        base = base.strip().upper()
        body = self._fetch(FOREX_RATES, {"base": base}, lambda: self._client.forex_rates(base=base))
        quote = body.get("quote") if isinstance(body, dict) else None
        if not isinstance(quote, dict):
            raise FinnhubError(f"Finnhub forex rates {base}: unexpected response shape")
        return {str(k): v for k, raw in quote.items() if (v := _float(raw)) is not None}


def open_gateway(home: Path, api_key: str | None = None, **kwargs: Any) -> FinnhubGateway:
    """A gateway caching in ``home/finnhub_cache.db``; the key from :func:`finnhub_api_key`
    (environment, then ``./.env``) unless given. Raises ``MissingApiKeyError`` without one."""
    key = api_key if api_key is not None else finnhub_api_key()
    return FinnhubGateway(key, Path(home) / CACHE_FILE, **kwargs)


# ---- helpers -------------------------------------------------------------------------------------


def _token_to_header(client: Any, api_key: str) -> None:
    """Move the key from the session's query parameters to the ``X-Finnhub-Token`` header.

    finnhub-python puts it in ``session.params``, so every URL (in urllib3's DEBUG log, in
    exception messages) would carry it. Finnhub accepts either.
    """
    session = getattr(client, "_session", None)
    params = getattr(session, "params", None)
    if isinstance(params, dict) and params.get("token"):
        token = params.pop("token")
        session.headers["X-Finnhub-Token"] = token
    elif session is not None and hasattr(session, "headers") and "X-Finnhub-Token" not in session.headers:
        session.headers["X-Finnhub-Token"] = api_key


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


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


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts > 0 else ""


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out and out not in (float("inf"), float("-inf")) else None


def _int(value: Any) -> int | None:
    f = _float(value)
    return None if f is None else int(f)


def empty_bars(index_name: str = "date", utc: bool = False) -> pd.DataFrame:
    index = pd.DatetimeIndex([], tz="UTC" if utc else None, name=index_name)
    return pd.DataFrame({c: pd.Series(dtype=float) for c in CANDLE_COLUMNS}, index=index)


def _candle_frame(body: Any, what: str, *, daily: bool) -> pd.DataFrame:
    """Finnhub's column arrays (``o``, ``h``, ``l``, ``c``, ``v``, ``t``, ``s``) as a frame.

    Daily bars are indexed by their UTC date (Finnhub stamps a daily candle at 00:00 UTC of
    the trading day); intraday bars by tz-aware UTC time.
    """
    if not isinstance(body, dict):
        raise FinnhubError(f"Finnhub candles {what}: unexpected response shape")
    status = body.get("s")
    if status == "no_data" or not body.get("t"):
        return empty_bars("date" if daily else "time", utc=not daily)
    if status not in ("ok", None):
        raise FinnhubError(f"Finnhub candles {what}: status {status!r}")
    t = body["t"]
    arrays = {name: body.get(key) for name, key in zip(CANDLE_COLUMNS, "ohlcv", strict=True)}
    if any(not isinstance(a, list) or len(a) != len(t) for a in arrays.values()):
        raise FinnhubError(f"Finnhub candles {what}: arrays of different lengths")
    when = pd.to_datetime(pd.Series(t, dtype="int64"), unit="s", utc=True)
    if daily:
        index = pd.DatetimeIndex(when.dt.tz_localize(None).dt.normalize(), name="date")
    else:
        index = pd.DatetimeIndex(when, name="time")
    frame = pd.DataFrame({k: pd.to_numeric(pd.Series(v), errors="coerce").to_numpy(dtype=float)
                          for k, v in arrays.items()}, index=index)
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    return frame
