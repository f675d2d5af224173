"""Outcome tracking maths: resolve a prediction against what the market did. Pure functions.

A prediction made on day D is resolved after ``horizon`` bars of its symbol: entry is the
open of the first bar after D (where an order would have filled), exit the close of the
``horizon``-th bar. Only bars dated on or before the resolving cycle's day are read.

What is scored is the EXCESS return over the universe: the symbol's return minus the
equal-weight mean return of every symbol in the data set over the same bars (close before
the entry bar to the exit close, from ``dataset.close_panel``: ratios, so scale-invariant
under split adjustment, and dated no later than the exit bar). A call that is right only
because the whole market rose is not skill. Scores and weights: tools/learning/.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tools.market_data import MarketDataset

HOLD_BAND = 0.02  # a HOLD/neutral call is right when the move stays within +-2%


@dataclass(frozen=True)
class Resolution:
    entry_price: float
    exit_price: float
    exit_date: str
    realized_return: float
    universe_return: float | None = None  # equal-weight mean over the same bars; None: unknown

    @property
    def excess_return(self) -> float:
        return self.realized_return - (self.universe_return or 0.0)


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
    return Resolution(entry, exit_, f"{dates[last]:%Y-%m-%d}", exit_ / entry - 1.0,
                      universe_return(dataset, dates[first_after], dates[last]))


def universe_return(dataset: MarketDataset, entry_day: pd.Timestamp, exit_day: pd.Timestamp) -> float | None:
    """Equal-weight mean return of the data set's symbols from the close before
    ``entry_day`` to the close of ``exit_day`` (symbols with both closes); None when the
    entry is the calendar's first day or no symbol has both closes."""
    cal = dataset.calendar
    i, j = int(cal.searchsorted(entry_day)), int(cal.searchsorted(exit_day))
    if i < 1 or j >= len(cal) or cal[j] != exit_day:
        return None
    closes = dataset.symbol_closes
    base, end = closes[:, i - 1], closes[:, j]
    ok = np.isfinite(base) & np.isfinite(end) & (base > 0)
    if not ok.any():
        return None
    return float(np.mean(end[ok] / base[ok] - 1.0))


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
