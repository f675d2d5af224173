"""Small layout helpers shared by the pages: tables, figures, notices, metric tiles."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from dash import dash_table, dcc, html

GRAPH_CONFIG = {"displayModeBar": False, "responsive": True}
MAX_ROWS = 1000  # a table holds at most this many rows (the newest first where it matters)
PAGE_SIZE = 50  # rows per table page (the browser draws one page at a time)


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
          max_rows: int = MAX_ROWS, page_size: int = PAGE_SIZE) -> html.Div:
    """``frame`` (first ``max_rows`` rows) as one ``dash_table.DataTable``, ``page_size`` rows
    a page. One component, not one per cell: the browser renders only the visible page
    (a Dash html table of ~100 fills took ~2.5 s to paint; this takes ~50 ms). Cells are
    display text from :func:`fmt`, shown as text (never as HTML or markdown)."""
    formats = formats or {}
    if frame is None or frame.empty:
        return notice("nothing recorded yet", table_id)
    names = [str(c) for c in frame.columns]
    # positional column ids: a column name is data and may hold any character
    columns = [{"name": name, "id": f"c{i}"} for i, name in enumerate(names)]
    rows = [{f"c{i}": fmt(v, formats.get(c, "")) for i, (c, v) in enumerate(zip(frame.columns, row, strict=True))}
            for row in frame.head(max_rows).itertuples(index=False)]
    paged = len(rows) > page_size
    grid = dash_table.DataTable(
        id=table_id, columns=columns, data=rows, page_action="native" if paged else "none",
        page_size=page_size if paged else len(rows), style_as_list_view=True, cell_selectable=False,
        style_table={"overflowX": "auto", "maxWidth": "100%"},
        style_cell={"textAlign": "left", "padding": "3px 6px", "fontSize": "12px", "whiteSpace": "nowrap",
                    "fontFamily": "inherit", "border": "none", "borderBottom": "1px solid #e3e8ee"},
        style_header={"backgroundColor": "#eef2f6", "fontWeight": "600"})
    more = [html.P(f"{len(frame) - max_rows} more rows not shown", className="muted")] if len(frame) > max_rows else []
    return html.Div([grid, *more], className="table-box")


def notice(text: str, element_id: str | None = None) -> html.P:
    kwargs = {"id": element_id} if element_id else {}
    return html.P(text, className="notice", **kwargs)


def metric(label: str, value: str, element_id: str) -> html.Div:
    return html.Div([html.Div(label, className="metric-label"), html.Div(value, id=element_id, className="metric-value")],
                    className="metric")


def graph(figure: go.Figure, graph_id: str, height: int = 320) -> dcc.Graph:
    figure.update_layout(height=height, margin={"l": 50, "r": 20, "t": 40, "b": 40}, template="plotly_white",
                         legend={"orientation": "h", "y": -0.15})
    # a responsive graph takes its box's size on every resize (a table's late layout is one):
    # without a fixed box height it collapsed to its 30 px title bar
    return dcc.Graph(id=graph_id, figure=figure, config=GRAPH_CONFIG, style={"height": f"{height}px"})


def section(title: str, *children: Any) -> html.Section:
    return html.Section([html.H3(title), *children], className="card")
