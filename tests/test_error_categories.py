"""The broker's unfilled orders and the protections' blocks become error records: DATA for a
gap or an implausible quote, EXCHANGE when the venue fails, MARKET once per protection per
cycle, each with its recovery, identical ones of a cycle one row with its count."""

from __future__ import annotations

import pytest
from conftest import default_answer, scripted, synthetic_frame

from graph.builder import graph as cycle_graph
from graph.context import VoltContext
from graph.errors import DataError, StorageError
from graph.run import run_cycle
from memory.db import open_db
from memory.ledger import Ledger
from tools.data_source import set_live_dataset
from tools.error_handler import protection_records, unfilled_order_record
from tools.market_data import dataset_from_frame

pytestmark = pytest.mark.usefixtures("clean_env")


def error_rows(settings) -> list[dict]:
    with open_db(settings.ledger_path) as conn:
        return [dict(r) for r in conn.execute(
            "SELECT cycle_id, agent, symbol, category, message, recovery_action FROM agent_errors"
            " ORDER BY error_id")]


def test_unfilled_reasons_map_to_data_exchange_or_nothing():
    gap = unfilled_order_record("no bar on 2020-03-11 (gap or data issue)", symbol="AAA")
    band = unfilled_order_record("DATA AAA: live quote 1e4 is outside ±15% of the decision price 100; "
                                 "not filled", symbol="AAA")
    assert (gap["category"], gap["symbol"], band["category"]) == ("data", "AAA", "data")
    assert "expired" in gap["recovery"]
    for reason in ("no live quote source to fill at", "no fill day after the decision day (end of data)",
                   "no live quote to fill at (refused)", "storage failure while booking: volt.db is locked"):
        rec = unfilled_order_record(reason, symbol="AAA")
        assert rec["category"] == "exchange" and rec["symbol"] is None and "expires" in rec["recovery"]
    # decisions, not failures: limits, a plan's exit, a protection's block (recorded by prepare_cycle)
    for reason in ("limits at the fill price leave nothing to trade", "exited by its plan on 2020-01-02 (stop)",
                   "market breaker: the index moved +9.0% on the day (limit ±7%); no new buys",
                   "nothing left to close", "", None):
        assert unfilled_order_record(reason, symbol="AAA") is None


def test_protection_records_one_per_blocking_protection_with_hostile_items():
    state = {"items": [
        {"name": "drawdown_halt", "blocks_buys": True, "reason": "drawdown halt: equity 700"},
        {"name": "trading_breaker", "blocks_orders": True, "blocks_buys": False, "reason": None},
        {"name": "market_breaker", "blocks_buys": False, "reason": "quiet"},
        "not a dict", None,
    ]}
    recs = protection_records(state)
    assert [(r["category"], r["message"]) for r in recs] == [
        ("market", "drawdown halt: equity 700"), ("market", "trading_breaker active")]
    assert "exits still run" in recs[0]["recovery"] and recs[1]["recovery"].startswith("no new orders")
    assert protection_records(None) == [] and protection_records({"items": None}) == []


def gap_csv(tmp_path, gap_day: int = 50):
    """AAA, BBB, CCC with AAA's bar on ``gap_day`` removed (the first cycle's fill day)."""
    frame = synthetic_frame({"AAA": 0.25, "BBB": 0.15, "CCC": -0.05}, days=60)
    dates = sorted(frame["Date"].unique())
    frame = frame[~((frame["Symbol"] == "AAA") & (frame["Date"] == dates[gap_day]))]
    path = tmp_path / "gap.csv"
    frame.to_csv(path, index=False)
    return path, dates


def test_an_unfilled_gap_order_is_one_data_row(tmp_path, settings_for):
    csv, dates = gap_csv(tmp_path)
    settings = settings_for(csv, watchlist=["AAA", "BBB"], top_k=2)
    state = run_cycle(settings, chat_model_factory=lambda spec: scripted()).state  # always BUY
    assert state["as_of"].replace("-", "") == dates[49]
    assert {o["symbol"]: o["status"] for o in state["orders"]} == {"AAA": "UNFILLED", "BBB": "FILLED"}
    rows = error_rows(settings)
    assert [(r["agent"], r["symbol"], r["category"]) for r in rows] == [("execution_agent", "AAA", "data")]
    assert rows[0]["message"].startswith("no bar on") and "expired" in rows[0]["recovery_action"]


def test_a_cycle_under_the_market_breaker_is_one_market_row(tmp_path, settings_for, market_csv):
    # any index move trips a 0.0001% breaker: every candidate's BUY is blocked, one row says so
    settings = settings_for(market_csv, top_k=3, market_breaker_pct=1e-6)
    state = run_cycle(settings, chat_model_factory=lambda spec: scripted()).state
    assert state["protections"]["active"] == ["market_breaker"]
    blocked = [d for d in state["decisions"] if "market breaker" in str(d.get("reason") or "")]
    assert len(blocked) >= 2 and state["fills"] == []
    rows = error_rows(settings)
    assert [(r["agent"], r["symbol"], r["category"]) for r in rows] == [("protections", None, "market")]
    assert rows[0]["message"].startswith("market breaker") and "(×" not in rows[0]["message"]
    assert "new buys halted" in rows[0]["recovery_action"]
    # the next cycle under the same breaker: its own single row
    run_cycle(settings, chat_model_factory=lambda spec: scripted())
    rows = error_rows(settings)
    assert [r["category"] for r in rows] == ["market", "market"] and rows[0]["cycle_id"] != rows[1]["cycle_id"]


def live_cycle(settings, quote_of):
    frame = synthetic_frame({"AAA": 0.2, "BBB": 0.1}, days=60)
    set_live_dataset(settings, dataset_from_frame(frame, "live"))
    context = VoltContext(settings=settings, chat_model_factory=lambda spec: scripted(
        respond=lambda a, s, e, m: default_answer(a, s, e)), live_price=quote_of)
    return cycle_graph.invoke({"portfolio_id": settings.portfolio}, context=context)


def test_a_failing_live_quote_source_is_one_exchange_row_counted_per_order(tmp_path, settings_for):
    settings = settings_for(tmp_path / "unused.csv", source="finnhub", watchlist=["AAA", "BBB"], top_k=2)

    def down(symbol):
        raise ConnectionError("quote server down")

    state = live_cycle(settings, down)
    assert [o["status"] for o in state["orders"]] == ["UNFILLED", "UNFILLED"]
    rows = error_rows(settings)
    assert [(r["agent"], r["symbol"], r["category"]) for r in rows] == [("execution_agent", None, "exchange")]
    assert rows[0]["message"] == "no live quote to fill at (quote server down) (×2)"
    assert "expires" in rows[0]["recovery_action"]


def test_a_live_quote_refused_as_bad_data_is_a_data_row_per_symbol(tmp_path, settings_for):
    settings = settings_for(tmp_path / "unused.csv", source="finnhub", watchlist=["AAA", "BBB"], top_k=2)

    def stale(symbol):
        raise DataError(symbol, "quote is 3 days old")

    live_cycle(settings, stale)
    rows = error_rows(settings)
    assert sorted((r["symbol"], r["category"]) for r in rows) == [("AAA", "data"), ("BBB", "data")]
    assert all("quote is 3 days old" in r["message"] for r in rows)


def test_a_storage_failure_while_booking_expires_the_order_as_exchange(tmp_path, settings_for,
                                                                       market_csv, monkeypatch):
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1)

    def locked(self, **kwargs):
        raise StorageError("volt.db is locked by another process", path=self.path, kind="busy")

    monkeypatch.setattr(Ledger, "record_fill", locked)
    state = run_cycle(settings, chat_model_factory=lambda spec: scripted()).state
    [order] = state["orders"]
    assert order["status"] == "UNFILLED" and order["reason"].startswith("storage failure while booking")
    assert [(r["category"], r["symbol"]) for r in error_rows(settings)] == [("exchange", None)]
    # and it counts against the trading breaker: the broker could not book it
    monkeypatch.undo()
    [cycle] = Ledger(settings.ledger_path).protection_history(settings.portfolio, before="9999-12-31")
    assert (cycle["orders"], cycle["failed"]) == (1, 1)
