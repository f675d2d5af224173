"""SentimentAgent: news, news sentiment, insider sentiment (MSPR) and analyst ratings.

News text is untrusted data: it reaches the model only inside the JSON evidence, cleaned
and truncated, and nothing in it can change limits, tools or instructions (those live in
code and in the system prompt). With no data at all (replay) the agent abstains and the
consensus leaves it out.

Prior: the mean of the available signals, each in [-1, 1]: news score (2 x
companyNewsScore - 1), bullish minus bearish share, MSPR / 100, and the analyst balance
(2 strong buy + buy - sell - 2 strong sell) / (2 x analysts). BULLISH above +0.15,
BEARISH below -0.15; confidence 0.3 + 0.15 per signal, at most 0.9.
"""

from __future__ import annotations

from graph.schemas import SentimentView
from graph.settings import VoltSettings
from graph.state import CandidateState
from memory.message_log import MessageType
from nodes.agent_node import LLMAgent
from tools.alt_data import finite

BAND = 0.15


def sentiment_signals(alt: dict) -> dict[str, float]:
    signals: dict[str, float] = {}
    ns = alt.get("news_sentiment") or {}
    if finite(ns.get("companyNewsScore")):
        signals["news_score"] = 2 * ns["companyNewsScore"] - 1
    sent = ns.get("sentiment") or {}
    if finite(sent.get("bullishPercent")) and finite(sent.get("bearishPercent")):
        signals["bull_minus_bear"] = sent["bullishPercent"] - sent["bearishPercent"]
    insider = alt.get("insider_sentiment") or {}
    if finite(insider.get("mspr")):
        signals["insider_mspr"] = max(-1.0, min(1.0, insider["mspr"] / 100))
    rec = alt.get("recommendations") or {}
    total = sum(rec.get(k, 0) or 0 for k in ("strongBuy", "buy", "hold", "sell", "strongSell"))
    if total:
        signals["analysts"] = (2 * rec.get("strongBuy", 0) + rec.get("buy", 0) - rec.get("sell", 0)
                               - 2 * rec.get("strongSell", 0)) / (2 * total)
    return {k: round(max(-1.0, min(1.0, v)), 6) for k, v in signals.items()}


def _abstain(state: CandidateState, settings: VoltSettings) -> dict | None:
    alt = state.get("alt") or {}
    if sentiment_signals(alt) or alt.get("news"):
        return None
    return {"agent": "sentiment_agent", "symbol": state["symbol"], "source": "abstain", "model": None,
            "degraded": False, "prompt_version": None, "abstained": True,
            "reason": "no news, sentiment, insider or analyst data for this symbol", "output": None}


def sentiment_prior(state: CandidateState, settings: VoltSettings) -> SentimentView:
    signals = sentiment_signals(state.get("alt") or {})
    score = sum(signals.values()) / len(signals) if signals else 0.0
    label = "BULLISH" if score > BAND else "BEARISH" if score < -BAND else "NEUTRAL"
    return SentimentView(symbol=state["symbol"], sentiment=label, score=round(score, 6),
                         confidence=round(min(0.9, 0.3 + 0.15 * len(signals)), 4),
                         drivers=[f"{k} {v:+.2f}" for k, v in signals.items()] or ["headlines only"])


def sentiment_evidence(state: CandidateState, settings: VoltSettings) -> dict:
    alt = state.get("alt") or {}
    return {"symbol": state["symbol"], "as_of": state["as_of"], "news": alt.get("news") or [],
            "news_sentiment": alt.get("news_sentiment"), "insider_sentiment": alt.get("insider_sentiment"),
            "recommendations": alt.get("recommendations")}


sentiment_agent = LLMAgent(
    name="sentiment_agent", key="sentiment", schema=SentimentView, evidence=sentiment_evidence,
    prior=sentiment_prior, to_agent="strategy_agent", message_type=MessageType.MARKET_VIEW, shortcut=_abstain,
)
