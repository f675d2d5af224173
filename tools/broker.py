"""Paper-broker cost model: fees and slippage. Pure functions, fractions of 1.

Slippage model (documented, deterministic), as a fraction of the reference price::

    participation = order shares / 20-day average daily shares
    slippage = min(max_slippage, 0.05 * atr_pct + atr_pct * sqrt(participation))

The first term is a spread/timing cost of 5% of the day's typical range; the second is
the square-root market-impact law scaled by volatility. With ATR at 2% of price, a
small order pays about 0.1%; the cap (default 0.5%) bounds it, and
unknown volatility or liquidity pays the cap. Buys fill above the
reference price, sells below. Fees are ``fee_rate`` (default 0.25%) of the filled notional.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

from tools.market.price_guard import quote_is_plausible

if TYPE_CHECKING:
    from tools.market_data import MarketDataset


def slippage_fraction(
    *, atr_pct: float, order_shares: float, avg_daily_shares: float, max_slippage: float = 0.005
) -> float:
    """Slippage as a fraction of price, in ``[0, max_slippage]``."""
    known = math.isfinite(atr_pct) and math.isfinite(avg_daily_shares) and avg_daily_shares > 0
    if not known:
        return max_slippage  # unknown volatility or liquidity: assume the worst
    participation = max(0.0, order_shares) / avg_daily_shares
    atr_pct = max(0.0, atr_pct)
    raw = 0.05 * atr_pct + atr_pct * math.sqrt(participation)
    return min(max_slippage, max(0.0, raw))


def fill_price(reference: float, side: str, slippage: float) -> float:
    """Price actually paid (BUY) or received (SELL) after slippage."""
    return reference * (1.0 + slippage) if side == "BUY" else reference * (1.0 - slippage)


def fee(notional: float, fee_rate: float) -> float:
    """Broker fee in cash for a fill of ``notional`` (always >= 0)."""
    return abs(notional) * fee_rate


# ---------------------------------------------------------------- point-in-time fills and marks
#
# The fill-day rule, shared by the graph's broker, its valuation and the baselines: orders
# decided on day D fill only on F = the market calendar's next day, at the symbol's bar ON F
# (no bar on F: no fill). A held symbol is marked at its open on F when it trades on F, else
# at its last close before F (in F's share units). Nothing dated after F is ever read.


def quote_within_band(quote: float, reference: float, band: float) -> bool:
    """True when a live ``quote`` may fill: finite, positive and within ``±band`` (a fraction,
    0.15 = 15%) of ``reference``, the price the agents decided on (the candidate's close).

    The quote must first pass the market guard's :func:`tools.market.price_guard.quote_is_plausible`
    (finite, positive, not absurd; its own band is wider); a non-finite or non-positive
    reference never lets a quote through: untrusted input."""
    if not quote_is_plausible(quote, None):
        return False
    if not (math.isfinite(reference) and reference > 0):
        return False
    return abs(quote / reference - 1.0) <= band


def _usable_price(value: object) -> float | None:
    try:
        price = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return price if math.isfinite(price) and price > 0 else None


def fill_day_marks(
    dataset: MarketDataset, symbols: list[str], as_of: pd.Timestamp, fill_day: pd.Timestamp | None
) -> tuple[dict[str, float], list[str]]:
    """Marks (USD per as-traded share on ``fill_day``) for ``symbols`` and notes on bad prices.

    - ``fill_day`` given (replay): the symbol's open on ``fill_day`` when it has a bar that
      day, else its last close before ``fill_day`` in that day's share units
      (``dataset.last_close(symbol, fill_day)``, which then is the last bar before it,
      adjusted for a split effective on ``fill_day``).
    - ``fill_day`` None (live, where fills happen on ``as_of`` at the quote): the last
      close as of ``as_of``, i.e. today's price.

    A price that is not finite and positive is never used: the mark falls back to the last
    close as of ``as_of`` (converted to ``fill_day``'s shares), and a symbol with no usable
    price at all is left out (``tools.portfolio.value_account`` then uses its average cost).
    Each fallback adds one note ``"DATA SYM: ..."``. No bar after ``fill_day`` is read.
    """
    marks: dict[str, float] = {}
    notes: list[str] = []
    day = pd.Timestamp(as_of)
    for symbol in symbols:
        price = None
        if fill_day is not None:
            bar = dataset.bar_on(symbol, fill_day)
            if bar is not None:
                price = _usable_price(bar["open"])
                if price is None:
                    notes.append(f"DATA {symbol}: unusable open {bar['open']!r} on {fill_day:%Y-%m-%d}")
            else:
                price = _usable_price(dataset.last_close(symbol, fill_day))
        else:
            price = _usable_price(dataset.last_close(symbol, day))
        if price is None:
            close = _usable_price(dataset.last_close(symbol, day))
            if close is not None and fill_day is not None:
                close = close / dataset.split_factor(symbol, day, fill_day)
            if close is None:
                notes.append(f"DATA {symbol}: no usable price up to {day:%Y-%m-%d}; marked at cost")
                continue
            price = close
        marks[symbol] = price
    return marks, notes
