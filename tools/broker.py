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
