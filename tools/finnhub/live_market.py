"""Live market data as a :class:`MarketDataset`, the same shape the replay source gives.

:func:`load_live_dataset` asks Finnhub for each watchlist symbol's daily candles. When the
plan refuses candles (the free plan does), the bars come from the trade stream's
:class:`~tools.finnhub.live_bars.LiveBarBuilder` plus today's quote (its open/high/low/current
price as today's bar), and one note says so. Either way the frame goes through
:func:`tools.market_data.dataset_from_frame`, so validation and point-in-time slicing are
exactly those of the replay; a symbol with too little history then gets the usual
"too little history" DATA error, and a symbol with no data at all gets a DATA issue saying
why. :func:`latest_price` is the live fill reference: the current quote.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import pandas as pd

from graph.errors import DataError, OperationalError
from tools.finnhub.errors import EndpointUnavailable, FinnhubError
from tools.finnhub.gateway import STOCK_CANDLE, STOCK_SPLIT, FinnhubGateway
from tools.finnhub.live_bars import EXCHANGE_TZ
from tools.market import DataOptions
from tools.market_data import MarketDataset, Split, SymbolIssue, dataset_from_frame

if TYPE_CHECKING:
    from tools.finnhub.trade_stream import TradeStream

SOURCE_CANDLES = "finnhub live: daily candles"
SOURCE_STREAM = "finnhub live: trade stream + quotes"


class LiveDataError(OperationalError):
    """Not one watchlist symbol has live data (network down, bad key, empty watchlist)."""


def candles_refused_note(min_history: int, *, stream: bool) -> str:
    how = "bars built from the trade stream and quotes" if stream else (
        "bars built from quotes only (no trade stream running)"
    )
    return (
        f"candles not available on this Finnhub plan: {how}; "
        f"indicators need {min_history} days of history"
    )


def load_live_dataset(
    gateway: FinnhubGateway,
    watchlist: Iterable[str],
    today: date,
    *,
    history_days: int = 120,
    stream: TradeStream | None = None,
    min_history: int = 50,
    options: DataOptions | None = None,
) -> tuple[MarketDataset, list[str]]:
    """Daily bars up to ``today`` for ``watchlist``, and notes for the cycle summary.

    ``history_days`` is calendar days of candles to ask for (120 give about 80 trading days,
    enough for the 50-bar indicators). Raises :class:`LiveDataError` when no symbol has any bar.

    Finnhub's candles are already split-adjusted, so splits cannot be seen in them: Finnhub's
    split list (``stock/split``, where the plan allows it) gives ``dataset.splits``, which the
    ledger applies to held positions (kept in as-traded shares). ``options``: the data
    options (outlier guard, split detection on stream bars), defaults when None.
    """
    symbols = list(dict.fromkeys(s.strip().upper() for s in watchlist if s and s.strip()))
    if not symbols:
        raise LiveDataError("live data: the watchlist is empty (set VOLT_WATCHLIST)")
    notes: list[str] = []
    rows: list[dict] = []
    problems: dict[str, str] = {}
    candles = gateway.is_available(STOCK_CANDLE)
    if candles:
        start = today - timedelta(days=history_days)
        for symbol in symbols:
            try:
                frame = gateway.daily_candles(symbol, start, today)
            except EndpointUnavailable:
                candles = False
                break
            except FinnhubError as exc:
                problems[symbol] = f"no daily candles ({exc})"
                continue
            if frame.empty:
                problems[symbol] = f"Finnhub has no daily candles for {start:%Y-%m-%d}..{today:%Y-%m-%d}"
            rows += _rows(symbol, frame)
    if not candles:
        rows, problems = [], {}
        notes.append(candles_refused_note(min_history, stream=stream is not None))
        for symbol in symbols:
            symbol_rows, problem = _stream_and_quote_rows(gateway, symbol, today, stream)
            rows += symbol_rows
            if problem:
                problems[symbol] = problem
    source = SOURCE_CANDLES if candles else SOURCE_STREAM
    if not rows:
        first = "; ".join(f"{s}: {why}" for s, why in list(problems.items())[:3])
        raise LiveDataError(f"live data: no bars for any of {len(symbols)} symbols ({first})")
    dataset = dataset_from_frame(pd.DataFrame(rows), source, options=options)
    for symbol, why in problems.items():
        if symbol not in dataset.bars and symbol not in dataset.issues:
            dataset.issues[symbol] = SymbolIssue(symbol, why, None)
    if candles:
        notes += _add_reported_splits(gateway, dataset, today - timedelta(days=history_days), today)
    return dataset, notes


def _add_reported_splits(gateway: FinnhubGateway, dataset: MarketDataset, start: date, end: date) -> list[str]:
    """Merge Finnhub's reported splits into ``dataset.splits`` (one per symbol and ex-date);
    notes for the cycle: the splits found, or why the list is unavailable."""
    if not gateway.is_available(STOCK_SPLIT):
        return []
    notes = []
    for symbol in sorted(dataset.bars):
        try:
            reported = gateway.stock_splits(symbol, start, end)
        except EndpointUnavailable:
            return [*notes, "split data refused by the Finnhub plan: a split while a position is held is not applied"]
        except FinnhubError as exc:
            notes.append(f"DATA {symbol}: no split data ({exc})")
            continue
        known = {sp.ex_date for sp in dataset.splits.get(symbol, [])}
        for item in reported:
            ex_date = pd.Timestamp(item["date"])
            if ex_date in known:
                continue
            split = Split(symbol, ex_date, float(item["ratio"]), "reported by Finnhub")
            dataset.splits.setdefault(symbol, []).append(split)
            notes.append(split.note())
        dataset.splits.get(symbol, []).sort(key=lambda sp: sp.ex_date)
    return notes


def latest_price(
    gateway: FinnhubGateway,
    symbol: str,
    *,
    max_age_s: float | None = None,
    now: float | None = None,
    require_time: bool = False,
) -> float:
    """The current quote's price, for a live fill. :class:`DataError` when there is none
    (Finnhub answers ``c == 0`` for an unknown symbol) or, with ``max_age_s``, when the
    quote's last trade is older than that (seconds; ``now`` is epoch seconds, default the
    clock). An unstamped quote (``t == 0``) passes the age check unless ``require_time``.
    Finnhub errors propagate (network: temporary)."""
    q = gateway.quote(symbol)
    price = q.get("c")
    if price is None or price <= 0:
        raise DataError(q["symbol"], "no live quote (Finnhub returned no price: unknown symbol?)")
    if require_time and not q.get("t"):
        raise DataError(q["symbol"], "live quote has no time: its age is unknown")
    if max_age_s is not None and q.get("t"):
        age = (time.time() if now is None else now) - q["t"]
        if age > max_age_s:
            raise DataError(q["symbol"], f"live quote is {age:.0f}s old (limit {max_age_s:.0f}s)")
    return float(price)


def fresh_quote_symbols(
    gateway: FinnhubGateway, symbols: Iterable[str], max_age_s: float, *, now: float | None = None
) -> list[str]:
    """Those of ``symbols`` whose quote has a price and a last trade at most ``max_age_s``
    seconds old: a live price even without a trade on the stream. A quote that cannot be
    had (DATA or Finnhub error) just leaves the symbol out."""
    fresh = []
    for symbol in symbols:
        try:
            latest_price(gateway, symbol, max_age_s=max_age_s, now=now, require_time=True)
        except (DataError, FinnhubError):
            continue
        fresh.append(symbol)
    return fresh


def _rows(symbol: str, frame: pd.DataFrame) -> list[dict]:
    return [
        {"Date": f"{day:%Y-%m-%d}", "Symbol": symbol, "Open": bar.open, "High": bar.high,
         "Low": bar.low, "Close": bar.close, "Volume": bar.volume}
        for day, bar in zip(frame.index, frame.itertuples(index=False), strict=True)
    ]


def _stream_and_quote_rows(
    gateway: FinnhubGateway, symbol: str, today: date, stream: TradeStream | None
) -> tuple[list[dict], str | None]:
    """The stream's daily bars up to ``today``, today's (the quote's) bar replaced by the quote's
    open/high/low/current price with the stream's volume. Returns rows and, without any, why."""
    bars = stream.builder.daily_bars(symbol) if stream is not None else None
    if bars is not None:
        bars = bars[bars.index <= pd.Timestamp(today)]
    quote_problem = None
    try:
        q = gateway.quote(symbol)
    except FinnhubError as exc:
        q, quote_problem = None, f"no quote ({exc})"
    if q is not None and (q.get("c") or 0) > 0:
        day = _quote_day(q, today)
        if day is not None:
            c = q["c"]
            o = q.get("o") or c
            h = max(q.get("h") or c, c, o)
            lo = min(q.get("l") or c, c, o)
            ts = pd.Timestamp(day)
            volume = 0.0
            if bars is not None and ts in bars.index:
                volume = float(bars.loc[ts, "volume"])
                bars = bars.drop(ts)
            quote_bar = pd.DataFrame({"open": [o], "high": [h], "low": [lo], "close": [c], "volume": [volume]},
                                     index=pd.DatetimeIndex([ts], name="date"))
            bars = quote_bar if bars is None or bars.empty else pd.concat([bars, quote_bar]).sort_index()
    elif q is not None:
        quote_problem = "no quote (Finnhub returned no price: unknown symbol?)"
    if bars is None or bars.empty:
        trades = "no trades on the stream" if stream is not None else "no trade stream"
        return [], f"no live data: {trades} and {quote_problem or 'no usable quote'}"
    return _rows(symbol, bars), None


def _quote_day(q: dict, today: date) -> date | None:
    """The exchange-local trading day of the quote's last trade (``today`` when unstamped);
    ``None`` for a quote stamped after ``today`` (never put a later price into today's view)."""
    t = int(q.get("t") or 0)
    if t <= 0:
        return today
    day = datetime.fromtimestamp(t, UTC).astimezone(ZoneInfo(EXCHANGE_TZ)).date()
    return day if day <= today else None
