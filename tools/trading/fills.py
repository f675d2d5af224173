"""The paper broker's fill rules, pure: how much of an order fills, at what price and fee.

Shared by the graph's broker (nodes/execution_agent.py, nodes/trading_plans.py) and the
decision simulator (tools/learning/simulator.py), so both book exactly the same numbers.
Units: quantities in shares of the fill day F, prices in USD per such share, fractions of 1.

- :func:`order_fill`: an agents' order at the reference price (F's open on replay). Slippage
  from the decision day's snapshot (ATR %, 20-day average volume in D's shares); a closing
  order sells exactly what is held (a reduce leaves no dust); an opening BUY is re-clipped to
  cash, the position cap and the gross-exposure cap at the fill price, with held positions
  marked on F; below ``min_order_notional`` it does not fill.
- :func:`exit_fill`: a plan's exit (stop, target, time) closes the whole position.
- :func:`dust_fill`: a crumb position closes at the mark, no slippage, with the fee.
- :func:`untraded_exit`: the time exit of a symbol that stopped trading.
A reason string instead of a fill means the order does not fill.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from tools.broker import fee, fill_price, slippage_fraction
from tools.portfolio import DUST_QTY, Position
from tools.trading.plans import Exit, Plan, advance, days_between, exit_on_bar

if TYPE_CHECKING:
    from tools.market_data import MarketDataset

# An order that did not fill for one of these reasons counts against the trading breaker
# (the broker could not trade, or its booking could not be stored); limits and plan rules
# are decisions, not failures.
FAILURE_PREFIXES = ("no bar on", "no live quote", "DATA ", "no fill day", "storage failure while booking")


@dataclass(frozen=True)
class BrokerRules:
    """The settings a fill depends on (fractions of 1; notionals in USD)."""

    fee_rate: float
    max_slippage: float
    max_position_pct: float
    max_gross_exposure_pct: float
    min_order_notional: float
    dust_notional: float
    allow_short: bool

    @classmethod
    def from_settings(cls, settings) -> BrokerRules:
        return cls(fee_rate=settings.fee_rate, max_slippage=settings.max_slippage,
                   max_position_pct=settings.max_position_pct,
                   max_gross_exposure_pct=settings.max_gross_exposure_pct,
                   min_order_notional=settings.min_order_notional, dust_notional=settings.dust_notional,
                   allow_short=settings.allow_short)


@dataclass(frozen=True)
class FillTerms:
    """What one fill books: shares, the reference (pre-slippage) price, the price paid or
    received, the slippage fraction and the fee in USD."""

    qty: float
    reference_price: float
    price: float
    slippage_pct: float
    fee: float


def opens_position(side: str, held: float, allow_short: bool) -> bool:
    """A BUY that is not covering a short, or a SELL that opens or adds to a short."""
    return (side == "BUY" and held >= 0) or (side == "SELL" and allow_short and held <= 0)


def order_blocked(symbol: str, side: str, opening: bool, exited: Mapping | None, protections: Mapping,
                  fill_day: pd.Timestamp) -> str | None:
    """Why an agents' order does not even reach the price: its symbol exited by its plan this
    cycle (``exited``: that exit, or None), or a protection's block. None when it may fill."""
    if exited is not None:
        return f"exited by its plan on {fill_day:%Y-%m-%d} ({exited['kind']}); no new order"
    if protections.get("blocks_orders"):
        return protections["blocks_orders"]
    if opening and side == "BUY" and protections.get("blocks_buys"):
        return protections["blocks_buys"]
    return None


def order_fill(*, symbol: str, side: str, ordered: float, kind: str, reference: float, factor: float,
               snapshot: Mapping, volume_unit: float, cash: float, positions: Mapping[str, Position],
               marks: Mapping[str, float], rules: BrokerRules) -> FillTerms | str:
    """The fill of an agents' order of ``ordered`` shares of D at ``reference`` (USD per share
    of F); ``factor`` converts D's shares to F's (a split between them). ``positions`` and
    ``cash`` are the account just before this fill; ``marks`` price held positions on F
    (missing: average cost)."""
    held = positions[symbol].qty if symbol in positions else 0.0
    opening = opens_position(side, held, rules.allow_short)
    avg_shares = snapshot["volume_avg20"] * volume_unit
    # participation in D's shares (the order's and the average volume's unit)
    slip = slippage_fraction(atr_pct=snapshot["atr_pct"], order_shares=ordered,
                             avg_daily_shares=avg_shares, max_slippage=rules.max_slippage)
    price = fill_price(reference, side, slip)
    qty = ordered * factor  # shares of D -> shares of F (a split between them)
    if not opening and held != 0:  # a SELL of a long, or a BUY covering a short
        size = abs(held)
        remainder = size - min(qty, size)
        if kind != "reduce_review" or remainder < DUST_QTY or remainder * price < rules.dust_notional:
            qty = size  # an exit closes to exactly zero; no dust is left behind
        qty = min(qty, size)
    elif side == "SELL" and not rules.allow_short:
        qty = min(qty, held)
    if opening:  # a new or larger long or short: the limits again, at the fill price
        values = {s: p.qty * marks.get(s, p.avg_cost) for s, p in positions.items()}
        equity = cash + sum(values.values())
        room = [(rules.max_position_pct * equity - abs(values.get(symbol, 0.0))) / price,
                (rules.max_gross_exposure_pct * equity - sum(abs(v) for v in values.values())) / price]
        if side == "BUY":  # a short's sale brings cash in; a long's purchase must be paid
            # a hair under the exact cash bound, so float rounding never leaves cash < 0
            room.append(cash / (price * (1 + rules.fee_rate)) * (1 - 1e-12))
        qty = min(qty, *room)
        if 0 < qty * price < rules.min_order_notional:
            return (f"below the minimum order notional at the fill price ({qty * price:.2f} < "
                    f"{rules.min_order_notional:g} USD)")
    if qty <= 1e-9:
        return "limits at the fill price leave nothing to trade"
    return FillTerms(qty=qty, reference_price=reference, price=price, slippage_pct=slip,
                     fee=fee(qty * price, rules.fee_rate))


def exit_fill(*, held: float, side: str, exit_price: float, snapshot: Mapping, volume_unit: float,
              rules: BrokerRules) -> FillTerms | str:
    """A plan's exit: exactly the position (``held`` shares, signed) at the exit price with
    the broker's slippage (no snapshot: unknown volatility, the cap) and fee."""
    if abs(held) <= 0:
        return "nothing held to exit"
    qty = abs(held)  # exactly the position: it closes to zero
    slip = slippage_fraction(atr_pct=float(snapshot.get("atr_pct", float("nan"))), order_shares=qty,
                             avg_daily_shares=float(snapshot.get("volume_avg20", float("nan"))) * volume_unit,
                             max_slippage=rules.max_slippage)
    price = fill_price(exit_price, side, slip)
    return FillTerms(qty=qty, reference_price=exit_price, price=price, slippage_pct=slip,
                     fee=fee(qty * price, rules.fee_rate))


def is_dust(qty: float, mark: float, dust_notional: float) -> bool:
    """A position under ``DUST_QTY`` shares or worth less than ``dust_notional`` USD (an
    unusable mark counts as dust)."""
    return not (abs(qty) >= DUST_QTY and abs(qty) * mark >= dust_notional)


def dust_fill(held: float, mark: float, rules: BrokerRules) -> FillTerms | str:
    """Close a crumb position at ``mark``: no slippage, the fee."""
    if held == 0:
        return "nothing left to close"
    qty = abs(held)
    return FillTerms(qty=qty, reference_price=mark, price=mark, slippage_pct=0.0, fee=fee(qty * mark, rules.fee_rate))


def untraded_exit(dataset: MarketDataset, symbol: str, plan: Plan, fill_day: pd.Timestamp, held_days: int,
                  after_days: int) -> Exit | None:
    """The time exit of a position whose symbol has stopped trading (acquired, delisted,
    suspended): due (``held_days`` >= the horizon) with no bar for ``after_days`` trading days
    up to ``fill_day``. It closes at the last close the symbol traded at (in ``fill_day``'s
    share units), kind ``untraded``; nothing after ``fill_day`` is read. None otherwise: a
    gap of a few days just waits for the next bar."""
    if after_days <= 0 or held_days < plan.horizon_days:
        return None
    bars = dataset.history(symbol, fill_day)
    if not len(bars) or days_between(dataset.calendar, f"{bars.index[-1]:%Y-%m-%d}", fill_day) < after_days:
        return None
    price = dataset.last_close(symbol, fill_day)
    if price is None or not price > 0:
        return None
    return Exit("untraded", price, f"time exit due, no bar since {bars.index[-1]:%Y-%m-%d}: "
                                   f"closed at the last close {price:g}")


def plan_on_fill_day(plan: Plan, bar: Mapping | None, held_days: int,
                     untraded: Callable[[], Exit | None] | None = None) -> tuple[Exit | None, Plan | None]:
    """What an open plan does on the fill day, for the live path and the replay alike:
    ``(exit, None)`` when its stop, target or horizon is met on ``bar`` (open/high/low, in the
    plan's units); ``(None, moved)`` when a trailing plan's best price moved (store ``moved``);
    ``(None, None)`` otherwise. With no bar nothing can fill: only ``untraded()`` (the time
    exit of a symbol that stopped trading; None live) may close it."""
    if bar is None:
        return (untraded() if untraded is not None else None), None
    ex = exit_on_bar(plan, bar, held_days)
    if ex is not None:
        return ex, None
    moved = advance(plan, bar)
    return None, (moved if plan.trailing_pct and moved.best != plan.best else None)
