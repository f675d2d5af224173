"""ExecutionAgent: the paper broker. Fills approved orders on the fill day, point-in-time.

The agents decided on day D with data up to D. On replay an order fills only on
F = ``dataset.fill_day(D)`` (the market calendar's next day), at the open of the symbol's
bar dated F, a price none of them saw. A symbol with no bar on F (a gap, a rejected bar, a
data issue) does not fill: the order is recorded UNFILLED, "no bar on F (gap or data
issue)", and expires (``unfilled_orders="expire"``, the only mode so far). Live, orders fill
on D at the current quote, and only when that quote lies within ``quote_band_pct`` of the
price decided on (the candidate's close); otherwise UNFILLED with a DATA reason.
Slippage is :func:`tools.broker.slippage_fraction`, plus the fee. At fill time the broker
re-clips each order to the cash, position and gross-exposure limits at the real fill price,
with held positions marked by :func:`tools.broker.fill_day_marks` (never a bar after F),
so several buys in one cycle can never overdraw cash. Sells go first to free cash.
Before filling, splits effective by F are applied to held positions
(``Ledger.apply_splits``) and an order's quantity, in shares of D, is converted to shares
of F. Each order is booked once (``Ledger.record_fill``), so a resumed cycle never fills twice.

Plans (tools/trading/plans.py): before any order, every held symbol's plan is checked
against its bar on F (:func:`nodes.trading_plans.plan_exits`): stop, target, time exit,
each its own order ``portfolio:as_of:symbol:exit``; a symbol exited so does not trade
again that cycle. Exit reviews (``decision["exit_review"]``) and tightenings
(``decision["plan_update"]``) go into the position's timeline first. An entry fill records
its plan (``order["plan"]``; a fill through its own stop or target, a gap, moves both
levels with the fill price, keeping the planned risk distance). A SELL of a held long closes it to exactly zero (``kind`` ``exit_review`` or none),
or reduces it (``reduce_review``; a dust remainder is sold too) and closes the plan with
its kind. A BUY below ``min_order_notional`` at the fill price does not fill; positions
under ``DUST_QTY`` shares or worth less than ``dust_notional`` are closed out
(``:dust``). The protections' blocks (prepare_cycle) are enforced here again.

Errors: an order left UNFILLED for a failure (not a decision) adds one record to the
cycle's ``errors`` (:func:`tools.error_handler.unfilled_order_record`): DATA for a gap or an
implausible or unusable quote, EXCHANGE for no quote source, no fill day, or a storage
failure while booking (the order is then not booked and expires; a ledger that stays broken
halts the run at its next write). A protection's block is recorded once by prepare_cycle.
"""


from __future__ import annotations

import time

import pandas as pd
from langgraph.runtime import Runtime

from graph.context import VoltContext
from graph.errors import DataError, StorageError
from graph.settings import VoltSettings
from graph.state import CycleState
from memory.ledger import FillRecord, Ledger, order_id
from memory.message_log import MessageType, Priority, message
from nodes.trading_plans import FAILURE_PREFIXES, new_plan, plan_exits
from tools.broker import fill_day_marks, quote_within_band
from tools.data_source import market_dataset
from tools.error_handler import unfilled_order_record
from tools.market_data import MarketDataset
from tools.portfolio import DUST_QTY, Account
from tools.trading.fills import (
    BrokerRules,
    dust_fill,
    is_dust,
    opens_position,
    order_blocked,
    order_fill,
)
from tools.trading.plans import Plan, in_plan_units, tighten


def cycle_fill_day(dataset: MarketDataset, as_of: pd.Timestamp, live: bool) -> pd.Timestamp | None:
    """The day this cycle's orders fill and its positions are marked: D's next calendar day
    on replay, None live (fills at the quote on D; marks at D's latest price)."""
    return None if live else dataset.fill_day(as_of)


def broker_marks(dataset: MarketDataset, symbols: list[str], as_of: pd.Timestamp,
                 fill_day: pd.Timestamp | None) -> dict[str, float]:
    """Broker-side marks on the fill day (see :func:`tools.broker.fill_day_marks`)."""
    return fill_day_marks(dataset, symbols, as_of, fill_day)[0]



def record_reviews(ledger: Ledger, portfolio: str, day: str, decisions: list[dict], snapshots: dict,
                   dataset: MarketDataset) -> None:
    """Exit reviews (every verdict, HOLD too) and stop tightenings into the timeline. A
    proposed stop is in D's share units; the plan is stored in its opening day's units."""
    plans = None
    for d in decisions:
        symbol = d["symbol"]
        if d.get("exit_review"):
            ledger.add_event(portfolio, symbol, day, "review", dict(d["exit_review"]))
        if d.get("plan_update"):
            plans = plans if plans is not None else ledger.open_plans(portfolio)
            rec = plans.get(symbol)
            price = (snapshots.get(symbol) or {}).get("close")
            if rec is None or price is None:
                continue
            factor = dataset.split_factor(symbol, pd.Timestamp(rec["opened"]), pd.Timestamp(day))
            current = Plan.from_dict(rec["plan"]).scaled(factor)
            plan, note = tighten(current, d["plan_update"], float(price))
            if plan.stop != current.stop:
                ledger.update_plan(rec["plan_id"], {**rec["plan"], "stop": plan.stop * factor}, as_of=day,
                                   kind="tighten", detail={"note": note, "proposal": d["plan_update"]})
            elif note:
                ledger.add_event(portfolio, symbol, day, "tighten_refused", {"note": note,
                                                                            "proposal": d["plan_update"]})


def execution_agent(state: CycleState, runtime: Runtime[VoltContext]) -> dict:
    settings = runtime.context.settings
    dataset = market_dataset(settings)
    live_price = runtime.context.live_price if settings.source != "replay" else None
    ledger = Ledger(settings.ledger_path)
    portfolio, day = state["portfolio_id"], state["as_of"]
    as_of = pd.Timestamp(day)
    live = settings.source != "replay"
    fill_on = cycle_fill_day(dataset, as_of, live)
    fill_day = as_of if fill_on is None else fill_on  # the date fills are booked on
    # positions are in as-traded shares: convert them across splits effective by F first
    ledger.apply_splits(portfolio, dataset.splits, fill_day)
    decisions = state.get("decisions", [])
    snapshots = state.get("snapshots", {})
    record_reviews(ledger, portfolio, day, decisions, snapshots, dataset)
    orders, fills, exits = ([], [], []) if (live and live_price is None) or (not live and fill_on is None) \
        else plan_exits(settings=settings, ledger=ledger, dataset=dataset, portfolio=portfolio, day=day,
                        fill_on=fill_on, snapshots=snapshots, live_price=live_price)
    exited = {e["symbol"]: e for e in exits}
    # a resumed cycle: an exit booked before the crash closed its plan, so plan_exits no longer
    # reports it; the booked exit fill still bars a new order in that symbol today
    for d in decisions:
        symbol = d["symbol"]
        if d.get("order") and symbol not in exited and \
                ledger.get_fill(f"{order_id(portfolio, day, symbol)}:exit") is not None:
            exited[symbol] = {"symbol": symbol, "kind": "booked before a restart"}
    protections = (state.get("portfolio_before") or {}).get("protections") or {}
    approved = [d for d in decisions if d.get("order")]
    # Sells first (they free cash), then buys by consensus confidence; symbol breaks ties.
    approved.sort(key=lambda d: (d["order"]["side"] != "SELL", -(d.get("consensus") or {}).get("confidence", 0.0),
                                 d["symbol"]))
    # marks on F for every symbol this cycle can hold, once (they do not change within the cycle)
    account_now = ledger.account(portfolio)
    marks = broker_marks(dataset, sorted({*account_now.positions, *(d["symbol"] for d in approved)}),
                         as_of, fill_on)
    messages, errors = [], []
    rules = BrokerRules.from_settings(settings)
    for decision in approved:
        order, symbol = decision["order"], decision["symbol"]
        snapshot = snapshots[symbol]
        started = time.perf_counter()
        kind = order.get("kind") or ("entry" if order["side"] == "BUY" else "exit_review")

        def make_fill(account: Account, order=order, symbol=symbol, snapshot=snapshot, started=started, kind=kind):
            side, ordered = order["side"], float(order["qty"])
            held = account.positions[symbol].qty if symbol in account.positions else 0.0
            opening = opens_position(side, held, settings.allow_short)
            if (blocked := order_blocked(symbol, side, opening, exited.get(symbol), protections, fill_day)):
                return blocked
            if live:  # live: fill at the current quote, if it is plausible
                if live_price is None:
                    return "no live quote source to fill at"
                try:
                    reference = float(live_price(symbol))
                except DataError as exc:  # the source answered, with an unusable quote
                    return f"DATA {symbol}: no usable live quote ({exc.reason})"
                except Exception as exc:  # the source failed: the broker could not trade
                    return f"no live quote to fill at ({str(exc) or type(exc).__name__})"
                decided = float(snapshot["close"])
                if not quote_within_band(reference, decided, settings.quote_band_pct):
                    return (f"DATA {symbol}: live quote {reference!r} is outside ±{settings.quote_band_pct:.0%}"
                            f" of the decision price {decided:g}; not filled")
                factor = 1.0
            elif fill_on is None:
                return "no fill day after the decision day (end of data)"
            else:
                bar = dataset.bar_on(symbol, fill_on)
                if bar is None:
                    return f"no bar on {fill_on:%Y-%m-%d} (gap or data issue)"
                reference = float(bar["open"])
                factor = dataset.split_factor(symbol, as_of, fill_on)
            terms = order_fill(symbol=symbol, side=side, ordered=ordered, kind=kind, reference=reference,
                               factor=factor, snapshot=snapshot, volume_unit=dataset.volume_unit,
                               cash=account.cash, positions=account.positions, marks=marks, rules=rules)
            if isinstance(terms, str):
                return terms
            return FillRecord(
                order_id="", symbol=symbol, side=side, qty=terms.qty, reference_price=terms.reference_price,
                price=terms.price, slippage_pct=terms.slippage_pct, fee=terms.fee, realized_pnl=0.0,
                fill_date=f"{fill_day:%Y-%m-%d}", latency_ms=(time.perf_counter() - started) * 1000.0,
            )

        held_before = account_now.positions[symbol].qty if symbol in account_now.positions else 0.0
        # a resumed cycle finds this order booked: its plan side was recorded with it
        booked_before = ledger.get_fill(order_id(portfolio, day, symbol)) is not None
        try:
            result = ledger.record_fill(portfolio=portfolio, as_of=day, symbol=symbol, side=order["side"],
                                        qty_requested=order["qty"], make_fill=make_fill)
        except StorageError as exc:  # rolled back: nothing booked, the order expires
            result = f"storage failure while booking: {str(exc).splitlines()[0] if str(exc) else exc.kind}"
        if isinstance(result, str):
            if (record := unfilled_order_record(result, symbol=symbol)) is not None:
                errors.append(record)
            orders.append({**order, "kind": kind, "status": "UNFILLED", "reason": result})
            messages.append(message("execution_agent", "portfolio_manager", MessageType.EXECUTION_COMPLETE,
                                    {"symbol": symbol, "status": "UNFILLED", "reason": result}))
            continue
        fill = {**result.as_dict(), "kind": kind}
        if not booked_before:
            book_plan(ledger, portfolio, day, order, kind, held_before, result, snapshot,
                      dataset.split_factor(symbol, as_of, fill_day) if not live else 1.0, settings,
                      plan_units=1.0 if live else _plan_units(ledger, dataset, portfolio, symbol, fill_day))
        orders.append({**order, "kind": kind, "status": "FILLED", "reason": None})
        fills.append(fill)
        messages.append(message("execution_agent", "portfolio_manager", MessageType.EXECUTION_COMPLETE,
                                 {"status": "FILLED", **fill}))
        if result.slippage_pct > settings.slippage_alert:
            messages.append(message("execution_agent", "learning_agent", MessageType.FEEDBACK_EVENT,
                                    {"trigger": "slippage", "symbol": symbol, "slippage_pct": result.slippage_pct,
                                     "threshold": settings.slippage_alert}, Priority.HIGH))
    dust_orders, dust_fills = close_dust(settings, ledger, dataset, portfolio, day, as_of, fill_on, fill_day)
    orders += dust_orders
    fills += dust_fills
    failed = sum(1 for o in orders if o["status"] == "UNFILLED" and str(o["reason"]).startswith(FAILURE_PREFIXES))
    ledger.record_order_outcomes(portfolio, day, len(orders), failed)
    errors += [r for o in dust_orders if o["status"] == "UNFILLED"
               if (r := unfilled_order_record(o["reason"], symbol=o["symbol"])) is not None]
    return {"orders": orders, "fills": fills, "exits": exits, "agent_messages": messages, "errors": errors}


def _plan_units(ledger: Ledger, dataset: MarketDataset, portfolio: str, symbol: str,
                fill_day: pd.Timestamp) -> float:
    """Multiplier from ``fill_day``'s share units to those of the symbol's open plan (stored in
    its opening day's units): 2.0 after a 2:1 split in between; 1.0 with no open plan."""
    current = ledger.open_plans(portfolio).get(symbol)
    return 1.0 if current is None else dataset.split_factor(symbol, pd.Timestamp(current["opened"]), fill_day)


def book_plan(ledger: Ledger, portfolio: str, day: str, order: dict, kind: str, held_before: float,
              fill: FillRecord, snapshot: dict, factor: float, settings: VoltSettings,
              plan_units: float = 1.0) -> None:
    """The timeline side of an agents' fill: an entry opens (or adds to) the plan; a fill
    that closes the position closes the plan with the order's kind; a reduction is an event.
    ``plan_units`` converts an add's levels into the open plan's share units (a split since
    it opened), so the stops compared and stored are in one unit."""
    symbol = fill.symbol
    opening = (fill.side == "BUY" and held_before >= 0) or \
        (fill.side == "SELL" and settings.allow_short and held_before <= 0)
    if opening:
        plan = new_plan(order, snapshot, fill, factor, settings)
        if held_before != 0:
            plan = in_plan_units(plan, plan_units)
        ledger.open_plan(portfolio, symbol, day, plan, fill.as_dict())
        return
    position = ledger.account(portfolio).positions.get(symbol)
    if position is None or abs(position.qty) < DUST_QTY:
        ledger.close_plan(portfolio, symbol, day, closed=fill.fill_date, kind=kind, price=fill.price,
                          detail={"realized_pnl": fill.realized_pnl})
    else:
        ledger.add_event(portfolio, symbol, day, "reduce", {"fill": fill.as_dict(), "left": position.qty})


def close_dust(settings: VoltSettings, ledger: Ledger, dataset: MarketDataset, portfolio: str, day: str,
               as_of: pd.Timestamp, fill_on: pd.Timestamp | None, fill_day: pd.Timestamp) -> tuple[list, list]:
    """Close out positions under ``DUST_QTY`` shares or worth less than ``dust_notional``
    at the fill day's mark, no slippage (the crumbs never trade a share), with the fee."""
    account = ledger.account(portfolio)
    if not account.positions:
        return [], []
    marks = broker_marks(dataset, sorted(account.positions), as_of, fill_on)
    orders, fills = [], []
    for symbol, pos in sorted(account.positions.items()):
        mark = marks.get(symbol, pos.avg_cost)
        if not is_dust(pos.qty, mark, settings.dust_notional):
            continue
        side = "SELL" if pos.qty > 0 else "BUY"

        def make_fill(acct: Account, symbol=symbol, side=side, mark=mark):
            held = acct.positions[symbol].qty if symbol in acct.positions else 0.0
            terms = dust_fill(held, mark, BrokerRules.from_settings(settings))
            if isinstance(terms, str):
                return terms
            return FillRecord(order_id="", symbol=symbol, side=side, qty=terms.qty, reference_price=mark, price=mark,
                              slippage_pct=0.0, fee=terms.fee, realized_pnl=0.0,
                              fill_date=f"{fill_day:%Y-%m-%d}", latency_ms=0.0)

        result = ledger.record_fill(portfolio=portfolio, as_of=day, symbol=symbol, side=side,
                                    qty_requested=abs(pos.qty), make_fill=make_fill, suffix="dust")
        order = {"symbol": symbol, "side": side, "qty": abs(pos.qty), "price": mark, "kind": "dust"}
        if isinstance(result, str):
            orders.append({**order, "status": "UNFILLED", "reason": result})
            continue
        ledger.close_plan(portfolio, symbol, day, closed=result.fill_date, kind="dust", price=mark)
        orders.append({**order, "status": "FILLED", "reason": "dust close-out"})
        fills.append({**result.as_dict(), "kind": "dust"})
    return orders, fills
