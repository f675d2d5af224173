"""ForexAgent: rate and trend of a currency pair in the watchlist (e.g. ``OANDA:EUR_USD``).

Abstains for anything that is not a currency pair, and when no rates are available
(replay). Prior: the pair's trend from its price history when the data set has it
(close vs SMA20 vs SMA50, strength ADX / 50), otherwise NEUTRAL at the quoted rate.
"""

from __future__ import annotations

from graph.schemas import ForexView
from graph.settings import VoltSettings
from graph.state import CandidateState
from memory.message_log import MessageType
from nodes.agent_node import LLMAgent
from tools.alt_data import is_forex_pair


def _pair_rate(state: CandidateState) -> float | None:
    forex = (state.get("alt") or {}).get("forex") or {}
    quote = state["symbol"].split(":")[1][4:7] if is_forex_pair(state["symbol"]) else None
    rate = (forex.get("quote") or {}).get(quote) if quote else None
    return float(rate) if isinstance(rate, int | float) and rate > 0 else None


def _abstain(state: CandidateState, settings: VoltSettings) -> dict | None:
    if is_forex_pair(state["symbol"]) and _pair_rate(state) is not None:
        return None
    reason = "not a currency pair" if not is_forex_pair(state["symbol"]) else "no forex rates available"
    return {"agent": "forex_agent", "symbol": state["symbol"], "source": "abstain", "model": None, "degraded": False,
            "prompt_version": None, "abstained": True, "reason": reason, "output": None}


def forex_prior(state: CandidateState, settings: VoltSettings) -> ForexView:
    s = state["snapshot"]
    if s["close"] > s["sma20"] > s["sma50"]:
        direction = "BULLISH"
    elif s["close"] < s["sma20"] < s["sma50"]:
        direction = "BEARISH"
    else:
        direction = "NEUTRAL"
    strength = min(1.0, s["adx14"] / 50) if direction != "NEUTRAL" else 0.0
    return ForexView(symbol=state["symbol"], direction=direction, strength=round(strength, 4),
                     rate=_pair_rate(state) or s["close"], rationale=f"SMA trend, ADX {s['adx14']:.1f}")


def forex_evidence(state: CandidateState, settings: VoltSettings) -> dict:
    return {"symbol": state["symbol"], "as_of": state["as_of"], "rates": (state.get("alt") or {}).get("forex"),
            "indicators": state["snapshot"]}


forex_agent = LLMAgent(
    name="forex_agent", key="forex", schema=ForexView, evidence=forex_evidence, prior=forex_prior,
    to_agent="strategy_agent", message_type=MessageType.MARKET_VIEW, shortcut=_abstain,
)
