"""Consensus: a weighted vote of the analyst agents. No LLM.

Votes are signed: MarketAgent BULLISH/BEARISH/NEUTRAL times its strength, StrategyAgent
BUY/SELL/HOLD times its confidence, SentimentAgent and ForexAgent their direction times
confidence/strength. An agent that abstained (no data) is left out of the vote entirely. ``score = sum(w * vote) / sum(w)`` with the weights
read from the store once per cycle by
``prepare_cycle`` (equal until the learning loop writes them). BUY when ``score >=
consensus_threshold``, SELL when ``score <= -consensus_threshold``, else HOLD.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from graph.context import VoltContext
from graph.state import CandidateState
from memory.message_log import MessageType, message

VOTERS = ("market_agent", "strategy_agent", "sentiment_agent", "forex_agent")
_RESULT_KEY = {"market_agent": "market", "strategy_agent": "strategy", "sentiment_agent": "sentiment",
               "forex_agent": "forex"}
DIRECTION = {"BULLISH": 1.0, "BEARISH": -1.0, "NEUTRAL": 0.0, "BUY": 1.0, "SELL": -1.0, "HOLD": 0.0}


def weighted_vote(votes: dict[str, float], weights: dict[str, float], threshold: float) -> tuple[str, float]:
    total = sum(weights[a] for a in votes)
    score = sum(weights[a] * v for a, v in votes.items()) / total if total > 0 else 0.0
    action = "BUY" if score >= threshold else "SELL" if score <= -threshold else "HOLD"
    return action, score


def consensus(state: CandidateState, runtime: Runtime[VoltContext]) -> dict:
    settings = runtime.context.settings
    thresholds = state.get("thresholds") or {}
    # abstentions (no data) are left out of the vote, not counted as HOLD
    present = {}  # agent -> (direction, conviction)
    for agent, key in _RESULT_KEY.items():
        if (call := agent_call(state.get(key))) is not None:
            present[agent] = call[1:]
    weights = {a: state["weights"].get(a, 1.0) for a in present}
    # below its (learned) confidence threshold an agent's call counts as no vote
    votes = {a: (d * c if c >= thresholds.get(a, 0.0) else 0.0) for a, (d, c) in present.items()}
    action, score = weighted_vote(votes, weights, settings.consensus_threshold)
    signal = state["strategy"]["output"]
    result = {
        "action": action,
        "score": round(score, 6),
        "confidence": round(abs(score), 6),
        "votes": {a: {"vote": round(v, 6), "weight": weights[a], "source": state[_RESULT_KEY[a]]["source"],
                      "threshold": thresholds.get(a, 0.0)} for a, v in votes.items()},
        "abstained": sorted(a for a in VOTERS if a not in present),
        "size_pct": signal["size_pct"] if signal["size_pct"] > 0 else settings.default_size_pct,
        "entry": signal["entry"],
        "exit": signal["exit"],
        "stop_loss": signal["stop_loss"],
    }
    msg = message("consensus", "risk_agent" if action != "HOLD" else "broadcast",
                  MessageType.CONSENSUS_RESULT, {"symbol": state["symbol"], **result})
    return {"consensus": result, "agent_messages": [msg]}


def agent_call(result: dict | None) -> tuple[str, float, float] | None:
    """(label, direction in -1/0/+1, conviction in 0..1) of a voting agent's result
    (market, strategy, sentiment, forex); None if it abstained."""
    if not result or result.get("abstained") or not result.get("output"):
        return None
    out = result["output"]
    label = out.get("direction") or out.get("action") or out.get("sentiment")
    conviction = out.get("strength", out.get("confidence", 0.0))
    return label, DIRECTION[label], float(conviction)


def route_after_consensus(state: CandidateState) -> str:
    return "hold" if state["consensus"]["action"] == "HOLD" else "review"
