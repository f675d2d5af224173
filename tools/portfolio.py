"""Portfolio accounting: positions, cash, valuation. Pure, no I/O.

Units: cash and prices in USD, quantities in shares (fractional allowed). Realized P&L
uses the average-cost method and is net of the sell fee; the buy fee is part of cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
        return sorted(s for s, p in self.positions.items() if abs(p.qty) > 1e-12)


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
    """Apply one fill in place; returns the realized P&L (0 for a buy that opens or adds)."""
    pos = account.positions.get(symbol, Position(0.0, 0.0))
    realized = 0.0
    if side == "BUY":
        cost = pos.qty * pos.avg_cost + qty * price + fee
        pos = Position(pos.qty + qty, cost / (pos.qty + qty))
        account.cash -= qty * price + fee
    else:
        realized = (price - pos.avg_cost) * qty - fee
        pos = Position(pos.qty - qty, pos.avg_cost)
        account.cash += qty * price - fee
    if abs(pos.qty) <= 1e-12:
        account.positions.pop(symbol, None)
    else:
        account.positions[symbol] = pos
    return realized
