"""Decisions (consensus visualizer): for one cycle and symbol, each agent's call, the weighted
votes, the consensus, the reviewers' verdicts and objections, revision rounds, order and fill,
and the path of messages the graph took."""

from __future__ import annotations

import json

import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, dcc, html

from graph.dashboard.data import _json
from graph.dashboard.ui import graph, notice, section, table

REVIEWERS = ("risk_agent", "auditor_agent", "history_reviewer", "peer_review")


def layout(ctx, portfolio: str) -> html.Div:
    days = ctx.data.cycle_days(portfolio)
    if not days:
        return notice(f"no completed cycle for portfolio '{portfolio}' yet", "decisions-empty")
    return html.Div([
        dcc.Store(id="decisions-portfolio", data=portfolio),
        html.Div([
            html.Div([html.Label("Cycle"), dcc.Dropdown(id="decision-day", options=days[::-1], value=days[-1],
                                                         clearable=False)]),
            html.Div([html.Label("Symbol"), dcc.Dropdown(id="decision-symbol", clearable=False)]),
        ], className="controls"),
        html.Div(id="decision-detail"),
    ])


def symbols_of(ctx, portfolio: str, day: str) -> list[str]:
    """Symbols decided in that cycle: traded ones first, then the others alphabetically."""
    records = ctx.data.consensus(portfolio, day)
    ordered = {r["symbol"] for r in ctx.data.orders(portfolio, day)}
    rest = sorted({r["symbol"] for r in records} - ordered)
    return sorted(ordered) + rest


def detail(ctx, portfolio: str, day: str, symbol: str) -> list:
    """Every section for one (cycle, symbol)."""
    preds = pd.DataFrame(ctx.data.predictions(portfolio, day, symbol))
    records = [r for r in ctx.data.consensus(portfolio, day) if r["symbol"] == symbol]
    messages = ctx.data.cycle_messages(portfolio, day, symbol)
    orders = pd.DataFrame([o for o in ctx.data.orders(portfolio, day) if o["symbol"] == symbol])
    out = [section(f"Agents' calls on {symbol}, {day}", table(
        preds.drop(columns=["symbol"], errors="ignore"), "calls-table", {"realized_return": "pct"}))]
    if records:
        last = records[-1]
        votes = last["votes"] if isinstance(last["votes"], dict) else {}
        agents = list(votes)
        weighted = [float(v.get("vote", 0)) * float(v.get("weight", 0)) for v in votes.values()]
        fig = go.Figure(go.Bar(x=agents, y=weighted, name="vote x weight",
                               marker_color=["#1a7f37" if w >= 0 else "#cf222e" for w in weighted]))
        fig.update_layout(title=f"Weighted votes (round {last['revision']}): consensus {last['result']}")
        rounds = pd.DataFrame([{"round": r["revision"], "result": r["result"],
                                "proposal": json.dumps(r["proposal"])[:160]} for r in records])
        out.append(html.Div([section("Weighted votes", graph(fig, "votes-figure", 280)),
                             section("Consensus and revision rounds", html.P(
                                 f"consensus: {last['result']}", id="consensus-result"),
                                 table(rounds, "rounds-table"))], className="row"))
    else:
        out.append(notice("no consensus record for this symbol in this cycle"))
    out.append(section("Reviewers' verdicts and objections", table(reviews(messages), "reviews-table")))
    out.append(section("Order and fill", table(orders, "order-table", {"price": "money", "fee": "money"})
                       if not orders.empty else notice("no order for this symbol in this cycle", "order-table")))
    path = pd.DataFrame([{"time": m["timestamp"][11:23], "from": m["from_agent"], "to": m["to_agent"],
                          "type": m["message_type"], "priority": m["priority"]} for m in messages])
    out.append(section("The path the graph took", table(path, "path-table")))
    return out


def reviews(messages: list[dict]) -> pd.DataFrame:
    """One row per reviewer message: who, verdict (or type), objections/reasons."""
    rows = []
    for m in messages:
        if m["from_agent"] not in REVIEWERS and m["message_type"] not in ("peer_review", "correction_request"):
            continue
        payload = _json(m["payload"])
        output = payload.get("output") if isinstance(payload.get("output"), dict) else {}
        verdict = output.get("verdict") or payload.get("verdict") or payload.get("decision") or m["message_type"]
        reasons = output.get("reasons") or payload.get("objections") or output.get("objections") or []
        rows.append({"reviewer": m["from_agent"], "to": m["to_agent"], "verdict": str(verdict),
                     "objections": "; ".join(map(str, reasons))[:300] if isinstance(reasons, list) else str(reasons)})
    return pd.DataFrame(rows, columns=["reviewer", "to", "verdict", "objections"])


def register(app, ctx) -> None:
    @app.callback(Output("decision-symbol", "options"), Output("decision-symbol", "value"),
                  Input("decision-day", "value"), Input("decisions-portfolio", "data"))
    def pick_symbols(day, portfolio):
        options = symbols_of(ctx, portfolio, day) if day else []
        return options, (options[0] if options else None)

    @app.callback(Output("decision-detail", "children"), Input("decision-symbol", "value"),
                  Input("decision-day", "value"), Input("decisions-portfolio", "data"))
    def show(symbol, day, portfolio):
        if not symbol or not day:
            return notice("no decision in this cycle")
        return detail(ctx, portfolio, day, symbol)
