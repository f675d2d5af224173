"""Finnhub WebSocket trade stream and the bar builder it feeds.

:class:`TradeStream` connects to ``wss://ws.finnhub.io?token=KEY`` (websocket-client), sends
``{"type": "subscribe", "symbol": S}`` per symbol, and reads messages in a background thread:

- ``{"type": "trade", "data": [{"s": symbol, "p": price, "v": volume, "t": ms}, ...]}``
  goes to :class:`LiveBarBuilder`;
- ``{"type": "ping"}`` is ignored; ``{"type": "error", "msg": ...}`` is logged.

A dropped or refused connection is retried with exponential backoff (``backoff_base_s``
doubling up to ``backoff_max_s``, at most ``max_retries`` failed attempts in a row, then the
stream stops with ``status == "failed"``); every symbol is subscribed again on reconnect.
The key is only in the URL handed to websocket-client: logs, ``last_error`` and exceptions
show the URL redacted.

:class:`LiveBarBuilder` aggregates trades into daily bars (by exchange-local date) and
intraday bars (``interval_minutes``), per symbol, and knows when each symbol last traded:
``is_stale(symbol, now, max_age_s)`` is true when no trade arrived for ``max_age_s``
seconds, so nothing trades on an old price.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pandas as pd
import websocket

from graph.secrets import install_log_redaction, redact
from tools.finnhub_gateway import CANDLE_COLUMNS, empty_bars

log = logging.getLogger("volt.stream")

FINNHUB_WS_URL = "wss://ws.finnhub.io"
EXCHANGE_TZ = "America/New_York"


@dataclass(frozen=True)
class Trade:
    symbol: str
    price: float
    volume: float
    ts_ms: int


class _Bar:
    __slots__ = ("open", "high", "low", "close", "volume", "first_ms", "last_ms", "trades")

    def __init__(self, price: float, volume: float, ts_ms: int):
        self.open = self.high = self.low = self.close = price
        self.volume = volume
        self.first_ms = self.last_ms = ts_ms
        self.trades = 1

    def add(self, price: float, volume: float, ts_ms: int) -> None:
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.volume += volume
        self.trades += 1
        if ts_ms < self.first_ms:  # trades can arrive out of order: open/close follow their time
            self.first_ms, self.open = ts_ms, price
        if ts_ms >= self.last_ms:
            self.last_ms, self.close = ts_ms, price


class LiveBarBuilder:
    """Per-symbol OHLCV bars from trades: daily (exchange-local date) and intraday.

    Thread-safe. Keeps at most ``max_daily`` daily and ``max_intraday`` intraday bars per
    symbol. ``clock`` (epoch seconds) stamps each trade's arrival for :meth:`is_stale`.
    """

    def __init__(
        self,
        interval_minutes: int = 5,
        *,
        tz: str = EXCHANGE_TZ,
        clock: Callable[[], float] = time.time,
        max_daily: int = 400,
        max_intraday: int = 2000,
    ):
        if interval_minutes < 1:
            raise ValueError("interval_minutes must be at least 1")
        self.interval_minutes = interval_minutes
        self.tz = ZoneInfo(tz)
        self._clock = clock
        self._max_daily = max_daily
        self._max_intraday = max_intraday
        self._lock = threading.Lock()
        self._daily: dict[str, OrderedDict[date, _Bar]] = {}
        self._intraday: dict[str, OrderedDict[int, _Bar]] = {}
        self._last_arrival: dict[str, float] = {}
        self._last_trade: dict[str, Trade] = {}
        self.trades_seen = 0

    def add_trade(self, symbol: str, price: float, volume: float, ts_ms: int,
                  received_at: float | None = None) -> bool:
        """Add one trade; returns False (and ignores it) when the price is not positive."""
        try:
            price, volume, ts_ms = float(price), max(0.0, float(volume or 0.0)), int(ts_ms)
        except (TypeError, ValueError):
            return False
        if not price > 0 or not symbol:
            return False
        symbol = str(symbol)
        arrived = self._clock() if received_at is None else received_at
        day = datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(self.tz).date()
        bucket_ms = self.interval_minutes * 60_000
        slot = ts_ms - ts_ms % bucket_ms
        with self._lock:
            self._put(self._daily.setdefault(symbol, OrderedDict()), day, price, volume, ts_ms, self._max_daily)
            self._put(self._intraday.setdefault(symbol, OrderedDict()), slot, price, volume, ts_ms,
                      self._max_intraday)
            self._last_arrival[symbol] = max(arrived, self._last_arrival.get(symbol, arrived))
            last = self._last_trade.get(symbol)
            if last is None or ts_ms >= last.ts_ms:
                self._last_trade[symbol] = Trade(symbol, price, volume, ts_ms)
            self.trades_seen += 1
        return True

    @staticmethod
    def _put(bars: OrderedDict, key: object, price: float, volume: float, ts_ms: int, cap: int) -> None:
        bar = bars.get(key)
        if bar is None:
            bars[key] = _Bar(price, volume, ts_ms)
            if len(bars) > cap:  # drop the oldest key (keys arrive almost always in order)
                del bars[min(bars)]
        else:
            bar.add(price, volume, ts_ms)

    def add_trades(self, trades: Iterable[Trade]) -> int:
        return sum(self.add_trade(t.symbol, t.price, t.volume, t.ts_ms) for t in trades)

    @property
    def symbols(self) -> list[str]:
        with self._lock:
            return sorted(self._daily)

    def daily_bars(self, symbol: str) -> pd.DataFrame:
        """Daily OHLCV indexed by (naive) exchange-local date, oldest first."""
        with self._lock:
            bars = dict(self._daily.get(symbol, {}))
        if not bars:
            return empty_bars("date")
        days = sorted(bars)
        index = pd.DatetimeIndex([pd.Timestamp(d) for d in days], name="date")
        return pd.DataFrame({c: [getattr(bars[d], c) for d in days] for c in CANDLE_COLUMNS}, index=index)

    def intraday_bars(self, symbol: str) -> pd.DataFrame:
        """Intraday OHLCV indexed by the UTC start of each ``interval_minutes`` bucket."""
        with self._lock:
            bars = dict(self._intraday.get(symbol, {}))
        if not bars:
            return empty_bars("time", utc=True)
        slots = sorted(bars)
        index = pd.DatetimeIndex(pd.to_datetime(slots, unit="ms", utc=True), name="time")
        return pd.DataFrame({c: [getattr(bars[s], c) for s in slots] for c in CANDLE_COLUMNS}, index=index)

    def last_trade(self, symbol: str) -> Trade | None:
        with self._lock:
            return self._last_trade.get(symbol)

    def last_price(self, symbol: str) -> float | None:
        trade = self.last_trade(symbol)
        return None if trade is None else trade.price

    def last_arrival(self, symbol: str) -> float | None:
        with self._lock:
            return self._last_arrival.get(symbol)

    def is_stale(self, symbol: str, now: float | None, max_age_s: float) -> bool:
        """True when ``symbol`` never traded, or its last trade arrived over ``max_age_s`` ago."""
        arrived = self.last_arrival(symbol)
        if arrived is None:
            return True
        now = self._clock() if now is None else now
        return now - arrived > max_age_s

    def stale_symbols(self, symbols: Iterable[str], now: float | None, max_age_s: float) -> list[str]:
        return [s for s in symbols if self.is_stale(s, now, max_age_s)]


class TradeStream:
    """Background WebSocket client for Finnhub trades (see the module docstring)."""

    def __init__(
        self,
        api_key: str,
        symbols: Iterable[str] = (),
        *,
        url: str = FINNHUB_WS_URL,
        builder: LiveBarBuilder | None = None,
        on_trade: Callable[[Trade], None] | None = None,
        max_retries: int | None = 8,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        stale_after_s: float = 120.0,
        connect_timeout_s: float = 10.0,
        recv_timeout_s: float = 1.0,
        sleep: Callable[[float], None] | None = None,
    ):
        if not api_key or not api_key.strip():
            raise ValueError("api_key is empty")
        self._api_key = api_key.strip()
        install_log_redaction(self._api_key)
        sep = "&" if "?" in url else "?"
        self._url = f"{url}{sep}token={self._api_key}"
        self.url = redact(self._url, [self._api_key])  # safe to show
        self.builder = builder or LiveBarBuilder()
        self.on_trade = on_trade
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.stale_after_s = stale_after_s
        self.connect_timeout_s = connect_timeout_s
        self.recv_timeout_s = recv_timeout_s
        self._sleep = sleep
        self._symbols: list[str] = []
        for s in symbols:
            if (s := str(s).strip()) and s not in self._symbols:
                self._symbols.append(s)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._ws: websocket.WebSocket | None = None
        self.status = "idle"  # idle, connecting, connected, backoff, stopped, failed
        self.connections = 0  # successful connects
        self.reconnects = 0  # connects after the first
        self.backoffs: list[float] = []
        self.last_error: str | None = None
        self.errors: list[str] = []  # ``{"type": "error"}`` messages from the server, redacted

    # ---- public -----------------------------------------------------------------------------

    @property
    def symbols(self) -> list[str]:
        with self._lock:
            return list(self._symbols)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> TradeStream:
        if self.running:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="volt-trade-stream", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):  # already closing or gone: the reader notices
                ws.close(timeout=1)
        if self._thread is not None:
            self._thread.join(timeout)
        self._connected.clear()
        if self.status != "failed":
            self.status = "stopped"

    def __enter__(self) -> TradeStream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def subscribe(self, symbol: str) -> None:
        symbol = str(symbol).strip()
        with self._lock:
            if not symbol or symbol in self._symbols:
                return
            self._symbols.append(symbol)
        self._send({"type": "subscribe", "symbol": symbol})

    def unsubscribe(self, symbol: str) -> None:
        with self._lock:
            if symbol not in self._symbols:
                return
            self._symbols.remove(symbol)
        self._send({"type": "unsubscribe", "symbol": symbol})

    def is_stale(self, symbol: str, now: float | None = None, max_age_s: float | None = None) -> bool:
        """Stale when no trade arrived for ``max_age_s`` (default ``stale_after_s``)."""
        return self.builder.is_stale(symbol, now, self.stale_after_s if max_age_s is None else max_age_s)

    def stale_symbols(self, now: float | None = None, max_age_s: float | None = None) -> list[str]:
        return [s for s in self.symbols if self.is_stale(s, now, max_age_s)]

    # ---- the reader thread ------------------------------------------------------------------

    def _send(self, message: dict) -> None:
        ws = self._ws
        if ws is None or not self.connected:
            return  # sent on (re)connect
        try:
            ws.send(json.dumps(message))
        except Exception as exc:  # the reader sees the broken socket and reconnects
            log.debug("stream send failed: %s", self._redact(exc))

    def _redact(self, text: object) -> str:
        return redact(text, [self._api_key, self._url])

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self.status = "connecting"
            got_message = self._session()
            if self._stop.is_set():
                break
            failures = 0 if got_message else failures + 1
            if self.max_retries is not None and failures > self.max_retries:
                self.status = "failed"
                log.error("trade stream %s: giving up after %d failed attempts (%s)",
                          self.url, failures, self.last_error)
                return
            delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** max(0, failures - 1))
            self.backoffs.append(delay)
            self.status = "backoff"
            log.info("trade stream %s: reconnecting in %.2fs (%s)", self.url, delay, self.last_error)
            if self._sleep is not None:
                self._sleep(delay)
            else:
                self._stop.wait(delay)
        self.status = "stopped"

    def _session(self) -> bool:
        """One connection: connect, subscribe, read until it drops. True if a message arrived."""
        got_message = False
        ws: websocket.WebSocket | None = None
        error: str | None = None
        try:
            ws = websocket.create_connection(self._url, timeout=self.connect_timeout_s,
                                             enable_multithread=True)
            ws.settimeout(self.recv_timeout_s)
            self._ws = ws
            self.connections += 1
            if self.connections > 1:
                self.reconnects += 1
            self._connected.set()
            self.status = "connected"
            for symbol in self.symbols:
                ws.send(json.dumps({"type": "subscribe", "symbol": symbol}))
            log.info("trade stream %s: connected, %d symbols", self.url, len(self.symbols))
            while not self._stop.is_set():
                try:
                    raw = ws.recv()
                except websocket.WebSocketTimeoutException:
                    continue
                if raw is None or raw == "":
                    if not ws.connected:
                        error = "connection closed by the server"
                        break
                    continue
                got_message = True
                self._handle(raw)
        except Exception as exc:  # websocket-client, socket and TLS errors: all mean reconnect
            error = f"{type(exc).__name__}: {self._redact(exc)[:300]}"
        finally:
            self._connected.clear()
            self._ws = None
            if ws is not None:
                with contextlib.suppress(Exception):
                    ws.close(timeout=1)
        if error is not None and not self._stop.is_set():
            self.last_error = error
            log.warning("trade stream %s: %s", self.url, error)
        return got_message

    def _handle(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except (TypeError, ValueError):
            log.debug("trade stream: ignoring a non-JSON message")
            return
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        if kind == "trade":
            for item in message.get("data") or []:
                if not isinstance(item, dict):
                    continue
                try:
                    trade = Trade(str(item.get("s") or ""), float(item["p"]), float(item.get("v") or 0.0),
                                  int(item["t"]))
                except (KeyError, TypeError, ValueError):
                    continue
                if self.builder.add_trade(trade.symbol, trade.price, trade.volume, trade.ts_ms) and self.on_trade:
                    try:
                        self.on_trade(trade)
                    except Exception as exc:  # a consumer's bug must not kill the stream
                        log.warning("on_trade callback failed: %s", self._redact(exc))
        elif kind == "error":
            text = self._redact(message.get("msg", ""))[:300]
            self.errors.append(text)
            log.warning("trade stream error from server: %s", text)
        # "ping" and anything else: nothing to do
