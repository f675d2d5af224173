"""Learning and RL: weights over time, accuracy / IC / calibration per agent, reward per cycle,
the RL controller's actions (when recorded), learning on vs off from backtest runs."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from dash import html

from graph.dashboard.ui import fmt, graph, notice, section, table

RL_OFF = "RL controller off (no actions recorded)"


def learning_on_off(runs: list[dict]) -> pd.DataFrame:
    """From backtest summaries: learning on vs off (strategies ``agents`` and ``agents_frozen``)."""
    rows = []
    for run in runs:
        strategies = run.get("summary", {}).get("strategies", {})
        if not isinstance(strategies, dict):
            continue
        for name in ("agents", "agents_frozen"):
            s = strategies.get(name)
            if isinstance(s, dict):
                rows.append({"run": run["path"].rsplit("/", 2)[-2], "strategy": s.get("label", name),
                             "learning": s.get("learning"), "total_return": s.get("total_return"),
                             "sharpe": s.get("sharpe"), "max_drawdown": s.get("max_drawdown")})
    return pd.DataFrame(rows, columns=["run", "strategy", "learning", "total_return", "sharpe", "max_drawdown"])


def rl_section(rl: pd.DataFrame | None) -> list:
    """The RL controller's record: a one-line summary (policy, last action and applied
    multiplier), both multipliers over time (a step chart: one value per cycle), the policies
    used and the last observation. :data:`RL_OFF` when nothing is recorded (controller off, or
    a ledger from before the ``rl_actions`` table)."""
    if rl is None or rl.empty:
        return [notice(RL_OFF, "rl-note")]
    last = rl.iloc[-1]
    clipped = int((rl["action"] - rl["applied"]).abs().gt(1e-9).sum())
    summary = html.P(f"policy {last['policy']}: {len(rl)} cycles, last {last['as_of']}: action "
                     f"{fmt(float(last['action']))}, applied {fmt(float(last['applied']))}; "
                     f"clipped by the hard limits in {clipped} cycles", id="rl-summary")
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=rl["as_of"], y=rl["action"], name="action (policy)", mode="lines",
                             line={"shape": "hv", "dash": "dot"}))
    fig.add_trace(go.Scatter(x=rl["as_of"], y=rl["applied"], name="applied (after limits)", mode="lines",
                             line={"shape": "hv"}))
    fig.update_layout(title="Size multiplier per cycle", xaxis={"type": "date"})
    policies = rl.groupby("policy", sort=False)["as_of"].agg(["min", "max", "count"]).reset_index()
    policies.columns = ["policy", "first", "last", "cycles"]
    observed = pd.DataFrame(sorted(last["observation"].items()), columns=["feature", "value"])
    return [summary, html.Div([graph(fig, "rl-figure", 280),
                               html.Div([html.H4(f"Last observation ({last['as_of']})"),
                                         table(observed, "rl-observation-table"),
                                         html.H4("Policies"), table(policies, "rl-policies-table")])],
                              className="row")]


def layout(ctx, portfolio: str) -> html.Div:
    data = ctx.data
    weights = data.weight_history(portfolio)
    wf = go.Figure()
    for agent, g in weights.groupby("agent"):
        wf.add_trace(go.Scatter(x=g["as_of"], y=g["weight"], name=agent, mode="lines"))
    wf.update_layout(title="Consensus weights over time", xaxis={"type": "date"})
    scores = data.agent_scores(portfolio)
    sf = go.Figure()
    sf.add_trace(go.Bar(x=scores["agent"], y=scores["accuracy"], name="accuracy"))
    sf.add_trace(go.Bar(x=scores["agent"], y=scores["ic"], name="IC"))
    sf.update_layout(title="Accuracy and IC per agent (resolved predictions)", barmode="group")
    cal = data.calibration(portfolio)
    cf = go.Figure()
    cf.add_trace(go.Scatter(x=[0, 1], y=[0, 1], name="perfect", mode="lines", line={"dash": "dot", "color": "#999"}))
    for agent, g in cal.groupby("agent"):
        cf.add_trace(go.Scatter(x=g["bin"], y=g["hit_rate"], name=agent, mode="lines+markers"))
    cf.update_layout(title="Calibration: hit rate per confidence bin", xaxis={"range": [0, 1]},
                     yaxis={"range": [0, 1]})
    cycles = data.cycles(portfolio)
    rf = go.Figure(go.Bar(x=cycles["as_of"], y=cycles["reward"], name="reward"))
    rf.update_layout(title="Reward per cycle", xaxis={"type": "date"})
    rl_part = rl_section(data.rl_actions(portfolio))
    on_off = learning_on_off(data.runs())
    return html.Div([
        html.Div([section("Weights", graph(wf, "weights-figure")), section("Reward", graph(rf, "reward-figure"))],
                 className="row"),
        html.Div([section("Accuracy and IC", graph(sf, "scores-figure")),
                  section("Calibration", graph(cf, "calibration-figure"))], className="row"),
        section("Per agent", table(scores, "scores-table", {"accuracy": "pct"})),
        section("RL controller (position size multiplier)", *rl_part),
        section("Learning on vs off (backtest runs)",
                table(on_off, "onoff-table", {"total_return": "pct", "max_drawdown": "pct"})
                if not on_off.empty else notice("no backtest run with both replays found under the runs folder",
                                                "onoff-table")),
    ])
