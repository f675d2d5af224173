"""Backtest and evaluation runs: every ``summary.json`` under the runs folder, with each
strategy's figures and links to the run's static report."""

from __future__ import annotations

import pandas as pd
from dash import html

from graph.dashboard.ui import notice, section, table

FIGURES = ("total_return", "annualized_return", "sharpe", "sortino", "max_drawdown", "win_rate", "fills",
           "fees_paid")


def run_rows(run: dict) -> pd.DataFrame:
    strategies = run.get("summary", {}).get("strategies", {})
    rows = []
    if isinstance(strategies, dict):
        for name, s in strategies.items():
            if isinstance(s, dict):
                rows.append({"strategy": s.get("label", name), **{k: s.get(k) for k in FIGURES}})
    return pd.DataFrame(rows, columns=["strategy", *FIGURES])


def layout(ctx, portfolio: str) -> html.Div:
    runs = ctx.data.runs()
    where = ctx.data.runs_dir
    if not runs:
        return notice(f"no summary.json found under {where}", "runs-empty")
    parts = [html.P(f"{len(runs)} runs under {where}", id="runs-count", className="muted")]
    for i, run in enumerate(runs):
        if "error" in run:
            parts.append(section(run["path"], notice(f"unreadable: {run['error']}")))
            continue
        s = run["summary"]
        period = s.get("period", {}) if isinstance(s.get("period"), dict) else {}
        head = f"{period.get('first_decision', '?')} .. {period.get('last_decision', '?')}, " \
               f"{period.get('days', '?')} days, {s.get('data_source', '')}"
        parts.append(section(run["path"], html.P(head, className="muted"),
                             table(run_rows(run), f"run-table-{i}",
                                   {"total_return": "pct", "annualized_return": "pct", "max_drawdown": "pct",
                                    "win_rate": "pct", "fees_paid": "money"})))
    return html.Div(parts)
