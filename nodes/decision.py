"""Closes a candidate branch: one decision record for the cycle, with the order if any."""

from __future__ import annotations

from graph.state import CandidateState


def finalize_decision(state: CandidateState) -> dict:
    consensus, review, risk = state.get("consensus"), state.get("review"), state.get("risk")
    order = review.get("order") if review else None
    if consensus is None or consensus["action"] == "HOLD":
        outcome, reason = "HOLD", "consensus HOLD"
    elif risk is not None and risk.get("blocked"):
        outcome, reason = "BLOCKED", risk["output"]["reasons"][0]
    elif review is None or review["verdict"] == "REJECTED":
        outcome, reason = "REJECTED", "; ".join((review or {}).get("objections", [])) or "rejected"
    else:
        outcome, reason = review["verdict"], f"{review['approvals']}/3 reviewers approved"
    decision = {
        "symbol": state["symbol"],
        "outcome": outcome,  # HOLD, BLOCKED, REJECTED, APPROVED or CAUTION
        "reason": reason,
        "order": order if outcome in ("APPROVED", "CAUTION") else None,
        "market": state.get("market"),
        "sentiment": state.get("sentiment"),
        "forex": state.get("forex"),
        "regime": state.get("regime"),
        "strategy": state.get("strategy"),
        "consensus": consensus,
        "risk": risk,
        "audit": state.get("audit"),
        "history": state.get("history"),
        "review": review,
        "revision": state.get("revision", 0),
        "llm_calls": state.get("llm_calls", 0),
    }
    return {"decisions": [decision]}
