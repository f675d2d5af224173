"""Consensus: a vote of the analyst agents under the chain's consensus model. No LLM.

Votes are signed: MarketAgent BULLISH/BEARISH/NEUTRAL times its strength, StrategyAgent
BUY/SELL/HOLD times its confidence, SentimentAgent and ForexAgent their direction times
confidence/strength. An agent that abstained (no data) is left out of the vote entirely; a
call below the agent's (learned) confidence threshold counts as a 0 vote. The weights are read
from the store once per cycle by ``prepare_cycle`` (equal until the learning loop writes them).
The chain (``config/chains.toml``) names the model; each is a pure function of the signed
votes, the weights and the threshold, returning (action, score in [-1, 1]):

- ``weighted`` (today's): ``score = sum(w * vote) / sum(w)``; BUY when ``score >=
  threshold``, SELL when ``score <= -threshold``, else HOLD.
- ``majority``: each voter's side (a vote of 0 is a HOLD); BUY/SELL when strictly more than
  half of the voters are on that side; ``score = (buys - sells) / voters``.
- ``unanimous``: BUY/SELL only when every voter is on that side with ``|vote| >= threshold``
  (a HOLD or a weak vote vetoes); ``score`` = the mean vote.
- ``confidence_weighted``: each vote weighted by ``w * |vote|`` (its own conviction), so weak
  calls barely count: ``score = sum(w * |v| * v) / sum(w * |v|)``, thresholded like weighted.

No voters (or all weights 0) is a HOLD at score 0 under every model.

After the vote the strategist's coherence is checked (:func:`nodes.strategy_agent.coherence`):
an order's side must be the strategist's own action.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from graph.chains import default_entry_chain
from graph.context import VoltContext
from graph.state import CandidateState
from memory.message_log import MessageType, message
from nodes.strategy_agent import coherence
from tools.trading.consensus import (  # noqa: F401  (re-exported: the models live in tools)
    CONSENSUS_MODELS,
    confidence_weighted_vote,
    majority_vote,
    unanimous_vote,
    weighted_vote,
)

VOTERS = ("market_agent", "strategy_agent", "sentiment_agent", "forex_agent")
_RESULT_KEY = {"market_agent": "market", "strategy_agent": "strategy", "sentiment_agent": "sentiment",
               "forex_agent": "forex"}
DIRECTION = {"BULLISH": 1.0, "BEARISH": -1.0, "NEUTRAL": 0.0, "BUY": 1.0, "SELL": -1.0, "HOLD": 0.0}


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
    chain = state.get("chain") or default_entry_chain()
    model, threshold = chain["consensus"], chain.get("threshold") or settings.consensus_threshold
    action, score = CONSENSUS_MODELS[model](votes, weights, threshold)
    signal = state["strategy"]["output"]
    result = {
        "action": action,
        "model": model,
        "threshold": threshold,
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
    check = coherence(state, result, allow_short=settings.allow_short)
    return {"consensus": result, "coherence": check, "agent_messages": [msg]}


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
    """``reconsider`` (ask the strategist again), ``hold`` (finalize: a HOLD, or the strategist
    still disagrees), or ``review`` (the chain's next step)."""
    check = state.get("coherence") or {}
    if check.get("status") == "reask":
        return "reconsider"
    if (state.get("chain") or {}).get("held"):
        return "review"  # the exit review decides, whatever the vote
    if state["consensus"]["action"] == "HOLD" or check.get("status") == "disagree":
        return "hold"
    return "review"
