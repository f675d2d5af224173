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
"""

from __future__ import annotations

import time

import pandas as pd
from langgraph.runtime import Runtime

from graph.context import VoltContext
from graph.state import CycleState
from memory.ledger import FillRecord, Ledger
from memory.message_log import MessageType, Priority, message
from tools.broker import fee, fill_day_marks, fill_price, quote_within_band, slippage_fraction
from tools.data_source import market_dataset
from tools.market_data import MarketDataset
from tools.portfolio import Account


def cycle_fill_day(dataset: MarketDataset, as_of: pd.Timestamp, live: bool) -> pd.Timestamp | None:
    """The day this cycle's orders fill and its positions are marked: D's next calendar day
    on replay, None live (fills at the quote on D; marks at D's latest price)."""
    return None if live else dataset.fill_day(as_of)


def broker_marks(dataset: MarketDataset, symbols: list[str], as_of: pd.Timestamp,
                 fill_day: pd.Timestamp | None) -> dict[str, float]:
    """Broker-side marks on the fill day (see :func:`tools.broker.fill_day_marks`)."""
    return fill_day_marks(dataset, symbols, as_of, fill_day)[0]


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
    approved = [d for d in state.get("decisions", []) if d.get("order")]
    # Sells first (they free cash), then buys by consensus confidence; symbol breaks ties.
    approved.sort(key=lambda d: (d["order"]["side"] != "SELL", -d["consensus"]["confidence"], d["symbol"]))
    # marks on F for every symbol this cycle can hold, once (they do not change within the cycle)
    held_now = ledger.account(portfolio).held() if approved else []
    marks = broker_marks(dataset, sorted({*held_now, *(d["symbol"] for d in approved)}), as_of, fill_on)
    orders, fills, messages = [], [], []
    for decision in approved:
        order, symbol = decision["order"], decision["symbol"]
        snapshot = state["snapshots"][symbol]
        started = time.perf_counter()

        def make_fill(account: Account, order=order, symbol=symbol, snapshot=snapshot, started=started):
            if live:  # live: fill at the current quote, if it is plausible
                if live_price is None:
                    return "no live quote source to fill at"
                try:
                    reference = float(live_price(symbol))
                except Exception as exc:
                    return f"no live quote to fill at ({exc})"
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
            side, ordered = order["side"], float(order["qty"])
            held = account.positions[symbol].qty if symbol in account.positions else 0.0
            avg_shares = snapshot["volume_avg20"] * dataset.volume_unit
            # participation in D's shares (the order's and the average volume's unit)
            slip = slippage_fraction(atr_pct=snapshot["atr_pct"], order_shares=ordered,
                                     avg_daily_shares=avg_shares, max_slippage=settings.max_slippage)
            price = fill_price(reference, side, slip)
            qty = ordered * factor  # shares of D -> shares of F (a split between them)
            if side == "SELL" and not settings.allow_short:
                qty = min(qty, held)
            if side == "BUY":
                values = {s: p.qty * marks.get(s, p.avg_cost) for s, p in account.positions.items()}
                equity = account.cash + sum(values.values())
                room = min(
                    # a hair under the exact cash bound, so float rounding never leaves cash < 0
                    account.cash / (price * (1 + settings.fee_rate)) * (1 - 1e-12),
                    (settings.max_position_pct * equity - values.get(symbol, 0.0)) / price,
                    (settings.max_gross_exposure_pct * equity - sum(abs(v) for v in values.values())) / price,
                )
                qty = min(qty, room)
            if qty <= 1e-9:
                return "limits at the fill price leave nothing to trade"
            return FillRecord(
                order_id="", symbol=symbol, side=side, qty=qty, reference_price=reference,
                price=price, slippage_pct=slip, fee=fee(qty * price, settings.fee_rate), realized_pnl=0.0,
                fill_date=f"{fill_day:%Y-%m-%d}", latency_ms=(time.perf_counter() - started) * 1000.0,
            )

        result = ledger.record_fill(portfolio=portfolio, as_of=day, symbol=symbol, side=order["side"],
                                    qty_requested=order["qty"], make_fill=make_fill)
        if isinstance(result, str):
            orders.append({**order, "status": "UNFILLED", "reason": result})
            messages.append(message("execution_agent", "portfolio_manager", MessageType.EXECUTION_COMPLETE,
                                    {"symbol": symbol, "status": "UNFILLED", "reason": result}))
            continue
        fill = result.as_dict()
        orders.append({**order, "status": "FILLED", "reason": None})
        fills.append(fill)
        messages.append(message("execution_agent", "portfolio_manager", MessageType.EXECUTION_COMPLETE,
                                 {"status": "FILLED", **fill}))
        if result.slippage_pct > settings.slippage_alert:
            messages.append(message("execution_agent", "learning_agent", MessageType.FEEDBACK_EVENT,
                                    {"trigger": "slippage", "symbol": symbol, "slippage_pct": result.slippage_pct,
                                     "threshold": settings.slippage_alert}, Priority.HIGH))
    return {"orders": orders, "fills": fills, "agent_messages": messages}
