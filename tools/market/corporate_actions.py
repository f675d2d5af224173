"""Split and reverse-split detection and back-adjustment of daily OHLCV bars.

Pure functions on numpy/pandas; no I/O. A split with ratio ``r`` (new shares per old
share: 2.0 for 2:1, 0.1 for a 1:10 reverse split) effective at the open of bar ``t``
divides the price by ``r``. It is detected on bar ``t`` from bars ``t-1`` and ``t`` only,
so a decision on any day sees exactly the splits a trader could have seen by then:

- ``open_t / close_{t-1}`` and ``close_t / close_{t-1}`` are both within a tolerance of
  ``1/r`` in log terms (:data:`SPLIT_TOLERANCE` = 0.08, about 8%, for consecutive
  business days; ``* sqrt(gap)`` across a gap of several business days, capped at
  :data:`MAX_SPLIT_TOLERANCE`; and never more than a third of ``|log r|``, so 5:4 is not
  mistaken for an ordinary 20% day with a tiny tolerance);
- the day's own range does not explain the move: ``close_{t-1} / r`` lies within the
  tolerance of ``[low_t, high_t]`` while ``close_{t-1}`` itself lies more than
  ``|log r| / 2`` outside it;
- the traded value (close * volume) changes by less than a factor of
  :data:`MAX_VALUE_CHANGE` from bar ``t-1`` to bar ``t``: a split leaves it about unchanged
  (volume scales with the share count), a news gap multiplies it (skipped when either
  volume is 0);
- the small ratios (5:4, 3:2 and their reverses, ``|log r| < log 2``) need consecutive
  business days: across a gap a 25% move is ordinary;
- exactly one standard ratio (:data:`STANDARD_RATIOS`) passes (unambiguous).

On the embedded S&P 500 set this finds ETFC's 1:10 reverse split and the 2:1 splits of
DHR, ESRX and GIS, plus STR on 2010-07-01: Questar's spin-off of QEP, after which the
price was a third (x0.337) of the day before, which OHLCV cannot tell from a 3:1 split;
adjusting it as one keeps a holder's value, like a total-return adjustment would.

A genuine 50% crash that opens and closes near half the previous close passes these
tests too; OHLC alone cannot tell the two apart, which is why every detected split is
listed in the data notes with its evidence, and ``split_adjust`` turns detection off.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

SPLIT_TOLERANCE = 0.08  # |log| tolerance per business day between the two bars
MAX_SPLIT_TOLERANCE = 0.25  # cap across long gaps
MAX_VALUE_CHANGE = 2.5  # traded value t / t-1 within [1/2.5, 2.5]
_BASE = (2.0, 3.0, 4.0, 5.0, 10.0, 1.5, 1.25)
STANDARD_RATIOS: tuple[float, ...] = _BASE + tuple(1.0 / r for r in _BASE)
PRICE_COLUMNS = ("open", "high", "low", "close")


@dataclass(frozen=True)
class Split:
    """A split (``ratio`` > 1, e.g. 2.0 for 2:1) or reverse split (``ratio`` < 1, 0.5 for 1:2)
    effective at the open of ``ex_date``: one old share becomes ``ratio`` new shares."""

    symbol: str
    ex_date: pd.Timestamp
    ratio: float
    evidence: str = ""

    def label(self) -> str:
        """'2:1 split' or '1:10 reverse split'."""
        if self.ratio >= 1:
            return f"{_fraction(self.ratio)} split"
        return f"{_fraction(1.0 / self.ratio, reverse=True)} reverse split"

    def note(self) -> str:
        """One line for the data notes."""
        if self.ratio >= 1:
            how = f"prices before it divided by {self.ratio:g}, volumes multiplied"
        else:
            how = f"prices before it multiplied by {1.0 / self.ratio:g}, volumes divided"
        return f"{self.symbol} {self.label()} on {self.ex_date:%Y-%m-%d}: {how} ({self.evidence})"


def _fraction(value: float, reverse: bool = False) -> str:
    for den in (1, 2, 4):
        num = value * den
        if abs(num - round(num)) < 1e-9:
            a, b = int(round(num)), den
            return f"{b}:{a}" if reverse else f"{a}:{b}"
    return f"1:{value:g}" if reverse else f"{value:g}:1"


def _distance_outside(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How far (in the same log units) ``x`` lies outside ``[lo, hi]``; 0 inside."""
    return np.maximum(0.0, np.maximum(lo - x, x - hi))


def detect_splits(symbol: str, bars: pd.DataFrame, ratios: tuple[float, ...] = STANDARD_RATIOS,
                  tolerance: float = SPLIT_TOLERANCE) -> list[Split]:
    """Splits in one symbol's as-traded bars (sorted by date, positive prices), by ex_date.

    Each bar is compared with the bar before it only (see the module docstring)."""
    n = len(bars)
    if n < 2:
        return []
    logs = {c: np.log(bars[c].to_numpy(dtype=float)) for c in PRICE_COLUMNS}
    prev = logs["close"][:-1]
    x_open, x_close = logs["open"][1:] - prev, logs["close"][1:] - prev
    lo, hi = logs["low"][1:], logs["high"][1:]
    days = bars.index.to_numpy(dtype="datetime64[D]")
    gap = np.maximum(1, np.busday_count(days[:-1], days[1:]))
    tol = np.minimum(tolerance * np.sqrt(gap), MAX_SPLIT_TOLERANCE)
    raw_outside = _distance_outside(prev, lo, hi)
    volume = bars["volume"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        value_change = np.abs(np.log(volume[1:] / volume[:-1]) + x_close)
    value_ok = ~(value_change > math.log(MAX_VALUE_CHANGE))  # NaN/inf (a zero volume): not judged
    value_ok |= (volume[1:] <= 0) | (volume[:-1] <= 0)
    # Fast exit: no split moves the price by less than the smallest ratio's half-log.
    min_jump = min(abs(math.log(r)) for r in ratios) / 2
    candidates = np.flatnonzero((raw_outside > min_jump) & value_ok)
    found: list[Split] = []
    for k in candidates:
        matches = []
        for r in ratios:
            expect = -math.log(r)
            if abs(expect) < math.log(2) - 1e-9 and gap[k] > 1:
                continue
            t = min(tol[k], abs(expect) / 3)
            scaled_outside = _distance_outside(prev[k] + expect, lo[k], hi[k])
            if (abs(x_open[k] - expect) <= t and abs(x_close[k] - expect) <= t
                    and scaled_outside <= t and raw_outside[k] > abs(expect) / 2):
                matches.append(r)
        if len(matches) != 1:
            continue
        r = matches[0]
        i = k + 1
        prev_close = float(bars["close"].iloc[i - 1])
        evidence = (f"open {bars['open'].iloc[i]:g}, close {bars['close'].iloc[i]:g}, range "
                    f"{bars['low'].iloc[i]:g}-{bars['high'].iloc[i]:g} vs previous close {prev_close:g} "
                    f"on {bars.index[i - 1]:%Y-%m-%d}")
        found.append(Split(symbol, pd.Timestamp(bars.index[i]), float(r), evidence))
    return found


def split_factors(index: pd.DatetimeIndex, splits: list[Split], upto: pd.Timestamp | None = None) -> np.ndarray:
    """Per bar: the product of the ratios of splits after its date (and on or before
    ``upto`` when given): how many shares one share of that day has become."""
    factors = np.ones(len(index))
    for split in splits:
        if upto is not None and split.ex_date > upto:
            continue
        factors[: index.searchsorted(split.ex_date, side="left")] *= split.ratio
    return factors


def adjust_bars(bars: pd.DataFrame, splits: list[Split], upto: pd.Timestamp | None = None) -> pd.DataFrame:
    """``bars`` back-adjusted for ``splits`` (those with ex_date <= ``upto`` when given):
    prices divided by the factor, volumes multiplied. The same frame when nothing applies."""
    factors = split_factors(bars.index, splits, upto)
    if (factors == 1.0).all():
        return bars
    out = bars.copy()
    for col in PRICE_COLUMNS:
        out[col] = bars[col].to_numpy(dtype=float) / factors
    out["volume"] = bars["volume"].to_numpy(dtype=float) * factors
    return out


def day_key(value: object) -> str:
    """``YYYY-MM-DD`` of a day given as that string (longer strings cut) or a date/Timestamp."""
    return value[:10] if isinstance(value, str) else f"{value:%Y-%m-%d}"


def due_splits(held: Iterable[str], splits: Mapping[str, Iterable], upto: object) -> list[tuple[str, str, float]]:
    """``(symbol, ex_date, ratio)`` of the splits of the ``held`` symbols effective on or
    before ``upto`` (a day), sorted by symbol then ex-date. ``splits`` maps a symbol to
    objects with ``ex_date`` and ``ratio`` (:class:`Split`); ratios are not checked here
    (see :func:`split_applies`)."""
    until = day_key(upto)
    return sorted((symbol, day_key(split.ex_date), float(split.ratio))
                  for symbol in held for split in splits.get(symbol, ()) if day_key(split.ex_date) <= until)


def split_applies(ratio: float, ex_date: str, last_fill: str | None) -> bool:
    """Whether a due split converts a held position: a finite positive ``ratio`` (untrusted
    input: never scale a position by a nonsense ratio), and an ``ex_date`` after the
    symbol's last fill day (a fill on or after the ex-date was booked in post-split shares,
    since splits are applied before every fill). ``last_fill`` None or "": never filled.
    Whether it was applied already is the caller's record."""
    if not (math.isfinite(ratio) and ratio > 0):
        return False
    return not last_fill or last_fill < ex_date


def split_position(qty: float, avg_cost: float, ratio: float) -> tuple[float, float]:
    """A position (shares, USD per share) across a split of ``ratio`` new shares per old:
    ``(qty * ratio, avg_cost / ratio)``, so its cost and market value are unchanged (no fake
    P&L). A 1:10 reverse split (0.1) turns 25 shares at 4.0 into 2.5 shares at 40.0; a
    short's negative quantity keeps its sign."""
    return qty * ratio, avg_cost / ratio
