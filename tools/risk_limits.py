"""Hard risk limits, enforced in code. No model output can loosen them.

:func:`size_order` turns a proposal into a share quantity that respects every limit.
A model may pass a tighter ``max_position_pct``; the effective cap is always the smaller
of the configured one and the model's (``min``), so a model can only tighten.

Hard blocks on an order that opens or adds to a position (a BUY, or a SELL opening a
short): its plan must be coherent (a BUY's stop below the entry and its target above it;
mirrored for a short), its size is cut so that ``|price - stop| x shares`` is at most
``risk_per_trade_pct`` of equity (the risk budget), and an order below
``min_order_notional`` USD is not placed. A protection's block (drawdown halt, breakers,
:mod:`tools.trading.protections`) comes first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tools.trading.plans import coherent_levels


@dataclass(frozen=True)
class Limits:
    max_position_pct: float
    max_gross_exposure_pct: float
    allow_short: bool
    max_drawdown_pct: float
    fee_rate: float
    risk_per_trade_pct: float = 1.0  # of equity at risk to the stop; 1.0 = no budget
    min_order_notional: float = 0.0  # USD


@dataclass
class SizedOrder:
    symbol: str
    side: str  # BUY or SELL
    qty: float
    price: float  # reference: last close the agents saw
    notional: float
    capped_by: list[str] = field(default_factory=list)
    blocked: str | None = None

    def as_dict(self) -> dict:
        return {
            "symbol": self.symbol,
            "side": self.side,
            "qty": round(self.qty, 8),
            "price": round(self.price, 6),
            "notional": round(self.notional, 6),
            "capped_by": list(self.capped_by),
            "blocked": self.blocked,
        }


def size_order(
    *,
    symbol: str,
    side: str,
    size_pct: float,
    price: float,
    equity: float,
    cash: float,
    position_qty: float,
    gross_exposure: float,
    peak_equity: float,
    limits: Limits,
    model_max_position_pct: float | None = None,
    stop: float | None = None,
    target: float | None = None,
    blocks_orders: str | None = None,
    blocks_buys: str | None = None,
) -> SizedOrder:
    """Largest order within limits. ``size_pct`` is the requested size as a share of equity.

    ``stop``/``target`` (USD per share) are the plan of an order that opens or adds;
    ``blocks_orders``/``blocks_buys`` are the protections' reasons (None = no block)."""
    order = SizedOrder(symbol, side, 0.0, price, 0.0)
    if price <= 0 or equity <= 0:
        order.blocked = "no valid price or equity"
        return order
    if blocks_orders:
        order.blocked = blocks_orders
        return order
    # opens or adds: a BUY that is not covering a short, or a SELL that opens/adds to a short
    opening = (side == "BUY" and position_qty >= -1e-12) or (
        side == "SELL" and limits.allow_short and position_qty <= 1e-12)
    if opening and side == "BUY" and blocks_buys:
        order.blocked = blocks_buys
        return order
    if opening and (incoherent := coherent_levels(side, price, stop, target)):
        order.blocked = incoherent
        return order
    cap_pct = limits.max_position_pct
    if model_max_position_pct is not None:
        cap_pct = min(cap_pct, max(0.0, model_max_position_pct))
    position_value = position_qty * price

    if side == "SELL":
        if position_qty <= 0 and not limits.allow_short:
            order.blocked = "no short selling: nothing held to sell"
            return order
        wanted = max(0.0, size_pct) * equity / price
        if not limits.allow_short:
            if wanted >= position_qty - 1e-12:
                wanted = position_qty
                order.capped_by.append("position held")
        else:
            floor_qty = -cap_pct * equity / price  # deepest allowed short
            if position_qty - wanted < floor_qty:
                wanted = position_qty - floor_qty
                order.capped_by.append("max position")
        order.qty = max(0.0, wanted)
    else:
        if peak_equity > 0 and equity < peak_equity * (1.0 - limits.max_drawdown_pct):
            order.blocked = (
                f"drawdown halt: equity {equity:.2f} is more than "
                f"{limits.max_drawdown_pct:.0%} below peak {peak_equity:.2f}"
            )
            return order
        wanted_value = max(0.0, size_pct) * equity
        room_position = cap_pct * equity - position_value
        if wanted_value > room_position:
            wanted_value = room_position
            order.capped_by.append("max position")
        room_gross = limits.max_gross_exposure_pct * equity - gross_exposure
        if wanted_value > room_gross:
            wanted_value = room_gross
            order.capped_by.append("max gross exposure")
        room_cash = cash / (1.0 + limits.fee_rate)
        if wanted_value > room_cash:
            wanted_value = room_cash
            order.capped_by.append("cash")
        order.qty = max(0.0, wanted_value / price)
    if opening and stop is not None and order.qty > 0:
        budget = limits.risk_per_trade_pct * equity / abs(price - stop)  # coherent: distance > 0
        if order.qty > budget:
            order.qty = budget
            order.capped_by.append("risk budget")
    order.notional = order.qty * price
    if opening and order.qty > 1e-9 and order.notional < limits.min_order_notional:
        order.qty = order.notional = 0.0
        order.blocked = (f"below the minimum order notional: {', '.join(order.capped_by) or 'size'} leaves less "
                         f"than {limits.min_order_notional:g} USD")
        return order
    if order.qty <= 1e-9:
        order.qty = order.notional = 0.0
        order.blocked = order.blocked or "limits leave no room: " + ", ".join(order.capped_by or ["size 0"])
    return order
