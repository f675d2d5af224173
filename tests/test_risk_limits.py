"""tools/risk_limits.py: size_order enforces every hard limit; a model can only tighten."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tools.risk_limits import Limits, SizedOrder, size_order

LIMITS = Limits(
    max_position_pct=0.20,
    max_gross_exposure_pct=1.0,
    allow_short=False,
    max_drawdown_pct=0.20,
    fee_rate=0.0025,
)


def order(**overrides) -> SizedOrder:
    args = dict(
        symbol="AAA", side="BUY", size_pct=0.10, price=10.0, equity=1000.0, cash=1000.0,
        position_qty=0.0, gross_exposure=0.0, peak_equity=1000.0, limits=LIMITS,
        model_max_position_pct=None,
    )
    args.update(overrides)
    return size_order(**args)


def test_order_within_limits_is_not_capped():
    o = order(size_pct=0.10)
    assert o.blocked is None
    assert o.capped_by == []
    assert o.qty == pytest.approx(10.0)
    assert o.notional == pytest.approx(100.0)
    assert o.as_dict() == {
        "symbol": "AAA", "side": "BUY", "qty": 10.0, "price": 10.0, "notional": 100.0,
        "capped_by": [], "blocked": None,
    }


def test_max_position_cap():
    o = order(size_pct=0.50)
    assert o.notional == pytest.approx(200.0)  # 20% of equity
    assert o.capped_by == ["max position"]
    assert o.blocked is None


def test_max_position_counts_what_is_already_held():
    o = order(size_pct=0.50, position_qty=15.0, gross_exposure=150.0, cash=850.0)
    assert o.notional == pytest.approx(50.0)  # 200 cap - 150 held
    assert "max position" in o.capped_by


def test_position_already_at_or_above_cap_is_blocked():
    for qty in (20.0, 25.0):
        o = order(size_pct=0.10, position_qty=qty, gross_exposure=qty * 10, cash=1000 - qty * 10)
        assert o.qty == 0.0
        assert o.notional == 0.0
        assert o.blocked is not None and "max position" in o.blocked


def test_gross_exposure_cap():
    o = order(size_pct=0.15, gross_exposure=950.0, cash=1000.0)
    assert o.notional == pytest.approx(50.0)
    assert o.capped_by == ["max gross exposure"]
    tighter = replace(LIMITS, max_gross_exposure_pct=0.5)
    o = order(size_pct=0.15, gross_exposure=400.0, limits=tighter)
    assert o.notional == pytest.approx(100.0)
    assert o.capped_by == ["max gross exposure"]
    full = order(size_pct=0.10, gross_exposure=1000.0)
    assert full.qty == 0.0 and "max gross exposure" in full.blocked


def test_cash_cap_includes_the_fee():
    o = order(size_pct=0.20, cash=100.0)
    assert o.capped_by == ["cash"]
    assert o.notional == pytest.approx(100.0 / 1.0025)
    assert o.notional * (1 + LIMITS.fee_rate) == pytest.approx(100.0)
    assert o.notional < 100.0  # notional alone would leave nothing for the fee
    assert order(size_pct=0.20, cash=0.0).blocked is not None
    assert order(size_pct=0.20, cash=-5.0).qty == 0.0


def test_caps_apply_in_order_and_the_tightest_wins():
    o = order(size_pct=0.9, gross_exposure=900.0, cash=30.0)
    assert o.capped_by == ["max position", "max gross exposure", "cash"]
    assert o.notional == pytest.approx(30.0 / 1.0025)


def test_sell_with_nothing_held_is_blocked():
    for held in (0.0, -1.0):
        o = order(side="SELL", size_pct=0.10, position_qty=held)
        assert o.qty == 0.0
        assert o.blocked == "no short selling: nothing held to sell"


def test_sell_is_capped_at_held_quantity():
    o = order(side="SELL", size_pct=0.50, position_qty=7.5)
    assert o.qty == pytest.approx(7.5)
    assert o.notional == pytest.approx(75.0)
    assert o.capped_by == ["position held"]
    assert o.blocked is None


def test_partial_sell_sells_the_requested_size():
    o = order(side="SELL", size_pct=0.03, position_qty=7.5)
    assert o.qty == pytest.approx(3.0)
    assert o.capped_by == []


def test_drawdown_halt_blocks_buy_but_not_sell():
    o = order(side="BUY", equity=790.0, cash=790.0, peak_equity=1000.0)
    assert o.qty == 0.0
    assert o.blocked is not None and o.blocked.startswith("drawdown halt")
    s = order(side="SELL", size_pct=1.0, equity=790.0, cash=690.0, position_qty=10.0,
              gross_exposure=100.0, peak_equity=1000.0)
    assert s.blocked is None
    assert s.qty == pytest.approx(10.0)


def test_drawdown_boundary():
    assert order(equity=800.0, cash=800.0, peak_equity=1000.0).blocked is None  # exactly 20%
    assert order(equity=799.99, cash=799.99, peak_equity=1000.0).blocked is not None
    looser = replace(LIMITS, max_drawdown_pct=0.5)
    assert order(equity=600.0, cash=600.0, peak_equity=1000.0, limits=looser).blocked is None


@pytest.mark.parametrize("model_cap", [0.2, 0.5, 1.0])
def test_model_cap_larger_than_configured_never_loosens(model_cap):
    o = order(size_pct=0.9, model_max_position_pct=model_cap)
    assert o.notional == pytest.approx(200.0)
    assert o.capped_by == ["max position"]


def test_model_cap_smaller_than_configured_tightens():
    o = order(size_pct=0.9, model_max_position_pct=0.05)
    assert o.notional == pytest.approx(50.0)
    assert o.capped_by == ["max position"]
    assert order(size_pct=0.03, model_max_position_pct=0.05).capped_by == []
    zero = order(size_pct=0.10, model_max_position_pct=0.0)
    assert zero.qty == 0.0 and zero.blocked is not None
    negative = order(size_pct=0.10, model_max_position_pct=-0.3)
    assert negative.qty == 0.0


def test_invalid_price_or_equity_is_blocked():
    for overrides in ({"price": 0.0}, {"price": -1.0}, {"equity": 0.0}):
        o = order(**overrides)
        assert o.qty == 0.0
        assert o.blocked == "no valid price or equity"


def test_negative_size_is_a_zero_order():
    o = order(size_pct=-0.1)
    assert o.qty == 0.0
    assert o.blocked is not None


def test_short_selling_when_allowed_is_capped_at_max_position():
    shorty = replace(LIMITS, allow_short=True)
    o = order(side="SELL", size_pct=0.5, position_qty=0.0, limits=shorty)
    assert o.blocked is None
    assert o.qty == pytest.approx(20.0)  # down to -20% of equity
    assert o.capped_by == ["max position"]


def test_random_buys_always_respect_every_limit():
    rng = np.random.default_rng(11)
    for _ in range(2000):
        price = float(rng.uniform(0.5, 500))
        equity = float(rng.uniform(100, 10_000))
        held_value = float(rng.uniform(0, 0.3)) * equity
        gross = held_value + float(rng.uniform(0, 1.0)) * equity
        cash = float(rng.uniform(-50, equity))
        model_cap = None if rng.random() < 0.3 else float(rng.uniform(0, 1))
        limits = replace(
            LIMITS,
            max_position_pct=float(rng.uniform(0.05, 0.5)),
            max_gross_exposure_pct=float(rng.uniform(0.5, 1.0)),
        )
        o = order(
            size_pct=float(rng.uniform(0, 1)), price=price, equity=equity, cash=cash,
            position_qty=held_value / price, gross_exposure=gross, peak_equity=equity,
            limits=limits, model_max_position_pct=model_cap,
        )
        cap = limits.max_position_pct if model_cap is None else min(limits.max_position_pct, model_cap)
        assert o.qty >= 0.0
        if o.qty == 0.0:
            assert o.blocked is not None
            continue
        eps = 1e-9 * equity
        assert held_value + o.notional <= cap * equity + eps
        assert gross + o.notional <= limits.max_gross_exposure_pct * equity + eps
        assert o.notional * (1 + limits.fee_rate) <= cash + eps
