"""LiveBarBuilder and TradeStream against a local WebSocket trade server (127.0.0.1 only)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pandas as pd
import pytest
from conftest import eventually

from tests.fake_finnhub import FakeTradeServer
from tools.finnhub.trade_stream import LiveBarBuilder, Trade, TradeStream

KEY = "sk-TEST-KEY-123"


def ms(text: str) -> int:
    """Epoch milliseconds of an ISO UTC time."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)




class Clock:
    def __init__(self, now: float = 1_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---- LiveBarBuilder ---------------------------------------------------------------------------------


def test_trades_aggregate_into_daily_and_intraday_bars():
    b = LiveBarBuilder(interval_minutes=5)
    # 2024-03-04 is a Monday; 14:31 UTC is 09:31 in New York.
    b.add_trade("AAPL", 100.0, 10, ms("2024-03-04T14:31:00"))
    b.add_trade("AAPL", 103.0, 5, ms("2024-03-04T14:33:00"))
    b.add_trade("AAPL", 99.0, 7, ms("2024-03-04T14:36:00"))
    b.add_trade("AAPL", 101.0, 3, ms("2024-03-04T14:30:30"))  # late arrival, earliest time: the open
    b.add_trade("AAPL", 102.0, 1, ms("2024-03-05T15:00:00"))
    assert not b.add_trade("AAPL", 0.0, 1, ms("2024-03-05T15:01:00"))  # not a price
    assert not b.add_trade("AAPL", "bad", 1, ms("2024-03-05T15:01:00"))

    daily = b.daily_bars("AAPL")
    assert list(daily.index) == [pd.Timestamp("2024-03-04"), pd.Timestamp("2024-03-05")]
    assert daily.iloc[0].to_dict() == {"open": 101.0, "high": 103.0, "low": 99.0, "close": 99.0, "volume": 25.0}
    assert daily.iloc[1]["close"] == 102.0

    intraday = b.intraday_bars("AAPL")
    assert list(intraday.index[:2]) == [pd.Timestamp("2024-03-04T14:30", tz="UTC"),
                                        pd.Timestamp("2024-03-04T14:35", tz="UTC")]
    assert intraday.iloc[0][["open", "high", "low", "close", "volume"]].tolist() == [101.0, 103.0, 100.0, 103.0, 18.0]
    assert intraday.iloc[1]["close"] == 99.0
    assert b.last_price("AAPL") == 102.0 and b.symbols == ["AAPL"]
    assert b.daily_bars("MSFT").empty and b.intraday_bars("MSFT").empty


def test_daily_bars_use_the_exchange_date():
    b = LiveBarBuilder()
    b.add_trade("AAPL", 100.0, 1, ms("2024-03-05T01:30:00"))  # 20:30 on March 4 in New York
    assert b.daily_bars("AAPL").index[0] == pd.Timestamp("2024-03-04")
    hourly = LiveBarBuilder(interval_minutes=60)
    hourly.add_trade("AAPL", 100.0, 1, ms("2024-03-05T01:30:00"))
    assert hourly.intraday_bars("AAPL").index[0] == pd.Timestamp("2024-03-05T01:00", tz="UTC")


def test_stale_feed_detection():
    clock = Clock(1_000.0)
    b = LiveBarBuilder(clock=clock)
    assert b.is_stale("AAPL", now=1_000.0, max_age_s=60)  # never traded
    b.add_trade("AAPL", 100.0, 1, ms("2024-03-04T14:31:00"))  # arrives at 1000
    assert not b.is_stale("AAPL", now=1_059.0, max_age_s=60)
    assert b.is_stale("AAPL", now=1_061.0, max_age_s=60)
    clock.now = 1_100.0
    assert b.is_stale("AAPL", None, 60)  # now defaults to the clock
    b.add_trade("AAPL", 100.5, 1, ms("2024-03-04T14:32:00"))
    assert not b.is_stale("AAPL", None, 60)
    assert b.stale_symbols(["AAPL", "MSFT"], now=1_150.0, max_age_s=60) == ["MSFT"]

    stream = TradeStream(KEY, ["AAPL", "MSFT"], url="ws://127.0.0.1:9", builder=b, stale_after_s=30)
    assert stream.stale_symbols(now=1_120.0) == ["MSFT"]
    assert stream.is_stale("AAPL", now=1_131.0) and not stream.is_stale("AAPL", now=1_131.0, max_age_s=60)


# ---- TradeStream ----------------------------------------------------------------------------------------


@pytest.fixture
def server():
    with FakeTradeServer(token=KEY) as s:
        yield s


@pytest.fixture
def streams():
    made: list[TradeStream] = []
    yield made
    for stream in made:
        stream.stop()


def test_stream_subscribes_feeds_bars_reconnects_and_hides_the_key(server, streams, caplog):
    caplog.set_level(logging.DEBUG)
    seen: list[Trade] = []
    stream = TradeStream(KEY, ["AAPL", "MSFT"], url=server.url, backoff_base_s=0.01, on_trade=seen.append)
    streams.append(stream)
    stream.start()
    assert server.wait_for(lambda s: s.subscribed("AAPL") and s.subscribed("MSFT"))
    assert stream.wait_connected(2) and stream.status == "connected"

    server.send_ping()  # ignored
    server.send_raw("not json")  # ignored
    server.send_trades([{"s": "AAPL", "p": 190.5, "v": 100, "t": ms("2024-03-04T14:31:00"), "c": ["1"]},
                        {"s": "AAPL", "p": 191.0, "v": 50, "t": ms("2024-03-04T14:31:05")}])
    assert eventually(lambda: stream.builder.last_price("AAPL") == 191.0)
    assert [t.price for t in seen] == [190.5, 191.0]
    assert stream.dropped == {"not_json": 1}  # the non-JSON message: counted, the ping is not

    server.drop()  # the connection dies without a close frame
    assert server.wait_for(lambda s: s.accepted >= 2 and s.subscribed("AAPL") and s.subscribed("MSFT"))
    assert eventually(lambda: stream.connected)
    assert stream.reconnects == 1 and stream.backoffs == [0.01]
    server.send_trades([{"s": "MSFT", "p": 410.0, "v": 10, "t": ms("2024-03-04T14:32:00")}])
    assert eventually(lambda: stream.builder.last_price("MSFT") == 410.0)
    assert stream.builder.daily_bars("AAPL").iloc[0]["volume"] == 150.0

    stream.subscribe("TSLA")
    assert server.wait_for(lambda s: s.subscribed("TSLA") == 1)
    stream.unsubscribe("TSLA")
    assert server.wait_for(lambda s: s.subscribed("TSLA") == 0)
    server.send_raw('{"type": "error", "msg": "Subscribing to too many symbols"}')
    assert eventually(lambda: stream.errors == ["Subscribing to too many symbols"])

    stream.stop()
    assert stream.status == "stopped" and not stream.running
    # The key went to the server in the URL, and nowhere else.
    assert all(f"token={KEY}" in path for path in server.paths)
    assert KEY not in stream.url and stream.url.endswith("token=***")
    assert stream.last_error and KEY not in stream.last_error
    assert all(KEY not in r.getMessage() for r in caplog.records) and KEY not in caplog.text


def test_reconnect_backoff_is_exponential_and_bounded(server, streams):
    server.reject_next = 3
    waits: list[float] = []
    stream = TradeStream(KEY, ["AAPL"], url=server.url, backoff_base_s=0.5, backoff_max_s=1.5,
                         sleep=waits.append)
    streams.append(stream)
    stream.start()
    assert server.wait_for(lambda s: s.subscribed("AAPL"))
    assert waits == [0.5, 1.0, 1.5] and stream.backoffs == waits
    assert server.handshakes == 4 and stream.connections == 1
    assert "503" in (stream.last_error or "") and KEY not in (stream.last_error or "")


def test_stream_gives_up_after_max_retries(server, streams, caplog):
    server.reject_next = 100
    stream = TradeStream(KEY, ["AAPL"], url=server.url, max_retries=2, backoff_base_s=0.01, sleep=lambda s: None)
    streams.append(stream)
    stream.start()
    assert eventually(lambda: not stream.running)
    assert stream.status == "failed" and stream.backoffs == [0.01, 0.02] and server.handshakes == 3
    assert KEY not in caplog.text


def test_wrong_key_is_refused_and_not_logged(server, streams, caplog):
    caplog.set_level(logging.DEBUG)
    stream = TradeStream("sk-WRONG-KEY-999", ["AAPL"], url=server.url, max_retries=0, sleep=lambda s: None)
    streams.append(stream)
    stream.start()
    assert eventually(lambda: stream.status == "failed")
    assert "401" in (stream.last_error or "")
    assert "sk-WRONG-KEY-999" not in caplog.text and "sk-WRONG-KEY-999" not in stream.last_error


def test_stream_keeps_only_subscribed_symbols_even_with_a_shared_builder(server, streams):
    builder = LiveBarBuilder()
    stream = TradeStream(KEY, ["AAPL"], url=server.url, builder=builder)
    streams.append(stream)
    stream.start()
    assert server.wait_for(lambda s: s.subscribed("AAPL"))
    t = ms("2024-03-04T14:31:00")
    server.send_raw(json.dumps({"type": "trade", "data": [{"s": "MSFT", "p": 1, "v": 1, "t": t},
                                                          {"s": "AAPL", "p": 2, "v": 1, "t": t}]}))
    assert eventually(lambda: builder.last_price("AAPL") == 2.0)
    assert builder.symbols == ["AAPL"] and stream.dropped == {"unsubscribed": 1}
    stream.subscribe("MSFT")  # from now on MSFT's trades are kept
    assert server.wait_for(lambda s: s.subscribed("MSFT"))
    server.send_trades([{"s": "MSFT", "p": 3, "v": 1, "t": ms("2024-03-04T14:32:00")}])
    assert eventually(lambda: builder.last_price("MSFT") == 3.0)
    assert builder.symbols == ["AAPL", "MSFT"]
