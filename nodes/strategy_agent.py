"""StrategyAgent: BUY/SELL/HOLD with confidence, entry, exit, stop-loss and size.

Prior (the Sprint 1 rule with an SMA trend filter):

- RSI14 < 30: BUY (oversold); RSI14 > 70: SELL (overbought). Confidence 0.55 plus the
  distance past the threshold / 100; minus 0.15 when the SMA20/SMA50 trend disagrees.
- Otherwise trend-following: SMA20 > SMA50, MACD histogram > 0 and close > SMA20 is a
  BUY at 0.55; SMA20 < SMA50 with MACD histogram < 0 is a SELL at 0.55; else HOLD.
- Similar past situations (at least 3) shift confidence by 5x their mean forward return
  in the call's direction, capped at +-0.15.
- Entry = last close, stop = entry - 2 ATR, exit = entry + 3 ATR (mirrored for SELL);
  size = 1% of equity at risk over the stop distance, capped at the position limit.
- Asked again for the consensus side (coherence, below): a HOLD (no rule fired, so no rule
  speaks against the side) goes along with it at confidence 0.5; a BUY or SELL of its own
  is kept.

Coherence: an order's side must be the strategist's action for the symbol. When the
consensus side differs, the strategist is asked once more, through its normal model chain
(or prior), with the consensus side in its evidence (``reconsider``); the consensus is then
recomputed. If it still disagrees, the candidate HOLDs with the reason recorded.
"""

from __future__ import annotations

from graph.schemas import StrategySignal
from graph.settings import VoltSettings
from graph.state import CandidateState
from memory.message_log import MessageType, message
from nodes.agent_node import LLMAgent

RISK_PER_TRADE = 0.01
MEMORY_MIN_NEIGHBOURS = 3


def strategy_prior(state: CandidateState, settings: VoltSettings) -> StrategySignal:
    s = state["snapshot"]
    rsi, close, atr = s["rsi14"], s["close"], max(s["atr14"], 1e-9)
    uptrend = s["sma20"] > s["sma50"]
    if rsi < 30:
        action, conf = "BUY", 0.55 + (30 - rsi) / 100 - (0.0 if uptrend else 0.15)
        why = f"RSI {rsi:.1f} < 30 (oversold)" + ("" if uptrend else ", against the SMA trend")
    elif rsi > 70:
        action, conf = "SELL", 0.55 + (rsi - 70) / 100 - (0.15 if uptrend else 0.0)
        why = f"RSI {rsi:.1f} > 70 (overbought)" + (", against the SMA trend" if uptrend else "")
    elif uptrend and s["macd_hist"] > 0 and close > s["sma20"]:
        action, conf, why = "BUY", 0.55, "SMA20 > SMA50 with positive MACD histogram"
    elif not uptrend and s["macd_hist"] < 0:
        action, conf, why = "SELL", 0.55, "SMA20 < SMA50 with negative MACD histogram"
    else:
        action, conf, why = "HOLD", 0.5, f"no rule fired (RSI {rsi:.1f})"
    asked = state.get("reconsider") or {}
    if action == "HOLD" and asked.get("consensus_side") in ("BUY", "SELL"):
        action, conf = asked["consensus_side"], 0.5
        why += f"; asked again: no rule against the consensus {action}, so it goes along"
    sign = -1.0 if action == "SELL" else 1.0
    # Memory: similar past setups shift conviction by their mean forward return in the
    # call's direction (at least 3 neighbours; at most +-0.15).
    memory = state.get("memory") or {}
    if action != "HOLD" and memory.get("n", 0) >= MEMORY_MIN_NEIGHBOURS:
        shift = max(-0.15, min(0.15, sign * memory["mean_return"] * 5))
        conf += shift
        why += f"; {memory['n']} similar setups moved {memory['mean_return']:+.1%} ({shift:+.2f})"
    stop = close - sign * 2 * atr
    size = 0.0 if action == "HOLD" else min(settings.max_position_pct, RISK_PER_TRADE / (2 * atr / close))
    return StrategySignal(
        symbol=state["symbol"],
        action=action,
        confidence=round(min(1.0, max(0.0, conf)), 4),
        entry=close,
        exit=max(close + sign * 3 * atr, 0.01),
        stop_loss=max(stop, 0.01),
        size_pct=round(size, 4),
        rationale=why,
    )


def strategy_evidence(state: CandidateState, settings: VoltSettings) -> dict:
    evidence = {
        "symbol": state["symbol"],
        "as_of": state["as_of"],
        "indicators": state["snapshot"],
        "market_view": (state.get("market") or {}).get("output"),
        "sentiment_view": (state.get("sentiment") or {}).get("output"),
        "forex_view": (state.get("forex") or {}).get("output"),
        "market_regime": (state.get("regime") or {}).get("regime"),
        "position": state["portfolio"]["positions"].get(state["symbol"]),
        "equity": state["portfolio"]["equity"],
    }
    if state.get("objections"):
        evidence["objections"] = state["objections"]
    if asked := state.get("reconsider"):
        evidence["reconsider"] = {
            **asked,
            "question": f"The other analysts' consensus is {asked['consensus_side']}; you said "
                        f"{asked['strategist_said']}. Answer {asked['consensus_side']} if you can support it, "
                        f"otherwise keep your action: no order is placed against your call.",
        }
    if (memory := state.get("memory")) and memory.get("n"):
        evidence["similar_situations"] = {k: memory[k] for k in ("summary", "by_action", "mean_return", "lessons")}
    return evidence


strategy_agent = LLMAgent(
    name="strategy_agent",
    key="strategy",
    schema=StrategySignal,
    evidence=strategy_evidence,
    prior=strategy_prior,
    to_agent="consensus",
    message_type=MessageType.TRADE_PROPOSAL,
)


def coherence(state: CandidateState, consensus: dict, *, allow_short: bool = False) -> dict:
    """Does the consensus side agree with the strategist's own action?

    ``status``: ``agree``; ``n/a`` (no order can follow: a HOLD consensus, a SELL of nothing
    held without shorting, or, for a held symbol, a side that adds to the position);
    ``reask`` (differs, not asked again yet); ``disagree`` (differs after asking again:
    the candidate holds, ``reason`` says why)."""
    side, said = consensus["action"], state["strategy"]["output"]["action"]
    held = ((state.get("portfolio") or {}).get("positions") or {}).get(state["symbol"], {}).get("qty", 0.0)
    base = {"consensus_side": side, "strategist_said": said, "asked_again": bool(state.get("reconsider"))}
    exit_side = "SELL" if held > 0 else "BUY" if held < 0 else None
    if (side == "HOLD" or (side == "SELL" and held <= 0 and not allow_short)
            or ((state.get("chain") or {}).get("held") and side != exit_side)):
        return {**base, "status": "n/a"}
    if side == said:
        return {**base, "status": "agree"}
    if not state.get("reconsider"):
        return {**base, "status": "reask"}
    return {**base, "status": "disagree",
            "reason": f"consensus {side} against the strategist's {said} (asked again): no order"}


def reconsider(state: CandidateState) -> dict:
    """Ask the strategist again, once, with the consensus side in its evidence."""
    check = state["coherence"]
    asked = {"consensus_side": check["consensus_side"], "strategist_said": check["strategist_said"],
             "score": state["consensus"]["score"]}
    msg = message("consensus", "strategy_agent", MessageType.CORRECTION_REQUEST,
                  {"symbol": state["symbol"], "reconsider": asked})
    return {"reconsider": asked, "strategy": None, "consensus": None, "coherence": None,
            "attempts": {"strategy": 0}, "agent_messages": [msg]}
