"""Small layout helpers shared by the pages: tables, figures, notices, metric tiles."""

from __future__ import annotations

import functools
import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from dash import dcc, html

GRAPH_CONFIG = {"displayModeBar": False, "responsive": True}
MAX_ROWS = 1000  # a table holds at most this many rows (the newest first where it matters)
PAGE_SIZE = 20  # rows per table page (the browser draws one page at a time)


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
    """``frame`` (first ``max_rows`` rows) as a plain HTML table (``<table id=table_id>``),
    ``page_size`` rows a page. Cells are display text from :func:`fmt`, shown as text (never
    as HTML or markdown). Only the first page is sent as components; the other pages are
    drawn in the browser from a ``dcc.Store`` of the rows by a clientside callback (see
    :func:`register_tables`), so paging costs no server round trip and the browser never
    holds more than one page of cells (Dash's DataTable is deprecated; AG Grid's scripts
    would add ~2 MB to the first load)."""
    formats = formats or {}
    if frame is None or frame.empty:
        return notice("nothing recorded yet", table_id)
    names = [str(c) for c in frame.columns]
    rows = [[fmt(v, formats.get(c, "")) for c, v in zip(frame.columns, row, strict=True)]
            for row in frame.head(max_rows).itertuples(index=False)]
    key = {"table": table_id}
    body = html.Tbody([html.Tr([html.Td(cell) for cell in row]) for row in rows[:page_size]],
                      id={"type": "table-body", **key})
    parts: list = [html.Table([html.Thead(html.Tr([html.Th(n) for n in names])), body], id=table_id,
                              className="data")]
    if len(rows) > page_size:
        parts.append(html.Div([
            html.Button("‹ previous", id={"type": "table-prev", **key}, className="pager-button"),
            html.Span(_position(0, page_size, len(rows)), id={"type": "table-position", **key}),
            html.Button("next ›", id={"type": "table-next", **key}, className="pager-button"),
            dcc.Store(id={"type": "table-rows", **key}, data={"rows": rows, "size": page_size, "page": 0}),
        ], className="pager"))
    if len(frame) > max_rows:
        parts.append(html.P(f"{len(frame) - max_rows} more rows not shown", className="muted"))
    return html.Div(parts, className="table-box")


def _position(page: int, size: int, total: int) -> str:
    """``rows 21-40 of 420`` for page 1 of 20 rows (pages count from 0)."""
    return f"rows {page * size + 1}-{min(total, (page + 1) * size)} of {total}"


# paging runs in the browser: the rows are already there, in the table's Store
_PAGE_JS = """
function(prev, next, store) {
    const triggered = (dash_clientside.callback_context.triggered || []).map(t => t.prop_id).join(" ");
    const size = store.size, total = store.rows.length, last = Math.max(0, Math.ceil(total / size) - 1);
    let page = store.page || 0;
    if (triggered.includes('"table-next"')) { page = Math.min(last, page + 1); }
    else if (triggered.includes('"table-prev"')) { page = Math.max(0, page - 1); }
    const cell = text => ({type: "Td", namespace: "dash_html_components", props: {children: text}});
    const rows = store.rows.slice(page * size, (page + 1) * size).map(
        row => ({type: "Tr", namespace: "dash_html_components", props: {children: row.map(cell)}}));
    const position = "rows " + (page * size + 1) + "-" + Math.min(total, (page + 1) * size) + " of " + total;
    return [rows, position, Object.assign({}, store, {page: page})];
}
"""


def register_tables(app) -> None:
    """The clientside paging callback of every :func:`table` (one for all, by pattern)."""
    from dash import MATCH, Input, Output, State

    key = {"table": MATCH}
    app.clientside_callback(
        _PAGE_JS,
        Output({"type": "table-body", **key}, "children"), Output({"type": "table-position", **key}, "children"),
        Output({"type": "table-rows", **key}, "data"),
        Input({"type": "table-prev", **key}, "n_clicks"), Input({"type": "table-next", **key}, "n_clicks"),
        State({"type": "table-rows", **key}, "data"), prevent_initial_call=True)


def notice(text: str, element_id: str | None = None) -> html.P:
    kwargs = {"id": element_id} if element_id else {}
    return html.P(text, className="notice", **kwargs)


def metric(label: str, value: str, element_id: str) -> html.Div:
    return html.Div([html.Div(label, className="metric-label"), html.Div(value, id=element_id, className="metric-value")],
                    className="metric")


@functools.cache
def _template() -> dict:
    """plotly's ``plotly_white`` template as a plain dict, made once: set through
    ``update_layout(template=...)`` it was copied and validated for every figure, 60 % of
    the time a page took to build."""
    return pio.templates["plotly_white"].to_plotly_json()


def styled(figure: go.Figure) -> dict:
    """The figure as the dict dcc.Graph sends, in the dashboard's template."""
    spec = figure.to_plotly_json()
    spec["layout"]["template"] = _template()
    return spec


def graph(figure: go.Figure, graph_id: str, height: int = 320) -> dcc.Graph:
    figure.update_layout(height=height, margin={"l": 50, "r": 20, "t": 40, "b": 40},
                         legend={"orientation": "h", "y": -0.15})
    # a responsive graph takes its box's size on every resize (a table's late layout is one):
    # without a fixed box height it collapsed to its 30 px title bar
    return dcc.Graph(id=graph_id, figure=styled(figure), config=GRAPH_CONFIG, style={"height": f"{height}px"})


def section(title: str, *children: Any) -> html.Section:
    return html.Section([html.H3(title), *children], className="card")
