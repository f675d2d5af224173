"""The broker across a restart and a split: a booked exit bars a new order in the symbol, a
re-booked fill writes no second plan, and an add across a split keeps one share unit."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
from test_corporate_actions import SPLIT_AT, frame_with

from graph.settings import VoltSettings
from memory.ledger import Ledger
from nodes.execution_agent import execution_agent
from nodes.trading_plans import plan_exits
from tools.data_source import market_dataset


def world(tmp_path, split: float | None, database_url: str | None = None, **settings):
    csv = tmp_path / "m.csv"
    frame_with(split).to_csv(csv, index=False)
    s = VoltSettings(home=tmp_path / "home", data_csv=csv, models=[], min_order_notional=1.0,
                     database_url=database_url, **settings)
    ds = market_dataset(s)
    ledger = Ledger(s.ledger_path)
    ledger.ensure_portfolio("main", 100000.0)
    return s, ds, ledger, SimpleNamespace(context=SimpleNamespace(settings=s, live_price=None))


def cycle(ds, i: int, side: str, qty: float, kind: str, plan=None) -> dict:
    day = ds.calendar[i]
    c = float(ds.last_close("SPL", day))
    order = {"symbol": "SPL", "side": side, "qty": qty, "price": c, "notional": qty * c, "kind": kind}
    if plan:
        order["plan"] = plan(c)
    return {"portfolio_id": "main", "as_of": f"{day:%Y-%m-%d}", "portfolio_before": {},
            "snapshots": {"SPL": {"close": c, "atr_pct": 0.01, "atr14": c * 0.01, "volume_avg20": 1e5}},
            "decisions": [{"symbol": "SPL", "consensus": {"confidence": 0.6}, "order": order}]}


def test_an_exit_booked_before_a_restart_bars_the_agents_order(tmp_path, clean_env, backend):
    s, ds, ledger, rt = world(tmp_path, None, backend.url, allow_short=True)
    execution_agent(cycle(ds, 50, "BUY", 50, "entry", lambda c: {"stop": c * 0.999, "target": c * 1.5}), rt)
    state = cycle(ds, 51, "SELL", 50, "exit_review")
    # the first attempt crashed right after the plan exit was booked (and its plan closed)
    plan_exits(settings=s, ledger=ledger, dataset=ds, portfolio="main", day=state["as_of"],
               fill_on=ds.fill_day(pd.Timestamp(state["as_of"])), snapshots=state["snapshots"])
    assert "SPL" not in ledger.account("main").positions
    out = execution_agent(state, rt)  # the resumed node
    assert [o["status"] for o in out["orders"]] == ["UNFILLED"]
    assert "exited by its plan" in out["orders"][0]["reason"]
    assert "SPL" not in ledger.account("main").positions  # no short opened by the review's SELL


def test_a_rebooked_closing_fill_opens_no_phantom_plan(tmp_path, clean_env, backend):
    s, ds, ledger, rt = world(tmp_path, None, backend.url, allow_short=True)
    execution_agent(cycle(ds, 50, "BUY", 50, "entry", lambda c: {"stop": c * 0.5, "target": c * 1.5}), rt)
    state = cycle(ds, 51, "SELL", 50, "exit_review")
    execution_agent(state, rt)
    execution_agent(state, rt)  # the same cycle resumed
    assert ledger.account("main").positions == {}
    [plan] = ledger.timeline("main", "SPL")
    assert plan["status"] == "closed" and plan["exit_kind"] == "exit_review"
    assert [e["kind"] for e in plan["events"]] == ["entry", "exit"]


def test_an_add_across_a_split_compares_stops_in_the_plans_units(tmp_path, clean_env, backend):
    s, ds, ledger, rt = world(tmp_path, 2.0, backend.url, allow_short=True)
    stop = lambda c: {"stop": c * 1.10, "target": c * 0.8}  # noqa: E731 (a short's plan)
    execution_agent(cycle(ds, SPLIT_AT - 5, "SELL", 50, "entry", stop), rt)
    before = ledger.open_plans("main")["SPL"]["plan"]["stop"]
    # the add is decided the day before the split and fills on the ex-date, in new shares
    execution_agent(cycle(ds, SPLIT_AT - 1, "SELL", 50, "entry", stop), rt)
    # its stop (10% above the new price, in new shares) is looser than the plan's in old shares
    assert ledger.open_plans("main")["SPL"]["plan"]["stop"] == pytest.approx(before)
    out = execution_agent(cycle(ds, SPLIT_AT, "SELL", 0.0001, "entry", stop), rt)
    assert not any(f.get("kind") == "stop" for f in out["fills"])  # not stopped out by a unit mix-up
    assert ledger.account("main").positions["SPL"].qty < -150  # still short, in new shares
