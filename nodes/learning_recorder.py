"""Records what this cycle's agents predicted, for the LearningAgent to resolve later.

One prediction per agent and candidate, as a signal in [-1, 1]: MarketAgent's direction
times strength, StrategyAgent's action times confidence, the consensus score, and for a
proposed trade each reviewer's verdict (approve = +0.5 on the trade's direction, reject =
-0.5), so the reviewers learn whether they are too strict or too loose. Also: the
consensus records, every handled error with its recovery (identical ones of a cycle once,
with their count), and closed trades.
"""

from __future__ import annotations

import pandas as pd
from langgraph.runtime import Runtime

from graph.context import VoltContext
from graph.state import CycleState
from memory.learning_store import LearningStore
from memory.ledger import Ledger
from nodes.consensus import DIRECTION, agent_call
from tools.data_source import market_dataset
from tools.error_handler import dedupe
from tools.situation_features import market_condition, situation_features

REVIEW_CONVICTION = 0.5


def _predictions(state: CycleState, horizon: int) -> list[dict]:
    portfolio, day, cycle_id = state["portfolio_id"], state["as_of"], state["cycle_id"]
    fills = {f["symbol"]: f for f in state.get("fills", [])}
    versions = {a: p["version"] for a, p in (state.get("profiles") or {}).items()}
    rows = []
    for d in state.get("decisions", []):
        symbol = d["symbol"]
        features = {**situation_features(state["snapshots"][symbol]),
                    "regime": ((state.get("macro") or {}).get("output") or {}).get("regime")}
        fill = fills.get(symbol)
        base = {"portfolio": portfolio, "cycle_id": cycle_id, "symbol": symbol, "as_of": day,
                "features": features, "horizon": horizon, "fill_price": fill["price"] if fill else None,
                "filled_qty": (fill["qty"] if fill["side"] == "BUY" else -fill["qty"]) if fill else 0.0}

        def add(agent, result, action, confidence, signal, base=base):
            rows.append({
                **base, "prediction_id": f"{cycle_id}:{agent}:{base['symbol']}", "agent": agent,
                "source": result.get("source", "rule") if result else "rule",
                "model": (result or {}).get("model"), "profile_version": versions.get(agent, 0),
                "prompt_version": (result or {}).get("prompt_version"), "action": action,
                "confidence": round(float(confidence), 6), "signal": round(float(signal), 6),
            })

        for agent, key in (("market_agent", "market"), ("sentiment_agent", "sentiment"),
                           ("forex_agent", "forex"), ("strategy_agent", "strategy")):
            if (call := agent_call(d.get(key))) is not None:
                label, direction, conviction = call
                add(agent, d[key], label, conviction, direction * conviction)
        c = d.get("consensus")
        if c:
            add("consensus", None, c["action"], c["confidence"], c["score"])
        if c and c["action"] != "HOLD":
            side = DIRECTION[c["action"]]
            for agent, key in (("risk_agent", "risk"), ("auditor_agent", "audit")):
                r = d.get(key)
                if r and r["source"] != "limits":
                    verdict = r["output"]["verdict"]
                    conf = 1.0 - r["output"].get("risk_score", 0.0) if key == "risk" else REVIEW_CONVICTION
                    add(agent, r, verdict, conf, side * REVIEW_CONVICTION * (1 if verdict == "APPROVED" else -1))
            if h := d.get("history"):
                add("history_reviewer", h, h["verdict"], REVIEW_CONVICTION,
                    side * REVIEW_CONVICTION * (1 if h["verdict"] == "APPROVED" else -1))
    return rows


def _closed_trades(state: CycleState, ledger: Ledger, calendar: pd.DatetimeIndex) -> list[dict]:
    """A SELL that realizes P&L closes (part of) a trade opened by the buys since flat."""
    out = []
    errors_by_symbol: dict[str, list[str]] = {}
    for e in [*state.get("errors", []), *state.get("data_errors", [])]:
        errors_by_symbol.setdefault(e.get("symbol") or "", []).append(e["category"])
    for f in state.get("fills", []):
        if f["side"] != "SELL" or not f["realized_pnl"]:
            continue
        history = sorted(ledger.recent_fills(state["portfolio_id"], limit=500, symbol=f["symbol"]),
                         key=lambda x: (x["fill_date"], x["order_id"]))
        opened, qty = f["fill_date"], 0.0
        for past in reversed([h for h in history if h["order_id"] != f["order_id"] and h["fill_date"] <= f["fill_date"]]):
            qty += past["qty"] if past["side"] == "BUY" else -past["qty"]
            opened = past["fill_date"]
            if qty >= f["qty"] - 1e-9:
                break
        duration = int(calendar.searchsorted(pd.Timestamp(f["fill_date"])) - calendar.searchsorted(pd.Timestamp(opened)))
        entry = f["price"] - (f["realized_pnl"] + f["fee"]) / f["qty"]
        out.append({
            "trade_id": f["order_id"], "portfolio": state["portfolio_id"], "symbol": f["symbol"], "action": "LONG",
            "entry_price": entry, "exit_price": f["price"], "qty": f["qty"], "pnl": f["realized_pnl"],
            "duration_days": duration, "opened": opened, "closed": f["fill_date"],
            "market_condition": market_condition(state["snapshots"][f["symbol"]])
            if f["symbol"] in state.get("snapshots", {}) else "unknown",  # a broker exit of a non-candidate
            "errors": errors_by_symbol.get(f["symbol"], []),
        })
    return out


def learning_recorder(state: CycleState, runtime: Runtime[VoltContext]) -> dict:
    settings = runtime.context.settings
    store = LearningStore(settings.ledger_path)
    portfolio, cycle_id = state["portfolio_id"], state["cycle_id"]
    predictions = _predictions(state, settings.horizon_days)
    store.record_predictions(predictions)
    # one row per distinct error of the cycle, its count in the message (tools.error_handler)
    store.record_errors(portfolio, cycle_id, dedupe([*state.get("errors", []), *state.get("data_errors", [])]))
    store.record_consensus([
        {"record_id": f"{cycle_id}:{d['symbol']}:{d['revision']}", "portfolio": portfolio, "as_of": state["as_of"],
         "symbol": d["symbol"], "proposal": {k: d["consensus"][k] for k in ("action", "size_pct", "entry", "exit", "stop_loss")},
         "votes": d["consensus"]["votes"], "weights": state.get("weights", {}), "result": d["outcome"]}
        for d in state.get("decisions", []) if d.get("consensus")
    ])
    store.record_trades(_closed_trades(state, Ledger(settings.ledger_path), market_dataset(settings).calendar))
    return {"learning": {**(state.get("learning") or {}), "recorded_predictions": len(predictions)}}
