"""System status: graph.health's read-only checks (last cycle age, data source, errors, breakers,
drawdown, lock; models not probed), every breaker, errors by category, model availability."""

from __future__ import annotations

import time

import pandas as pd
from dash import html

from graph.dashboard.ui import notice, section, table


def checks(ctx, portfolio: str) -> list:
    """graph.health's checks for this home and portfolio (the model server is not probed:
    a page load must not wait on it)."""
    from graph import health
    from graph.settings import VoltSettings

    settings = VoltSettings(home=ctx.data.home, portfolio=portfolio)
    args = health.parse_args(["--no-probe"])
    return health.run_checks(settings, args, now=time.time())


def breakers(ctx) -> pd.DataFrame:
    from memory.breakers import breaker_states

    if not (ctx.data.home / "ops.db").exists():
        return pd.DataFrame()
    frame = pd.DataFrame(breaker_states(ctx.data.home))
    for col in ("opened_at", "updated_at"):
        if col in frame:
            frame[col] = pd.to_datetime(frame[col], unit="s", utc=True).dt.strftime("%Y-%m-%d %H:%M:%S")
    return frame


def layout(ctx, portfolio: str) -> html.Div:
    try:
        found = checks(ctx, portfolio)
        rows = [html.Tr([html.Td(c.status, className=f"status-{c.status}"), html.Td(c.name), html.Td(c.detail)])
                for c in found]
        health_part = html.Table([html.Thead(html.Tr([html.Th("status"), html.Th("check"), html.Th("detail")])),
                                  html.Tbody(rows)], id="health-table", className="data")
    except Exception as exc:  # e.g. invalid settings in the environment: say it, keep the page
        health_part = notice(f"health checks failed: {type(exc).__name__}: {str(exc)[:200]}", "health-table")
    ds = ctx.market.dataset()
    source = ds.source if ds is not None else (ctx.market.error or "loading")
    models = ctx.data.prompt_versions(portfolio)
    if not models.empty:
        models = models.groupby(["agent", "source", "model"])["n"].sum().reset_index()
    return html.Div([
        section("Health (python -m graph.health)", health_part),
        section("Market data source", html.P(source, id="data-source")),
        html.Div([section("Breakers", table(breakers(ctx), "breakers-table")),
                  section("Errors by category", table(ctx.data.error_counts(portfolio), "errors-table"))],
                 className="row"),
        section("Answers by source and model (model, prior, rule)", table(models, "models-table")),
    ])
