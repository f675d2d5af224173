"""The Dash app: ``create_app(home, ...)`` builds it over a read-only view of one VOLT home.

One page per module in :mod:`graph.dashboard.pages`, chosen by the URL path; a portfolio
selector in the header; a ``dcc.Interval`` polls the ledger's stamp (cheap: one COUNT/MAX
query) and re-renders the page only when a new cycle has landed. Every asset is served by
this process (Dash's bundled scripts and ``assets/style.css``): nothing comes from a CDN.

First load: Plotly is the page's largest script. Dash would fetch its full 4.8 MB bundle only
once the first figure mounts (after the layout and the page callback), then parse it; instead
the page carries ``vendor/plotly-volt.min.js`` (a 1.3 MB partial plotly.js of the trace types
the pages draw: scatter, bar, sankey) as a ``defer`` script, parsed while the server renders
the page, and Dash's own plotly URL serves the same file should a figure mount first.

Access: with ``token`` set, every request must carry it, as the ``X-Volt-Token`` header, a
``volt_token`` cookie, or ``?token=`` (which sets the cookie and redirects to the same path
without the token in the URL); anything else is 401.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from urllib.parse import urlencode

from dash import Dash, Input, Output, State, dcc, html, no_update
from flask import Response, redirect, request, send_file

from graph.dashboard.data import HomeData
from graph.dashboard.market import MarketView
from graph.dashboard.ui import register_tables

COOKIE = "volt_token"
HEADER = "X-Volt-Token"
PLOTLY_BUNDLE = Path(__file__).parent / "vendor" / "plotly-volt.min.js"
DASH_PLOTLY_URL = "/_dash-component-suites/plotly/package_data/plotly.min.js"  # where dcc.Graph looks


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
               settings: object | None = None, full_plotly: bool = False, compress: bool = False) -> Dash:
    """The dashboard over ``home`` (read-only). ``runs_dir``: folder searched for backtest and
    evaluation ``summary.json`` files (default: the home). ``refresh_ms``: stamp poll period.
    ``full_plotly``: Dash's own way instead of the partial bundle (the whole plotly.js, fetched
    when the first figure mounts): the benchmark's before/after comparison. ``compress``:
    gzip/brotli responses (flask-compress), for a dashboard served over a network."""
    data = HomeData(home, runs_dir=runs_dir or home, database_url=getattr(settings, "database_url", None))
    market = MarketView(data_csv)
    market.start()
    default = portfolio or getattr(settings, "portfolio", None) or "main"
    ctx = Context(data=data, market=market, portfolio=default, settings=settings)
    pages = _pages()
    version = hashlib.sha256(PLOTLY_BUNDLE.read_bytes()).hexdigest()[:12]
    scripts = [] if full_plotly else [{"src": f"/_volt/plotly-{version}.min.js", "defer": "defer"}]
    app = Dash(__name__, title="VOLT dashboard", suppress_callback_exceptions=True, serve_locally=True,
               update_title=None, assets_folder=str(Path(__file__).parent / "assets"), external_scripts=scripts,
               compress=compress)
    if token:
        _guard(app, token)
    if not full_plotly:
        _serve_plotly(app, version)

    def layout() -> html.Div:
        names = data.portfolios()
        chosen = default if default in names or not names else names[0]
        # the stamp comes with the layout: the page renders at once, not after a first poll
        stamp = [chosen, *data.stamp(chosen)]
        return html.Div([
            dcc.Location(id="url"),
            dcc.Interval(id="tick", interval=refresh_ms),
            dcc.Store(id="stamp", data=stamp),
            html.Header([
                html.H1("VOLT"),
                dcc.Dropdown(id="portfolio", options=names or [chosen], value=chosen, clearable=False,
                             className="selector"),
                html.Nav([dcc.Link(title, href=path, id=f"nav-{path.strip('/') or 'overview'}")
                          for path, (title, _) in pages.items()]),
                html.Span(_stamp_text(stamp), id="stamp-text", className="stamp"),
            ]),
            html.Main(id="page"),
        ])

    app.layout = layout

    @app.callback(Output("stamp", "data"), Output("stamp-text", "children"),
                  Input("tick", "n_intervals"), Input("portfolio", "value"), State("stamp", "data"),
                  prevent_initial_call=True)
    def poll(_n, chosen, current):
        stamp = [chosen, *data.stamp(chosen)]  # the portfolio in it: switching always re-renders
        if current is not None and stamp == current:
            return no_update, no_update
        return stamp, _stamp_text(stamp)

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
    register_tables(app)
    threading.Thread(target=_warm, args=(app, ctx, pages["/"][1]), name="dashboard-warm-up", daemon=True).start()
    return app


def _warm(app: Dash, ctx: Context, overview: ModuleType) -> None:
    """Render the overview once in the background, before and after the market data loaded:
    the first visitor then finds plotly's figure validators imported (~0.3 s the first time in
    a process) and the ledger's per-cycle caches filled, instead of waiting for both."""
    try:
        overview.layout(ctx, ctx.portfolio)
        if ctx.market.dataset(wait_s=120) is not None:
            overview.layout(ctx, ctx.portfolio)
    except Exception:  # a broken home shows on the page when someone opens it; nothing to do here
        app.logger.debug("warm-up failed", exc_info=True)


def _stamp_text(stamp: list) -> str:
    """``[portfolio, cycles, last as_of, last completed_at]`` as the header shows it."""
    return f"{stamp[1]} cycles, last {stamp[2]}" if stamp[1] else "no cycle yet"


def _serve_plotly(app: Dash, version: str) -> None:
    """Serve the partial plotly.js at a content-versioned URL (cached for a year) and at the
    URL dcc.Graph fetches when no ``window.Plotly`` exists yet (revalidated by ETag)."""

    def versioned():
        return send_file(PLOTLY_BUNDLE, mimetype="text/javascript", max_age=365 * 86400)

    def dash_url():
        return send_file(PLOTLY_BUNDLE, mimetype="text/javascript", max_age=0)

    # a rule with more fixed parts wins over Dash's /_dash-component-suites/<package>/<path>
    app.server.add_url_rule(f"/_volt/plotly-{version}.min.js", "volt_plotly", versioned)
    app.server.add_url_rule(DASH_PLOTLY_URL, "volt_plotly_dash_url", dash_url)


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
