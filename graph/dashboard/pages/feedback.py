"""Feedback flow: the agent message log by type and priority over time, as a Sankey of who
sends what to whom and a daily timeline, filterable by message type and priority."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, dcc, html

from graph.dashboard.ui import graph, notice, section, table


def layout(ctx, portfolio: str) -> html.Div:
    counts = ctx.data.message_counts(portfolio)
    if counts.empty:
        return notice("no agent message recorded yet", "feedback-empty")
    types = sorted(counts["message_type"].unique())
    priorities = sorted(counts["priority"].unique())
    return html.Div([
        dcc.Store(id="feedback-portfolio", data=portfolio),
        html.Div([
            html.Div([html.Label("Message types"), dcc.Dropdown(id="feedback-types", options=types, value=types,
                                                                multi=True)]),
            html.Div([html.Label("Priorities"), dcc.Dropdown(id="feedback-priorities", options=priorities,
                                                             value=priorities, multi=True)]),
        ], className="controls"),
        html.Div(id="feedback-body", children=body(counts)),
    ])


def filtered(counts: pd.DataFrame, types: list[str] | None, priorities: list[str] | None) -> pd.DataFrame:
    keep = counts["message_type"].isin(types or []) & counts["priority"].isin(priorities or [])
    return counts[keep]


def body(counts: pd.DataFrame) -> list:
    if counts.empty:
        return [notice("no message matches the filter", "feedback-none")]
    flows = counts.groupby(["from_agent", "to_agent"])["n"].sum().reset_index()
    senders = [f"{a} →" for a in flows["from_agent"].unique()]
    receivers = [f"→ {a}" for a in flows["to_agent"].unique()]
    nodes = senders + receivers
    pos = {n: i for i, n in enumerate(nodes)}
    sankey = go.Figure(go.Sankey(
        node={"label": nodes, "pad": 12},
        link={"source": [pos[f"{a} →"] for a in flows["from_agent"]],
              "target": [pos[f"→ {a}"] for a in flows["to_agent"]], "value": flows["n"].tolist()}))
    sankey.update_layout(title="Who tells whom (messages)")
    daily = counts.groupby(["as_of", "message_type"])["n"].sum().reset_index()
    timeline = go.Figure()
    for kind, g in daily.groupby("message_type"):
        timeline.add_trace(go.Bar(x=g["as_of"], y=g["n"], name=kind))
    timeline.update_layout(title="Messages per cycle by type", barmode="stack", xaxis={"type": "date"})
    by_type = counts.groupby(["message_type", "priority"])["n"].sum().reset_index().sort_values("n", ascending=False)
    return [html.Div([section("Flow", graph(sankey, "sankey-figure", 420)),
                      section("Timeline", graph(timeline, "timeline-figure", 420))], className="row"),
            section("Totals by type and priority", table(by_type, "feedback-table"))]


def register(app, ctx) -> None:
    @app.callback(Output("feedback-body", "children"), Input("feedback-types", "value"),
                  Input("feedback-priorities", "value"), Input("feedback-portfolio", "data"),
                  prevent_initial_call=True)
    def refilter(types, priorities, portfolio):
        return body(filtered(ctx.data.message_counts(portfolio), types, priorities))
