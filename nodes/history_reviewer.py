"""History reviewer: the third peer-review vote, from this symbol's results in the ledger.

Until the learning loop lands, it reads the symbol's last five closing fills (SELLs) up
to the decision day, and StrategyAgent's learned weight. A SELL (reducing exposure) is
always approved. A BUY is rejected when StrategyAgent's weight is below 0.5 (a weak
track record), or when there are at least two closed trades with net realized loss.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from graph.context import VoltContext
from graph.state import CandidateState
from memory.ledger import Ledger
from memory.message_log import MessageType, message

LOOKBACK = 5
WEAK_TRACK_RECORD = 0.5  # learned weight below which the proposer's BUYs are rejected


def history_reviewer(state: CandidateState, runtime: Runtime[VoltContext]) -> dict:
    settings = runtime.context.settings
    symbol, side = state["symbol"], state["consensus"]["action"]
    fills = Ledger(settings.ledger_path).recent_fills(state["portfolio_id"], limit=50, symbol=symbol)
    closed = [f for f in fills if f["side"] == "SELL" and f["fill_date"] <= state["as_of"]][:LOOKBACK]
    pnl = sum(f["realized_pnl"] for f in closed)
    proposer_weight = (state.get("weights") or {}).get("strategy_agent", 1.0)
    if side == "SELL":
        verdict, reason = "APPROVED", "exit reduces exposure"
    elif proposer_weight < WEAK_TRACK_RECORD:
        verdict, reason = "REJECTED", f"StrategyAgent's track record is weak (weight {proposer_weight:.2f})"
    elif len(closed) >= 2 and pnl < 0:
        verdict, reason = "REJECTED", f"last {len(closed)} closed trades in {symbol} lost {pnl:.2f} USD"
    else:
        verdict, reason = "APPROVED", f"{len(closed)} closed trades in {symbol}, realized {pnl:+.2f} USD"
    result = {"agent": "history_reviewer", "symbol": symbol, "source": "ledger", "verdict": verdict,
              "reasons": [reason], "closed_trades": len(closed), "realized_pnl": round(pnl, 6)}
    msg = message("history_reviewer", "peer_review", MessageType.PEER_REVIEW, result)
    return {"history": result, "agent_messages": [msg]}
