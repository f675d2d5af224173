"""Live fills only at a plausible quote: within ``quote_band_pct`` of the price decided on."""

from __future__ import annotations

import math

import pytest
from conftest import default_answer, scripted, synthetic_frame

from graph.builder import graph as cycle_graph
from graph.context import VoltContext
from memory.ledger import Ledger
from tools.broker import quote_within_band
from tools.data_source import set_live_dataset
from tools.market_data import dataset_from_frame

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.mark.parametrize(("quote", "reference", "band", "ok"), [
    (100.0, 100.0, 0.15, True),
    (114.9, 100.0, 0.15, True),
    (85.1, 100.0, 0.15, True),
    (115.1, 100.0, 0.15, False),
    (84.9, 100.0, 0.15, False),
    (10_000.0, 100.0, 0.15, False),  # a 100x quote
    (1.0, 100.0, 0.15, False),  # a 1/100 quote
    (0.0, 100.0, 0.15, False),
    (-100.0, 100.0, 0.15, False),
    (math.nan, 100.0, 0.15, False),
    (math.inf, 100.0, 0.15, False),
    (100.0, math.nan, 0.15, False),
    (100.0, 0.0, 0.15, False),
    (10_000.0, 100.0, 1.0, False),  # even the widest band refuses 100x
])
def test_quote_within_band(quote, reference, band, ok):
    assert quote_within_band(quote, reference, band) is ok


def live_run(settings, dataset, quote_of, respond):
    """One live cycle through the real graph on ``dataset`` with fills at ``quote_of(symbol)``."""
    set_live_dataset(settings, dataset)
    context = VoltContext(settings=settings, chat_model_factory=lambda spec: scripted(respond=respond),
                          live_price=quote_of)
    return cycle_graph.invoke({"portfolio_id": settings.portfolio}, context=context)


@pytest.fixture
def frames():
    frame = synthetic_frame({"AAA": 0.2, "BBB": 0.1}, days=60)
    days = sorted(frame["Date"].unique())
    return frame, days


def test_a_100x_live_quote_never_fills_and_leaves_peak_equity_alone(frames, settings_for, tmp_path):
    frame, days = frames
    settings = settings_for(tmp_path / "unused.csv", source="finnhub", watchlist=["AAA"], top_k=1)
    ledger = Ledger(settings.ledger_path)

    # day 1: a sane quote (the decision close) fills a BUY
    day1 = dataset_from_frame(frame[frame["Date"] <= days[-2]], "live-1")
    close1 = float(day1.bars["AAA"]["close"].iloc[-1])
    state = live_run(settings, day1, lambda s: close1, lambda a, s, e, m: default_answer(a, s, e))
    [fill] = state["fills"]
    assert fill["reference_price"] == close1
    peak_before = ledger.account(settings.portfolio).peak_equity
    held = ledger.account(settings.portfolio).positions["AAA"].qty

    # day 2: the agents decide to SELL (and in a second portfolio to BUY) on a 100x quote
    day2 = dataset_from_frame(frame, "live-2")
    close2 = float(day2.bars["AAA"]["close"].iloc[-1])
    sell = lambda a, s, e, m: default_answer(a, s, e, strategy={"action": "SELL"},  # noqa: E731
                                             market={"direction": "BEARISH"})
    state = live_run(settings, day2, lambda s: close2 * 100, sell)
    [order] = state["orders"]
    assert order["side"] == "SELL" and order["status"] == "UNFILLED"
    assert order["reason"].startswith("DATA AAA: live quote") and "decision price" in order["reason"]
    assert state["fills"] == []
    account = ledger.account(settings.portfolio)
    assert account.positions["AAA"].qty == held  # nothing sold at the fantasy price
    after = state["portfolio_after"]
    # marked at the day's close from the data, not at the quote
    assert after["positions"]["AAA"]["price"] == pytest.approx(close2)
    assert after["equity"] < 1.1 * settings.starting_cash
    assert account.peak_equity == pytest.approx(max(peak_before, after["equity"]))
    assert account.peak_equity < 1.1 * settings.starting_cash


@pytest.mark.parametrize("factor", [100.0, 0.01, math.nan, -1.0])
def test_a_bad_live_quote_never_buys(frames, settings_for, tmp_path, factor):
    frame, _ = frames
    settings = settings_for(tmp_path / "unused.csv", source="finnhub", watchlist=["AAA"], top_k=1)
    dataset = dataset_from_frame(frame, "live")
    close = float(dataset.bars["AAA"]["close"].iloc[-1])
    state = live_run(settings, dataset, lambda s: close * factor, lambda a, s, e, m: default_answer(a, s, e))
    [order] = state["orders"]
    assert order["status"] == "UNFILLED" and order["reason"].startswith("DATA AAA")
    account = Ledger(settings.ledger_path).account(settings.portfolio)
    assert account.positions == {} and account.cash == settings.starting_cash
    assert account.peak_equity == settings.starting_cash
    assert state["portfolio_after"]["equity"] == settings.starting_cash


def test_a_quote_inside_the_band_fills_at_the_quote(frames, settings_for, tmp_path):
    frame, _ = frames
    settings = settings_for(tmp_path / "unused.csv", source="finnhub", watchlist=["AAA"], top_k=1,
                            quote_band_pct=0.05)
    dataset = dataset_from_frame(frame, "live")
    close = float(dataset.bars["AAA"]["close"].iloc[-1])
    state = live_run(settings, dataset, lambda s: close * 1.04, lambda a, s, e, m: default_answer(a, s, e))
    [fill] = state["fills"]
    assert fill["reference_price"] == pytest.approx(close * 1.04) and fill["fill_date"] == state["as_of"]
