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
"""

from __future__ import annotations

from graph.schemas import StrategySignal
from graph.settings import VoltSettings
from graph.state import CandidateState
from memory.message_log import MessageType
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
