"""Finnhub WebSocket trade stream and the bar builder it feeds.

:class:`TradeStream` connects to ``wss://ws.finnhub.io?token=KEY`` (websocket-client), sends
``{"type": "subscribe", "symbol": S}`` per symbol, and reads messages in a background thread:

- ``{"type": "trade", "data": [{"s": symbol, "p": price, "v": volume, "t": ms}, ...]}``
  goes to :class:`LiveBarBuilder`;
- ``{"type": "ping"}`` is ignored; ``{"type": "error", "msg": ...}`` is logged.

The server's messages are untrusted data: a malformed message or trade is dropped and counted
by reason in :attr:`TradeStream.dropped` (``not_json``, ``too_large``, ``not_object``,
``bad_data``: ``data`` not a list, ``bad_trade``: an item not an object or without ``s``/``p``/
``t``, ``bad_price``: not a finite number > 0, ``bad_volume``: not a finite number >= 0,
``bad_timestamp``: before 2000 or over a day ahead of the clock, ``unsubscribed``: a symbol
this stream did not subscribe to, so memory stays bounded by the subscription set,
``handler_error``: anything else). One warning per reason per ``log_every_s`` says how many;
nothing malformed closes the connection.

A dropped or refused connection is retried with exponential backoff (``backoff_base_s``
doubling up to ``backoff_max_s``, at most ``max_retries`` failed attempts in a row, then the
stream stops with ``status == "failed"``); every symbol is subscribed again on reconnect.
The key is only in the URL handed to websocket-client: logs, ``last_error`` and exceptions
show the URL redacted.

:class:`~tools.finnhub.live_bars.LiveBarBuilder` (re-exported here) turns the trades into daily and
intraday bars and knows when each symbol last traded (the stale-feed check).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable

import websocket

from graph.secrets import install_log_redaction, redact
from tools.finnhub.live_bars import (  # re-exported: callers import the builder from here
    EXCHANGE_TZ,
    MAX_AHEAD_S,
    LiveBarBuilder,
    Trade,
    parse_trade,
)

__all__ = ["EXCHANGE_TZ", "MAX_AHEAD_S", "FINNHUB_WS_URL", "LiveBarBuilder", "Trade", "TradeStream",
           "parse_trade"]

log = logging.getLogger("volt.stream")

FINNHUB_WS_URL = "wss://ws.finnhub.io"
MAX_MESSAGE_CHARS = 1_000_000  # Finnhub's trade messages are a few KB


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
        clock: Callable[[], float] = time.time,
        log_every_s: float = 60.0,
        max_message_chars: int = MAX_MESSAGE_CHARS,
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
        self._clock = clock
        self.log_every_s = log_every_s
        self.max_message_chars = max_message_chars
        self._symbols: list[str] = []
        for s in symbols:
            if (s := str(s).strip()) and s not in self._symbols:
                self._symbols.append(s)
        self._subscribed = frozenset(self._symbols)  # read by the reader thread without a lock
        self._lock = threading.Lock()
        self._traded = threading.Condition()  # notified after each trade message
        self._dropped: Counter[str] = Counter()
        self._logged_at: dict[str, float] = {}  # reason -> when its last warning was logged
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
    def dropped(self) -> dict[str, int]:
        """Dropped messages and trades so far, by reason (see the module docstring)."""
        with self._lock:
            return dict(self._dropped)

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

    def wait_for_trades(self, symbols: Iterable[str] | None = None, timeout: float = 60.0) -> list[str]:
        """Wait up to ``timeout`` seconds until every one of ``symbols`` (default: the
        subscribed ones) has a trade fresher than ``stale_after_s``; returns those still
        without one (``[]``: all traded). Returns early when the stream stops or fails."""
        wanted = self.symbols if symbols is None else list(symbols)
        deadline = time.monotonic() + max(0.0, timeout)
        with self._traded:
            while True:
                missing = [s for s in wanted if self.is_stale(s)]
                remaining = deadline - time.monotonic()
                if not missing or remaining <= 0 or self._stop.is_set() or self.status == "failed":
                    return missing
                self._traded.wait(min(remaining, 0.5))  # also re-checks stop/failure twice a second

    def subscribe(self, symbol: str) -> None:
        symbol = str(symbol).strip()
        with self._lock:
            if not symbol or symbol in self._symbols:
                return
            self._symbols.append(symbol)
            self._subscribed = frozenset(self._symbols)
        self._send({"type": "subscribe", "symbol": symbol})

    def unsubscribe(self, symbol: str) -> None:
        """Stop the symbol's trades and forget its bars (late trades count as ``unsubscribed``)."""
        with self._lock:
            if symbol not in self._symbols:
                return
            self._symbols.remove(symbol)
            self._subscribed = frozenset(self._symbols)
        self._send({"type": "unsubscribe", "symbol": symbol})
        self.builder.forget(symbol)

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

    def _drop(self, reason: str, count: int = 1) -> None:
        """Count ``count`` dropped messages or trades; one warning per reason per ``log_every_s``."""
        with self._lock:
            self._dropped[reason] += count
            total = self._dropped[reason]
        self._log_limited(reason, "trade stream: dropping malformed input (%s), %d so far", reason, total)

    def _log_limited(self, key: str, text: str, *args: object) -> None:
        now = self._clock()
        with self._lock:
            last = self._logged_at.get(key)
            if last is not None and now - last < self.log_every_s:
                return
            self._logged_at[key] = now
        log.warning(text, *args)

    def _handle(self, raw: str | bytes) -> None:
        """One message from the server; never raises (a bad message must not drop the connection)."""
        try:
            self._handle_message(raw)
        except Exception as exc:  # a case the checks below missed: counted, never fatal
            log.debug("trade stream: message handler failed: %s", self._redact(exc)[:200])
            self._drop("handler_error")

    def _handle_message(self, raw: str | bytes) -> None:
        if len(raw) > self.max_message_chars:
            return self._drop("too_large")
        try:
            message = json.loads(raw)
        except (TypeError, ValueError, RecursionError):
            return self._drop("not_json")
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return self._drop("not_object")
        kind = message["type"]
        if kind == "trade":
            self._handle_trades(message.get("data"))
        elif kind == "error":
            text = self._redact(message.get("msg", ""))[:300]
            with self._lock:
                self.errors.append(text)
                del self.errors[:-100]  # the last 100: a flood of errors must not grow memory
            self._log_limited("server_error", "trade stream error from server: %s", text)
        # "ping" and anything else: nothing to do

    def _handle_trades(self, data: object) -> None:
        if not isinstance(data, list):
            return self._drop("bad_data")
        now, subscribed, applied = self._clock(), self._subscribed, 0
        dropped: Counter[str] = Counter()  # counted once per message: a flood costs one lock each
        for item in data:
            trade = parse_trade(item, now)
            if isinstance(trade, str):
                dropped[trade] += 1
            elif trade.symbol not in subscribed:
                dropped["unsubscribed"] += 1
            elif self.builder.add_trade(trade.symbol, trade.price, trade.volume, trade.ts_ms):
                applied += 1
                if self.on_trade:
                    try:
                        self.on_trade(trade)
                    except Exception as exc:  # a consumer's bug must not kill the stream
                        log.warning("on_trade callback failed: %s", self._redact(exc))
        for reason, count in dropped.items():
            self._drop(reason, count)
        if applied:
            with self._traded:
                self._traded.notify_all()
