"""MarketAgent: trend direction and strength, support/resistance, volume pattern.

Prior: BULLISH when close > SMA20 > SMA50, BEARISH when close < SMA20 < SMA50, else
NEUTRAL; strength = ADX14 / 50 (capped at 1; at most 0.3 when NEUTRAL); support and
resistance are the 20-day low and high; volume RISING above 1.3x its 20-day average,
FALLING below 0.7x.
"""

from __future__ import annotations

from graph.schemas import MarketView
from graph.settings import VoltSettings
from graph.state import CandidateState
from memory.message_log import MessageType
from nodes.agent_node import LLMAgent


def market_prior(state: CandidateState, settings: VoltSettings) -> MarketView:
    s = state["snapshot"]
    close, fast, slow = s["close"], s["sma20"], s["sma50"]
    if close > fast > slow:
        direction = "BULLISH"
    elif close < fast < slow:
        direction = "BEARISH"
    else:
        direction = "NEUTRAL"
    strength = min(1.0, max(0.0, s["adx14"] / 50.0))
    if direction == "NEUTRAL":
        strength = min(strength, 0.3)
    ratio = s["volume_ratio"]
    volume = "RISING" if ratio > 1.3 else "FALLING" if ratio < 0.7 else "NORMAL"
    return MarketView(
        symbol=state["symbol"],
        direction=direction,
        strength=round(strength, 4),
        support=s["low20"],
        resistance=s["high20"],
        volume_pattern=volume,
        rationale=f"close {close:.2f} vs SMA20 {fast:.2f} / SMA50 {slow:.2f}, ADX {s['adx14']:.1f}, volume x{ratio:.2f}",
    )


def market_evidence(state: CandidateState, settings: VoltSettings) -> dict:
    return {"symbol": state["symbol"], "as_of": state["as_of"], "indicators": state["snapshot"]}


market_agent = LLMAgent(
    name="market_agent",
    key="market",
    schema=MarketView,
    evidence=market_evidence,
    prior=market_prior,
    to_agent="strategy_agent",
    message_type=MessageType.MARKET_VIEW,
)
