"""Portfolio tools for the agents: cash, equity, positions, exposure, P&L, recent trades.

Positions are marked at the last close on or before the decision day.
"""

from __future__ import annotations

import json
from typing import Annotated

from langchain_core.tools import InjectedToolArg, tool

from tools.portfolio import value_account
from tools.tool_view import ToolView


def portfolio_summary(view: ToolView) -> dict:
    account = view.ledger.account(view.portfolio)
    prices = {s: p for s in account.held() if (p := view.last_close(s)) is not None}
    summary = value_account(account, prices).as_dict()
    summary["peak_equity"] = round(account.peak_equity, 6)
    summary["starting_cash"] = account.starting_cash
    return summary


@tool
def get_portfolio(view: Annotated[ToolView, InjectedToolArg]) -> str:
    """The paper portfolio as of the decision day, as JSON: cash, equity, gross exposure
    (USD and fraction of equity), unrealized P&L, and each position (qty, average cost,
    price, market value, unrealized P&L)."""
    return json.dumps(portfolio_summary(view))


@tool
def get_recent_trades(view: Annotated[ToolView, InjectedToolArg], limit: int = 10, symbol: str = "") -> str:
    """The most recent fills (newest first, at most 50), optionally for one symbol, as JSON:
    side, qty, price, fee, slippage, realized P&L, fill date."""
    fills = view.ledger.recent_fills(view.portfolio, limit=max(1, min(int(limit), 50)) * 4, symbol=symbol.upper() or None)
    day = f"{view.as_of:%Y-%m-%d}"
    # latency_ms is wall-clock telemetry: left out so the same day always gives the same
    # answer (a model's tool result is part of its response-cache key)
    visible = [{k: v for k, v in f.items() if k != "latency_ms"}
               for f in fills if f["fill_date"] <= day][: max(1, min(int(limit), 50))]
    return json.dumps({"trades": visible})


PORTFOLIO_TOOLS = [get_portfolio, get_recent_trades]
