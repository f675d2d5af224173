"""Technical indicators, computed with the ``ta`` library on pandas (no hand-written formulas).

:func:`indicator_snapshot` is what agents and priors see: the latest value of every
indicator as of the last bar given, plus a few plain facts (20-day high/low, return).
Callers pass point-in-time history (``MarketDataset.history``), so nothing here can look
ahead.
"""

from __future__ import annotations

import importlib.util
import math
import threading
import weakref

import numpy as np
import pandas as pd
from ta.momentum import RSIIndicator, StochasticOscillator
from ta.trend import MACD, ADXIndicator, SMAIndicator
from ta.volatility import AverageTrueRange, BollingerBands
from ta.volume import VolumeWeightedAveragePrice

from tools.market_data import MarketDataset

INDICATOR_WINDOWS = {"sma_fast": 20, "sma_slow": 50, "rsi": 14, "atr": 14, "adx": 14, "bb": 20}


def compute_indicators(bars: pd.DataFrame) -> pd.DataFrame:
    """Indicator columns for every bar. ``bars`` has open/high/low/close/volume columns."""
    high, low, close, volume = bars["high"], bars["low"], bars["close"], bars["volume"]
    macd = MACD(close=close, window_slow=26, window_fast=12, window_sign=9)
    bb = BollingerBands(close=close, window=20, window_dev=2)
    stoch = StochasticOscillator(high=high, low=low, close=close, window=14, smooth_window=3)
    out = pd.DataFrame(
        {
            "sma20": SMAIndicator(close=close, window=20).sma_indicator(),
            "sma50": SMAIndicator(close=close, window=50).sma_indicator(),
            "rsi14": RSIIndicator(close=close, window=14).rsi(),
            "macd": macd.macd(),
            "macd_signal": macd.macd_signal(),
            "macd_hist": macd.macd_diff(),
            "atr14": AverageTrueRange(high=high, low=low, close=close, window=14).average_true_range(),
            "bb_high": bb.bollinger_hband(),
            "bb_mid": bb.bollinger_mavg(),
            "bb_low": bb.bollinger_lband(),
            "bb_pband": bb.bollinger_pband(),
            "adx14": ADXIndicator(high=high, low=low, close=close, window=14).adx(),
            "stoch_k": stoch.stoch(),
            "stoch_d": stoch.stoch_signal(),
            "vwap14": VolumeWeightedAveragePrice(
                high=high, low=low, close=close, volume=volume, window=14
            ).volume_weighted_average_price(),
        },
        index=bars.index,
    )
    return out


_SERIES: dict[int, dict[tuple[str, int], pd.DataFrame | None]] = {}
_SERIES_LOCK = threading.Lock()


def indicator_series(dataset: MarketDataset, symbol: str, as_of: pd.Timestamp | None = None) -> pd.DataFrame | None:
    """:func:`compute_indicators` over the symbol's whole history, once per data set.

    Only for :func:`indicator_snapshot`'s ``series``: every indicator here is causal (its
    value at a bar depends on that bar and earlier ones only, from the same first bar), so
    row ``i`` equals the last row of ``compute_indicators(bars[: i + 1])`` bit for bit
    (checked in tests/test_backtest_lookahead.py) and a snapshot reads only the row of its
    own last bar. A replay then computes each symbol's indicators once, not once a day.

    A symbol with a split has one series per split segment, computed on its history
    adjusted through that segment (:meth:`MarketDataset.segment_bars`), since
    ``history(symbol, as_of)`` is adjusted only for splits effective by ``as_of``: pass
    ``as_of`` to get the right one. Without ``as_of`` such a symbol gets None (the
    snapshot then computes its indicators from the history it is given).
    """
    splits = dataset.splits.get(symbol)
    if splits and as_of is None:
        return None
    segment = 0 if not splits else sum(1 for sp in splits if sp.ex_date <= pd.Timestamp(as_of))
    with _SERIES_LOCK:
        per_symbol = _SERIES.get(id(dataset))
        if per_symbol is None:
            per_symbol = _SERIES[id(dataset)] = {}
            weakref.finalize(dataset, _SERIES.pop, id(dataset), None)
        if (symbol, segment) in per_symbol:
            return per_symbol[(symbol, segment)]
    bars = dataset.segment_bars(symbol, as_of) if splits else dataset.bars.get(symbol)
    try:
        series = compute_indicators(bars) if bars is not None and len(bars) >= 2 else None
    except Exception:  # the point-in-time computation decides (and explains) instead
        series = None
    with _SERIES_LOCK:
        per_symbol[(symbol, segment)] = series
    return series


def _row(frame: pd.DataFrame, i: int) -> dict[str, float]:
    """Row ``i`` of ``frame`` as ``{column: float}``, read via numpy (a row Series is slow)."""
    return dict(zip(frame.columns.tolist(), map(float, frame.to_numpy()[i].tolist()), strict=True))


def _series_row(series: pd.DataFrame | None, bars: pd.DataFrame) -> dict[str, float] | None:
    """The row of ``series`` for the last of ``bars`` when ``bars`` is its prefix, else None."""
    n = len(bars)
    if series is None or n > len(series) or series.index[0] != bars.index[0] or series.index[n - 1] != bars.index[-1]:
        return None
    return _row(series, n - 1)


# With no NaN to skip, pandas' Series.mean/std/max/min on float64 run these same numpy
# reductions (pairwise sum / n, two-pass variance), so numpy gives the same bits far faster.
# Not with bottleneck installed: pandas then takes std from it (naive summation).
_NUMPY_STATS_MATCH_PANDAS = importlib.util.find_spec("bottleneck") is None


def _window_stats(
    bars: pd.DataFrame, volumes: np.ndarray, highs: np.ndarray, lows: np.ndarray
) -> tuple[float, float, float, float]:
    """Mean and population std of the last 20 volumes, max of the last 20 highs, min of the lows."""
    # (the three are columns of one array, so they share its dtype)
    if _NUMPY_STATS_MATCH_PANDAS and volumes.dtype == np.float64:
        stats = (volumes[-20:].mean(), volumes[-20:].std(), highs[-20:].max(), lows[-20:].min())
        if not any(map(math.isnan, stats)):  # NaN: pandas skips NaN bars, numpy does not
            return tuple(map(float, stats))
    window20 = bars.iloc[-20:]
    return (float(window20["volume"].mean()), float(window20["volume"].std(ddof=0)),
            float(window20["high"].max()), float(window20["low"].min()))


def indicator_snapshot(symbol: str, bars: pd.DataFrame, series: pd.DataFrame | None = None) -> dict:
    """Latest indicator values as a flat JSON-safe dict (prices in the data's currency).

    ``series`` (optional, from :func:`indicator_series`) supplies the indicator row of the
    last bar instead of recomputing the history; the result is identical.
    Raises ``ValueError`` naming the indicator when any value is not finite (too little
    or degenerate history), so the caller can report a DATA error instead of trading.
    """
    n = len(bars)
    if n < 2:
        raise ValueError(f"only {n} bars")
    last = _series_row(series, bars)
    if last is None:
        try:
            ind = compute_indicators(bars)
        except (IndexError, ZeroDivisionError) as exc:  # ta fails this way on very short series
            raise ValueError(f"indicators not computable on {n} bars ({type(exc).__name__})") from exc
        last = _row(ind, -1)
    # One 2-D array (a view when all columns are float64) rather than a pandas object per
    # value read. Columns in the order the pandas version first read them: same KeyError.
    values, column = bars.to_numpy(), bars.columns.get_loc
    closes, volumes, opens, highs, lows = (values[:, column(c)] for c in ("close", "volume", "open", "high", "low"))
    vol20, vol_std20, high20, low20 = _window_stats(bars, volumes, highs, lows)
    close, volume = float(closes[-1]), float(volumes[-1])
    ref = float(closes[-21]) if n > 20 else float(closes[0])
    ref5 = float(closes[-6]) if n > 5 else float(closes[0])
    snap = {
        "symbol": symbol,
        "date": f"{bars.index[-1]:%Y-%m-%d}",
        "bars": n,
        "open": float(opens[-1]),
        "high": float(highs[-1]),
        "low": float(lows[-1]),
        "close": close,
        "prev_close": float(closes[-2]),
        "volume": volume,
        "volume_avg20": vol20,
        "volume_ratio": volume / vol20 if vol20 > 0 else 0.0,
        "high20": high20,
        "low20": low20,
        "return_20d": close / ref - 1.0,
        "return_5d": close / ref5 - 1.0,
        "volume_z20": (volume - vol20) / vol_std20 if vol_std20 > 0 else 0.0,
        **last,
    }
    snap["atr_pct"] = snap["atr14"] / close
    snap["change_pct"] = close / snap["prev_close"] - 1.0
    bad = [k for k, v in snap.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise ValueError(f"indicator(s) not computable: {', '.join(bad)}")
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in snap.items()}
