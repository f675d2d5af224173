"""Portfolio accounting: positions, cash, valuation. Pure, no I/O.

Units: cash and prices in USD, quantities in shares (fractional allowed). Realized P&L
uses the average-cost method and is net of the sell fee; the buy fee is part of cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Shares below this are dust, not a holding: float residue of a close (1e-9 shares) must
# never count as held. The broker closes such positions out (and any worth less than the
# ``dust_notional`` setting) and a closing SELL sets a position to exactly zero.
DUST_QTY = 1e-6


@dataclass
class Position:
    qty: float
    avg_cost: float  # per share, including the buy fee


@dataclass
class Account:
    portfolio: str
    cash: float
    starting_cash: float
    peak_equity: float
    positions: dict[str, Position] = field(default_factory=dict)

    def held(self) -> list[str]:
        """Symbols held, dust (below ``DUST_QTY`` shares) left out."""
        return sorted(s for s, p in self.positions.items() if abs(p.qty) >= DUST_QTY)

    def dust(self) -> list[str]:
        """Symbols with a position of a few float crumbs (below ``DUST_QTY`` shares)."""
        return sorted(s for s, p in self.positions.items() if abs(p.qty) < DUST_QTY)


@dataclass(frozen=True)
class Valuation:
    cash: float
    equity: float
    gross_exposure: float
    unrealized_pnl: float
    positions: dict[str, dict]

    def as_dict(self) -> dict:
        return {
            "cash": round(self.cash, 6),
            "equity": round(self.equity, 6),
            "gross_exposure": round(self.gross_exposure, 6),
            "exposure_pct": round(self.gross_exposure / self.equity, 6) if self.equity > 0 else 0.0,
            "unrealized_pnl": round(self.unrealized_pnl, 6),
            "positions": self.positions,
        }


def value_account(account: Account, prices: dict[str, float]) -> Valuation:
    """Mark positions at ``prices`` (falls back to average cost for a missing price)."""
    positions: dict[str, dict] = {}
    market_value = gross = unrealized = 0.0
    for symbol in account.held():
        pos = account.positions[symbol]
        price = prices.get(symbol, pos.avg_cost)
        value = pos.qty * price
        pnl = (price - pos.avg_cost) * pos.qty
        market_value += value
        gross += abs(value)
        unrealized += pnl
        positions[symbol] = {
            "qty": round(pos.qty, 8),
            "avg_cost": round(pos.avg_cost, 6),
            "price": round(price, 6),
            "market_value": round(value, 6),
            "unrealized_pnl": round(pnl, 6),
        }
    return Valuation(account.cash, account.cash + market_value, gross, unrealized, positions)


def apply_fill(account: Account, symbol: str, side: str, qty: float, price: float, fee: float) -> float:
    """Apply one fill in place; returns the realized P&L of the part that closes a position.

    Positions are signed (negative = short, only reachable with short selling enabled).
    The part of a fill that opens or adds sets the average cost, the fee included (a
    long pays it on top, a short's entry is lowered by it). The part that reduces or
    closes realizes ``(price - avg_cost) * closed_qty`` for a long and the mirror for a
    short, net of its share of the fee. A fill larger than the position flips it.
    """
    if qty <= 0:
        raise ValueError(f"fill quantity must be positive, got {qty!r}")
    delta = qty if side == "BUY" else -qty
    pos = account.positions.get(symbol, Position(0.0, 0.0))
    account.cash += -qty * price - fee if side == "BUY" else qty * price - fee
    realized = 0.0
    closing = min(qty, abs(pos.qty)) if pos.qty * delta < 0 else 0.0
    opening = qty - closing
    if closing:
        closing_fee = fee * closing / qty
        direction = 1.0 if pos.qty > 0 else -1.0
        realized = direction * (price - pos.avg_cost) * closing - closing_fee
        pos = Position(pos.qty + (closing if delta > 0 else -closing), pos.avg_cost)
    if opening > 1e-15:
        opening_fee = fee * opening / qty
        signed = opening if delta > 0 else -opening
        # per-share basis: a long pays the fee on top, a short receives less
        basis = (abs(pos.qty) * pos.avg_cost + opening * price + (opening_fee if delta > 0 else -opening_fee))
        pos = Position(pos.qty + signed, basis / (abs(pos.qty) + opening))
    if abs(pos.qty) <= 1e-12:
        account.positions.pop(symbol, None)
    else:
        account.positions[symbol] = pos
    return realized
