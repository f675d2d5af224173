"""AuditorAgent: cross-checks a proposal for consistency and anomalies before execution.

Prior objections: BUY against a BEARISH market view (SELL against BULLISH); a stop-loss on
the wrong side of the entry; an entry more than 5% from the last close; BUY with RSI > 80
or SELL with RSI < 20; a consensus confidence below the threshold. Approve when none.
"""

from __future__ import annotations

from graph.schemas import AuditReview
from graph.settings import VoltSettings
from graph.state import CandidateState
from memory.message_log import MessageType
from nodes.agent_node import LLMAgent


def audit_objections(state: CandidateState, settings: VoltSettings) -> list[str]:
    c, s = state["consensus"], state["snapshot"]
    market = state["market"]["output"]
    side, entry, stop = c["action"], c["entry"], c["stop_loss"]
    found = []
    if side == "BUY" and market["direction"] == "BEARISH":
        found.append("BUY against a BEARISH market view")
    if side == "SELL" and market["direction"] == "BULLISH":
        found.append("SELL against a BULLISH market view")
    if (side == "BUY" and stop >= entry) or (side == "SELL" and stop <= entry):
        found.append(f"stop-loss {stop:.2f} on the wrong side of entry {entry:.2f}")
    if abs(entry / s["close"] - 1.0) > 0.05:
        found.append(f"entry {entry:.2f} is more than 5% from the last close {s['close']:.2f}")
    if side == "BUY" and s["rsi14"] > 80:
        found.append(f"BUY with RSI {s['rsi14']:.1f} > 80")
    if side == "SELL" and s["rsi14"] < 20:
        found.append(f"SELL with RSI {s['rsi14']:.1f} < 20")
    if c["confidence"] < settings.consensus_threshold:
        found.append(f"consensus confidence {c['confidence']:.2f} below threshold")
    return found


def auditor_prior(state: CandidateState, settings: VoltSettings) -> AuditReview:
    objections = audit_objections(state, settings)
    return AuditReview(symbol=state["symbol"], verdict="REJECTED" if objections else "APPROVED", objections=objections)


def auditor_evidence(state: CandidateState, settings: VoltSettings) -> dict:
    return {
        "symbol": state["symbol"],
        "as_of": state["as_of"],
        "indicators": state["snapshot"],
        "market_view": state["market"]["output"],
        "strategy_signal": state["strategy"]["output"],
        "proposal": state["consensus"],
        "order": state["risk"]["order"],
    }


auditor_agent = LLMAgent(
    name="auditor_agent",
    key="audit",
    schema=AuditReview,
    evidence=auditor_evidence,
    prior=auditor_prior,
    to_agent="peer_review",
    message_type=MessageType.PEER_REVIEW,
)
