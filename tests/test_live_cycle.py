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
    assert len(notes) == 1 and "candles" in notes[0]
    # with only today's quote there is too little history: DATA errors, never a trade
    assert "too little history" in out and "orders: none" in out
    assert files_containing(home, KEY.encode()) == []


def test_stale_feed_symbol_is_neither_decided_on_nor_filled(fake, tmp_path, monkeypatch):
    import time as _time

    from graph.run import run_cycle
    from graph.settings import VoltSettings
    from tools.trade_stream import LiveBarBuilder, TradeStream

    monkeypatch.setenv("FINNHUB_API_KEY", KEY)
    builder = LiveBarBuilder()
    now_ms = int(_time.time() * 1000)
    builder.add_trade("AAPL", 101.0, 10, now_ms)  # a live feed for AAPL; MSFT never traded
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
