"""load_live_dataset and latest_price over the local Finnhub stand-ins (127.0.0.1 only)."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from graph.errors import DataError, OperationalError
from tests.fake_finnhub import FakeFinnhub, FakeTradeServer
from tools.finnhub.gateway import FinnhubGateway
from tools.finnhub.live_market import (
    SOURCE_CANDLES,
    SOURCE_STREAM,
    LiveDataError,
    candles_refused_note,
    fresh_quote_symbols,
    latest_price,
    load_live_dataset,
)
from tools.finnhub.trade_stream import LiveBarBuilder, TradeStream
from tools.universe import select_candidates

KEY = "sk-TEST-KEY-123"
TODAY = date(2024, 3, 15)  # a Friday
NY = ZoneInfo("America/New_York")


def ny_ts(day: date, hour: int, minute: int = 0) -> int:
    """Epoch seconds of a New York wall-clock time."""
    return int(datetime(day.year, day.month, day.day, hour, minute, tzinfo=NY).timestamp())


@pytest.fixture
def fake():
    with FakeFinnhub(token=KEY) as server:
        yield server


@pytest.fixture
def gateway(fake, tmp_path):
    gw = FinnhubGateway(KEY, tmp_path / "finnhub_cache.db", client=fake.client(KEY), sleep=lambda s: None)
    yield gw
    gw.close()


def stream_with(trades: list[tuple[str, float, float, int]]) -> TradeStream:
    """A stream that is not connected, its builder filled with ``(symbol, price, volume, epoch s)``."""
    builder = LiveBarBuilder()
    for symbol, price, volume, ts in trades:
        builder.add_trade(symbol, price, volume, ts * 1000)
    return TradeStream(KEY, [], url="ws://127.0.0.1:9", builder=builder)


def test_daily_candles_when_the_plan_allows(fake, gateway):
    dataset, notes = load_live_dataset(gateway, ["aapl", "MSFT", "AAPL"], TODAY)
    assert notes == [] and dataset.source == SOURCE_CANDLES
    assert sorted(dataset.bars) == ["AAPL", "MSFT"]
    as_of = pd.Timestamp(TODAY)
    bars = dataset.history("AAPL", as_of)
    assert bars.index[-1] == as_of and bars.index[0] >= as_of - pd.Timedelta(days=120)
    assert len(bars) == len(pd.bdate_range(TODAY - timedelta(days=120), TODAY)) == 87
    assert dataset.data_error("AAPL", as_of, 50) is None
    # Point-in-time slicing is the replay's: nothing after the as-of day is visible.
    assert dataset.history("AAPL", as_of - pd.Timedelta(days=3)).index[-1] == pd.Timestamp("2024-03-12")
    selection = select_candidates(dataset, as_of, k=1, held=[], watchlist=["AAPL", "MSFT"])
    assert len(selection.candidates) == 1 and selection.eligible == 2
    assert fake.count("stock/candle") == 2 and fake.count("quote") == 0


def test_a_symbol_without_candles_gets_a_data_error(fake, gateway):
    fake.no_data.add("NODATA")
    dataset, notes = load_live_dataset(gateway, ["AAPL", "NODATA"], TODAY)
    error = dataset.data_error("NODATA", pd.Timestamp(TODAY), 50)
    assert isinstance(error, DataError) and "no daily candles" in error.reason
    assert dataset.data_error("AAPL", pd.Timestamp(TODAY), 50) is None and notes == []


def test_refused_candles_fall_back_to_stream_and_quote(fake, gateway):
    fake.refuse("stock/candle")
    fake.quotes["AAPL"] = {"c": 105.0, "d": 1.0, "dp": 0.96, "h": 106.0, "l": 101.0, "o": 102.0, "pc": 104.0,
                           "t": ny_ts(TODAY, 15, 30)}
    fake.quotes["GONE"] = {"c": 0, "d": None, "dp": None, "h": 0, "l": 0, "o": 0, "pc": 0, "t": 0}
    stream = stream_with([
        ("AAPL", 100.0, 10, ny_ts(date(2024, 3, 13), 10)),
        ("AAPL", 101.0, 20, ny_ts(date(2024, 3, 13), 15)),
        ("AAPL", 101.5, 5, ny_ts(date(2024, 3, 14), 11)),
        ("AAPL", 104.0, 7, ny_ts(TODAY, 10)),  # today's bar takes the quote's prices, this volume
        ("AAPL", 999.0, 1, ny_ts(date(2024, 3, 18), 10)),  # after today: never visible
    ])
    dataset, notes = load_live_dataset(gateway, ["AAPL", "MSFT", "GONE"], TODAY, stream=stream)

    assert notes == [candles_refused_note(50, stream=True)]
    assert notes[0] == ("candles not available on this Finnhub plan: bars built from the trade stream and "
                        "quotes; indicators need 50 days of history")
    assert dataset.source == SOURCE_STREAM
    aapl = dataset.history("AAPL", pd.Timestamp("2024-03-20"))
    assert [d.strftime("%m-%d") for d in aapl.index] == ["03-13", "03-14", "03-15"]
    assert aapl.iloc[0].to_dict() == {"open": 100.0, "high": 101.0, "low": 100.0, "close": 101.0, "volume": 30.0}
    assert aapl.iloc[-1].to_dict() == {"open": 102.0, "high": 106.0, "low": 101.0, "close": 105.0, "volume": 7.0}
    as_of = pd.Timestamp(TODAY)
    # MSFT: no trades, and its quote (the fake's default) is stamped now, years after TODAY.
    msft = dataset.data_error("MSFT", as_of, 50)
    assert isinstance(msft, DataError) and "no trades on the stream" in msft.reason
    too_little = dataset.data_error("AAPL", as_of, 50)
    assert isinstance(too_little, DataError) and "too little history: 3 bars" in too_little.reason
    gone = dataset.data_error("GONE", as_of, 50)
    assert isinstance(gone, DataError) and "no live data" in gone.reason
    assert fake.count("stock/candle") == 1  # refused once, never asked again

    again, notes_again = load_live_dataset(gateway, ["AAPL"], TODAY, stream=stream)
    assert fake.count("stock/candle") == 1 and len(notes_again) == 1
    assert len(again.history("AAPL", as_of)) == 3


def test_refused_candles_without_a_stream_use_the_quote_alone(fake, gateway):
    fake.refuse("stock/candle")
    fake.quotes["AAPL"] = {"c": 105.0, "h": 106.0, "l": 101.0, "o": 102.0, "pc": 104.0, "t": ny_ts(TODAY, 12)}
    fake.quotes["LATER"] = {"c": 50.0, "h": 51.0, "l": 49.0, "o": 50.0, "pc": 50.0,
                            "t": ny_ts(TODAY + timedelta(days=3), 12)}
    dataset, notes = load_live_dataset(gateway, ["AAPL", "LATER"], TODAY)
    assert notes == [candles_refused_note(50, stream=False)] and "quotes only" in notes[0]
    bars = dataset.history("AAPL", pd.Timestamp(TODAY))
    assert len(bars) == 1 and bars.iloc[0]["close"] == 105.0 and bars.iloc[0]["volume"] == 0.0
    later = dataset.data_error("LATER", pd.Timestamp(TODAY), 50)
    assert isinstance(later, DataError) and "no live data" in later.reason


def test_no_data_at_all_is_one_operational_error(fake, gateway):
    fake.refuse("stock/candle")
    fake.refuse("quote")
    with pytest.raises(LiveDataError) as exc:
        load_live_dataset(gateway, ["AAPL"], TODAY)
    assert isinstance(exc.value, OperationalError) and "\n" not in str(exc.value)
    assert KEY not in str(exc.value)
    with pytest.raises(LiveDataError, match="watchlist is empty"):
        load_live_dataset(gateway, [" "], TODAY)


def test_live_stream_into_the_dataset(fake, gateway):
    """The whole path: trades over a WebSocket -> bars -> MarketDataset."""
    fake.refuse("stock/candle")
    now = time.time()
    today = datetime.fromtimestamp(now, NY).date()
    fake.quotes["AAPL"] = {"c": 190.0, "h": 191.0, "l": 188.0, "o": 189.0, "pc": 187.0, "t": int(now)}
    with FakeTradeServer(token=KEY) as server:
        stream = TradeStream(KEY, ["AAPL"], url=server.url, backoff_base_s=0.01).start()
        try:
            assert server.wait_for(lambda s: s.subscribed("AAPL"))
            server.send_trades([{"s": "AAPL", "p": 189.5, "v": 300, "t": int(now * 1000)}])
            deadline = time.monotonic() + 5
            while stream.builder.last_price("AAPL") is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not stream.is_stale("AAPL", max_age_s=60)
            dataset, notes = load_live_dataset(gateway, ["AAPL"], today, stream=stream)
        finally:
            stream.stop()
    bar = dataset.history("AAPL", pd.Timestamp(today)).iloc[-1]
    assert (bar["open"], bar["close"], bar["volume"]) == (189.0, 190.0, 300.0) and len(notes) == 1


def test_latest_price_is_the_quote(fake, gateway):
    fake.quotes["AAPL"] = {"c": 187.5, "h": 188, "l": 186, "o": 186.5, "pc": 186, "t": 1_700_000_000}
    assert latest_price(gateway, "aapl") == 187.5
    assert latest_price(gateway, "AAPL", max_age_s=60, now=1_700_000_030) == 187.5
    with pytest.raises(DataError, match="old"):
        latest_price(gateway, "AAPL", max_age_s=60, now=1_700_000_061)
    fake.quotes["NOPE"] = {"c": 0, "h": 0, "l": 0, "o": 0, "pc": 0, "t": 0}
    with pytest.raises(DataError, match="no live quote"):
        latest_price(gateway, "NOPE")


def test_candle_timestamps_are_trading_dates(fake, gateway):
    """Finnhub stamps daily candles at 00:00 UTC of the trading day: the date must not shift."""
    fake.set_body("stock/candle", {"s": "ok", "t": [int(datetime(2024, 3, 14, tzinfo=UTC).timestamp())],
                                   "o": [1.0], "h": [2.0], "l": [0.5], "c": [1.5], "v": [100]})
    frame = gateway.daily_candles("AAPL", date(2024, 3, 1), TODAY)
    assert list(frame.index) == [pd.Timestamp("2024-03-14")]


def test_fresh_quote_symbols_need_a_price_and_a_recent_time(fake, gateway):
    now = 1_700_000_000
    fake.quotes["AAPL"] = {"c": 187.5, "h": 188, "l": 186, "o": 187, "pc": 186, "t": now - 30}
    fake.quotes["MSFT"] = {"c": 410.0, "h": 411, "l": 409, "o": 410, "pc": 409, "t": now - 3600}  # old
    fake.quotes["NVDA"] = {"c": 900.0, "h": 901, "l": 899, "o": 900, "pc": 899, "t": 0}  # unstamped
    fake.quotes["NOPE"] = {"c": 0, "h": 0, "l": 0, "o": 0, "pc": 0, "t": 0}  # unknown symbol
    assert fresh_quote_symbols(gateway, ["AAPL", "MSFT", "NVDA", "NOPE"], 600, now=now) == ["AAPL"]
    assert latest_price(gateway, "NVDA", max_age_s=600, now=now) == 900.0  # a fill may use it...
    with pytest.raises(DataError, match="no time"):
        latest_price(gateway, "NVDA", max_age_s=600, now=now, require_time=True)  # ...not as proof


def test_fresh_quote_symbols_skip_a_refused_quote(fake, gateway):
    fake.refuse("quote")
    assert fresh_quote_symbols(gateway, ["AAPL"], 600) == []
