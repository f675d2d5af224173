"""The Dash app: ``create_app(home, ...)`` builds it over a read-only view of one VOLT home.

One page per module in :mod:`graph.dashboard.pages`, chosen by the URL path; a portfolio
selector in the header; a ``dcc.Interval`` polls the ledger's stamp (cheap: one COUNT/MAX
query) and re-renders the page only when a new cycle has landed. Every asset is served by
this process (Dash's bundled scripts and ``assets/style.css``): nothing comes from a CDN.

Access: with ``token`` set, every request must carry it, as the ``X-Volt-Token`` header, a
``volt_token`` cookie, or ``?token=`` (which sets the cookie and redirects to the same path
without the token in the URL); anything else is 401.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from urllib.parse import urlencode

from dash import Dash, Input, Output, State, dcc, html, no_update
from flask import Response, redirect, request

from graph.dashboard.data import HomeData
from graph.dashboard.market import MarketView

COOKIE = "volt_token"
HEADER = "X-Volt-Token"


@dataclass
class Context:
    """What every page reads: the home's data, its market data, the default portfolio."""

    data: HomeData
    market: MarketView
    portfolio: str
    settings: object | None = None
    extra: dict = field(default_factory=dict)


def _pages() -> dict[str, tuple[str, ModuleType]]:
    from graph.dashboard.pages import (
        decisions,
        evolution,
        feedback,
        indicators,
        learning,
        overview,
        runs,
        status,
    )
    return {"/": ("Overview", overview), "/decisions": ("Decisions", decisions),
            "/learning": ("Learning", learning), "/feedback": ("Feedback", feedback),
            "/indicators": ("Indicators", indicators), "/evolution": ("Evolution", evolution),
            "/status": ("Status", status), "/runs": ("Runs", runs)}


def create_app(home: Path | str, *, portfolio: str | None = None, runs_dir: Path | str | None = None,
               token: str | None = None, refresh_ms: int = 5000, data_csv: Path | str | None = None,
               settings: object | None = None) -> Dash:
    """The dashboard over ``home`` (read-only). ``runs_dir``: folder searched for backtest and
    evaluation ``summary.json`` files (default: the home). ``refresh_ms``: stamp poll period."""
    data = HomeData(home, runs_dir=runs_dir or home)
    market = MarketView(data_csv)
    market.start()
    default = portfolio or getattr(settings, "portfolio", None) or "main"
    ctx = Context(data=data, market=market, portfolio=default, settings=settings)
    pages = _pages()
    app = Dash(__name__, title="VOLT dashboard", suppress_callback_exceptions=True, serve_locally=True,
               update_title=None, assets_folder=str(Path(__file__).parent / "assets"))
    if token:
        _guard(app, token)

    def layout() -> html.Div:
        names = data.portfolios()
        chosen = default if default in names or not names else names[0]
        return html.Div([
            dcc.Location(id="url"),
            dcc.Interval(id="tick", interval=refresh_ms),
            dcc.Store(id="stamp"),
            html.Header([
                html.H1("VOLT"),
                dcc.Dropdown(id="portfolio", options=names or [chosen], value=chosen, clearable=False,
                             className="selector"),
                html.Nav([dcc.Link(title, href=path, id=f"nav-{path.strip('/') or 'overview'}")
                          for path, (title, _) in pages.items()]),
                html.Span(id="stamp-text", className="stamp"),
            ]),
            html.Main(id="page"),
        ])

    app.layout = layout

    @app.callback(Output("stamp", "data"), Output("stamp-text", "children"),
                  Input("tick", "n_intervals"), Input("portfolio", "value"), State("stamp", "data"))
    def poll(_n, chosen, current):
        stamp = list(data.stamp(chosen))
        if current is not None and stamp == current:
            return no_update, no_update
        text = f"{stamp[0]} cycles, last {stamp[1]}" if stamp[0] else "no cycle yet"
        return stamp, text

    @app.callback(Output("page", "children"), Input("url", "pathname"), Input("stamp", "data"),
                  State("portfolio", "value"))
    def render(pathname, _stamp, chosen):
        _title, module = pages.get(pathname or "/", (None, None))
        if module is None:
            return html.P(f"no page at {pathname}", className="notice")
        try:
            return module.layout(ctx, chosen or default)
        except Exception as exc:  # one line on the page; the traceback stays in the server log
            app.logger.exception("page %s failed", pathname)
            return html.P(f"this page failed: {type(exc).__name__}: {str(exc)[:200]}", className="notice")

    for _path, (_title, module) in pages.items():
        if hasattr(module, "register"):
            module.register(app, ctx)
    return app


def _guard(app: Dash, token: str) -> None:
    """Refuse every request without the token (header, cookie, or ``?token=`` once)."""
    expected = token.encode()

    def ok(candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), expected)

    @app.server.before_request
    def check():
        if ok(request.headers.get(HEADER)) or ok(request.cookies.get(COOKIE)):
            return None
        if ok(request.args.get("token")):
            args = {k: v for k, v in request.args.items() if k != "token"}
            query = urlencode(args)
            response = redirect(request.path + (f"?{query}" if query else ""))
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
            return response
        return Response("401: this dashboard needs its access token (VOLT_DASHBOARD_TOKEN)\n", status=401,
                        mimetype="text/plain")
