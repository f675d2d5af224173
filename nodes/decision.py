"""Closes a candidate branch: one decision record for the cycle, with the order if any."""

from __future__ import annotations

from graph.state import CandidateState


def thesis(state: CandidateState) -> dict:
    """Which agents called what, for the plan of an entry: ``{agent: call}``."""
    calls = {}
    for key in ("market", "sentiment", "forex", "strategy", "risk", "audit"):
        result = state.get(key) or {}
        out = result.get("output") or {}
        call = out.get("action") or out.get("direction") or out.get("sentiment") or out.get("verdict")
        if call is not None:
            calls[result.get("agent") or key] = call
    consensus = state.get("consensus") or {}
    if consensus:
        calls["consensus"] = f"{consensus.get('action')} {consensus.get('score', 0.0):+.2f}"
    return calls


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
    if order and order.get("plan") is not None:  # the entry's plan carries its thesis
        order = {**order, "plan": {**order["plan"], "thesis": thesis(state)}}
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
