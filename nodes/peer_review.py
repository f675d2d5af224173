"""Peer review: risk, auditor and history reviewer vote on the sized order.

Each vote counts with the reviewer's learned weight (the reviewer pool of
nodes/learning_agent.py, normalized to sum to 3; all 1.0 when learning is off). The
approving share of the total weight decides: at least 2/3 APPROVED, at least 1/3 CAUTION
(the order is halved), less REJECTED. With equal weights that is exactly "two or more
approvals, one, none". The first rejection goes back to StrategyAgent as a correction request with the reviewers'
objections, a second one holds. The risk vote counts as an approval only if RiskAgent
approved; hard limits have already sized the order and nothing here can enlarge it.
"""

from __future__ import annotations

from graph.state import CandidateState
from memory.message_log import MessageType, message

MAX_REVISIONS = 1
REVIEWERS = ("risk_agent", "auditor_agent", "history_reviewer")
APPROVE_SHARE, CAUTION_SHARE = 2 / 3, 1 / 3
_EPS = 1e-9  # 2 of 3 equal weights is exactly 2/3, whatever the float rounding


def review_verdict(votes: dict[str, bool], weights: dict[str, float]) -> tuple[str, float]:
    """(verdict, approving share of the weight). A missing, negative or non-finite weight
    counts as 1.0; all-zero weights fall back to equal ones."""
    w = {a: (float(weights.get(a, 1.0)) if 0 <= float(weights.get(a, 1.0)) < float("inf") else 1.0)
         for a in votes}
    total = sum(w.values())
    if total <= 0:
        w, total = {a: 1.0 for a in votes}, float(len(votes))
    share = sum(w[a] for a, ok in votes.items() if ok) / total if total else 0.0
    verdict = ("APPROVED" if share >= APPROVE_SHARE - _EPS else "CAUTION" if share >= CAUTION_SHARE - _EPS
               else "REJECTED")
    return verdict, share


def peer_review(state: CandidateState) -> dict:
    risk, audit, history = state["risk"], state["audit"], state["history"]
    risk_threshold = (state.get("thresholds") or {}).get("risk_agent", 0.0)
    votes = {
        "risk_agent": risk["output"]["verdict"] == "APPROVED" and risk["output"]["risk_score"] < 1.0 - risk_threshold,
        "auditor_agent": audit["output"]["verdict"] == "APPROVED",
        "history_reviewer": history["verdict"] == "APPROVED",
    }
    approvals = sum(votes.values())
    weights = {a: (state.get("weights") or {}).get(a, 1.0) for a in REVIEWERS}
    verdict, share = review_verdict(votes, weights)
    order = dict(risk["order"])
    if verdict == "CAUTION":
        order["qty"] = round(order["qty"] / 2.0, 8)
        order["notional"] = round(order["notional"] / 2.0, 6)
    objections = [
        *(f"risk: {r}" for r in risk["output"].get("reasons", []) if not votes["risk_agent"]),
        *(f"auditor: {o}" for o in audit["output"].get("objections", []) if not votes["auditor_agent"]),
        *(f"history: {r}" for r in history["reasons"] if not votes["history_reviewer"]),
    ]
    review = {"verdict": verdict, "approvals": approvals, "approval_share": round(share, 6),
              "review_weights": weights, "votes": votes, "objections": objections,
              "order": order if verdict != "REJECTED" else None, "revision": state.get("revision", 0)}
    msg = message("peer_review", "execution_agent" if verdict != "REJECTED" else "strategy_agent",
                  MessageType.PEER_REVIEW, {"symbol": state["symbol"], **review})
    return {"review": review, "agent_messages": [msg]}


def route_after_review(state: CandidateState) -> str:
    if state["review"]["verdict"] != "REJECTED":
        return "approved"
    return "revise" if state.get("revision", 0) < MAX_REVISIONS else "rejected"


def request_correction(state: CandidateState) -> dict:
    """Send the rejected proposal back to StrategyAgent once, with the objections."""
    objections = state["review"]["objections"] or ["rejected by all reviewers"]
    msg = message("peer_review", "strategy_agent", MessageType.CORRECTION_REQUEST,
                  {"symbol": state["symbol"], "objections": objections})
    return {
        "revision": state.get("revision", 0) + 1,
        "objections": objections,
        "strategy": None, "consensus": None, "risk": None, "audit": None, "history": None, "review": None,
        "attempts": {"strategy": 0, "risk": 0, "audit": 0},
        "agent_messages": [msg],
    }
