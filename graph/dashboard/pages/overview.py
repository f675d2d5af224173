"""Portfolio overview: equity against the equal-weight index, cash and exposure, open positions
with their plans, realized and unrealized P&L, fills with fees and slippage."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from dash import html

from graph.dashboard.data import NOT_RECORDED
from graph.dashboard.market import index_against
from graph.dashboard.ui import fmt, graph, metric, notice, section, table


def summary(ctx, portfolio: str) -> dict:
    """The overview's figures: equity, cash, exposure (fractions), realized P&L (sum over
    fills), unrealized P&L (open positions marked at the last close on or before the last
    cycle's day; None while the data set loads), fees and slippage paid (money)."""
    data = ctx.data
    cycles, fills, positions = data.cycles(portfolio), data.fills(portfolio), data.positions(portfolio)
    last = cycles.iloc[-1] if not cycles.empty else None
    unrealized = None
    ds = ctx.market.dataset()
    if ds is not None and last is not None:
        day = pd.Timestamp(last["as_of"])
        unrealized = 0.0
        for row in positions.itertuples(index=False):
            close = ds.last_close(row.symbol, day)
            if close is not None:
                unrealized += (close - row.avg_cost) * row.qty
    return {
        "equity": None if last is None else float(last["equity"]),
        "cash": None if last is None else float(last["cash"]),
        "exposure": None if last is None else float(last["exposure"]),
        "realized": float(fills["realized_pnl"].sum()),
        "unrealized": unrealized,
        "fees": float(fills["fee"].sum()),
        "slippage": float(fills["slippage_cost"].sum()),
        "positions": len(positions),
        "last_day": None if last is None else last["as_of"],
    }


def positions_table(ctx, portfolio: str, last_day: str | None) -> tuple[pd.DataFrame, str | None]:
    """Open positions with opened day, days in trade and, when recorded, the plan."""
    positions = ctx.data.positions(portfolio).copy()
    opened = ctx.data.opened_on(portfolio)
    positions["opened"] = positions["symbol"].map(opened)
    if last_day:
        # trading days, like a plan's horizon: the portfolio's cycle days from the fill day on
        # (a buy decided on the last cycle fills the next day: 0 days so far, not -1)
        days = ctx.data.cycles(portfolio)["as_of"].astype(str)
        days = days[days <= last_day].to_numpy()
        positions["days_in_trade"] = [
            int((days >= o).sum()) if isinstance(o, str) else None for o in positions["opened"]]
    plans = ctx.data.plans(portfolio)
    if plans is None:
        return positions, f"Position plans (stop, target, horizon): {NOT_RECORDED}"
    if not plans.empty and "status" in plans:
        plans = plans[plans["status"].astype(str).str.lower().isin(["open", "active"])]
    keep = [c for c in ("symbol", "stop", "target", "horizon_days") if c in plans]
    if "symbol" in keep and not plans.empty:
        positions = positions.merge(plans[keep].drop_duplicates("symbol", keep="last"), on="symbol", how="left")
    return positions, None


def layout(ctx, portfolio: str) -> html.Div:
    s = summary(ctx, portfolio)
    cycles = ctx.data.cycles(portfolio)
    if cycles.empty:
        return html.Div([notice(f"no completed cycle for portfolio '{portfolio}' yet", "overview-empty")])
    eq = go.Figure()
    eq.add_trace(go.Scatter(x=cycles["as_of"], y=cycles["equity"], name="equity", mode="lines"))
    index = index_against(cycles, ctx.market.equal_weight_index())
    if index is not None:
        eq.add_trace(go.Scatter(x=list(index.index), y=index.to_numpy(), name="equal-weight index",
                                mode="lines", line={"dash": "dot"}))
    eq.update_layout(title="Equity against the equal-weight index", xaxis={"type": "date"})
    ce = go.Figure()
    ce.add_trace(go.Scatter(x=cycles["as_of"], y=cycles["cash"], name="cash", mode="lines"))
    ce.add_trace(go.Scatter(x=cycles["as_of"], y=cycles["exposure"] * 100, name="exposure %", mode="lines",
                            yaxis="y2"))
    # the unit as a tick suffix: a y2 title got an -Infinity position on a one-cycle home
    ce.update_layout(title="Cash and exposure", xaxis={"type": "date"},
                     yaxis2={"overlaying": "y", "side": "right", "range": [0, 105], "ticksuffix": "%"})
    positions, plan_note = positions_table(ctx, portfolio, s["last_day"])
    fills = ctx.data.fills(portfolio)[["fill_date", "symbol", "side", "qty", "price", "reference_price",
                                       "slippage_pct", "slippage_cost", "fee", "realized_pnl"]]
    unreal = "loading market data" if s["unrealized"] is None else fmt(s["unrealized"], "money")
    return html.Div([
        html.Div([
            metric("Last cycle", fmt(s["last_day"]), "m-last"),
            metric("Equity", fmt(s["equity"], "money"), "m-equity"),
            metric("Cash", fmt(s["cash"], "money"), "m-cash"),
            metric("Exposure", fmt(s["exposure"], "pct"), "m-exposure"),
            metric("Realized P&L", fmt(s["realized"], "money"), "m-realized"),
            metric("Unrealized P&L", unreal, "m-unrealized"),
            metric("Fees", fmt(s["fees"], "money"), "m-fees"),
            metric("Slippage", fmt(s["slippage"], "money"), "m-slippage"),
            metric("Fills", str(len(fills)), "m-fills"),
        ], className="metrics"),
        html.Div([section("Equity", graph(eq, "equity-figure")), section("Cash", graph(ce, "cash-figure"))],
                 className="row"),
        section(f"Open positions ({len(positions)})",
                *([notice(plan_note, "plans-note")] if plan_note else []),
                table(positions, "positions-table", {"qty": "", "avg_cost": "money"})),
        section("Fills (newest first)", table(fills, "fills-table",
                                              {"price": "money", "fee": "money", "slippage_pct": "pct",
                                               "slippage_cost": "money", "realized_pnl": "money"})),
    ])
