"""Indicator trends for any symbol: price with SMA20/50 and Bollinger bands, RSI14, MACD, with
markers for the portfolio's decisions (orders), fills and exits (sells)."""

from __future__ import annotations

import plotly.graph_objects as go
from dash import Input, Output, dcc, html
from plotly.subplots import make_subplots

from graph.dashboard.ui import GRAPH_CONFIG, notice, section, styled


def default_symbol(ctx, portfolio: str, symbols: list[str]) -> str | None:
    """The most recently filled symbol, else the first symbol of the data set."""
    fills = ctx.data.fills(portfolio)
    for symbol in fills["symbol"]:
        if symbol in symbols:
            return symbol
    return symbols[0] if symbols else None


def layout(ctx, portfolio: str) -> html.Div:
    symbols = ctx.market.symbols() if ctx.market.dataset(wait_s=1.0) is not None else []
    if not symbols:
        why = ctx.market.error or "the market data set is still loading: reload in a moment"
        return notice(why, "indicators-empty")
    symbol = default_symbol(ctx, portfolio, symbols)
    return html.Div([
        dcc.Store(id="indicators-portfolio", data=portfolio),
        html.Div([html.Div([html.Label("Symbol"), dcc.Dropdown(id="indicator-symbol", options=symbols,
                                                               value=symbol, clearable=False)])],
                 className="controls"),
        section("Price and indicators", dcc.Graph(id="indicator-figure", figure=figure(ctx, portfolio, symbol),
                                                  config=GRAPH_CONFIG, style={"height": "620px"})),
    ])


def figure(ctx, portfolio: str, symbol: str) -> dict:
    """Price with SMA20/50 and Bollinger bands, RSI14 and MACD of ``symbol``, with the
    portfolio's fills and decisions on it (a dcc.Graph figure dict)."""
    return styled(_figure(ctx, portfolio, symbol))


def _figure(ctx, portfolio: str, symbol: str) -> go.Figure:
    frame = ctx.market.indicators(symbol)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, row_heights=[0.6, 0.2, 0.2], vertical_spacing=0.04)
    if frame is None:
        fig.update_layout(title=f"{symbol}: not enough bars")
        return fig
    x = frame.index
    fig.add_trace(go.Scatter(x=x, y=frame["close"], name="close", line={"color": "#1d2733"}), 1, 1)
    for col, color in (("sma20", "#0969da"), ("sma50", "#8250df")):
        fig.add_trace(go.Scatter(x=x, y=frame[col], name=col.upper(), line={"color": color, "width": 1}), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=frame["bb_high"], name="Bollinger", line={"color": "#aaa", "width": 1}), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=frame["bb_low"], name="Bollinger low", showlegend=False, fill="tonexty",
                             fillcolor="rgba(150,150,150,0.1)", line={"color": "#aaa", "width": 1}), 1, 1)
    fills = ctx.data.fills(portfolio)
    mine = fills[fills["symbol"] == symbol]
    for side, color, sym in (("BUY", "#1a7f37", "triangle-up"), ("SELL", "#cf222e", "triangle-down")):
        part = mine[mine["side"] == side]
        fig.add_trace(go.Scatter(x=part["fill_date"], y=part["price"], mode="markers", name=f"fill {side.lower()}"
                                 + (" (exit)" if side == "SELL" else ""),
                                 marker={"color": color, "symbol": sym, "size": 11}), 1, 1)
    decided = mine["as_of"].tolist()
    closes = frame["close"].reindex(decided, method="ffill") if decided else []
    fig.add_trace(go.Scatter(x=decided, y=list(closes), mode="markers", name="decision",
                             marker={"color": "#9a6700", "symbol": "circle-open", "size": 9}), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=frame["rsi14"], name="RSI14", line={"color": "#bf3989"}), 2, 1)
    fig.add_hline(y=70, line={"dash": "dot", "color": "#999"}, row=2, col=1)
    fig.add_hline(y=30, line={"dash": "dot", "color": "#999"}, row=2, col=1)
    fig.add_trace(go.Scatter(x=x, y=frame["macd"], name="MACD", line={"color": "#0969da"}), 3, 1)
    fig.add_trace(go.Scatter(x=x, y=frame["macd_signal"], name="signal", line={"color": "#fb8500"}), 3, 1)
    fig.add_trace(go.Bar(x=x, y=frame["macd_hist"], name="histogram", marker_color="#999"), 3, 1)
    fig.update_layout(title=f"{symbol}", height=620,
                      margin={"l": 50, "r": 20, "t": 40, "b": 30}, legend={"orientation": "h", "y": -0.08})
    return fig


def register(app, ctx) -> None:
    @app.callback(Output("indicator-figure", "figure"), Input("indicator-symbol", "value"),
                  Input("indicators-portfolio", "data"), prevent_initial_call=True)
    def redraw(symbol, portfolio):
        return figure(ctx, portfolio, symbol)
