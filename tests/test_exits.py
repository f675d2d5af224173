"""The broker enforces each position's plan on the fill day's bar, exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import synthetic_frame

from graph.settings import VoltSettings
from memory.db import open_db
from memory.ledger import FillRecord, Ledger
from nodes.trading_plans import plan_exits
from tools.data_source import market_dataset
from tools.trading.plans import Plan

PORTFOLIO = "main"


@pytest.fixture
def world(tmp_path, clean_env):
    csv = tmp_path / "market.csv"
    synthetic_frame({"AAA": 0.05, "BBB": 0.02}, days=80).to_csv(csv, index=False)
    settings = VoltSettings(home=tmp_path / "home", data_csv=csv, models=[], top_k=2)
    dataset = market_dataset(settings)
    ledger = Ledger(settings.ledger_path)
    ledger.ensure_portfolio(PORTFOLIO, 1000.0)
    return settings, dataset, ledger


def open_position(ledger: Ledger, dataset, day_index: int, **plan_kw) -> tuple[str, Plan]:
    """Buy 2 AAA at the open of calendar[day_index] and record its plan."""
    opened = dataset.calendar[day_index]
    price = float(dataset.bar_on("AAA", opened)["open"])
    decided = f"{dataset.calendar[day_index - 1]:%Y-%m-%d}"

    def make(account):
        return FillRecord("", "AAA", "BUY", 2.0, price, price, 0.0, 0.0, 0.0, f"{opened:%Y-%m-%d}", 0.0)

    ledger.record_fill(portfolio=PORTFOLIO, as_of=decided, symbol="AAA", side="BUY", qty_requested=2.0,
                       make_fill=make)
    plan = Plan(**{"direction": 1, "entry": price, "stop": price * 0.5, "target": price * 2.0,
                   "horizon_days": 50, "opened": f"{opened:%Y-%m-%d}", **plan_kw})
    ledger.open_plan(PORTFOLIO, "AAA", decided, plan.as_dict(), {"qty": 2.0})
    return decided, plan


def run_exits(settings, dataset, ledger, day_index: int):
    day = f"{dataset.calendar[day_index]:%Y-%m-%d}"
    return plan_exits(settings=settings, ledger=ledger, dataset=dataset, portfolio=PORTFOLIO, day=day,
                      fill_on=dataset.fill_day(dataset.calendar[day_index]), snapshots={})


def exit_fills(settings) -> list[dict]:
    with open_db(settings.ledger_path) as conn:
        return [dict(r) for r in conn.execute("SELECT * FROM fills WHERE order_id LIKE '%:exit'")]


def test_gap_through_the_stop_fills_at_the_open_with_slippage_and_fee(world):
    settings, dataset, ledger = world
    fill_bar = dataset.bar_on("AAA", dataset.calendar[61])
    open_position(ledger, dataset, 55, stop=float(fill_bar["open"]) + 1.0)  # F opens below the stop
    orders, fills, exits = run_exits(settings, dataset, ledger, 60)
    assert [e["kind"] for e in exits] == ["stop"]
    fill = fills[0]
    assert fill["reference_price"] == pytest.approx(float(fill_bar["open"]))
    assert fill["price"] < fill["reference_price"] and fill["fee"] > 0  # a SELL pays slippage and the fee
    assert fill["fill_date"] == f"{dataset.calendar[61]:%Y-%m-%d}"
    assert "AAA" not in ledger.account(PORTFOLIO).positions  # closed to exactly zero
    [plan] = ledger.timeline(PORTFOLIO)
    assert plan["status"] == "closed" and plan["exit_kind"] == "stop"


def test_intraday_touch_fills_at_the_level(world):
    settings, dataset, ledger = world
    b = dataset.bar_on("AAA", dataset.calendar[61])
    level = (float(b["low"]) + min(float(b["open"]), float(b["close"]))) / 2
    open_position(ledger, dataset, 55, stop=level)
    _, fills, exits = run_exits(settings, dataset, ledger, 60)
    assert exits[0]["kind"] == "stop"
    assert fills[0]["reference_price"] == pytest.approx(level)


def test_target_and_time_exits(world):
    settings, dataset, ledger = world
    b = dataset.bar_on("AAA", dataset.calendar[61])
    open_position(ledger, dataset, 55, target=float(b["high"]) - 0.01)
    assert run_exits(settings, dataset, ledger, 60)[2][0]["kind"] == "target"

    open_position(ledger, dataset, 63, horizon_days=3)
    assert run_exits(settings, dataset, ledger, 64)[2] == []  # day 2 of 3 on F = calendar[65]
    _, fills, exits = run_exits(settings, dataset, ledger, 65)
    assert exits[0]["kind"] == "time" and exits[0]["days_in_trade"] == 3
    assert fills[0]["reference_price"] == pytest.approx(float(dataset.bar_on("AAA", dataset.calendar[66])["open"]))


def test_no_bar_no_exit_and_a_rerun_never_exits_twice(world):
    settings, dataset, ledger = world
    b = dataset.bar_on("AAA", dataset.calendar[61])
    open_position(ledger, dataset, 55, stop=float(b["open"]) + 1.0)
    first = run_exits(settings, dataset, ledger, 60)
    again = run_exits(settings, dataset, ledger, 60)  # a resumed cycle
    assert len(exit_fills(settings)) == 1
    assert first[2] and again[2] == []  # the plan is closed: nothing left to check


CRASH = """
import os, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from graph.settings import VoltSettings
from memory import ledger as L
from nodes.trading_plans import plan_exits
from tools.data_source import market_dataset
settings = VoltSettings(home=Path({home!r}), data_csv=Path({csv!r}), models=[], top_k=2)
original = L.Ledger.record_fill
def record_then_die(self, **kw):
    result = original(self, **kw)
    if kw.get("suffix") == "exit":
        os._exit(9)  # the exit fill is committed, the plan is not closed yet
    return result
L.Ledger.record_fill = record_then_die
ds = market_dataset(settings)
day = ds.calendar[60]
plan_exits(settings=settings, ledger=L.Ledger(settings.ledger_path), dataset=ds, portfolio="main",
           day=f"{{day:%Y-%m-%d}}", fill_on=ds.fill_day(day), snapshots={{}})
"""


def test_plan_survives_kill_9_and_resume_exits_once(world):
    settings, dataset, ledger = world
    b = dataset.bar_on("AAA", dataset.calendar[61])
    open_position(ledger, dataset, 55, stop=float(b["open"]) + 1.0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOLT_")}
    code = CRASH.format(tests=str(Path(__file__).parent), home=str(settings.home), csv=str(settings.data_csv))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr[-2000:]
    assert len(exit_fills(settings)) == 1
    assert ledger.open_plans(PORTFOLIO)  # killed before the plan was closed

    _, fills, exits = run_exits(settings, dataset, ledger, 60)  # the resumed cycle
    assert len(exit_fills(settings)) == 1  # no double exit
    assert exits[0]["kind"] == "stop" and fills[0]["order_id"].endswith(":exit")
    assert ledger.open_plans(PORTFOLIO) == {}
    [plan] = ledger.timeline(PORTFOLIO)
    assert plan["exit_kind"] == "stop"
    assert [e["kind"] for e in plan["events"]].count("exit") == 1
    assert "AAA" not in ledger.account(PORTFOLIO).positions


def test_trailing_anchor_moves_to_the_high_of_a_bar_that_did_not_exit(world):
    settings, dataset, ledger = world
    open_position(ledger, dataset, 55, trailing_pct=0.5)
    run_exits(settings, dataset, ledger, 60)
    stored = ledger.open_plans(PORTFOLIO)["AAA"]["plan"]
    assert stored["best"] == pytest.approx(float(dataset.bar_on("AAA", dataset.calendar[61])["high"]))
    assert pd.Timestamp(stored["opened"]) == dataset.calendar[55]


def test_a_symbol_that_stops_trading_is_closed_at_its_last_close_once_the_horizon_is_due(tmp_path, clean_env):
    # AAA's bars end on day 59 (acquired, delisted); BBB keeps the calendar going to day 79
    frame = synthetic_frame({"AAA": 0.05, "BBB": 0.02}, days=80)
    dates = sorted(frame["Date"].unique())
    frame = frame[~((frame["Symbol"] == "AAA") & frame["Date"].isin(dates[60:]))]
    csv = tmp_path / "market.csv"
    frame.to_csv(csv, index=False)
    settings = VoltSettings(home=tmp_path / "home", data_csv=csv, models=[], top_k=2, untraded_exit_days=5)
    dataset = market_dataset(settings)
    ledger = Ledger(settings.ledger_path)
    ledger.ensure_portfolio(PORTFOLIO, 1000.0)
    open_position(ledger, dataset, 55, horizon_days=8)  # opened on day 55: due on day 63
    last_close = dataset.last_close("AAA", dataset.calendar[59])
    # horizon not due yet, or due but the gap is short: wait for a bar (no price, no fill)
    for day in (58, 61, 62):
        assert run_exits(settings, dataset, ledger, day)[2] == []
    assert "AAA" in ledger.account(PORTFOLIO).positions
    # day 64 fills on 65: due, and no bar for 6 trading days since day 59 -> the last close
    orders, fills, exits = run_exits(settings, dataset, ledger, 64)
    assert [e["kind"] for e in exits] == ["untraded"] and "no bar since" in orders[0]["reason"]
    assert fills[0]["reference_price"] == pytest.approx(last_close)
    assert "AAA" not in ledger.account(PORTFOLIO).positions
    run_exits(settings, dataset, ledger, 64)  # the same cycle again (a resume)
    assert len(exit_fills(settings)) == 1  # never exits twice
