"""A hostile trade stream: floods of unknown symbols and malformed messages (127.0.0.1 only).

Every case sends the bad input and then one good trade over the same connection, and checks
that the good trade was applied, the bad input counted by reason, and the connection never
re-opened (one handshake, one connect).
"""

from __future__ import annotations

import json
import logging
import time
import tracemalloc
from collections.abc import Callable

import pytest
from conftest import eventually as wait_until

from tests.fake_finnhub import FakeTradeServer
from tools.finnhub.trade_stream import MAX_AHEAD_S, LiveBarBuilder, TradeStream, parse_trade

KEY = "sk-HOSTILE-TEST-KEY-42"
NOW_MS = int(time.time() * 1000)


def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    return wait_until(predicate, timeout)  # hostile floods get more time than the plain stream tests


@pytest.fixture
def server():
    with FakeTradeServer(token=KEY) as s:
        yield s


@pytest.fixture
def connect(server):
    made: list[TradeStream] = []

    def make(symbols=("AAPL", "MSFT"), **kw) -> TradeStream:
        stream = TradeStream(KEY, symbols, url=server.url, backoff_base_s=0.01, **kw)
        made.append(stream)
        stream.start()
        assert server.wait_for(lambda s: all(s.subscribed(x) for x in symbols))
        assert stream.wait_connected(5)
        return stream

    yield make
    for stream in made:
        stream.stop()


def trade(symbol: str = "AAPL", price: object = 100.0, ts: object = None, **extra) -> dict:
    return {"s": symbol, "p": price, "v": 10, "t": NOW_MS if ts is None else ts, **extra}


def send_good_trade_and_check(server: FakeTradeServer, stream: TradeStream, price: float) -> None:
    """The next good trade is applied over the same, never re-opened, connection."""
    server.send_raw(json.dumps({"type": "trade", "data": [trade("AAPL", price, NOW_MS + 1)]}))
    assert eventually(lambda: stream.builder.last_price("AAPL") == price)
    assert stream.connected and stream.connections == 1 and stream.reconnects == 0
    assert server.handshakes == 1 and server.accepted == 1 and server.open_connections == 1


def test_flood_of_unknown_symbols_keeps_memory_bounded_and_the_connection(server, connect):
    stream = connect()
    per_message, messages = 500, 120  # 60,000 trades over 6,000 symbols nobody subscribed to
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for m in range(messages):
            data = [trade(f"ZZ{(m * per_message + i) % 6000:05d}", 10.0 + i % 7, NOW_MS - i)
                    for i in range(per_message)]
            server.send_raw(json.dumps({"type": "trade", "data": data}))
        assert eventually(lambda: stream.dropped.get("unsubscribed", 0) == per_message * messages)
        send_good_trade_and_check(server, stream, 190.25)
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    assert stream.builder.symbols == ["AAPL"]  # never more than the subscription set
    assert set(stream.builder.symbols) <= set(stream.symbols)
    assert stream.builder.trades_seen == 1
    # 6,000 symbols' bars would be megabytes; what is left is the test's own bookkeeping
    assert grown < 2_000_000, grown


def raw_price(literal: str) -> str:
    """A trade message whose price is a JSON literal ``json.dumps`` would not write."""
    return '{"type": "trade", "data": [{"s": "AAPL", "p": ' + literal + ', "v": 1, "t": ' + str(NOW_MS) + "}]}"


HOSTILE = {
    "not_json": ["not json", "{\"type\": \"trade\", \"data\": [", "\x00\xff garbage",
                 "[" * 50_000 + "]" * 50_000],  # nested past the parser's recursion limit
    "not_object": ["[1, 2, 3]", "42", "null", '"trade"', '{"data": []}', '{"type": 7}'],
    "bad_data": ['{"type": "trade", "data": {"s": "AAPL", "p": 1}}', '{"type": "trade", "data": "x"}',
                 '{"type": "trade"}'],
    "bad_trade": [json.dumps({"type": "trade", "data": [7, "AAPL", None, [1, 2]]}),
                  json.dumps({"type": "trade", "data": [{"p": 1.0, "t": NOW_MS}, {"s": "AAPL", "t": NOW_MS},
                                                        {"s": "AAPL", "p": 1.0}, {"s": 5, "p": 1, "t": NOW_MS}]})],
    "bad_price": [json.dumps({"type": "trade", "data": [trade(price=p) for p in ("abc", -1.0, 0, True, [1])]}),
                  raw_price("NaN"),
                  raw_price("Infinity"),
                  raw_price("1e999")],
    "bad_volume": [json.dumps({"type": "trade", "data": [dict(trade(), v=-5), dict(trade(), v="lots")]})],
    "bad_timestamp": [json.dumps({"type": "trade", "data": [trade(ts=t) for t in
                                                            (10**30, -1, 0, 123, "soon", 253402300800000,
                                                             NOW_MS + int(2 * MAX_AHEAD_S * 1000))]}),
                      '{"type": "trade", "data": [{"s": "AAPL", "p": 1, "v": 1, "t": 1e400}]}'],
}


@pytest.mark.parametrize("reason", sorted(HOSTILE))
def test_malformed_messages_are_dropped_counted_and_never_fatal(server, connect, reason):
    stream = connect()
    send_good_trade_and_check(server, stream, 101.0)
    for text in HOSTILE[reason]:
        server.send_raw(text)
    send_good_trade_and_check(server, stream, 102.0)
    dropped = stream.dropped
    assert dropped.get(reason, 0) >= len(HOSTILE[reason]), dropped
    assert set(dropped) == {reason}, dropped  # counted under the right reason only
    assert stream.builder.trades_seen == 2
    assert stream.builder.daily_bars("AAPL")["high"].max() == 102.0  # no bad price reached a bar


def test_huge_message_is_dropped_without_parsing(server, connect):
    stream = connect(max_message_chars=100_000)
    payload = {"type": "trade", "data": [trade("AAPL", 5000.0)] * 20_000}  # ~1 MB, all "valid"
    server.send_raw(json.dumps(payload))
    send_good_trade_and_check(server, stream, 103.0)
    assert stream.dropped == {"too_large": 1}
    assert stream.builder.last_price("AAPL") == 103.0 and stream.builder.trades_seen == 1


def test_a_mixed_message_keeps_its_good_trades(server, connect):
    stream = connect()
    server.send_raw(json.dumps({"type": "trade", "data": [
        trade("AAPL", "x"), trade("NOPE", 1.0), trade("MSFT", 410.0), None, trade("AAPL", 99.5, NOW_MS - 5)]}))
    # the message's trades are applied one by one: wait for the last of them, not the first
    assert eventually(lambda: stream.builder.last_price("AAPL") == 99.5 and sum(stream.dropped.values()) == 3)
    assert stream.builder.last_price("MSFT") == 410.0
    assert stream.dropped == {"bad_price": 1, "unsubscribed": 1, "bad_trade": 1}


def test_drops_are_logged_once_per_reason_per_interval(server, connect, caplog):
    caplog.set_level(logging.WARNING, logger="volt.stream")
    stream = connect(log_every_s=3600)
    for _ in range(50):
        server.send_raw("garbage")
        server.send_raw(json.dumps({"type": "trade", "data": [trade("ZZZZ")]}))
        server.send_raw('{"type": "error", "msg": "Subscribing to too many symbols"}')
    send_good_trade_and_check(server, stream, 104.0)
    assert stream.dropped == {"not_json": 50, "unsubscribed": 50}
    assert len(stream.errors) == 50
    lines = [r.getMessage() for r in caplog.records if r.name == "volt.stream"]
    assert len([x for x in lines if "not_json" in x]) == 1
    assert len([x for x in lines if "unsubscribed" in x]) == 1
    assert len([x for x in lines if "from server" in x]) == 1
    assert KEY not in caplog.text


def test_drop_log_repeats_after_the_interval(server, connect, caplog):
    caplog.set_level(logging.WARNING, logger="volt.stream")
    now = [1_000.0]
    stream = connect(clock=lambda: now[0], log_every_s=60)
    server.send_raw("garbage")
    assert eventually(lambda: stream.dropped.get("not_json") == 1)
    server.send_raw("garbage")
    assert eventually(lambda: stream.dropped.get("not_json") == 2)
    now[0] += 61
    server.send_raw("garbage")
    assert eventually(lambda: stream.dropped.get("not_json") == 3)
    lines = [r.getMessage() for r in caplog.records if "not_json" in r.getMessage()]
    assert len(lines) == 2 and lines[-1].endswith("3 so far")


def test_error_messages_are_capped(server, connect):
    stream = connect()
    for i in range(150):
        server.send_raw(json.dumps({"type": "error", "msg": f"e{i}"}))
    send_good_trade_and_check(server, stream, 105.0)
    assert len(stream.errors) == 100 and stream.errors[-1] == "e149"


def test_unsubscribe_forgets_the_symbol_and_drops_its_late_trades(server, connect):
    stream = connect(("AAPL", "MSFT"))
    server.send_raw(json.dumps({"type": "trade", "data": [trade("MSFT", 400.0)]}))
    assert eventually(lambda: stream.builder.last_price("MSFT") == 400.0)
    stream.unsubscribe("MSFT")
    assert server.wait_for(lambda s: s.subscribed("MSFT") == 0)
    assert stream.builder.symbols == [] and stream.builder.daily_bars("MSFT").empty
    server.send_raw(json.dumps({"type": "trade", "data": [trade("MSFT", 401.0)]}))
    send_good_trade_and_check(server, stream, 106.0)
    assert stream.dropped == {"unsubscribed": 1} and stream.builder.symbols == ["AAPL"]


def test_wait_for_trades_returns_when_all_traded_or_on_timeout(server, connect):
    stream = connect(("AAPL", "MSFT"))
    started = time.monotonic()
    assert stream.wait_for_trades(timeout=0.2) == ["AAPL", "MSFT"]
    assert 0.15 < time.monotonic() - started < 2
    server.send_raw(json.dumps({"type": "trade", "data": [trade("AAPL", 100.0)]}))
    assert stream.wait_for_trades(timeout=0.2) == ["MSFT"]
    server.send_raw(json.dumps({"type": "trade", "data": [trade("MSFT", 400.0)]}))
    started = time.monotonic()
    assert stream.wait_for_trades(timeout=30) == []
    assert time.monotonic() - started < 5  # woken by the trade, not by the timeout


def test_wait_for_trades_gives_up_when_the_stream_fails(server):
    server.reject_next = 100
    stream = TradeStream(KEY, ["AAPL"], url=server.url, max_retries=0, sleep=lambda s: None)
    stream.start()
    try:
        started = time.monotonic()
        assert stream.wait_for_trades(timeout=30) == ["AAPL"]
        assert time.monotonic() - started < 5 and stream.status == "failed"
    finally:
        stream.stop()


@pytest.mark.parametrize("item, expected", [
    ({"s": "AAPL", "p": 1.5, "v": 2, "t": NOW_MS}, None),
    ({"s": "AAPL", "p": "1.5", "t": NOW_MS}, None),  # volume optional, numeric string price
    ({"s": "AAPL", "p": float("nan"), "t": NOW_MS}, "bad_price"),
    ({"s": "AAPL", "p": float("-inf"), "t": NOW_MS}, "bad_price"),
    ({"s": "AAPL", "p": 1.0, "v": float("inf"), "t": NOW_MS}, "bad_volume"),
    ({"s": "AAPL", "p": 1.0, "t": float("nan")}, "bad_timestamp"),
    ({"s": "", "p": 1.0, "t": NOW_MS}, "bad_trade"),
    ("AAPL", "bad_trade"),
])
def test_parse_trade(item, expected):
    result = parse_trade(item, NOW_MS / 1000)
    assert (result if isinstance(result, str) else None) == expected


def test_builder_rejects_non_finite_and_out_of_range_values():
    b = LiveBarBuilder()
    assert not b.add_trade("AAPL", float("inf"), 1, NOW_MS)
    assert not b.add_trade("AAPL", float("nan"), 1, NOW_MS)
    assert not b.add_trade("AAPL", 1.0, float("inf"), NOW_MS)
    assert not b.add_trade("AAPL", 1.0, 1, 10**30)  # would overflow datetime
    assert not b.add_trade("AAPL", 1.0, 1, float("inf"))
    assert not b.add_trade("AAPL", 1.0, 1, -5)
    assert b.add_trade("AAPL", 1.0, 1, NOW_MS) and b.trades_seen == 1
