"""Consensus: a weighted vote of the analyst agents. No LLM.

Votes are signed: MarketAgent BULLISH/BEARISH/NEUTRAL times its strength, StrategyAgent
BUY/SELL/HOLD times its confidence. ``score = sum(w * vote) / sum(w)`` with the weights
read from the store once per cycle by
``prepare_cycle`` (equal until the learning loop writes them). BUY when ``score >=
consensus_threshold``, SELL when ``score <= -consensus_threshold``, else HOLD.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from graph.context import VoltContext
from graph.state import CandidateState
from memory.message_log import MessageType, message

VOTERS = ("market_agent", "strategy_agent")
_DIRECTION = {"BULLISH": 1.0, "BEARISH": -1.0, "NEUTRAL": 0.0, "BUY": 1.0, "SELL": -1.0, "HOLD": 0.0}


def weighted_vote(votes: dict[str, float], weights: dict[str, float], threshold: float) -> tuple[str, float]:
    total = sum(weights[a] for a in votes)
    score = sum(weights[a] * v for a, v in votes.items()) / total if total > 0 else 0.0
    action = "BUY" if score >= threshold else "SELL" if score <= -threshold else "HOLD"
    return action, score


def consensus(state: CandidateState, runtime: Runtime[VoltContext]) -> dict:
    settings = runtime.context.settings
    market, strategy = state["market"], state["strategy"]
    weights = {a: state["weights"].get(a, 1.0) for a in VOTERS}
    thresholds = state.get("thresholds") or {}
    conviction = {"market_agent": market["output"]["strength"], "strategy_agent": strategy["output"]["confidence"]}
    votes = {
        "market_agent": _DIRECTION[market["output"]["direction"]] * market["output"]["strength"],
        "strategy_agent": _DIRECTION[strategy["output"]["action"]] * strategy["output"]["confidence"],
    }
    # below its (learned) confidence threshold an agent's call counts as no vote
    votes = {a: (v if conviction[a] >= thresholds.get(a, 0.0) else 0.0) for a, v in votes.items()}
    action, score = weighted_vote(votes, weights, settings.consensus_threshold)
    signal = strategy["output"]
    result = {
        "action": action,
        "score": round(score, 6),
        "confidence": round(abs(score), 6),
        "votes": {a: {"vote": round(v, 6), "weight": weights[a], "source": state[k]["source"],
                      "threshold": thresholds.get(a, 0.0)}
                  for (a, v), k in zip(votes.items(), ("market", "strategy"), strict=True)},
        "size_pct": signal["size_pct"] if signal["size_pct"] > 0 else settings.default_size_pct,
        "entry": signal["entry"],
        "exit": signal["exit"],
        "stop_loss": signal["stop_loss"],
    }
    msg = message("consensus", "risk_agent" if action != "HOLD" else "broadcast",
                  MessageType.CONSENSUS_RESULT, {"symbol": state["symbol"], **result})
    return {"consensus": result, "agent_messages": [msg]}


def route_after_consensus(state: CandidateState) -> str:
    return "hold" if state["consensus"]["action"] == "HOLD" else "review"
