"""Small layout helpers shared by the pages: tables, figures, notices, metric tiles."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from dash import dcc, html

GRAPH_CONFIG = {"displayModeBar": False, "responsive": True}
MAX_ROWS = 200  # a table shows at most this many rows (the newest first where it matters)


def fmt(value: Any, kind: str = "") -> str:
    """Display text: money with 2 decimals, ``pct`` as percent, NaN/None as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if kind == "pct":
        return f"{value:.2%}"
    if kind == "money":
        return f"{value:,.2f}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.2f}"
    return str(value)


def table(frame: pd.DataFrame, table_id: str, formats: dict[str, str] | None = None,
          max_rows: int = MAX_ROWS) -> html.Div:
    """An HTML table of ``frame`` (first ``max_rows`` rows) inside a scrolling box."""
    formats = formats or {}
    if frame is None or frame.empty:
        return notice("nothing recorded yet", table_id)
    head = html.Thead(html.Tr([html.Th(str(c)) for c in frame.columns]))
    body = html.Tbody([
        html.Tr([html.Td(fmt(v, formats.get(c, ""))) for c, v in zip(frame.columns, row, strict=True)])
        for row in frame.head(max_rows).itertuples(index=False)
    ])
    more = [html.P(f"{len(frame) - max_rows} more rows not shown", className="muted")] if len(frame) > max_rows else []
    return html.Div([html.Table([head, body], id=table_id, className="data"), *more], className="table-box")


def notice(text: str, element_id: str | None = None) -> html.P:
    kwargs = {"id": element_id} if element_id else {}
    return html.P(text, className="notice", **kwargs)


def metric(label: str, value: str, element_id: str) -> html.Div:
    return html.Div([html.Div(label, className="metric-label"), html.Div(value, id=element_id, className="metric-value")],
                    className="metric")


def graph(figure: go.Figure, graph_id: str, height: int = 320) -> dcc.Graph:
    figure.update_layout(height=height, margin={"l": 50, "r": 20, "t": 40, "b": 40}, template="plotly_white",
                         legend={"orientation": "h", "y": -0.15})
    return dcc.Graph(id=graph_id, figure=figure, config=GRAPH_CONFIG)


def section(title: str, *children: Any) -> html.Section:
    return html.Section([html.H3(title), *children], className="card")
