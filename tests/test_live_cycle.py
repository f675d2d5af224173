"""``python -m graph.run --source finnhub`` end to end against a local Finnhub stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import finnhub
import pytest
from conftest import scripted

from graph.run import main
from tests.fake_finnhub import FakeFinnhub, default_quote

KEY = "sk-LIVE-TEST-KEY-987"


@pytest.fixture
def fake(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    for var in ("VOLT_WATCHLIST", "VOLT_SOURCE", "VOLT_HOME", "FINNHUB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    with FakeFinnhub(token=KEY) as server:
        monkeypatch.setattr(finnhub.Client, "API_URL", server.base_url)
        yield server


def files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_live_cycle_trades_at_the_quote_and_never_writes_the_key(fake, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FINNHUB_API_KEY", KEY)
    home = tmp_path / "home"
    args = ["--source", "finnhub", "--watchlist", "AAPL,MSFT,NVDA", "--top-k", "3", "--home", str(home), "--json"]
    assert main(args, chat_model_factory=lambda spec: scripted()) == 0
    doc = json.loads(capsys.readouterr().out)
    assert sorted(doc["candidates"]) == ["AAPL", "MSFT", "NVDA"]
    assert doc["data_notes"] == []  # candles allowed on this plan
    # the specialists had live data: SentimentAgent voted instead of abstaining
    sentiment = [s for s in doc["signals"] if s["agent"] == "sentiment_agent"]
    assert sentiment and all(s["source"] == "model" for s in sentiment)
    assert all("sentiment_agent" in c["votes"] for c in doc["consensus"].values())
    # fills at the live quote (plus slippage), dated the decision day
    assert doc["fills"]
    for fill in doc["fills"]:
        assert fill["reference_price"] == pytest.approx(default_quote(fill["symbol"], 0)["c"])
        assert fill["price"] > fill["reference_price"] and fill["fill_date"] == doc["as_of"]
    # the server got the key, nothing VOLT wrote contains it
    assert any(r.header_token == KEY or r.query_token == KEY for r in fake.requests)
    assert files_containing(tmp_path, KEY.encode()) == []
    # one live cycle per daily bar
    assert main(args, chat_model_factory=lambda spec: scripted()) == 2
    assert "already complete" in capsys.readouterr().err


def test_missing_key_is_one_line_and_exit_2(fake, tmp_path, capsys):
    assert main(["--source", "finnhub", "--home", str(tmp_path / "h"), "--models", ""]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "FINNHUB_API_KEY" in err and "\n" not in err


def test_key_from_dotenv_and_refused_candles_say_so_once(fake, tmp_path, monkeypatch, capsys):
    (tmp_path / ".env").write_text(f"FINNHUB_API_KEY={KEY}\n")
    fake.refuse("stock/candle")
    home = tmp_path / "home"
    assert main(["--source", "finnhub", "--watchlist", "AAPL,MSFT", "--home", str(home), "--models", ""]) == 0
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    assert sum("candles" in n for n in notes) == 1  # said once
    # with only today's quote there is too little history: a note, never a trade
    assert any("too little history" in n for n in notes) and "orders: none" in out
    assert files_containing(home, KEY.encode()) == []


def test_stale_feed_symbol_is_neither_decided_on_nor_filled(fake, tmp_path, monkeypatch):
    import time as _time

    from graph.run import run_cycle
    from graph.settings import VoltSettings
    from tools.finnhub.trade_stream import LiveBarBuilder, TradeStream

    monkeypatch.setenv("FINNHUB_API_KEY", KEY)
    builder = LiveBarBuilder()
    now_ms = int(_time.time() * 1000)
    builder.add_trade("AAPL", 101.0, 10, now_ms)  # a live feed for AAPL; MSFT never traded
    fake.quotes["MSFT"] = default_quote("MSFT", int(_time.time()) - 3600)  # and its quote is old
    stream = TradeStream(KEY, ["AAPL", "MSFT"], url="ws://127.0.0.1:9", builder=builder)  # not started
    settings = VoltSettings(home=tmp_path / "home", source="finnhub", watchlist=["AAPL", "MSFT"], models=["m1"],
                            top_k=2, stale_after_s=600)
    state = run_cycle(settings, chat_model_factory=lambda s: scripted(), stream=stream).state
    assert state["candidates"] == ["AAPL"]
    [err] = [e for e in state["data_errors"] if e["symbol"] == "MSFT"]
    assert "stale feed" in err["message"]
    assert [f["symbol"] for f in state["fills"]] == ["AAPL"]


def test_replay_loop_runs_cycles_until_told_or_the_data_ends(tmp_path, settings_for, capsys):
    from conftest import synthetic_frame

    path = tmp_path / "short.csv"
    synthetic_frame({"AAA": 0.2, "BBB": 0.1}, days=53).to_csv(path, index=False)  # 3 tradable days
    home = tmp_path / "home"
    assert main(["--data-csv", str(path), "--home", str(home), "--models", "", "--loop", "0", "--cycles", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("VOLT cycle ") == 2
    assert main(["--data-csv", str(path), "--home", str(home), "--models", "", "--loop", "0"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("VOLT cycle ") == 1  # the third and last tradable day
    assert "loop finished: replay finished" in captured.err


# ---- the live loop: stream warm-up and stale days ------------------------------------------------


def test_a_fresh_quote_stands_in_for_a_symbol_without_stream_trades(fake, tmp_path, monkeypatch):
    import time as _time

    from graph.run import run_cycle
    from graph.settings import VoltSettings
    from tools.finnhub.trade_stream import LiveBarBuilder, TradeStream

    monkeypatch.setenv("FINNHUB_API_KEY", KEY)
    builder = LiveBarBuilder()
    builder.add_trade("AAPL", 101.0, 10, int(_time.time() * 1000))
    fake.quotes["NVDA"] = {**default_quote("NVDA", 0), "t": 0}  # unstamped: its age is unknown
    stream = TradeStream(KEY, ["AAPL", "MSFT", "NVDA"], url="ws://127.0.0.1:9", builder=builder)
    settings = VoltSettings(home=tmp_path / "home", source="finnhub", watchlist=["AAPL", "MSFT", "NVDA"],
                            models=["m1"], top_k=3, stale_after_s=600)
    state = run_cycle(settings, chat_model_factory=lambda s: scripted(), stream=stream).state
    assert sorted(state["candidates"]) == ["AAPL", "MSFT"]  # MSFT: no trade, but a fresh quote
    [err] = [e for e in state["data_errors"] if e["symbol"] == "NVDA"]
    assert "stale feed" in err["message"]
    assert sorted(f["symbol"] for f in state["fills"]) == ["AAPL", "MSFT"]
    msft = next(f for f in state["fills"] if f["symbol"] == "MSFT")
    assert msft["reference_price"] == pytest.approx(default_quote("MSFT", 0)["c"])


def test_all_stale_is_no_cycle_and_the_day_stays_open(fake, tmp_path, monkeypatch):
    import time as _time

    from graph.errors import CycleDateError
    from graph.run import run_cycle
    from graph.settings import VoltSettings
    from memory.ledger import Ledger
    from tools.finnhub.trade_stream import TradeStream

    monkeypatch.setenv("FINNHUB_API_KEY", KEY)
    for symbol in ("AAPL", "MSFT"):
        fake.quotes[symbol] = default_quote(symbol, int(_time.time()) - 7200)
    stream = TradeStream(KEY, ["AAPL", "MSFT"], url="ws://127.0.0.1:9")  # not started: no trades
    settings = VoltSettings(home=tmp_path / "home", source="finnhub", watchlist=["AAPL", "MSFT"], models=["m1"],
                            stale_after_s=600)
    with pytest.raises(CycleDateError, match="no live price yet"):
        run_cycle(settings, chat_model_factory=lambda s: scripted(), stream=stream)
    assert Ledger(settings.ledger_path).last_completed_cycle(settings.portfolio) is None


@pytest.fixture
def live_loop(fake, tmp_path, monkeypatch):
    """``main`` with ``--loop`` in a thread, against the REST and WebSocket stand-ins."""
    import threading

    from tests.fake_finnhub import FakeTradeServer

    monkeypatch.setenv("FINNHUB_API_KEY", KEY)
    ws = FakeTradeServer(token=KEY)
    monkeypatch.setenv("VOLT_FINNHUB_WS_URL", ws.url)
    monkeypatch.setenv("VOLT_STALE_AFTER_S", "600")
    # the stand-ins trade at any hour: poll instead of sleeping until the next NYSE session
    monkeypatch.setenv("VOLT_MARKET_CALENDAR", "none")
    home = tmp_path / "home"
    threads: list[threading.Thread] = []
    results: list[int] = []

    def start(watchlist: str, warmup: float, *extra: str) -> threading.Thread:
        monkeypatch.setenv("VOLT_STREAM_WARMUP_S", str(warmup))
        args = ["--source", "finnhub", "--watchlist", watchlist, "--top-k", "3", "--home", str(home),
                "--json", "--loop", "0.05", "--cycles", "1", *extra]
        t = threading.Thread(target=lambda: results.append(main(args, chat_model_factory=lambda s: scripted())),
                             daemon=True)
        threads.append(t)
        t.start()
        return t

    yield start, ws, home, results
    for t in threads:  # a failed test leaves its loop waiting: without the key it exits 2
        monkeypatch.delenv("FINNHUB_API_KEY", raising=False)
        t.join(10)
    ws.close()


def live_trades(ws, symbols: list[str], price: float = 100.0) -> None:
    import json as _json
    import time as _time

    now_ms = int(_time.time() * 1000)
    ws.send_raw(_json.dumps({"type": "trade", "data": [{"s": s, "p": price, "v": 5, "t": now_ms} for s in symbols]}))


def test_first_loop_cycle_waits_for_the_warm_up_then_trades(live_loop, fake, capsys):
    start, ws, home, results = live_loop
    thread = start("AAPL,MSFT,NVDA", 60)
    assert ws.wait_for(lambda s: all(s.subscribed(x) for x in ("AAPL", "MSFT", "NVDA")), timeout=10)
    live_trades(ws, ["AAPL", "MSFT"])
    assert fake.count() == 0  # the first cycle has not started: still warming up
    live_trades(ws, ["NVDA"])
    thread.join(60)
    assert results == [0]  # warm-up ended on the last trade, long before its 60 s
    captured = capsys.readouterr()
    assert "warm-up: 3 of 3 symbols traded" in captured.err
    doc = json.loads(captured.out)
    assert sorted(doc["candidates"]) == ["AAPL", "MSFT", "NVDA"] and doc["fills"]
    assert not [e for e in doc.get("errors", []) + doc.get("data_errors", []) if "stale" in str(e)]


def test_stale_symbols_after_the_warm_up_are_skipped_the_rest_decided(live_loop, fake, capsys):
    import time as _time

    start, ws, home, results = live_loop
    fake.quotes["NVDA"] = default_quote("NVDA", int(_time.time()) - 7200)  # NVDA: no trade, old quote
    fake.quotes["MSFT"] = default_quote("MSFT", int(_time.time()) - 7200)  # MSFT: a trade, old quote
    thread = start("AAPL,MSFT,NVDA", 2)
    assert ws.wait_for(lambda s: all(s.subscribed(x) for x in ("AAPL", "MSFT", "NVDA")), timeout=10)
    live_trades(ws, ["MSFT"])
    thread.join(60)
    assert results == [0]
    captured = capsys.readouterr()
    assert "warm-up: 1 of 3 symbols traded; without a trade (quote if fresh): AAPL, NVDA" in captured.err
    doc = json.loads(captured.out)
    assert sorted(doc["candidates"]) == ["AAPL", "MSFT"]  # AAPL by its fresh quote, MSFT by its trade
    assert "NVDA" not in {f["symbol"] for f in doc["fills"]}
    assert "MSFT" not in {f["symbol"] for f in doc["fills"]}  # no fill at an old quote


def test_no_trades_and_no_fresh_quote_leaves_the_day_open_until_prices_arrive(live_loop, fake, capsys):
    import time as _time

    from memory.ledger import Ledger

    start, ws, home, results = live_loop
    for symbol in ("AAPL", "MSFT"):
        fake.quotes[symbol] = default_quote(symbol, int(_time.time()) - 7200)
    thread = start("AAPL,MSFT", 0.2)
    assert ws.wait_for(lambda s: s.subscribed("AAPL") and s.subscribed("MSFT"), timeout=10)
    err, deadline = "", _time.monotonic() + 20
    while "waiting: no live price yet" not in err and _time.monotonic() < deadline:
        _time.sleep(0.05)
        err += capsys.readouterr().err
    _time.sleep(0.5)  # several more attempts (the loop waits 0.05 s between them)
    assert "waiting: no live price yet" in err and thread.is_alive() and results == []
    assert Ledger(home / "volt.db").last_completed_cycle("main") is None  # the day is not done
    live_trades(ws, ["AAPL", "MSFT"])  # prices arrive: the next attempt runs the day's cycle
    thread.join(60)
    assert results == [0]
    captured = capsys.readouterr()
    assert (err + captured.err).count("waiting: no live price yet") == 1  # said once, not per attempt
    doc = json.loads(captured.out)
    assert sorted(doc["candidates"]) == ["AAPL", "MSFT"]
    assert Ledger(home / "volt.db").last_completed_cycle("main")["as_of"] == doc["as_of"]
