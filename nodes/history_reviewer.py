"""History reviewer: the third peer-review vote, from this symbol's results in the ledger.

It reads the symbol's last five closing fills (SELLs) up to the decision day. A SELL
(reducing exposure) is always approved. A BUY is rejected when there are at least two
closed trades with net realized loss, or when the statistical gate finds StrategyAgent's
BUY calls significantly worse than the base rate (:mod:`tools.learning.gate`: a one-sided
binomial test on one call per week, at least ``gate_min_blocks`` weeks, p < ``gate_alpha``).
Without that much evidence the gate has no effect: no learned weight is ever a veto.
The gate is off with ``learning`` or ``learn_gate`` off.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from graph.context import VoltContext
from graph.state import CandidateState
from memory.learning_store import LearningStore
from memory.ledger import Ledger
from memory.message_log import MessageType, message
from tools.learning.gate import base_up_rate, worse_than_base

LOOKBACK = 5
GATE_HISTORY = 2000  # newest resolved calls read for the gate and its base rate
PROPOSER = "strategy_agent"


def buy_gate(settings, portfolio: str, as_of: str):
    """The gate's verdict on the proposer's BUY calls resolved before ``as_of`` (GateResult),
    or None when the gate is switched off."""
    if not (settings.learning and settings.learn_gate):
        return None
    rows = [r for r in LearningStore(settings.ledger_path).outcomes(portfolio, limit=GATE_HISTORY)
            if (r["resolved_as_of"] or "") <= as_of]
    buys = [r for r in rows if r["agent"] == PROPOSER and r["signal"] > 0]
    return worse_than_base(buys, base_up_rate(rows), min_blocks=settings.gate_min_blocks, alpha=settings.gate_alpha)


def history_reviewer(state: CandidateState, runtime: Runtime[VoltContext]) -> dict:
    settings = runtime.context.settings
    symbol, side = state["symbol"], state["consensus"]["action"]
    fills = Ledger(settings.ledger_path).recent_fills(state["portfolio_id"], limit=50, symbol=symbol)
    closed = [f for f in fills if f["side"] == "SELL" and f["fill_date"] <= state["as_of"]][:LOOKBACK]
    pnl = sum(f["realized_pnl"] for f in closed)
    gate = buy_gate(settings, state["portfolio_id"], state["as_of"]) if side != "SELL" else None
    if side == "SELL":
        verdict, reason = "APPROVED", "exit reduces exposure"
    elif gate is not None and gate.significant:
        verdict, reason = "REJECTED", f"StrategyAgent's BUYs: {gate.reason}"
    elif len(closed) >= 2 and pnl < 0:
        verdict, reason = "REJECTED", f"last {len(closed)} closed trades in {symbol} lost {pnl:.2f} USD"
    else:
        verdict, reason = "APPROVED", f"{len(closed)} closed trades in {symbol}, realized {pnl:+.2f} USD"
    result = {"agent": "history_reviewer", "symbol": symbol, "source": "ledger", "verdict": verdict,
              "reasons": [reason], "closed_trades": len(closed), "realized_pnl": round(pnl, 6),
              **({"gate": {"blocks": gate.blocks, "hits": gate.hits, "p_value": gate.p_value}} if gate else {})}
    msg = message("history_reviewer", "peer_review", MessageType.PEER_REVIEW, result)
    return {"history": result, "agent_messages": [msg]}
