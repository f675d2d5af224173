"""No dust: exact closes, dust close-outs, a minimum order, coherent and budgeted entries."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import synthetic_frame

from graph.settings import VoltSettings
from memory.ledger import FillRecord, Ledger
from nodes.execution_agent import execution_agent
from tools.data_source import market_dataset
from tools.portfolio import Account, Position
from tools.risk_limits import Limits, size_order

PORTFOLIO = "main"
LIMITS = Limits(0.2, 1.0, False, 0.2, 0.0025, risk_per_trade_pct=0.01, min_order_notional=5.0)


@pytest.fixture
def world(tmp_path, clean_env):
    csv = tmp_path / "market.csv"
    synthetic_frame({"AAA": 0.05, "BBB": 0.02}, days=80).to_csv(csv, index=False)
    settings = VoltSettings(home=tmp_path / "home", data_csv=csv, models=[], top_k=2)
    ledger = Ledger(settings.ledger_path)
    ledger.ensure_portfolio(PORTFOLIO, 1000.0)
    return settings, market_dataset(settings), ledger


def hold(ledger: Ledger, qty: float, price: float = 50.0, day: str = "2020-01-02") -> None:
    ledger.record_fill(portfolio=PORTFOLIO, as_of=day, symbol="AAA", side="BUY", qty_requested=qty,
                       make_fill=lambda a: FillRecord("", "AAA", "BUY", qty, price, price, 0.0, 0.0, 0.0, day, 0.0))


def run(settings, dataset, decisions: list[dict], day_index: int = 60) -> dict:
    day = dataset.calendar[day_index]
    snap = {"close": float(dataset.last_close("AAA", day)), "atr_pct": 0.01, "atr14": 0.5, "volume_avg20": 1e5}
    state = {"portfolio_id": PORTFOLIO, "as_of": f"{day:%Y-%m-%d}", "decisions": decisions,
             "snapshots": {"AAA": snap}, "portfolio_before": {}}
    runtime = SimpleNamespace(context=SimpleNamespace(settings=settings, live_price=None))
    return execution_agent(state, runtime)


def decision(side: str, qty: float, **order) -> dict:
    return {"symbol": "AAA", "consensus": {"confidence": 0.6},
            "order": {"symbol": "AAA", "side": side, "qty": qty, "price": 50.0, "notional": qty * 50.0, **order}}


def test_held_ignores_float_crumbs():
    account = Account("p", 0.0, 0.0, 0.0, {"A": Position(1e-9, 10.0), "B": Position(2.0, 10.0)})
    assert account.held() == ["B"] and account.dust() == ["A"]


def test_a_sell_without_a_kind_closes_the_position_to_exactly_zero(world):
    settings, dataset, ledger = world
    hold(ledger, 3.0000000001)
    out = run(settings, dataset, [decision("SELL", 3.0)])  # the order was rounded to 8 places
    assert out["fills"][0]["qty"] == pytest.approx(3.0000000001) and out["fills"][0]["kind"] == "exit_review"
    assert "AAA" not in ledger.account(PORTFOLIO).positions


def test_a_reduce_leaving_dust_sells_everything_and_a_real_reduce_keeps_the_rest(world):
    settings, dataset, ledger = world
    hold(ledger, 4.0)
    run(settings, dataset, [decision("SELL", 2.0, kind="reduce_review")], 60)
    assert ledger.account(PORTFOLIO).positions["AAA"].qty == pytest.approx(2.0)
    run(settings, dataset, [decision("SELL", 1.99, kind="reduce_review")], 61)  # 0.01 sh ~ 0.5 USD left
    assert "AAA" not in ledger.account(PORTFOLIO).positions


def test_dust_positions_are_closed_out_once(world):
    settings, dataset, ledger = world
    hold(ledger, 1e-9)
    out = run(settings, dataset, [])
    assert [f["kind"] for f in out["fills"]] == ["dust"]
    assert ledger.account(PORTFOLIO).positions == {}
    assert run(settings, dataset, [])["fills"] == []  # resumed: nothing twice


def test_buy_below_the_minimum_notional_does_not_fill(world):
    settings, dataset, ledger = world
    out = run(settings, dataset, [decision("BUY", 0.0005, kind="entry", plan={"stop": 1.0, "target": 500.0})])
    assert out["orders"][0]["status"] == "UNFILLED" and "minimum order notional" in out["orders"][0]["reason"]
    assert ledger.account(PORTFOLIO).positions == {}


def test_an_entry_through_its_stop_keeps_the_planned_distance_from_the_fill(world):
    settings, dataset, ledger = world
    # decided at 50 with the stop 2 below; the fill day opens far lower (a gap through the stop)
    out = run(settings, dataset, [decision("BUY", 1.0, kind="entry", plan={"stop": 10_000.0, "target": 10_010.0},
                                           price=10_002.0)])
    fill = out["fills"][0]
    plan = ledger.open_plans(PORTFOLIO)["AAA"]["plan"]
    assert plan["stop"] == pytest.approx(fill["price"] - 2.0) and plan["target"] == pytest.approx(fill["price"] + 8.0)
    assert plan["stop"] < plan["entry"] < plan["target"]


def test_an_entry_records_its_plan(world):
    settings, dataset, ledger = world
    out = run(settings, dataset, [decision("BUY", 1.0, kind="entry",
                                           plan={"stop": 1.0, "target": 500.0, "horizon_days": 7,
                                                 "thesis": {"strategy_agent": "BUY"}})], 61)
    assert out["fills"][0]["kind"] == "entry"
    plan = ledger.open_plans(PORTFOLIO)["AAA"]["plan"]
    assert (plan["stop"], plan["target"], plan["horizon_days"]) == (1.0, 500.0, 7)
    assert plan["thesis"] == {"strategy_agent": "BUY"} and plan["opened"] == out["fills"][0]["fill_date"]


def sized(**kw):
    args = dict(symbol="AAA", side="BUY", size_pct=0.2, price=100.0, equity=1000.0, cash=1000.0,
                position_qty=0.0, gross_exposure=0.0, peak_equity=1000.0, limits=LIMITS)
    return size_order(**{**args, **kw})


def test_hard_block_of_incoherent_levels_and_the_risk_budget():
    assert "incoherent" in sized(stop=100.0).blocked  # stop at the entry
    assert "incoherent" in sized(stop=120.0, target=130.0).blocked  # a SELL-side stop on a BUY
    assert "incoherent" in sized(stop=90.0, target=95.0).blocked
    ok = sized(stop=90.0, target=110.0)
    assert ok.blocked is None and ok.qty == pytest.approx(1.0)  # 1% of 1000 over a 10 USD stop
    assert "risk budget" in ok.capped_by and ok.qty * 10.0 <= 10.0 + 1e-9
    assert sized(stop=99.0).qty == pytest.approx(2.0)  # the position cap binds first
    tiny = sized(stop=1.0)  # 99 USD a share at risk: 0.1 sh = 10.1 USD, still above the minimum
    assert tiny.blocked is None
    assert "minimum order notional" in sized(stop=1.0, equity=300.0, cash=300.0, peak_equity=300.0).blocked
    # a SELL that closes a long needs no plan and is never held back by the minimum
    assert sized(side="SELL", position_qty=0.01, stop=None).blocked is None
