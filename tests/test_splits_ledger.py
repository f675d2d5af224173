"""Held positions across splits: the ledger converts shares once, so no fake profit or loss."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import default_answer, scripted, synthetic_frame

from graph.run import run_cycle
from memory.ledger import FillRecord, Ledger
from tools.market_data import MarketDataset, Split, dataset_from_frame

pytestmark = pytest.mark.usefixtures("clean_env")


def buy(ledger: Ledger, portfolio: str, as_of: str, fill_date: str, qty: float, price: float) -> None:
    fill = FillRecord(order_id="", symbol="AAA", side="BUY", qty=qty, reference_price=price, price=price,
                      slippage_pct=0.0, fee=0.0, realized_pnl=0.0, fill_date=fill_date, latency_ms=0.0)
    ledger.record_fill(portfolio=portfolio, as_of=as_of, symbol="AAA", side="BUY", qty_requested=qty,
                       make_fill=lambda account: fill)


@pytest.fixture
def ledger(backend):  # on SQLite and on PostgreSQL (tests/conftest.py)
    led = Ledger(backend.target)
    led.ensure_portfolio("p", 10_000.0)
    return led


@pytest.mark.parametrize("ratio", [2.0, 0.5, 3.0, 0.1])
def test_apply_splits_converts_a_held_position_once(ledger, ratio):
    buy(ledger, "p", "2020-03-02", "2020-03-03", 10.0, 100.0)
    splits = {"AAA": [Split("AAA", pd.Timestamp("2020-03-10"), ratio)], "BBB": [Split("BBB", pd.Timestamp("2020-03-05"), 2.0)]}
    assert ledger.apply_splits("p", splits, "2020-03-09") == []  # not effective yet
    assert ledger.account("p").positions["AAA"].qty == 10.0
    [action] = ledger.apply_splits("p", splits, pd.Timestamp("2020-03-10"))
    assert action == {"symbol": "AAA", "ex_date": "2020-03-10", "ratio": ratio, "qty_before": 10.0,
                      "qty_after": pytest.approx(10.0 * ratio)}
    pos = ledger.account("p").positions["AAA"]
    assert pos.qty == pytest.approx(10.0 * ratio) and pos.avg_cost == pytest.approx(100.0 / ratio)
    assert pos.qty * pos.avg_cost == pytest.approx(1000.0)  # same cost basis: no fake P&L
    # resumed cycles, later days: applied once
    for upto in ("2020-03-10", "2020-03-11", "2020-06-01"):
        assert ledger.apply_splits("p", splits, upto) == []
    assert ledger.account("p").positions["AAA"].qty == pytest.approx(10.0 * ratio)
    assert [a["ex_date"] for a in ledger.corporate_actions("p")] == ["2020-03-10"]


def test_a_position_opened_on_or_after_the_ex_date_is_already_in_new_shares(ledger):
    buy(ledger, "p", "2020-03-09", "2020-03-10", 10.0, 50.0)  # filled at the ex-date's open
    splits = {"AAA": [Split("AAA", pd.Timestamp("2020-03-10"), 2.0)]}
    assert ledger.apply_splits("p", splits, "2020-03-12") == []
    assert ledger.account("p").positions["AAA"].qty == 10.0


def test_two_splits_in_order_and_hostile_ratios_ignored(ledger):
    buy(ledger, "p", "2020-03-02", "2020-03-03", 8.0, 80.0)
    splits = {"AAA": [Split("AAA", pd.Timestamp("2020-03-20"), 0.5), Split("AAA", pd.Timestamp("2020-03-10"), 4.0),
                      Split("AAA", pd.Timestamp("2020-03-12"), float("nan")),
                      Split("AAA", pd.Timestamp("2020-03-13"), -2.0)]}
    applied = ledger.apply_splits("p", splits, "2020-03-31")
    assert [(a["ex_date"], a["qty_after"]) for a in applied] == [("2020-03-10", 32.0), ("2020-03-20", 16.0)]
    pos = ledger.account("p").positions["AAA"]
    assert pos.qty == 16.0 and pos.avg_cost == pytest.approx(40.0)


def test_a_flat_symbol_is_not_touched(ledger):
    splits = {"AAA": [Split("AAA", pd.Timestamp("2020-03-10"), 2.0)]}
    assert ledger.apply_splits("p", splits, "2020-03-31") == []
    assert ledger.corporate_actions("p") == []


# ---------------------------------------------------------------- through the real graph

def split_dataset(ratio: float, ex: int, days: int = 62) -> tuple[MarketDataset, list[pd.Timestamp]]:
    """AAA and BBB; AAA splits ``ratio``:1 at the open of day ``ex``. The adjusted open of day
    ``ex`` equals that of day ``ex - 1``, so a holder's value across the split is exactly equal."""
    adjusted = synthetic_frame({"AAA": 0.2, "BBB": 0.1}, days=days)
    dates = sorted(adjusted["Date"].unique())
    a = adjusted["Symbol"] == "AAA"
    prev_open = float(adjusted.loc[a & (adjusted["Date"] == dates[ex - 1]), "Open"].iloc[0])
    adjusted.loc[a & (adjusted["Date"] == dates[ex]), "Open"] = prev_open
    ds = dataset_from_frame(adjusted, "split")
    stamps = [pd.Timestamp(d) for d in dates]
    raw = ds.bars["AAA"].copy()
    before = raw.index < stamps[ex]
    raw.loc[before, ["open", "high", "low", "close"]] *= ratio  # as traded: before the split, in old shares
    raw.loc[before, "volume"] /= ratio
    # built again with the views set, so point-in-time history() knows the split too
    ds = MarketDataset(source="split", bars=ds.bars, calendar=ds.calendar, issues=ds.issues,
                       raw_bars={"AAA": raw}, splits={"AAA": [Split("AAA", stamps[ex], ratio, "test")]})
    return ds, stamps


@pytest.mark.parametrize("ratio", [2.0, 0.5])
def test_a_position_held_across_a_split_books_no_fake_loss(monkeypatch, tmp_path, settings_for, ratio):
    ex = 55
    ds, stamps = split_dataset(ratio, ex)
    monkeypatch.setattr("tools.data_source.load_dataset", lambda *args, **kwargs: ds)
    settings = settings_for(tmp_path / "unused.csv", watchlist=["AAA"], top_k=1)
    first_day = f"{stamps[49]:%Y-%m-%d}"

    def respond(agent, symbol, evidence, messages):
        if evidence.get("as_of") == first_day:
            return default_answer(agent, symbol, evidence)
        return default_answer(agent, symbol, evidence, strategy={"action": "HOLD"},
                              market={"direction": "NEUTRAL", "strength": 0.0})

    assert ds.last_close("AAA", stamps[ex - 1]) == float(ds.raw_bars["AAA"].loc[stamps[ex - 1], "close"])
    states = [run_cycle(settings, chat_model_factory=lambda spec: scripted(respond=respond)).state for _ in range(9)]
    assert [s["as_of"] for s in states] == [f"{d:%Y-%m-%d}" for d in stamps[49:58]]
    [bought] = states[0]["fills"]
    assert all(s["fills"] == [] for s in states[1:])
    by_day = {pd.Timestamp(s["as_of"]): s["portfolio_after"] for s in states}
    # D = ex-2 is marked at the open of ex-1 (old shares); D = ex-1 at the open of ex (new shares)
    old, new = by_day[stamps[ex - 2]], by_day[stamps[ex - 1]]
    assert old["positions"]["AAA"]["qty"] == pytest.approx(bought["qty"])
    assert new["positions"]["AAA"]["qty"] == pytest.approx(bought["qty"] * ratio)
    assert new["positions"]["AAA"]["market_value"] == pytest.approx(old["positions"]["AAA"]["market_value"], rel=1e-12)
    assert new["equity"] == pytest.approx(old["equity"], rel=1e-12)
    assert new["positions"]["AAA"]["unrealized_pnl"] == pytest.approx(old["positions"]["AAA"]["unrealized_pnl"],
                                                                      abs=1e-6)
    # the valuation before each cycle: as traded on D (old shares before the split, new after)
    for s in states[1:]:
        before = s["portfolio_before"]["positions"]["AAA"]
        assert before["qty"] == pytest.approx(bought["qty"] * (ratio if pd.Timestamp(s["as_of"]) >= stamps[ex] else 1.0))
        assert before["price"] == pytest.approx(float(ds.raw_bars["AAA"].loc[pd.Timestamp(s["as_of"]), "close"]))
    ledger = Ledger(settings.ledger_path)
    # execution (D = ex-1, F = ex) and prepare_cycle (D = ex) both asked; it was applied once
    [action] = ledger.corporate_actions(settings.portfolio)
    assert action["ex_date"] == f"{stamps[ex]:%Y-%m-%d}" and action["ratio"] == ratio
    assert ledger.apply_splits(settings.portfolio, ds.splits, stamps[-1]) == []  # a resume changes nothing
    assert ledger.account(settings.portfolio).positions["AAA"].qty == pytest.approx(bought["qty"] * ratio)
    equities = [c["equity"] for c in ledger.cycles(settings.portfolio)]
    assert min(equities) > 0.95 * settings.starting_cash and max(equities) < 1.05 * settings.starting_cash


def test_an_order_decided_before_a_split_fills_in_new_shares(monkeypatch, tmp_path, settings_for):
    ex = 51
    ds, stamps = split_dataset(2.0, ex)
    monkeypatch.setattr("tools.data_source.load_dataset", lambda *args, **kwargs: ds)
    settings = settings_for(tmp_path / "unused.csv", watchlist=["AAA"], top_k=1)
    decide_on = f"{stamps[ex - 1]:%Y-%m-%d}"

    def respond(agent, symbol, evidence, messages):
        if evidence.get("as_of") == decide_on:
            return default_answer(agent, symbol, evidence, strategy={"size_pct": 0.05})
        return default_answer(agent, symbol, evidence, strategy={"action": "HOLD"},
                              market={"direction": "NEUTRAL", "strength": 0.0})

    run_cycle(settings, chat_model_factory=lambda spec: scripted(respond=respond))
    state = run_cycle(settings, chat_model_factory=lambda spec: scripted(respond=respond)).state
    assert state["as_of"] == decide_on
    [order], [fill] = state["orders"], state["fills"]
    assert fill["fill_date"] == f"{stamps[ex]:%Y-%m-%d}"
    assert fill["reference_price"] == float(ds.raw_bars["AAA"].loc[stamps[ex], "open"])
    assert fill["qty"] == pytest.approx(order["qty"] * 2.0)  # D's shares -> F's shares
    # bought in new shares at the ex-date's open: never split again
    assert Ledger(settings.ledger_path).corporate_actions(settings.portfolio) == []
