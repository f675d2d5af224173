"""Outcome tracking maths: resolve a prediction against what the market did, score it,
and update an agent's vote weight. Pure functions.

A prediction made on day D is resolved after ``horizon`` bars of its symbol: entry is the
open of the first bar after D (where an order would have filled), exit the close of the
``horizon``-th bar. Only bars dated on or before the resolving cycle's day are read.

Every prediction is a signal ``s`` in [-1, 1] (direction times conviction). Its forecast
that the price rises is ``p = (1 + s) / 2``; the Brier loss ``(p - y)^2`` (``y`` = 1 if
the return is positive) is a proper scoring rule. An uninformative forecast (``s = 0``)
loses 0.25, so weights move by ``w * exp(-eta * (loss - 0.25))``: up when an agent beats
a coin, down when it does worse, clipped to ``[floor, cap]`` so a bad agent can recover.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from tools.market_data import MarketDataset

NEUTRAL_LOSS = 0.25
HOLD_BAND = 0.02  # a HOLD/neutral call is right when the move stays within +-2%


@dataclass(frozen=True)
class Resolution:
    entry_price: float
    exit_price: float
    exit_date: str
    realized_return: float


def resolve(dataset: MarketDataset, symbol: str, predicted_on: str, horizon: int, now: pd.Timestamp) -> Resolution | None:
    """What happened ``horizon`` bars after ``predicted_on``, seen from ``now``; None if not yet known."""
    frame = dataset.bars.get(symbol)
    if frame is None:
        return None
    dates = frame.index
    first_after = dates.searchsorted(pd.Timestamp(predicted_on), side="right")
    known = dates.searchsorted(now, side="right")  # bars dated on or before now: all that may be read
    if known - first_after < horizon:
        return None
    last = first_after + horizon - 1
    entry, exit_ = float(frame["open"].iat[first_after]), float(frame["close"].iat[last])
    return Resolution(entry, exit_, f"{dates[last]:%Y-%m-%d}", exit_ / entry - 1.0)


def first_unresolvable_day(dataset: MarketDataset, now: pd.Timestamp, horizon: int) -> str | None:
    """The first day whose predictions cannot have ``horizon`` bars by ``now`` (YYYY-MM-DD).

    The calendar holds every symbol's dates, so a prediction made on or after this day
    has fewer than ``horizon`` calendar bars after it, and :func:`resolve` would return
    None. None when no prediction can be resolved yet (not that many bars up to ``now``)."""
    cal = dataset.calendar
    i = int(cal.searchsorted(now, side="right")) - horizon
    return f"{cal[i]:%Y-%m-%d}" if i >= 0 else None


def is_hit(signal: float, realized_return: float, hold_band: float = HOLD_BAND) -> bool:
    if signal > 0:
        return realized_return > 0
    if signal < 0:
        return realized_return < 0
    return abs(realized_return) < hold_band


def brier_loss(signal: float, realized_return: float) -> float:
    p_up = 0.5 + 0.5 * max(-1.0, min(1.0, signal))
    y = 1.0 if realized_return > 0 else 0.0
    return (p_up - y) ** 2


def update_weight(weight: float, loss: float, *, eta: float, floor: float, cap: float) -> float:
    return min(cap, max(floor, weight * math.exp(-eta * (loss - NEUTRAL_LOSS))))
