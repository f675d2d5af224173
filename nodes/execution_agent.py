"""ExecutionAgent: the paper broker. Fills approved orders at the next bar's open.

The agents decided on day D with data up to D; on replay the simulator fills at the open
of the symbol's next bar (D+1), a price none of them saw (live: at the current quote), plus slippage
(:func:`tools.broker.slippage_fraction`) and the fee. At fill time the broker re-clips
each order to the cash, position and gross-exposure limits at the real fill price, so
several buys in one cycle can never overdraw cash. Sells go first to free cash.
Each order is booked once (``Ledger.record_fill``), so a resumed cycle never fills twice.
"""

from __future__ import annotations

import time

import pandas as pd
from langgraph.runtime import Runtime

from graph.context import VoltContext
from graph.state import CycleState
from memory.ledger import FillRecord, Ledger
from memory.message_log import MessageType, Priority, message
from tools.broker import fee, fill_price, slippage_fraction
from tools.data_source import market_dataset
from tools.market_data import MarketDataset
from tools.portfolio import Account


def broker_marks(dataset: MarketDataset, symbols: list[str], as_of: pd.Timestamp) -> dict[str, float]:
    """Broker-side prices: next open where it exists, else the last close."""
    marks = {}
    for symbol in symbols:
        nxt = dataset.next_bar(symbol, as_of)
        if nxt is not None:
            marks[symbol] = float(nxt[1]["open"])
        else:
            bars = dataset.history(symbol, as_of)
            if len(bars):
                marks[symbol] = float(bars["close"].iloc[-1])
    return marks


def execution_agent(state: CycleState, runtime: Runtime[VoltContext]) -> dict:
    settings = runtime.context.settings
    dataset = market_dataset(settings)
    live_price = runtime.context.live_price if settings.source != "replay" else None
    ledger = Ledger(settings.ledger_path)
    portfolio, day = state["portfolio_id"], state["as_of"]
    as_of = pd.Timestamp(day)
    approved = [d for d in state.get("decisions", []) if d.get("order")]
    # Sells first (they free cash), then buys by consensus confidence; symbol breaks ties.
    approved.sort(key=lambda d: (d["order"]["side"] != "SELL", -d["consensus"]["confidence"], d["symbol"]))
    orders, fills, messages = [], [], []
    for decision in approved:
        order, symbol = decision["order"], decision["symbol"]
        snapshot = state["snapshots"][symbol]
        started = time.perf_counter()

        def make_fill(account: Account, order=order, symbol=symbol, snapshot=snapshot, started=started):
            if live_price is not None:  # live: fill at the current quote
                try:
                    fill_day, bar = as_of, {"open": live_price(symbol)}
                except Exception as exc:
                    return f"no live quote to fill at ({exc})"
            else:
                nxt = dataset.next_bar(symbol, as_of)
                if nxt is None:
                    return "no next bar to fill at (end of data or a data issue)"
                fill_day, bar = nxt
            side, qty = order["side"], float(order["qty"])
            held = account.positions[symbol].qty if symbol in account.positions else 0.0
            avg_shares = snapshot["volume_avg20"] * dataset.volume_unit
            slip = slippage_fraction(atr_pct=snapshot["atr_pct"], order_shares=qty,
                                     avg_daily_shares=avg_shares, max_slippage=settings.max_slippage)
            price = fill_price(float(bar["open"]), side, slip)
            if side == "SELL" and not settings.allow_short:
                qty = min(qty, held)
            if side == "BUY":
                marks = broker_marks(dataset, account.held(), as_of)
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
                order_id="", symbol=symbol, side=side, qty=qty, reference_price=float(bar["open"]),
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
