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
from tools.broker import quote_within_band
from tools.market_data import MarketDataset
from tools.trading.fills import (
    FAILURE_PREFIXES,
    BrokerRules,
    exit_fill,
    plan_on_fill_day,
    untraded_exit,
)
from tools.trading.plans import Plan, days_between, default_levels, entry_plan
from tools.trading.protections import (
    ProtectionInput,
    ProtectionSettings,
    evaluate,
    index_day_return,
)

__all__ = ["FAILURE_PREFIXES", "cycle_protections", "new_plan", "open_plans_view", "plan_exits", "untraded_exit"]


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
    """The plan recorded for an entry fill (:func:`tools.trading.plans.entry_plan`)."""
    return entry_plan(order, snapshot, fill_price=fill.price, reference_price=fill.reference_price,
                      fill_date=fill.fill_date, factor=factor, max_holding_days=settings.max_holding_days)


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
        # no price on F: nothing can fill and the plan waits for the next bar, unless the
        # time exit is due and the symbol has stopped trading (see untraded_exit)
        untraded = None if live else (lambda symbol=symbol, plan=plan, held_days=held_days: untraded_exit(
            dataset, symbol, plan, fill_day, held_days, settings.untraded_exit_days))
        ex, moved = plan_on_fill_day(plan, bar, held_days, untraded)
        if moved is not None:
            ledger.update_plan(rec["plan_id"], {**rec["plan"], **moved.scaled(1.0 / factor).as_dict()})
        if ex is None:
            continue
        side = "SELL" if direction > 0 else "BUY"
        snap = snapshots.get(symbol) or {}
        started = time.perf_counter()

        def make_fill(acct, symbol=symbol, side=side, ex=ex, snap=snap, started=started):
            held = acct.positions[symbol].qty if symbol in acct.positions else 0.0
            terms = exit_fill(held=held, side=side, exit_price=ex.price, snapshot=snap,
                              volume_unit=dataset.volume_unit, rules=BrokerRules.from_settings(settings))
            if isinstance(terms, str):
                return terms
            return FillRecord(order_id="", symbol=symbol, side=side, qty=terms.qty,
                              reference_price=terms.reference_price, price=terms.price,
                              slippage_pct=terms.slippage_pct, fee=terms.fee, realized_pnl=0.0,
                              fill_date=fill_date, latency_ms=(time.perf_counter() - started) * 1000.0)

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

