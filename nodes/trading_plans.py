"""Plans and protections for the cycle's nodes: the storage and data side of
:mod:`tools.trading` (prepare_cycle and the ExecutionAgent call these; no graph node here).

- :func:`cycle_protections`: the protections for the cycle about to decide, from the
  ledger's history (equity per cycle, orders and failures per cycle) and the index's move
  on the decision day; recorded once per cycle, with an alert when a halt or a breaker
  starts (``memory.alerts.HALT``).
- :func:`plan_exits`: the broker's resting stop, target and time exits, checked against
  each held symbol's bar on the fill day F before any order, each booked as its own order
  (``portfolio:as_of:symbol:exit``) so a resumed cycle never exits twice.
- :func:`open_plans_view`: each open plan with its days in trade, for the report.
"""

from __future__ import annotations

import time

import pandas as pd

from graph.settings import VoltSettings
from memory.alerts import HALT, raise_alert
from memory.ledger import FillRecord, Ledger, order_id
from tools.broker import fee, fill_price, quote_within_band, slippage_fraction
from tools.market_data import MarketDataset
from tools.trading.plans import Exit, Plan, advance, days_between, default_levels, exit_on_bar
from tools.trading.protections import (
    ProtectionInput,
    ProtectionSettings,
    evaluate,
    index_day_return,
)

# An order that did not fill for one of these reasons counts against the trading breaker
# (the broker could not trade); limits and plan rules are decisions, not failures.
FAILURE_PREFIXES = ("no bar on", "no live quote", "DATA ", "no fill day")


def protection_settings(settings: VoltSettings) -> ProtectionSettings:
    return ProtectionSettings(
        max_drawdown_pct=settings.max_drawdown_pct, halt_cooldown_cycles=settings.halt_cooldown_cycles,
        trading_breaker_window=settings.trading_breaker_window,
        trading_breaker_rate=settings.trading_breaker_rate, market_breaker_pct=settings.market_breaker_pct)


def cycle_protections(settings: VoltSettings, ledger: Ledger, dataset: MarketDataset, portfolio: str,
                      day: str, starting_cash: float) -> dict:
    """The protections' state for the cycle of ``day`` (see tools/trading/protections.py)."""
    equities = [c["equity"] for c in ledger.cycles(portfolio) if c["as_of"] < day]
    history = ledger.protection_history(portfolio, day)
    move = index_day_return(dataset.close_panel, dataset.calendar, pd.Timestamp(day)) \
        if settings.source == "replay" else None
    state = evaluate(ProtectionInput(
        starting_cash=starting_cash, equities=equities,
        order_history=[(h["orders"], h["failed"]) for h in history], index_return=move,
        settings=protection_settings(settings)))
    if ledger.record_protections(portfolio, day, state) and state["active"]:
        before = set(history[-1]["state"].get("active") or []) if history else set()
        for item in state["items"]:
            if item["name"] in state["active"] and item["name"] not in before:
                raise_alert(settings.home, HALT, f"{portfolio} {day}: {item['reason']}",
                            {"portfolio": portfolio, "as_of": day, "protection": item["name"],
                             "detail": item["detail"]})
    return state


def open_plans_view(ledger: Ledger, portfolio: str, dataset: MarketDataset, day: str) -> dict:
    """Per symbol with an open plan: the plan (prices in the share units of ``day``), its
    opening day and trading days in trade."""
    out = {}
    for symbol, rec in ledger.open_plans(portfolio).items():
        # levels in the share units of ``day`` (a split since the entry rescales them)
        factor = dataset.split_factor(symbol, pd.Timestamp(rec["opened"]), pd.Timestamp(day))
        plan = {**rec["plan"], **Plan.from_dict(rec["plan"]).scaled(factor).as_dict()}
        out[symbol] = {"plan_id": rec["plan_id"], "opened": rec["opened"],
                       "days_in_trade": days_between(dataset.calendar, rec["opened"], day),
                       "horizon_days": plan.get("horizon_days"), "stop": plan.get("stop"),
                       "target": plan.get("target"), "trailing_pct": plan.get("trailing_pct"),
                       "entry": plan.get("entry"), "thesis": plan.get("thesis") or {}}
    return out


def new_plan(order: dict, snapshot: dict | None, fill: FillRecord, factor: float,
             settings: VoltSettings) -> dict:
    """The plan recorded for an entry fill: the order's plan (levels from D's shares
    converted to F's by the split ``factor``) at the fill's price, or the ATR rule's. A fill
    that gapped through the stop or the target moves both by the gap (fill - decision price),
    so the recorded plan is always coherent and keeps its planned risk per share."""
    side = order["side"]
    given = dict(order.get("plan") or {})
    if given.get("stop") is None:
        stop, target = default_levels(side, fill.reference_price, float((snapshot or {}).get("atr14") or 0.0))
        given.update(stop=stop, target=target, levels_from="atr")
    else:
        given["stop"] = given["stop"] / factor
        if given.get("target") is not None:
            given["target"] = given["target"] / factor
        d, decided = (1 if side == "BUY" else -1), float(order.get("price") or 0.0) / factor
        through = d * (fill.price - given["stop"]) <= 0 or (
            given.get("target") is not None and d * (given["target"] - fill.price) <= 0)
        if through and decided > 0:  # a gap past a level: keep the planned distances from the fill
            shift = fill.price - decided
            given["stop"] += shift
            given["target"] = None if given.get("target") is None else given["target"] + shift
            given["reanchored"] = round(shift, 6)
        if d * (fill.price - given["stop"]) <= 0:  # still incoherent (no decision price): ATR levels
            given["stop"], given["target"] = default_levels(side, fill.price, float((snapshot or {}).get("atr14") or 0.0))
    plan = Plan(direction=1 if side == "BUY" else -1, entry=fill.price, stop=given["stop"],
                target=given.get("target"), horizon_days=given.get("horizon_days") or settings.max_holding_days,
                opened=fill.fill_date, trailing_pct=given.get("trailing_pct") or None, best=fill.price,
                thesis=given.get("thesis") or {})
    return {**plan.as_dict(), "levels_from": given.get("levels_from"), "reanchored": given.get("reanchored")}


def plan_exits(*, settings: VoltSettings, ledger: Ledger, dataset: MarketDataset, portfolio: str, day: str,
               fill_on: pd.Timestamp | None, snapshots: dict, live_price=None) -> tuple[list, list, list]:
    """Check every open plan against the fill day's bar; book the exits. Returns
    (orders, fills, exits). A plan whose position is gone is closed as ``reconciled``; a
    held position without a plan (older than plans) gets the ATR rule's plan from today."""
    live = fill_on is None
    fill_day = pd.Timestamp(day) if live else fill_on
    fill_date = f"{fill_day:%Y-%m-%d}"
    account = ledger.account(portfolio)
    plans = ledger.open_plans(portfolio)
    for symbol in account.held():
        snap = snapshots.get(symbol)
        if symbol not in plans and snap is not None:  # adopt: a plan from today, never none
            pos = account.positions[symbol]
            side = "BUY" if pos.qty > 0 else "SELL"
            stop, target = default_levels(side, float(snap["close"]), float(snap.get("atr14") or 0.0))
            plan = Plan(1 if pos.qty > 0 else -1, pos.avg_cost, stop, target, settings.max_holding_days, day,
                        settings.trailing_stop_pct or None, float(snap["close"]), {"adopted": True})
            ledger.open_plan(portfolio, symbol, day, {**plan.as_dict(), "levels_from": "atr"}, {"adopted": True})
    plans = ledger.open_plans(portfolio)
    orders, fills, exits = [], [], []
    for symbol in sorted(plans):
        rec = plans[symbol]
        pos = account.positions.get(symbol)
        booked = ledger.get_fill(f"{order_id(portfolio, day, symbol)}:exit")
        if booked is None and (pos is None or symbol not in account.held()):
            # sold by a path that left the plan open: close it, nothing to trade
            ledger.close_plan(portfolio, symbol, day, closed=fill_date, kind="reconciled", price=None)
            continue
        # booked: a resumed cycle whose exit fill committed before the crash; the same bar
        # gives the same exit, record_fill returns that fill and the plan is closed now
        qty_held = booked.qty if booked is not None else abs(pos.qty)
        direction = (1 if booked.side == "SELL" else -1) if booked is not None else (1 if pos.qty > 0 else -1)
        if rec["opened"] >= fill_date:
            continue  # entered on F (a restarted cycle): its plan arms from the next bar, as uninterrupted
        factor = 1.0 if live else dataset.split_factor(symbol, pd.Timestamp(rec["opened"]), fill_day)
        plan = Plan.from_dict(rec["plan"]).scaled(factor)
        if live:
            try:
                quote = float(live_price(symbol)) if live_price else None
            except Exception:
                quote = None
            close = (snapshots.get(symbol) or {}).get("close")
            # an implausible quote never fills anything, an exit included (the broker's band)
            if quote is not None and (close is None or not quote_within_band(quote, float(close),
                                                                              settings.quote_band_pct)):
                quote = None
            bar = None if quote is None else {"open": quote, "high": quote, "low": quote}
        else:
            bar = dataset.bar_on(symbol, fill_day)
        held_days = days_between(dataset.calendar, rec["opened"], fill_day)
        if bar is None:
            # no price on F: nothing can fill and the plan waits for the next bar, unless the
            # time exit is due and the symbol has stopped trading (see untraded_exit)
            ex = None if live else untraded_exit(dataset, symbol, plan, fill_day, held_days,
                                                 settings.untraded_exit_days)
            if ex is None:
                continue
        else:
            ex = exit_on_bar(plan, bar, held_days)
        if ex is None:
            moved = advance(plan, bar)
            if plan.trailing_pct and moved.best != plan.best:
                ledger.update_plan(rec["plan_id"], {**rec["plan"], **moved.scaled(1.0 / factor).as_dict()})
            continue
        side = "SELL" if direction > 0 else "BUY"
        snap = snapshots.get(symbol) or {}
        started = time.perf_counter()

        def make_fill(acct, symbol=symbol, side=side, ex=ex, snap=snap, started=started):
            held = acct.positions[symbol].qty if symbol in acct.positions else 0.0
            if abs(held) <= 0:
                return "nothing held to exit"
            qty = abs(held)  # exactly the position: it closes to zero
            slip = slippage_fraction(atr_pct=float(snap.get("atr_pct", float("nan"))), order_shares=qty,
                                     avg_daily_shares=float(snap.get("volume_avg20", float("nan")))
                                     * dataset.volume_unit, max_slippage=settings.max_slippage)
            price = fill_price(ex.price, side, slip)
            return FillRecord(order_id="", symbol=symbol, side=side, qty=qty, reference_price=ex.price,
                              price=price, slippage_pct=slip, fee=fee(qty * price, settings.fee_rate),
                              realized_pnl=0.0, fill_date=fill_date,
                              latency_ms=(time.perf_counter() - started) * 1000.0)

        result = ledger.record_fill(portfolio=portfolio, as_of=day, symbol=symbol, side=side,
                                    qty_requested=qty_held, make_fill=make_fill, suffix="exit")
        order = {"symbol": symbol, "side": side, "qty": round(qty_held, 8), "price": ex.price,
                 "notional": round(qty_held * ex.price, 6), "kind": ex.kind}
        if isinstance(result, str):
            orders.append({**order, "status": "UNFILLED", "reason": result})
            continue
        ledger.close_plan(portfolio, symbol, day, closed=fill_date, kind=ex.kind, price=result.price,
                          detail={"reason": ex.reason, "days_in_trade": held_days,
                                  "horizon_days": plan.horizon_days, "realized_pnl": result.realized_pnl})
        orders.append({**order, "status": "FILLED", "reason": ex.reason})
        fills.append({**result.as_dict(), "kind": ex.kind})
        exits.append({"symbol": symbol, "kind": ex.kind, "price": result.price, "reason": ex.reason,
                      "days_in_trade": held_days, "horizon_days": plan.horizon_days,
                      "realized_pnl": round(result.realized_pnl, 6)})
    return orders, fills, exits


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
