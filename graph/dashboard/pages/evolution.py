"""Agent evolution: profile versions, parameter changes with reasons and rollbacks, prompt
versions and model chains."""

from __future__ import annotations

import plotly.graph_objects as go
from dash import html

from graph.dashboard.ui import graph, section, table


def layout(ctx, portfolio: str) -> html.Div:
    data = ctx.data
    changes = data.parameter_changes(portfolio).copy()
    changes["rolled_back"] = changes["rolled_back"].map({1: "yes", 0: ""})
    profiles = data.profiles(portfolio)
    fig = go.Figure()
    for agent, g in profiles.groupby("agent"):
        fig.add_trace(go.Scatter(x=g["created_at"].str[:19], y=g["confidence_threshold"], name=agent,
                                 mode="lines+markers", line={"shape": "hv"}, text=g["reason"]))
    fig.update_layout(title="Confidence threshold per profile version")
    rolled = int((changes["rolled_back"] == "yes").sum())
    return html.Div([
        html.P(f"{len(changes)} parameter changes, {rolled} rolled back; {len(profiles)} profile versions",
               id="evolution-summary", className="muted"),
        section("Thresholds", graph(fig, "profiles-figure")),
        section("Parameter changes (reasons, rollbacks)", table(changes, "changes-table", {"accuracy_before": "pct"})),
        section("Profile versions and model chains", table(profiles, "profiles-table")),
        section("Prompt versions and models in use", table(data.prompt_versions(portfolio), "prompts-table")),
    ])
