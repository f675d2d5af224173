"""Local stand-ins for Finnhub on 127.0.0.1: a REST server and a WebSocket trade server.

:class:`FakeFinnhub` (``http.server`` in a thread) answers the REST endpoints VOLT uses with
bodies shaped like Finnhub's documented responses (``/quote`` ``c h l o pc t d dp``;
``/stock/candle`` column arrays with ``s`` = ``ok``/``no_data``; ``/news-sentiment`` with
``buzz`` and ``companyNewsScore``; ``/stock/insider-sentiment`` with ``mspr``;
``/stock/recommendation`` with ``strongBuy``...). Per endpoint it can refuse (403, as a plan
does), throttle (a sequence of 429s) or serve a custom body, and it records every request.

:class:`FakeTradeServer` (the ``websockets`` package, in a thread with its own event loop)
accepts connections on ``ws://127.0.0.1:<port>?token=...``, records subscriptions, sends
trade and ping messages on demand, refuses handshakes, and drops connections.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import finnhub
from websockets.asyncio.server import ServerConnection, serve

REFUSED_BODY = {"error": "You don't have access to this resource."}
THROTTLED_BODY = {"error": "API limit reached. Please try again later. Remaining Limit: 0"}
DAY_S = 86400


@dataclass
class RecordedRequest:
    endpoint: str  # e.g. "quote", "stock/candle"
    params: dict[str, str]  # query parameters except the token
    query_token: str | None
    header_token: str | None
    raw_path: str
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


def _seed(symbol: str) -> int:
    return zlib.crc32(symbol.encode()) % 1000


def default_quote(symbol: str, t: int) -> dict:
    base = 50.0 + _seed(symbol) / 10.0
    return {"c": round(base, 2), "d": 1.25, "dp": round(125 / (base - 1.25), 4), "h": round(base + 1.0, 2),
            "l": round(base - 2.0, 2), "o": round(base - 0.5, 2), "pc": round(base - 1.25, 2), "t": t}


def candle_body(symbol: str, start: int, end: int, step_s: int, *, daily: bool, max_bars: int = 2000) -> dict:
    """Deterministic candles: weekdays at 00:00 UTC for daily, every ``step_s`` otherwise."""
    t: list[int] = []
    if daily:
        day = start - start % DAY_S
        while day <= end and len(t) < max_bars:
            if datetime.fromtimestamp(day, UTC).weekday() < 5:
                t.append(day)
            day += DAY_S
    else:
        ts = start - start % step_s
        while ts <= end and len(t) < max_bars:
            t.append(ts)
            ts += step_s
    if not t:
        return {"s": "no_data"}
    base = 50.0 + _seed(symbol) / 10.0
    c = [round(base + 0.1 * i + (i % 5) * 0.3, 4) for i in range(len(t))]
    o = [round(x - 0.2, 4) for x in c]
    h = [round(max(a, b) + 0.5, 4) for a, b in zip(o, c, strict=True)]
    low = [round(min(a, b) - 0.5, 4) for a, b in zip(o, c, strict=True)]
    v = [1_000_000 + 1000 * (i % 7) for i in range(len(t))]
    return {"c": c, "h": h, "l": low, "o": o, "s": "ok", "t": t, "v": v}


class FakeFinnhub:
    """Finnhub-shaped REST server. ``token`` set: other tokens get 401 like the real API."""

    def __init__(self, token: str | None = None, *, now: Callable[[], float] = time.time):
        self.token = token
        self.now = now
        self.requests: list[RecordedRequest] = []
        self.refused: dict[str, int] = {}
        self.throttled: dict[str, deque[tuple[int, str | None]]] = {}
        self.bodies: dict[str, Callable[[dict[str, str]], Any] | Any] = {}
        self.quotes: dict[str, dict] = {}
        self.no_data: set[str] = set()
        self.splits: dict[str, list[dict]] = {}  # /stock/split bodies per symbol
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                owner._serve(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-finnhub", daemon=True)
        self._thread.start()

    # ---- configuration -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/api/v1"

    def client(self, api_key: str | None = None) -> finnhub.Client:
        """A real ``finnhub.Client`` aimed at this server (``API_URL`` set on the instance)."""
        client = finnhub.Client(api_key=api_key or self.token or "test-key")
        client.API_URL = self.base_url
        return client

    def refuse(self, endpoint: str, status: int = 403) -> None:
        self.refused[endpoint] = status

    def throttle(self, endpoint: str, times: int, status: int = 429, retry_after: str | None = None) -> None:
        self.throttled.setdefault(endpoint, deque()).extend([(status, retry_after)] * times)

    def set_body(self, endpoint: str, body: Callable[[dict[str, str]], Any] | Any) -> None:
        self.bodies[endpoint] = body

    def count(self, endpoint: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if endpoint is None or r.endpoint == endpoint)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeFinnhub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- serving -------------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        path = "/".join(p for p in parts.path.split("/") if p)  # finnhub-python sends //quote
        endpoint = path.removeprefix("api/v1/").removeprefix("api/v1")
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        query_token = params.pop("token", None)
        header_token = handler.headers.get("X-Finnhub-Token")
        record = RecordedRequest(endpoint, params, query_token, header_token, handler.path,
                                 headers=dict(handler.headers.items()))
        with self._lock:
            self.requests.append(record)
        status, body, extra = self._answer(endpoint, params, query_token or header_token)
        record.status = status
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        for k, v in extra.items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)

    def _answer(self, endpoint: str, params: dict[str, str], token: str | None) -> tuple[int, Any, dict]:
        if self.token is not None and token != self.token:
            return 401, {"error": "Invalid API key."}, {}
        if endpoint in self.refused:
            return self.refused[endpoint], REFUSED_BODY, {}
        with self._lock:
            queue = self.throttled.get(endpoint)
            throttled = queue.popleft() if queue else None
        if throttled is not None:
            status, retry_after = throttled
            return status, THROTTLED_BODY, ({"Retry-After": retry_after} if retry_after else {})
        if endpoint in self.bodies:
            body = self.bodies[endpoint]
            return 200, body(params) if callable(body) else body, {}
        builder = getattr(self, "_" + endpoint.replace("/", "_").replace("-", "_"), None)
        if builder is None:
            return 404, {"error": f"unknown endpoint {endpoint}"}, {}
        return 200, builder(params), {}

    # Default bodies, one per endpoint, shaped like Finnhub's API documentation.

    def _quote(self, p: dict) -> dict:
        symbol = p.get("symbol", "")
        return self.quotes.get(symbol) or default_quote(symbol, int(self.now()))

    def _stock_split(self, p: dict) -> list:
        return self.splits.get(p.get("symbol", ""), [])

    def _stock_candle(self, p: dict) -> dict:
        symbol, res = p.get("symbol", ""), p.get("resolution", "D")
        if symbol in self.no_data:
            return {"s": "no_data"}
        step = {"1": 60, "5": 300, "15": 900, "30": 1800, "60": 3600}.get(res, DAY_S)
        return candle_body(symbol, int(p["from"]), int(p["to"]), step, daily=res.upper() in ("D", "W", "M"))

    _crypto_candle = _stock_candle

    def _company_news(self, p: dict) -> list:
        symbol = p.get("symbol", "")
        base = int(datetime.fromisoformat(p["to"]).replace(tzinfo=UTC).timestamp())
        return [
            {"category": "company", "datetime": base - 3600 * (i + 1), "headline": f"{symbol} headline {i}",
             "id": 1000 + i, "image": "", "related": symbol, "source": ["Reuters", "Yahoo", "MarketWatch"][i],
             "summary": f"Summary {i} about {symbol}.", "url": f"https://example.invalid/{symbol}/{i}"}
            for i in range(3)
        ]

    def _news_sentiment(self, p: dict) -> dict:
        return {"buzz": {"articlesInLastWeek": 20, "buzz": 0.8571, "weeklyAverage": 23.3333},
                "companyNewsScore": 0.9, "sectorAverageBullishPercent": 0.6482,
                "sectorAverageNewsScore": 0.5191, "sentiment": {"bearishPercent": 0.1, "bullishPercent": 0.9},
                "symbol": p.get("symbol", "")}

    def _stock_insider_sentiment(self, p: dict) -> dict:
        symbol = p.get("symbol", "")
        return {"data": [{"symbol": symbol, "year": 2024, "month": 3, "change": 5540, "mspr": 12.209097},
                         {"symbol": symbol, "year": 2024, "month": 1, "change": -1250, "mspr": -5.5}],
                "symbol": symbol}

    def _stock_recommendation(self, p: dict) -> list:
        symbol = p.get("symbol", "")
        return [{"buy": 24, "hold": 7, "period": "2024-03-01", "sell": 0, "strongBuy": 13, "strongSell": 0,
                 "symbol": symbol},
                {"buy": 17, "hold": 13, "period": "2024-04-01", "sell": 5, "strongBuy": 13, "strongSell": 0,
                 "symbol": symbol}]

    def _stock_metric(self, p: dict) -> dict:
        return {"metric": {"10DayAverageTradingVolume": 52.1, "52WeekHigh": 199.62, "52WeekLow": 164.08,
                           "beta": 1.29, "epsTTM": 6.43, "epsGrowthTTMYoy": 7.5, "peTTM": 28.4,
                           "roeTTM": 147.25, "roaTTM": 27.5, "grossMarginTTM": 45.59,
                           "operatingMarginTTM": 30.74, "netProfitMarginTTM": 26.16,
                           "dividendYieldIndicatedAnnual": 0.5, "marketCapitalization": 2800000,
                           "revenueGrowthTTMYoy": -1.2, "currentRatioQuarterly": 1.04,
                           "totalDebt/totalEquityQuarterly": 1.4},
                "metricType": "all", "series": {"annual": {"eps": [{"period": "2023-09-30", "v": 6.13}]}},
                "symbol": p.get("symbol", "")}

    def _calendar_earnings(self, p: dict) -> dict:
        symbol = p.get("symbol") or "AAPL"
        return {"earningsCalendar": [
            {"date": p["to"], "epsActual": None, "epsEstimate": 1.5, "hour": "amc", "quarter": 2,
             "revenueActual": None, "revenueEstimate": 90_000_000_000, "symbol": symbol, "year": 2024},
            {"date": p["from"], "epsActual": 2.18, "epsEstimate": 2.1, "hour": "bmo", "quarter": 1,
             "revenueActual": 119_000_000_000, "revenueEstimate": 117_000_000_000, "symbol": symbol,
             "year": 2024},
        ]}

    def _forex_rates(self, p: dict) -> dict:
        return {"base": p.get("base", "USD"), "quote": {"EUR": 0.92, "GBP": 0.79, "JPY": 151.2, "USD": 1}}


class FakeTradeServer:
    """Finnhub-like WebSocket trade server on 127.0.0.1, in a thread with its own event loop."""

    def __init__(self, token: str | None = None):
        self.token = token
        self.paths: list[str] = []  # request paths of every handshake (the token is in them)
        self.subscriptions: list[tuple[int, str]] = []  # (connection number, symbol)
        self.unsubscriptions: list[tuple[int, str]] = []
        self.handshakes = 0
        self.accepted = 0
        self.reject_next = 0  # refuse this many handshakes (HTTP 503)
        self._conns: dict[int, ServerConnection] = {}
        self._subs: dict[int, set[str]] = {}
        self._cond = threading.Condition()
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-finnhub-ws", daemon=True)
        self._thread.start()
        if not self._started.wait(5):
            raise RuntimeError("fake trade server did not start")

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    # ---- server side (event loop thread) ----------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self._started.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        # The server side sees the token (it is in the URL): its own log stays out of the
        # test's log capture, which checks that VOLT never logs the key.
        quiet = logging.getLogger("tests.fake_finnhub.ws")
        quiet.disabled = True
        self._server = await serve(self._handler, "127.0.0.1", 0, process_request=self._process_request,
                                   ping_interval=None, logger=quiet)
        self.port = self._server.sockets[0].getsockname()[1]

    def _process_request(self, connection: ServerConnection, request: Any):
        with self._cond:
            self.paths.append(request.path)
            self.handshakes += 1
            reject = self.reject_next > 0
            if reject:
                self.reject_next -= 1
            self._cond.notify_all()
        if reject:
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "try later\n")
        if self.token is not None and f"token={self.token}" not in request.path:
            return connection.respond(http.HTTPStatus.UNAUTHORIZED, "invalid token\n")
        return None

    async def _handler(self, connection: ServerConnection) -> None:
        with self._cond:
            self.accepted += 1
            number = self.accepted
            self._conns[number] = connection
            self._subs[number] = set()
            self._cond.notify_all()
        try:
            async for raw in connection:
                try:
                    message = json.loads(raw)
                except ValueError:
                    continue
                with self._cond:
                    if message.get("type") == "subscribe":
                        self.subscriptions.append((number, message.get("symbol")))
                        self._subs[number].add(message.get("symbol"))
                    elif message.get("type") == "unsubscribe":
                        self.unsubscriptions.append((number, message.get("symbol")))
                        self._subs[number].discard(message.get("symbol"))
                    self._cond.notify_all()
        except Exception:  # dropped on purpose or by the client: same thing here
            pass
        finally:
            with self._cond:
                self._conns.pop(number, None)
                self._subs.pop(number, None)
                self._cond.notify_all()

    # ---- test side ----------------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[FakeTradeServer], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    @property
    def open_connections(self) -> int:
        with self._cond:
            return len(self._conns)

    def subscribed(self, symbol: str) -> int:
        """How many open connections are subscribed to ``symbol``."""
        with self._cond:
            return sum(symbol in subs for subs in self._subs.values())

    def _broadcast(self, text: str, symbol: str | None = None) -> int:
        async def send() -> int:
            with self._cond:
                targets = [c for n, c in self._conns.items() if symbol is None or symbol in self._subs[n]]
            for conn in targets:
                await conn.send(text)
            return len(targets)

        return asyncio.run_coroutine_threadsafe(send(), self.loop).result(5)

    def send_trades(self, trades: list[dict]) -> int:
        """Send ``{"type": "trade", "data": trades}`` to connections subscribed to the first symbol."""
        return self._broadcast(json.dumps({"type": "trade", "data": trades}), trades[0]["s"] if trades else None)

    def send_ping(self) -> int:
        return self._broadcast(json.dumps({"type": "ping"}))

    def send_raw(self, text: str) -> int:
        return self._broadcast(text)

    def drop(self) -> None:
        """Abort every open connection (no close frame), like a network failure."""
        def abort() -> None:
            for conn in list(self._conns.values()):
                conn.transport.abort()

        self.loop.call_soon_threadsafe(abort)

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            await self._server.wait_closed()

        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            if not self._thread.is_alive():
                self.loop.close()

    def __enter__(self) -> FakeTradeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
