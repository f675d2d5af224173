"""Gathers the cycle's alternative and cross-asset data once, before any agent runs.

Per candidate: company news (cleaned, untrusted text), news sentiment, insider sentiment
(MSPR), analyst recommendation trend, and forex rates for currency pairs. For the market:
an equal-weight index of the data set's symbols (trend, realized volatility as the VIX
stand-in) and the crypto trend where available. Everything lands in the checkpointed
state, so the agents are pure functions of it and a resumed cycle sees the same data.
"""

from __future__ import annotations

import math

import pandas as pd
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from graph.context import VoltContext
from graph.settings import VoltSettings
from graph.state import CycleState
from tools.alt_data import (
    MAX_SUMMARY,
    AltDataProvider,
    ReplayAltData,
    clean_headline,
    is_forex_pair,
)
from tools.data_source import market_dataset
from tools.market_data import MarketDataset

MAX_NEWS = 8


def provider_for(settings: VoltSettings, context: VoltContext) -> AltDataProvider:
    if context.alt_data is not None:
        return context.alt_data
    return ReplayAltData()


def market_context(dataset: MarketDataset, as_of: pd.Timestamp) -> dict:
    """Index proxy: equal-weight mean of daily close returns of all symbols up to D."""
    end = dataset.calendar.searchsorted(as_of, side="right")
    returns = dataset.close_panel.iloc[max(0, end - 61):end].pct_change(fill_method=None).mean(axis=1).dropna()
    if len(returns) < 20:
        return {"available": False}
    index = (1 + returns).cumprod()
    vol20 = float(returns.iloc[-20:].std(ddof=0) * math.sqrt(252) * 100)  # annualized %, the VIX stand-in
    sma = float(index.iloc[-50:].mean())
    trend = float(index.iloc[-1] / sma - 1.0)
    return {"available": True, "realized_vol_pct": round(vol20, 4), "index_vs_sma50": round(trend, 6),
            "index_return_20d": round(float(index.iloc[-1] / index.iloc[-21] - 1.0) if len(index) > 20 else 0.0, 6),
            "breadth_up_pct": round(float((dataset.close_panel.iloc[end - 1] > dataset.close_panel.iloc[max(0, end - 21)]).mean()), 4)}


def gather_alt_data(state: CycleState, runtime: Runtime[VoltContext]) -> dict:
    settings = runtime.context.settings
    provider = provider_for(settings, runtime.context)
    day = state["as_of"]
    per_symbol: dict[str, dict] = {}
    for symbol in state["candidates"]:
        news = provider.news(symbol, day)
        entry = {
            "news": None if news is None else [
                {"headline": clean_headline(n.get("headline")), "summary": clean_headline(n.get("summary"), MAX_SUMMARY),
                 "source": clean_headline(n.get("source"), 40), "datetime": n.get("datetime")}
                for n in news[:MAX_NEWS]],
            "news_sentiment": provider.news_sentiment(symbol),
            "insider_sentiment": provider.insider_sentiment(symbol, day),
            "recommendations": provider.recommendations(symbol),
            "forex": provider.forex_rates(symbol.split(":")[1][:3]) if is_forex_pair(symbol) else None,
        }
        per_symbol[symbol] = entry
    context = market_context(market_dataset(settings), pd.Timestamp(day))
    context["crypto"] = provider.crypto_trend(day)
    unavailable = provider.unavailable()
    return {"alt_data": per_symbol, "market_context": {**context, "source": provider.name,
                                                       "unavailable": unavailable},
            "attempts": {"macro": 0}, "macro": None, "llm_calls": Overwrite(0)}

