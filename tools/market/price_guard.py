"""Outlier guards: a bar or quote far outside a symbol's recent range is a DATA issue.

Pure functions on numpy/pandas; no I/O. A rejected bar is not a price: it gets no fill,
no mark and no peak (the data set removes it and lists it in its data notes).

A bar ``t`` is rejected when

- its open or close lies outside its own ``[low, high]`` by more than
  :data:`RANGE_TOLERANCE` (1%, vendor rounding passes), or
- its close's log return against the last ACCEPTED close (so the bar after a spike is
  judged against the last good price) is both far outside the symbol's recent range,
  robust z-score ``|r - median| / (1.4826 * max(MAD, MAD_FLOOR) * sqrt(gap))`` above
  ``band_z`` over the trailing ``lookback`` accepted log returns (judged once
  :data:`MIN_RETURNS` are known; ``gap`` is the business days since that close), and
  larger than ``log(1 + min_move)`` either way (0.6: up 60% or down 37.5%), so a real
  volatile day passes.

A persistent new level is accepted again after ``confirm`` consecutive rejected bars
whose closes agree with each other (each within ``min_move`` of the previous one): the
next bar is judged against the last of them. Those ``confirm`` bars stay rejected.
Prices that are not finite, <= 0 or above ``max_price`` are caught earlier, by the CSV
validation (a symbol issue from that date on), and by :func:`quote_is_plausible`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

RANGE_TOLERANCE = 0.01  # open/close outside [low, high] by more than 1%: not a real bar
MAD_FLOOR = 0.005  # 0.5% a day: a very calm history does not make every move an outlier
MIN_RETURNS = 10  # accepted returns needed before the z-score is judged
MAD_SCALE = 1.4826  # MAD of a normal distribution -> its standard deviation


@dataclass(frozen=True)
class GuardConfig:
    """The band (see the module docstring). ``max_price``: absurd above this (USD)."""

    band_z: float = 12.0
    min_move: float = 0.6
    lookback: int = 60
    confirm: int = 3
    max_price: float = 1e7


@dataclass(frozen=True)
class RejectedBar:
    """A bar removed as a data issue: ``reason`` says why, in one line."""

    symbol: str
    date: pd.Timestamp
    reason: str

    def note(self) -> str:
        return f"{self.symbol} bar of {self.date:%Y-%m-%d} rejected: {self.reason}"


def price_is_sane(price: float, max_price: float = GuardConfig.max_price) -> bool:
    """A finite price in ``(0, max_price]``."""
    return isinstance(price, (int, float)) and math.isfinite(price) and 0 < price <= max_price


def quote_is_plausible(price: float, reference: float | None, config: GuardConfig = GuardConfig()) -> bool:
    """Whether a live quote may be used as a price, against the last accepted close
    ``reference`` (None: only the sanity checks). A quote is implausible when not finite,
    <= 0, above ``max_price``, or more than a factor ``1 + min_move`` away from
    ``reference`` either way (no history here, so the absolute floor is the band)."""
    if not price_is_sane(price, config.max_price):
        return False
    if reference is None or not price_is_sane(reference, config.max_price):
        return True
    return abs(math.log(price / reference)) <= math.log1p(config.min_move)


def intraday_rejects(bars: pd.DataFrame) -> np.ndarray:
    """Boolean per bar: open or close outside the bar's own range beyond the tolerance."""
    o, h, lo, c = (bars[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close"))
    top, bottom = h * (1 + RANGE_TOLERANCE), lo * (1 - RANGE_TOLERANCE)
    return (np.maximum(o, c) > top) | (np.minimum(o, c) < bottom)


def intraday_reason(bar: pd.Series) -> str:
    return (f"open {bar['open']:g} / close {bar['close']:g} outside the day's range "
            f"{bar['low']:g}-{bar['high']:g} (tolerance {RANGE_TOLERANCE:.0%})")


def return_rejects(dates: pd.DatetimeIndex, close: np.ndarray, config: GuardConfig) -> dict[int, str]:
    """Rows rejected by the return test, with their reasons (see the module docstring).

    ``close`` must be positive and split-adjusted (a split is not a return)."""
    floor = math.log1p(config.min_move)
    logs = np.log(close)
    if len(logs) < 2 or not (np.abs(np.diff(logs)) > floor).any():
        return {}  # exact shortcut: every rejection needs a move above the floor
    days = dates.to_numpy(dtype="datetime64[D]")
    rejected: dict[int, str] = {}
    returns: list[float] = []
    last = 0  # row of the last accepted close
    pending: list[int] = []  # consecutive rejected rows that agree with each other
    for i in range(1, len(logs)):
        r = logs[i] - logs[last]
        reason = None
        if abs(r) > floor and len(returns) >= MIN_RETURNS:
            window = np.asarray(returns[-config.lookback:])
            med = float(np.median(window))
            mad = max(float(np.median(np.abs(window - med))), MAD_FLOOR)
            gap = max(1, int(np.busday_count(days[last], days[i])))
            z = abs(r - med) / (MAD_SCALE * mad * math.sqrt(gap))
            if z > config.band_z:
                reason = (f"close {close[i]:g} is {math.exp(r):.3g}x the last accepted close "
                          f"{close[last]:g} ({dates[last]:%Y-%m-%d}), robust z {z:.1f} > {config.band_z:g}")
        if reason is None:
            returns.append(float(r))
            last, pending = i, []
            continue
        rejected[i] = reason
        if pending and abs(logs[i] - logs[pending[-1]]) > floor:
            pending = []
        pending.append(i)
        if len(pending) >= config.confirm:  # a persistent new level: judge from here on
            last, pending = i, []
    return rejected
