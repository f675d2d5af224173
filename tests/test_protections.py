"""tools/trading/protections.py: a drawdown halt that recovers, trading and market breakers."""

from __future__ import annotations

import pytest
from conftest import synthetic_frame

from graph.settings import VoltSettings
from memory.alerts import HALT, list_alerts
from memory.ledger import Ledger
from nodes.trading_plans import cycle_protections
from tools.data_source import market_dataset
from tools.risk_limits import Limits, size_order
from tools.trading.protections import (
    ProtectionInput,
    ProtectionSettings,
    drawdown_state,
    evaluate,
    index_day_return,
)

LIMITS = Limits(0.2, 1.0, False, 0.20, 0.0025)


def buy(protections: dict, equity: float):
    return size_order(symbol="AAA", side="BUY", size_pct=0.1, price=10.0, equity=equity, cash=equity,
                      position_qty=0.0, gross_exposure=0.0, peak_equity=protections["peak_equity"],
                      limits=LIMITS, blocks_orders=protections["blocks_orders"],
                      blocks_buys=protections["blocks_buys"])


def test_drawdown_halt_blocks_buys_then_trading_resumes_after_the_cooldown():
    s = ProtectionSettings(max_drawdown_pct=0.2, halt_cooldown_cycles=3)
    equities = [1000.0, 1100.0, 800.0]  # 27% below the peak
    halted = evaluate(ProtectionInput(1000.0, equities, settings=s))
    assert halted["active"] == ["drawdown_halt"] and "drawdown halt" in halted["blocks_buys"]
    assert halted["blocks_orders"] is None  # exits and sells are never blocked by the halt
    assert buy(halted, 800.0).blocked.startswith("drawdown halt")
    still = evaluate(ProtectionInput(1000.0, equities + [790.0], settings=s))
    assert still["blocks_buys"] and "1 more cycle" in still["blocks_buys"]
    # a portfolio in cash cannot climb back to 1100: after 3 cycles in the halt the peak resets
    resumed = evaluate(ProtectionInput(1000.0, equities + [790.0, 795.0], settings=s))
    assert resumed["blocks_buys"] is None and resumed["peak_equity"] == 795.0
    order = buy(resumed, 795.0)
    assert order.blocked is None and order.qty > 0
    # a fresh 20% fall from the new peak halts again
    again = evaluate(ProtectionInput(1000.0, equities + [790.0, 795.0, 600.0], settings=s))
    assert again["blocks_buys"]


def test_cooldown_zero_keeps_the_old_absorbing_halt_and_bad_values_are_ignored():
    st = drawdown_state(1000.0, [700.0] * 50, 0.2, 0)
    assert st["halted"] and st["peak"] == 1000.0 and st["resets"] == 0
    st = drawdown_state(1000.0, [float("nan"), -5.0, 990.0], 0.2, 3)
    assert not st["halted"] and st["equity"] == 990.0


def test_trading_breaker_trips_on_failed_orders_and_recovers_as_they_age_out():
    s = ProtectionSettings(trading_breaker_window=3, trading_breaker_rate=0.5, trading_breaker_min_orders=4)
    history = [(2, 0), (3, 3), (2, 2)]  # 5 of 7 failed
    tripped = evaluate(ProtectionInput(1000.0, [], history, settings=s))
    assert tripped["blocks_orders"].startswith("trading breaker") and tripped["blocks_buys"]
    sell = size_order(symbol="AAA", side="SELL", size_pct=0.1, price=10.0, equity=1000.0, cash=900.0,
                      position_qty=10.0, gross_exposure=100.0, peak_equity=1000.0, limits=LIMITS,
                      blocks_orders=tripped["blocks_orders"])
    assert sell.blocked.startswith("trading breaker")
    # too few orders to judge, then the failures age out of the window
    assert evaluate(ProtectionInput(1000.0, [], [(1, 1), (1, 1)], settings=s))["blocks_orders"] is None
    assert evaluate(ProtectionInput(1000.0, [], history + [(0, 0)] * 3, settings=s))["blocks_orders"] is None


def test_market_breaker_blocks_buys_on_a_large_index_move_either_way():
    s = ProtectionSettings(market_breaker_pct=0.05)
    for move in (0.06, -0.08):
        out = evaluate(ProtectionInput(1000.0, [], (), move, settings=s))
        assert out["active"] == ["market_breaker"] and out["blocks_orders"] is None
        assert "market breaker" in out["blocks_buys"]
    for move in (0.04, None, float("nan")):
        assert evaluate(ProtectionInput(1000.0, [], (), move, settings=s))["blocks_buys"] is None


def test_index_day_return_reads_no_later_row(tmp_path, clean_env):
    csv = tmp_path / "m.csv"
    synthetic_frame({"AAA": 0.1, "BBB": 0.0}, days=60).to_csv(csv, index=False)
    ds = market_dataset(VoltSettings(home=tmp_path / "h", data_csv=csv))
    day = ds.calendar[30]
    expected = (ds.close_panel.iloc[30] / ds.close_panel.iloc[29] - 1).mean()
    assert index_day_return(ds.close_panel, ds.calendar, day) == pytest.approx(expected)
    assert index_day_return(ds.close_panel, ds.calendar, ds.calendar[0]) is None


def test_a_new_halt_raises_one_alert_even_when_the_cycle_is_resumed(tmp_path, clean_env):
    csv = tmp_path / "m.csv"
    synthetic_frame({"AAA": 0.1, "BBB": 0.0}, days=60).to_csv(csv, index=False)
    settings = VoltSettings(home=tmp_path / "h", data_csv=csv, halt_cooldown_cycles=5)
    ds = market_dataset(settings)
    ledger = Ledger(settings.ledger_path)
    ledger.ensure_portfolio("main", 1000.0)
    days = [f"{d:%Y-%m-%d}" for d in ds.calendar[50:54]]
    for day, equity in zip(days[:2], (1000.0, 700.0), strict=True):
        cycle_protections(settings, ledger, ds, "main", day, 1000.0)
        ledger.complete_cycle("main", day, equity, equity, 0.0)
    state = cycle_protections(settings, ledger, ds, "main", days[2], 1000.0)
    assert "drawdown_halt" in state["active"]
    cycle_protections(settings, ledger, ds, "main", days[2], 1000.0)  # resumed: same record
    halts = [a for a in list_alerts(settings.home) if a["kind"] == HALT]
    assert len(halts) == 1 and "drawdown halt" in halts[0]["message"]
