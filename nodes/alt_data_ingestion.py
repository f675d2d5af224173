"""Gathers the cycle's alternative and cross-asset data once, before any agent runs.

Per candidate: company news (cleaned, untrusted text), news sentiment, insider sentiment
(MSPR), analyst recommendation trend, and forex rates for currency pairs. For the market:
an equal-weight index of the data set's symbols (trend, realized volatility as the VIX
stand-in) and the crypto trend where available. Everything lands in the checkpointed
state, so the agents are pure functions of it and a resumed cycle sees the same data.
"""

from __future__ import annotations

import math

import numpy as np
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
NOTE_DAYS = 5  # trading days a split or rejected bar stays in a cycle's data notes


def provider_for(settings: VoltSettings, context: VoltContext) -> AltDataProvider:
    if context.alt_data is not None:
        return context.alt_data
    return ReplayAltData()


def market_context(dataset: MarketDataset, as_of: pd.Timestamp) -> dict:
    """Index proxy: equal-weight mean of the daily close returns (split-adjusted) of the
    symbols with a usable bar on both days, up to D.

    Only clean bars count: rows at/after a symbol's data issue and rejected outlier bars
    are not in the panel, and a non-finite return is ignored as well, so one bad symbol
    never makes the index or its volatility NaN. Volatility is annualized % (VIX stand-in).
    """
    end = dataset.calendar.searchsorted(as_of, side="right")
    panel = dataset.close_panel.iloc[max(0, end - 61):end]
    with np.errstate(divide="ignore", invalid="ignore"):
        daily = panel.pct_change(fill_method=None)
    daily = daily.where(np.isfinite(daily))
    returns = daily.mean(axis=1).dropna()
    if len(returns) < 20:
        return {"available": False}
    index = (1 + returns).cumprod()
    vol20 = float(returns.iloc[-20:].std(ddof=0) * math.sqrt(252) * 100)  # annualized %, the VIX stand-in
    sma = float(index.iloc[-50:].mean())
    trend = float(index.iloc[-1] / sma - 1.0)
    breadth = float((dataset.close_panel.iloc[end - 1] > dataset.close_panel.iloc[max(0, end - 21)]).mean())
    return {"available": True, "realized_vol_pct": round(vol20, 4), "index_vs_sma50": round(trend, 6),
            "index_return_20d": round(float(index.iloc[-1] / index.iloc[-21] - 1.0) if len(index) > 20 else 0.0, 6),
            "breadth_up_pct": round(breadth, 4)}


def recent_adjustments(dataset: MarketDataset, symbols: list[str], as_of: pd.Timestamp,
                       days: int = NOTE_DAYS) -> list[str]:
    """Data notes (splits, rejected bars) of ``symbols`` dated in the last ``days`` trading
    days up to ``as_of`` (never after it: a later split is not known yet)."""
    notes = getattr(dataset, "adjustment_notes", None)
    if notes is None or not symbols:
        return []
    end = int(dataset.calendar.searchsorted(as_of, side="right"))
    if end == 0:
        return []
    return notes(list(symbols), start=dataset.calendar[max(0, end - days)], end=as_of)


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
    dataset = market_dataset(settings)
    context = market_context(dataset, pd.Timestamp(day))
    notes = recent_adjustments(dataset, state["candidates"], pd.Timestamp(day))
    if notes:  # only when there are any: an ordinary day's context (and prompt) is unchanged
        context["data_notes"] = notes
    context["crypto"] = provider.crypto_trend(day)
    unavailable = provider.unavailable()
    return {"alt_data": per_symbol, "market_context": {**context, "source": provider.name,
                                                       "unavailable": unavailable},
            "attempts": {"macro": 0}, "macro": None, "llm_calls": Overwrite(0)}

