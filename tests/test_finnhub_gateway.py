"""FinnhubGateway against a local Finnhub stand-in, and the API-key handling (graph/secrets.py).

Offline: every request goes to 127.0.0.1. Time is fake (an injected clock and sleep), so
backoff and rate limiting are asserted exactly and cost nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from graph.errors import OperationalError, TemporaryError
from graph.secrets import MissingApiKeyError, finnhub_api_key, redact
from tests.fake_finnhub import FakeFinnhub
from tools.finnhub.cache import cache_key
from tools.finnhub.errors import (
    EndpointUnavailable,
    FinnhubError,
    FinnhubNetworkError,
    FinnhubRateLimited,
)
from tools.finnhub.gateway import FinnhubGateway, open_gateway
from tools.finnhub.throttle import RateLimiter

KEY = "sk-TEST-KEY-123"


class FakeTime:
    """A clock and a sleep that advances it: backoff and rate limiting in zero real time."""

    def __init__(self, start: float = 1_700_000_000.0):
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake():
    with FakeFinnhub(token=KEY) as server:
        yield server


@pytest.fixture
def ftime():
    return FakeTime()


@pytest.fixture
def make_gateway(fake, tmp_path, ftime):
    made: list[FinnhubGateway] = []

    def make(**kw) -> FinnhubGateway:
        kw.setdefault("client", fake.client(KEY))
        gateway = FinnhubGateway(KEY, tmp_path / "finnhub_cache.db", sleep=ftime.sleep, clock=ftime.clock,
                                 wall_clock=ftime.clock, **kw)
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        gateway.close()


# ---- parsing ------------------------------------------------------------------------------------


def test_quote_parsed_and_token_sent_only_as_header(fake, make_gateway):
    q = make_gateway().quote("aapl")
    assert q["symbol"] == "AAPL"
    assert set(q) >= {"c", "h", "l", "o", "pc", "t", "d", "dp"}
    assert isinstance(q["c"], float) and q["c"] > 0 and q["l"] <= q["c"] <= q["h"]
    assert isinstance(q["t"], int) and q["t"] > 0
    (request,) = fake.requests
    assert request.endpoint == "quote" and request.params == {"symbol": "AAPL"}
    assert request.header_token == KEY and request.query_token is None
    assert KEY not in request.raw_path


def test_basic_financials_picks_the_useful_metrics(make_gateway):
    m = make_gateway().basic_financials("AAPL")
    assert m["symbol"] == "AAPL"
    assert m["eps_ttm"] == 6.43 and m["roe_ttm"] == 147.25 and m["roa_ttm"] == 27.5
    assert (m["gross_margin_ttm"], m["operating_margin_ttm"], m["net_margin_ttm"]) == (45.59, 30.74, 26.16)
    assert m["dividend_yield"] == 0.5 and m["pe_ttm"] == 28.4 and m["beta"] == 1.29
    assert m["debt_to_equity"] == 1.4
    assert m["pb"] is None  # not in the response: None, not an error


def test_news_sentiment_recommendations_insiders_earnings_forex(make_gateway):
    gw = make_gateway()
    start, end = date(2024, 3, 1), date(2024, 3, 15)

    news = gw.company_news("AAPL", start, end)
    assert [n["headline"] for n in news] == ["AAPL headline 0", "AAPL headline 1", "AAPL headline 2"]
    assert set(news[0]) >= {"headline", "summary", "source", "datetime", "url"}
    assert news[0]["datetime"] == "2024-03-14T23:00:00Z" and news[0]["source"] == "Reuters"
    assert len(gw.company_news("AAPL", start, end, limit=1)) == 1

    s = gw.news_sentiment("AAPL")
    assert s["articles_in_last_week"] == 20 and s["company_news_score"] == 0.9
    assert s["bullish_percent"] == 0.9 and s["sector_average_bullish_percent"] == 0.6482

    insiders = gw.insider_sentiment("AAPL", date(2024, 1, 1), date(2024, 3, 31))
    assert [(r["year"], r["month"]) for r in insiders] == [(2024, 1), (2024, 3)]
    assert insiders[-1]["mspr"] == pytest.approx(12.209097) and insiders[0]["change"] == -1250

    trends = gw.recommendation_trends("AAPL")
    assert [t["period"] for t in trends] == ["2024-04-01", "2024-03-01"]
    assert trends[1] == {"period": "2024-03-01", "strong_buy": 13, "buy": 24, "hold": 7, "sell": 0,
                         "strong_sell": 0}

    calendar = gw.earnings_calendar(start, end, "aapl")
    assert [e["date"] for e in calendar] == ["2024-03-01", "2024-03-15"]
    assert calendar[0]["eps_actual"] == 2.18 and calendar[1]["eps_actual"] is None
    assert calendar[1]["hour"] == "amc" and calendar[1]["eps_estimate"] == 1.5

    rates = gw.forex_rates("usd")
    assert rates["EUR"] == 0.92 and rates["JPY"] == 151.2


def test_daily_candles_frame_and_no_data(fake, make_gateway):
    gw = make_gateway()
    frame = gw.daily_candles("MSFT", date(2024, 3, 1), date(2024, 3, 15))
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert frame.index.name == "date" and frame.index.tz is None
    assert frame.index[0] == pd.Timestamp("2024-03-01") and frame.index[-1] == pd.Timestamp("2024-03-15")
    assert len(frame) == 11 and all(d.weekday() < 5 for d in frame.index)
    assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()
    request = fake.requests[-1]
    assert request.params["resolution"] == "D"
    assert int(request.params["from"]) == int(datetime(2024, 3, 1, tzinfo=UTC).timestamp())
    assert int(request.params["to"]) == int(datetime(2024, 3, 15, 23, 59, 59, tzinfo=UTC).timestamp())

    fake.no_data.add("ZZZZ")
    empty = gw.daily_candles("ZZZZ", date(2024, 3, 1), date(2024, 3, 15))
    assert empty.empty and list(empty.columns) == ["open", "high", "low", "close", "volume"]


def test_intraday_and_crypto_candles_indexed_by_utc_time(make_gateway):
    gw = make_gateway()
    start = datetime(2024, 3, 4, 14, 30)
    intraday = gw.intraday_candles("AAPL", 5, start, start + timedelta(hours=1))
    assert len(intraday) == 13 and str(intraday.index.tz) == "UTC"
    assert intraday.index[1] - intraday.index[0] == pd.Timedelta(minutes=5)
    crypto = gw.crypto_candles("BINANCE:BTCUSDT", "60", start, start + timedelta(hours=3))
    assert len(crypto) == 4 and crypto.index.name == "time"


# ---- plan refusals, throttling, rate limiting --------------------------------------------------------


def test_plan_refused_endpoint_is_recorded_and_never_called_again(fake, make_gateway):
    fake.refuse("stock/candle")
    gw = make_gateway()
    with pytest.raises(EndpointUnavailable) as first:
        gw.daily_candles("AAPL", date(2024, 3, 1), date(2024, 3, 15))
    assert "stock/candle" in gw.unavailable and first.value.status == 403
    assert "not available on this plan" in str(first.value)
    assert not isinstance(first.value, TemporaryError)  # no point retrying
    with pytest.raises(EndpointUnavailable):
        gw.daily_candles("MSFT", date(2024, 3, 1), date(2024, 3, 15))
    with pytest.raises(EndpointUnavailable):
        gw.intraday_candles("MSFT", 5, date(2024, 3, 1), date(2024, 3, 1))
    assert fake.count("stock/candle") == 1
    assert gw.quote("AAPL")["c"] > 0  # other endpoints are unaffected
    assert not gw.is_available("stock/candle") and gw.is_available("quote")


def test_unauthorized_is_refused_too(fake, make_gateway):
    gw = make_gateway(client=fake.client("sk-WRONG"))
    with pytest.raises(EndpointUnavailable) as exc:
        gw.news_sentiment("AAPL")
    assert exc.value.status == 401 and "news-sentiment" in gw.unavailable


def test_429_backs_off_exponentially_then_succeeds(fake, make_gateway, ftime):
    fake.throttle("quote", 3)
    gw = make_gateway()
    assert gw.quote("AAPL")["c"] > 0
    assert gw.backoffs == [1.0, 2.0, 4.0]
    assert ftime.sleeps == [1.0, 2.0, 4.0]  # the rate limiter never had to wait
    assert fake.count("quote") == 4 and gw.calls == 4


def test_429_retries_are_bounded(fake, make_gateway):
    fake.throttle("quote", 10)
    gw = make_gateway(max_retries=2)
    with pytest.raises(FinnhubRateLimited) as exc:
        gw.quote("AAPL")
    assert isinstance(exc.value, TemporaryError)
    assert gw.backoffs == [1.0, 2.0] and fake.count("quote") == 3
    assert "quote" not in gw.unavailable


def test_retry_after_header_and_backoff_cap(fake, make_gateway):
    fake.throttle("quote", 1, retry_after="7")
    fake.throttle("stock/metric", 3, status=503)
    gw = make_gateway(backoff_max_s=3.0)
    gw.quote("AAPL")
    gw.basic_financials("AAPL")
    assert gw.backoffs == [3.0, 1.0, 2.0, 3.0]  # Retry-After 7, capped at 3; then 1, 2, 4 capped


def test_rate_limiter_spaces_calls(make_gateway, ftime):
    gw = make_gateway(calls_per_minute=3)
    start = ftime.now
    times = []
    for symbol in ["A", "B", "C", "D", "E", "F", "G"]:
        gw.quote(symbol)
        times.append(ftime.now - start)
    assert times == [0, 0, 0, 60, 60, 60, 120]
    assert ftime.sleeps == [60, 60] and gw.calls == 7


def test_rate_limiter_is_thread_safe():
    ftime = FakeTime(0.0)
    limiter = RateLimiter([(2, 10.0)], clock=ftime.clock, sleep=ftime.sleep)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker():
        limiter.acquire()
        with lock:
            stamps.append(ftime.now)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sorted(stamps) == [0, 0, 10, 10, 20, 20, 30, 30]


def test_per_second_window_too():
    ftime = FakeTime(0.0)
    limiter = RateLimiter([(60, 60.0), (2, 1.0)], clock=ftime.clock, sleep=ftime.sleep)
    for _ in range(5):
        limiter.acquire()
    assert ftime.now == 2.0 and ftime.sleeps == [1.0, 1.0]


# ---- cache --------------------------------------------------------------------------------------------


def test_cache_hits_within_ttl_and_refetches_after(fake, make_gateway, ftime):
    gw = make_gateway()
    first = gw.quote("AAPL")
    ftime.now += 14
    assert gw.quote("AAPL") == first
    assert fake.count("quote") == 1 and gw.calls == 1 and gw.cache_hits == 1
    ftime.now += 2  # 16 s: past the quote's 15 s TTL
    gw.quote("AAPL")
    assert fake.count("quote") == 2

    gw.daily_candles("AAPL", date(2024, 3, 1), date(2024, 3, 15))
    ftime.now += 299
    gw.daily_candles("AAPL", date(2024, 3, 1), date(2024, 3, 15))
    assert fake.count("stock/candle") == 1
    ftime.now += 2
    gw.daily_candles("AAPL", date(2024, 3, 1), date(2024, 3, 15))
    assert fake.count("stock/candle") == 2

    gw.basic_financials("AAPL")
    ftime.now += 23 * 3600
    gw.basic_financials("AAPL")
    assert fake.count("stock/metric") == 1  # fundamentals: a day


def test_cache_outlives_the_gateway_and_keys_hold_no_secret(fake, make_gateway):
    make_gateway().recommendation_trends("AAPL")
    second = make_gateway()
    assert second.recommendation_trends("AAPL")[0]["period"] == "2024-04-01"
    assert second.calls == 0 and fake.count("stock/recommendation") == 1
    assert cache_key("quote", {"symbol": "AAPL", "x": None}) == "quote?symbol=AAPL"


def test_cache_ttl_zero_disables_caching(fake, make_gateway):
    gw = make_gateway(ttls={"quote": 0})
    gw.quote("AAPL")
    gw.quote("AAPL")
    assert fake.count("quote") == 2


# ---- errors and the key ---------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_network_error_is_temporary_and_redacted(tmp_path, ftime):
    port = _closed_port()
    gw = FinnhubGateway(KEY, tmp_path / "c.db", base_url=f"http://127.0.0.1:{port}/api/v1",
                        sleep=ftime.sleep, clock=ftime.clock, timeout_s=2)
    with gw, pytest.raises(FinnhubNetworkError) as exc:
        gw.quote("AAPL")
    assert isinstance(exc.value, TemporaryError)
    assert "quote" in str(exc.value) and KEY not in str(exc.value)
    assert exc.value.__cause__ is None and exc.value.__context__ is None  # the original is not kept


def test_unexpected_shape_is_a_finnhub_error(fake, make_gateway):
    fake.set_body("stock/metric", {"nothing": "here"})
    with pytest.raises(FinnhubError, match="unexpected response shape"):
        make_gateway().basic_financials("AAPL")


def test_the_key_is_written_nowhere(fake, make_gateway, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    fake.refuse("news-sentiment")
    fake.throttle("forex/rates", 10)
    gw = make_gateway(max_retries=1)
    messages: list[str] = []
    gw.quote("AAPL")
    gw.daily_candles("AAPL", date(2024, 1, 1), date(2024, 3, 15))
    gw.company_news("AAPL", date(2024, 3, 1), date(2024, 3, 15))
    gw.basic_financials("AAPL")
    for call in (lambda: gw.news_sentiment("AAPL"), lambda: gw.forex_rates("USD")):
        with pytest.raises(FinnhubError) as exc:
            call()
        messages += [str(exc.value), repr(exc.value)]
    bad = FinnhubGateway(KEY, tmp_path / "other.db", base_url=f"http://127.0.0.1:{_closed_port()}/api/v1")
    with pytest.raises(FinnhubNetworkError) as exc:
        bad.quote("AAPL")
    messages += [str(exc.value), repr(exc.value)]
    bad.close()
    gw.close()

    # It did reach the server (as a header), and nowhere else.
    assert fake.requests and all(r.header_token == KEY for r in fake.requests)
    assert all(KEY not in r.raw_path for r in fake.requests)
    assert all(KEY not in m for m in messages)
    assert caplog.records and all(KEY not in r.getMessage() for r in caplog.records)
    assert KEY not in caplog.text
    files = [p for p in tmp_path.iterdir() if p.is_file()]
    assert any(p.name == "finnhub_cache.db" for p in files)
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path.name


def test_open_gateway_reads_the_key_and_caches_in_home(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("FINNHUB_API_KEY", KEY)
    with open_gateway(tmp_path / "home", base_url=fake.base_url) as gw:
        assert gw.quote("AAPL")["c"] > 0
    assert (tmp_path / "home" / "finnhub_cache.db").is_file()
    assert fake.requests[-1].header_token == KEY
    monkeypatch.delenv("FINNHUB_API_KEY")
    monkeypatch.chdir(tmp_path)  # no .env here either
    with pytest.raises(MissingApiKeyError):
        open_gateway(tmp_path / "home")


# ---- graph/secrets.py -----------------------------------------------------------------------------------


def test_key_from_the_environment():
    assert finnhub_api_key(env={"FINNHUB_API_KEY": f"  {KEY}\n"}, dotenv_path=None) == KEY


def test_key_from_dotenv_without_touching_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("FINNHUB_API_KEY", raising=False)
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"# comment\nOTHER=1\nFINNHUB_API_KEY={KEY}\n")
    assert finnhub_api_key(env=os.environ, dotenv_path=dotenv) == KEY
    assert "FINNHUB_API_KEY" not in os.environ and "OTHER" not in os.environ
    # The default path is ./.env; the environment wins over it.
    monkeypatch.chdir(tmp_path)
    assert finnhub_api_key() == KEY
    monkeypatch.setenv("FINNHUB_API_KEY", "from-env")
    assert finnhub_api_key() == "from-env"


def test_missing_key_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("FINNHUB_API_KEY", raising=False)
    (tmp_path / ".env").write_text("FINNHUB_API_KEY=\n")  # blank counts as missing
    with pytest.raises(MissingApiKeyError) as exc:
        finnhub_api_key(env={}, dotenv_path=tmp_path / ".env")
    message = str(exc.value)
    assert isinstance(exc.value, OperationalError)
    assert "FINNHUB_API_KEY" in message and ".env" in message and "export" in message
    assert "\n" not in message
    with pytest.raises(MissingApiKeyError):
        finnhub_api_key(env={}, dotenv_path=tmp_path / "absent.env")


def test_redact():
    text = f"GET https://finnhub.io/api/v1/quote?symbol=A&token={KEY} failed; key {KEY}; token=other&x=1"
    clean = redact(text, [KEY, None, ""])
    assert KEY not in clean and "other" not in clean
    assert "symbol=A" in clean and "token=***" in clean and "&x=1" in clean
    assert redact("{'X-Finnhub-Token': 'abc123'}") == "{'X-Finnhub-Token': '***'}"


def test_a_request_in_flight_times_out_at_the_cycle_deadline_not_after_its_own_timeout(tmp_path):
    import time as _time

    with FakeFinnhub() as fake:
        fake.set_body("quote", lambda p: (_time.sleep(2.0), {"c": 1.0, "t": 1})[1])  # a slow answer
        gw = FinnhubGateway("test-key", tmp_path / "cache.db", client=fake.client(), max_retries=0,
                            timeout_s=10.0, ttls={"quote": 0})
        started = _time.monotonic()
        with gw.deadline_in(0.5), pytest.raises(TemporaryError):
            gw.quote("AAA")
        assert _time.monotonic() - started < 1.5  # the deadline's 0.5 s, not the slow answer's 2 s
        fake.set_body("quote", {"c": 2.0, "t": 1})
        assert gw.quote("AAA")["c"] == 2.0  # without a deadline the client's own timeout applies
        gw.close()
