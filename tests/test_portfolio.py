"""tools/portfolio.py accounting and memory/ledger.py idempotent fills."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from memory.db import open_db
from memory.ledger import FillRecord, Ledger, order_id
from tools.broker import fee
from tools.portfolio import Account, Position, apply_fill, value_account

FEE = 0.0025


def account(cash: float = 1000.0) -> Account:
    return Account("p", cash, cash, cash)


def buy(acc: Account, symbol: str, qty: float, price: float) -> float:
    return apply_fill(acc, symbol, "BUY", qty, price, fee(qty * price, FEE))


def sell(acc: Account, symbol: str, qty: float, price: float) -> float:
    return apply_fill(acc, symbol, "SELL", qty, price, fee(qty * price, FEE))


def market_value(acc: Account, prices: dict[str, float]) -> float:
    return sum(p.qty * prices[s] for s, p in acc.positions.items())


# --- tools/portfolio.py ---------------------------------------------------------------


def test_buy_reduces_cash_by_notional_plus_fee_and_fee_is_in_avg_cost():
    acc = account()
    realized = apply_fill(acc, "AAA", "BUY", 4, 50.0, 0.5)
    assert realized == 0.0
    assert acc.cash == pytest.approx(1000 - 200 - 0.5, abs=1e-12)
    assert acc.positions["AAA"] == Position(4, pytest.approx(200.5 / 4, abs=1e-12))
    assert acc.held() == ["AAA"]


def test_adding_to_a_position_averages_cost_with_fees():
    acc = account()
    apply_fill(acc, "AAA", "BUY", 4, 50.0, 0.5)
    apply_fill(acc, "AAA", "BUY", 2, 60.0, 0.3)
    assert acc.positions["AAA"].qty == 6
    assert acc.positions["AAA"].avg_cost == pytest.approx((200.5 + 120.3) / 6, abs=1e-12)
    assert acc.cash == pytest.approx(1000 - 200.5 - 120.3, abs=1e-12)


def test_sell_realizes_pnl_net_of_sell_fee():
    acc = account()
    apply_fill(acc, "AAA", "BUY", 10, 20.0, 0.5)  # avg cost 20.05
    realized = apply_fill(acc, "AAA", "SELL", 4, 25.0, 0.25)
    assert realized == pytest.approx((25.0 - 20.05) * 4 - 0.25, abs=1e-12)  # 19.55
    assert realized == pytest.approx(19.55, abs=1e-12)
    assert acc.cash == pytest.approx(1000 - 200.5 + 100 - 0.25, abs=1e-12)
    assert acc.positions["AAA"].qty == 6
    assert acc.positions["AAA"].avg_cost == pytest.approx(20.05, abs=1e-12)  # unchanged by a sell


def test_losing_sell_realizes_a_loss_including_both_fees():
    acc = account()
    apply_fill(acc, "AAA", "BUY", 10, 20.0, 0.5)
    realized = apply_fill(acc, "AAA", "SELL", 10, 20.0, 0.5)
    assert realized == pytest.approx(-1.0, abs=1e-12)  # flat price: only fees lost
    assert acc.cash == pytest.approx(999.0, abs=1e-12)


def test_full_sell_removes_the_position():
    acc = account()
    buy(acc, "AAA", 3.0, 10.0)
    buy(acc, "BBB", 1.0, 10.0)
    sell(acc, "AAA", 3.0, 11.0)
    assert "AAA" not in acc.positions
    assert acc.held() == ["BBB"]
    assert set(value_account(acc, {"BBB": 10.0}).positions) == {"BBB"}


def test_fractional_shares():
    acc = account(100.0)
    buy(acc, "AAA", 0.37, 123.4)
    cost = 0.37 * 123.4 * (1 + FEE)
    assert acc.cash == pytest.approx(100.0 - cost, abs=1e-12)
    assert acc.positions["AAA"].qty == pytest.approx(0.37)
    assert acc.positions["AAA"].avg_cost == pytest.approx(123.4 * (1 + FEE), abs=1e-12)
    realized = sell(acc, "AAA", 0.12, 130.0)
    assert realized == pytest.approx((130.0 - 123.4 * (1 + FEE)) * 0.12 - 0.12 * 130 * FEE, abs=1e-12)
    assert acc.positions["AAA"].qty == pytest.approx(0.25)
    sell(acc, "AAA", acc.positions["AAA"].qty, 130.0)
    assert acc.positions == {}


def test_cash_plus_market_value_is_equity_through_a_trade_sequence():
    acc = account()
    prices = {"AAA": 50.0, "BBB": 7.5}
    buy(acc, "AAA", 4, prices["AAA"])
    buy(acc, "BBB", 20.5, prices["BBB"])
    prices = {"AAA": 53.0, "BBB": 7.0}
    val = value_account(acc, prices)
    assert val.equity == pytest.approx(acc.cash + market_value(acc, prices), abs=1e-9)
    assert val.equity == pytest.approx(acc.cash + 4 * 53.0 + 20.5 * 7.0, abs=1e-9)
    assert val.gross_exposure == pytest.approx(4 * 53.0 + 20.5 * 7.0, abs=1e-9)
    unrealized = sum((prices[s] - p.avg_cost) * p.qty for s, p in acc.positions.items())
    assert val.unrealized_pnl == pytest.approx(unrealized, abs=1e-9)
    sell(acc, "AAA", 1.5, 53.0)
    val = value_account(acc, prices)
    assert val.equity == pytest.approx(acc.cash + market_value(acc, prices), abs=1e-9)
    d = val.as_dict()
    assert d["exposure_pct"] == pytest.approx(val.gross_exposure / val.equity, abs=1e-6)
    assert d["positions"]["AAA"]["qty"] == pytest.approx(2.5)


def test_fees_are_the_only_equity_leak_at_constant_prices():
    acc = account()
    fees = 0.0
    for symbol, qty, price in [("AAA", 3, 40.0), ("BBB", 5.5, 12.0), ("AAA", 1, 40.0)]:
        fees += fee(qty * price, FEE)
        buy(acc, symbol, qty, price)
    for symbol, qty, price in [("AAA", 2, 40.0), ("BBB", 5.5, 12.0)]:
        fees += fee(qty * price, FEE)
        sell(acc, symbol, qty, price)
    prices = {"AAA": 40.0, "BBB": 12.0}
    assert value_account(acc, prices).equity == pytest.approx(1000.0 - fees, abs=1e-9)


def test_realized_pnl_sums_to_cash_change_when_flat():
    acc = account()
    realized = [buy(acc, "AAA", 5, 10.0), buy(acc, "AAA", 5, 12.0)]
    realized += [sell(acc, "AAA", 3, 15.0), sell(acc, "AAA", 7, 9.0)]
    assert acc.positions == {}
    assert sum(realized) == pytest.approx(acc.cash - 1000.0, abs=1e-9)


def test_missing_price_marks_at_average_cost():
    acc = account()
    buy(acc, "AAA", 2, 10.0)
    val = value_account(acc, {})
    assert val.positions["AAA"]["price"] == pytest.approx(10.0 * (1 + FEE))
    assert val.unrealized_pnl == 0.0
    assert val.equity == pytest.approx(acc.cash + 2 * 10.0 * (1 + FEE), abs=1e-12)


# --- memory/ledger.py ------------------------------------------------------------------


@pytest.fixture
def ledger(backend) -> Ledger:  # on SQLite and on PostgreSQL (tests/conftest.py)
    led = Ledger(backend.target)
    led.ensure_portfolio("p", 1000.0)
    return led


def make_record(symbol: str, side: str, qty: float, price: float) -> FillRecord:
    return FillRecord(
        order_id="", symbol=symbol, side=side, qty=qty, reference_price=price, price=price,
        slippage_pct=0.0, fee=fee(qty * price, FEE), realized_pnl=0.0,
        fill_date="2021-01-05", latency_ms=1.0,
    )


def fill_with(symbol: str, side: str, qty: float, price: float, calls: list | None = None):
    def make_fill(acc: Account) -> FillRecord | str:
        if calls is not None:  # a copy: the ledger applies the fill to this very object
            calls.append((acc.cash, {s: p.qty for s, p in acc.positions.items()}))
        return make_record(symbol, side, qty, price)

    return make_fill


def order_rows(led: Ledger) -> list[sqlite3.Row]:
    with open_db(led.path) as conn:
        return conn.execute("SELECT * FROM orders").fetchall()


def test_record_fill_books_cash_position_and_order(ledger):
    fill = ledger.record_fill(portfolio="p", as_of="2021-01-04", symbol="AAA", side="BUY",
                              qty_requested=4, make_fill=fill_with("AAA", "BUY", 4, 50.0))
    assert isinstance(fill, FillRecord)
    assert fill.order_id == order_id("p", "2021-01-04", "AAA") == "p:2021-01-04:AAA"
    acc = ledger.account("p")
    assert acc.cash == pytest.approx(1000 - 200 - 0.5, abs=1e-12)
    assert acc.positions["AAA"].qty == 4
    assert acc.positions["AAA"].avg_cost == pytest.approx(200.5 / 4, abs=1e-12)
    assert ledger.get_fill(fill.order_id) == fill
    assert [r["status"] for r in order_rows(ledger)] == ["FILLED"]


def test_record_fill_is_idempotent(ledger):
    first = ledger.record_fill(portfolio="p", as_of="2021-01-04", symbol="AAA", side="BUY",
                               qty_requested=4, make_fill=fill_with("AAA", "BUY", 4, 50.0))
    cash = ledger.account("p").cash
    calls: list = []
    second = ledger.record_fill(portfolio="p", as_of="2021-01-04", symbol="AAA", side="BUY",
                                qty_requested=9, make_fill=fill_with("AAA", "BUY", 9, 55.0, calls))
    assert second == first
    assert calls == []  # the earlier fill is found before anything is simulated
    acc = ledger.account("p")
    assert acc.cash == cash
    assert acc.positions["AAA"].qty == 4
    assert len(order_rows(ledger)) == 1
    assert len(ledger.recent_fills("p")) == 1
    # Another day is another order.
    third = ledger.record_fill(portfolio="p", as_of="2021-01-05", symbol="AAA", side="BUY",
                               qty_requested=1, make_fill=fill_with("AAA", "BUY", 1, 55.0))
    assert third.order_id == "p:2021-01-05:AAA"
    assert ledger.account("p").positions["AAA"].qty == 5


def test_unfilled_reason_is_recorded_once(ledger):
    reason = "no next bar to fill at (end of data or a data issue)"
    first = ledger.record_fill(portfolio="p", as_of="2021-01-04", symbol="AAA", side="BUY",
                               qty_requested=4, make_fill=lambda acc: reason)
    assert first == reason
    calls: list = []
    second = ledger.record_fill(portfolio="p", as_of="2021-01-04", symbol="AAA", side="BUY",
                                qty_requested=4, make_fill=fill_with("AAA", "BUY", 4, 50.0, calls))
    assert second == reason
    assert calls == []
    rows = order_rows(ledger)
    assert [(r["status"], r["reason"]) for r in rows] == [("UNFILLED", reason)]
    assert ledger.recent_fills("p") == []
    assert ledger.account("p").cash == 1000.0


def test_failing_make_fill_rolls_back_and_can_be_retried(ledger):
    def boom(acc: Account):
        raise RuntimeError("simulator crashed")

    with pytest.raises(RuntimeError):
        ledger.record_fill(portfolio="p", as_of="2021-01-04", symbol="AAA", side="BUY",
                           qty_requested=4, make_fill=boom)
    assert order_rows(ledger) == []
    fill = ledger.record_fill(portfolio="p", as_of="2021-01-04", symbol="AAA", side="BUY",
                              qty_requested=4, make_fill=fill_with("AAA", "BUY", 4, 50.0))
    assert isinstance(fill, FillRecord)


def test_make_fill_sees_the_current_account(ledger):
    ledger.record_fill(portfolio="p", as_of="2021-01-04", symbol="AAA", side="BUY",
                       qty_requested=4, make_fill=fill_with("AAA", "BUY", 4, 50.0))
    calls: list = []
    ledger.record_fill(portfolio="p", as_of="2021-01-05", symbol="AAA", side="SELL",
                       qty_requested=4, make_fill=fill_with("AAA", "SELL", 4, 60.0, calls))
    [(cash, positions)] = calls
    assert cash == pytest.approx(799.5, abs=1e-12)
    assert positions == {"AAA": 4}


def test_ledger_sell_realizes_pnl_and_removes_position(ledger):
    ledger.record_fill(portfolio="p", as_of="2021-01-04", symbol="AAA", side="BUY",
                       qty_requested=10, make_fill=fill_with("AAA", "BUY", 10, 20.0))
    fill = ledger.record_fill(portfolio="p", as_of="2021-01-05", symbol="AAA", side="SELL",
                              qty_requested=10, make_fill=fill_with("AAA", "SELL", 10, 25.0))
    assert fill.realized_pnl == pytest.approx((25.0 - 20.05) * 10 - 0.625, abs=1e-9)
    acc = ledger.account("p")
    assert acc.positions == {}
    assert acc.cash == pytest.approx(1000 - 200.5 + 250 - 0.625, abs=1e-9)
    assert acc.cash - 1000.0 == pytest.approx(fill.realized_pnl, abs=1e-9)


def test_cash_never_negative_when_make_fill_respects_cash(ledger):
    rng = np.random.default_rng(7)

    def cash_respecting(symbol: str, wanted: float, price: float):
        def make_fill(acc: Account) -> FillRecord | str:
            qty = min(wanted, acc.cash / (price * (1 + FEE)))
            while qty > 0 and qty * price + fee(qty * price, FEE) > acc.cash:
                qty = float(np.nextafter(qty, 0.0))
            if qty <= 1e-9:
                return "no cash"
            return make_record(symbol, "BUY", qty, price)

        return make_fill

    outcomes = []
    for i in range(30):
        price = float(rng.uniform(1, 500))
        wanted = float(rng.uniform(0.1, 5)) * 1000 / price  # often more than the cash left
        outcomes.append(ledger.record_fill(
            portfolio="p", as_of=f"2021-02-{i % 28 + 1:02d}", symbol=f"S{i}", side="BUY",
            qty_requested=wanted, make_fill=cash_respecting(f"S{i}", wanted, price),
        ))
        assert ledger.account("p").cash >= 0.0
    assert any(isinstance(o, FillRecord) for o in outcomes)
    assert "no cash" in outcomes  # the cash did run out
    acc = ledger.account("p")
    spent = sum(o.qty * o.price + o.fee for o in outcomes if isinstance(o, FillRecord))
    assert acc.cash == pytest.approx(1000.0 - spent, abs=1e-9)


def test_short_round_trip_realizes_the_cash_gain():
    # Only reachable with VOLT_ALLOW_SHORT=true: sell 5 @ 100 short, cover 2 then 3 @ 90.
    account = Account("p", 1000.0, 1000.0, 1000.0)
    assert apply_fill(account, "X", "SELL", 5, 100.0, 1.25) == 0.0
    assert account.positions["X"].qty == -5 and account.positions["X"].avg_cost == pytest.approx(99.75)
    first = apply_fill(account, "X", "BUY", 2, 90.0, 0.45)
    assert first == pytest.approx((99.75 - 90.0) * 2 - 0.45)
    second = apply_fill(account, "X", "BUY", 3, 90.0, 0.675)
    assert "X" not in account.positions
    assert first + second == pytest.approx(account.cash - 1000.0)


def test_sell_more_than_held_flips_to_short_with_split_fee():
    account = Account("p", 1000.0, 1000.0, 1000.0)
    apply_fill(account, "Y", "BUY", 2, 100.0, 0.5)
    realized = apply_fill(account, "Y", "SELL", 3, 110.0, 0.825)
    assert realized == pytest.approx((110.0 - 100.25) * 2 - 0.55)
    assert account.positions["Y"].qty == pytest.approx(-1.0)
    assert account.positions["Y"].avg_cost == pytest.approx(110.0 - 0.275)
