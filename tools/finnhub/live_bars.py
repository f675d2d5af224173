"""Trades and the bars they make: :class:`LiveBarBuilder`, and :func:`parse_trade` for one
untrusted trade item of Finnhub's stream.

:class:`LiveBarBuilder` aggregates trades into daily bars (by exchange-local date) and
intraday bars (``interval_minutes``), per symbol, and knows when each symbol last traded:
``is_stale(symbol, now, max_age_s)`` is true when no trade arrived for ``max_age_s``
seconds, so nothing trades on an old price. It keeps whatever symbols it is given:
:class:`~tools.finnhub.trade_stream.TradeStream` hands it only the subscribed ones.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pandas as pd

from tools.finnhub.responses import CANDLE_COLUMNS, empty_bars

EXCHANGE_TZ = "America/New_York"
# Trade times (epoch ms) outside [2000-01-01, 2100-01-01) are not trades of this era (and some
# overflow datetime); parse_trade also drops trades stamped over MAX_AHEAD_S past its clock.
MIN_TS_MS, MAX_TS_MS = 946_684_800_000, 4_102_444_800_000
MAX_AHEAD_S = 86_400.0


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
        """Add one trade; returns False (and ignores it) when the price is not a finite number
        above 0, the volume not finite, or ``ts_ms`` outside 2000..2100."""
        try:
            price, volume = float(price), max(0.0, float(volume or 0.0))
            ts_ms = int(ts_ms)
        except (TypeError, ValueError, OverflowError):
            return False
        if not (symbol and 0 < price < math.inf and volume < math.inf and MIN_TS_MS <= ts_ms < MAX_TS_MS):
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

    def forget(self, symbol: str) -> None:
        """Drop every bar of ``symbol`` (it was unsubscribed: its memory is released)."""
        with self._lock:
            for table in (self._daily, self._intraday, self._last_arrival, self._last_trade):
                table.pop(symbol, None)

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


def _number(value: object) -> float | None:
    """A finite float from a JSON number or numeric string; None for anything else (bools too)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def parse_trade(item: object, now_s: float) -> Trade | str:
    """One item of a trade message's ``data`` (``{"s": symbol, "p": price, "v": volume,
    "t": epoch ms}``) as a :class:`Trade`, or why it is dropped: ``bad_trade`` (not an object,
    no ``s``/``p``/``t``), ``bad_price`` (not a finite number > 0), ``bad_volume`` (not a
    finite number >= 0; missing is 0), ``bad_timestamp`` (before 2000, or over ``MAX_AHEAD_S``
    past ``now_s``, epoch seconds). Numeric strings count as numbers; booleans do not."""
    if not isinstance(item, dict):
        return "bad_trade"
    symbol, price, ts = item.get("s"), item.get("p"), item.get("t")
    if not isinstance(symbol, str) or not symbol or price is None or ts is None:
        return "bad_trade"
    price = _number(price)
    if price is None or price <= 0:
        return "bad_price"
    volume = _number(item.get("v") or 0)
    if volume is None or volume < 0:
        return "bad_volume"
    ts = _number(ts)
    if ts is None or not MIN_TS_MS <= ts <= min(MAX_TS_MS - 1, (now_s + MAX_AHEAD_S) * 1000):
        return "bad_timestamp"
    return Trade(symbol, price, volume, int(ts))
