"""Indicator tools for the agents: indicators and recent OHLCV, point-in-time."""

from __future__ import annotations

import json
from typing import Annotated

from langchain_core.tools import InjectedToolArg, tool

from tools.indicators import indicator_snapshot
from tools.tool_view import ToolView

MAX_HISTORY_BARS = 60


@tool
def get_indicators(symbol: str, view: Annotated[ToolView, InjectedToolArg]) -> str:
    """Latest technical indicators for a symbol as of the decision day, as JSON: OHLC, volume,
    SMA20/SMA50, RSI14, MACD (line, signal, histogram), ATR14, Bollinger Bands, ADX14,
    Stochastic %K/%D, VWAP14, 20-day high/low and return."""
    symbol = symbol.strip().upper()
    error = view.dataset.data_error(symbol, view.as_of, view.min_history)
    if error is not None:
        return json.dumps({"error": str(error)})
    return json.dumps(indicator_snapshot(symbol, view.dataset.history(symbol, view.as_of)))


@tool
def get_price_history(symbol: str, view: Annotated[ToolView, InjectedToolArg], bars: int = 10) -> str:
    """The last `bars` daily OHLCV bars (at most 60) of a symbol up to the decision day, as JSON."""
    symbol = symbol.strip().upper()
    history = view.dataset.history(symbol, view.as_of)
    if history.empty:
        return json.dumps({"error": f"no data for {symbol}"})
    tail = history.iloc[-max(1, min(int(bars), MAX_HISTORY_BARS)) :]
    rows = [
        {"date": f"{d:%Y-%m-%d}", **{k: round(float(v), 4) for k, v in row.items()}}
        for d, row in tail.iterrows()
    ]
    return json.dumps({"symbol": symbol, "bars": rows})


INDICATOR_TOOLS = [get_indicators, get_price_history]
