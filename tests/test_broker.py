"""tools/broker.py: slippage model, fill price direction, fees."""

from __future__ import annotations

import itertools
import math

import pytest

from tools.broker import fee, fill_price, slippage_fraction

ADV = 1_000_000.0  # average daily shares


def slip(atr_pct: float, shares: float, adv: float = ADV, max_slippage: float = 0.005) -> float:
    return slippage_fraction(
        atr_pct=atr_pct, order_shares=shares, avg_daily_shares=adv, max_slippage=max_slippage
    )


def test_documented_formula():
    # 0.05 * 2% + 2% * sqrt(100 / 1e6) = 0.001 + 0.0002
    assert slip(0.02, 100) == pytest.approx(0.0012, abs=1e-15)
    # spread term only for an empty order
    assert slip(0.03, 0) == pytest.approx(0.0015, abs=1e-15)
    # 1% ATR, 1% participation: 0.0005 + 0.001
    assert slip(0.01, 10_000) == pytest.approx(0.0015, abs=1e-15)


def test_default_cap_is_half_a_percent():
    assert slippage_fraction(atr_pct=0.5, order_shares=ADV, avg_daily_shares=ADV) == 0.005


def test_slippage_always_within_zero_and_max():
    atrs = [-0.1, 0.0, 0.001, 0.02, 0.08, 0.5, math.nan, math.inf]
    shares = [-50.0, 0.0, 1.0, 1e3, 1e6, 1e9]
    advs = [-1.0, 0.0, 1.0, 1e4, 1e7, math.nan, math.inf]
    caps = [0.0, 0.001, 0.005, 0.05]
    for atr, q, adv, cap in itertools.product(atrs, shares, advs, caps):
        s = slip(atr, q, adv, cap)
        assert 0.0 <= s <= cap, (atr, q, adv, cap, s)


def test_grows_with_atr_pct():
    values = [slip(a, 1_000, max_slippage=1.0) for a in (0.0, 0.005, 0.01, 0.02, 0.04)]
    assert values[0] == 0.0
    assert all(a < b for a, b in itertools.pairwise(values))


def test_grows_with_participation():
    values = [slip(0.02, q, max_slippage=1.0) for q in (0, 100, 10_000, 100_000, 1_000_000)]
    assert all(a < b for a, b in itertools.pairwise(values))
    # square-root impact: 4x the order costs 2x the impact term
    impact = [slip(0.02, q, max_slippage=1.0) - 0.001 for q in (10_000, 40_000)]
    assert impact[1] == pytest.approx(2 * impact[0])


def test_capped_at_max_slippage():
    assert slip(0.2, 10 * ADV) == 0.005
    assert slip(0.2, 10 * ADV, max_slippage=0.01) == 0.01
    assert slip(0.02, 100, max_slippage=0.0) == 0.0
    # just below the cap the formula still applies
    assert slip(0.004, 0, max_slippage=0.005) == pytest.approx(0.0002)


def test_negative_inputs_clamp_to_zero():
    assert slip(-0.02, 1_000) == 0.0
    assert slip(0.02, -1_000) == slip(0.02, 0)


@pytest.mark.parametrize("adv", [0.0, -5.0, math.nan, math.inf])
def test_unknown_liquidity_pays_the_cap(adv):
    assert slip(0.004, 10, adv, max_slippage=0.005) == 0.005
    assert slip(0.004, 10, adv, max_slippage=0.005) >= slip(0.004, ADV, ADV, max_slippage=0.005)


@pytest.mark.parametrize("atr", [math.nan, math.inf])
def test_unknown_volatility_pays_the_cap(atr):
    assert slip(atr, 10, ADV, max_slippage=0.005) == 0.005


def test_fill_price_direction():
    assert fill_price(100.0, "BUY", 0.004) == pytest.approx(100.4)
    assert fill_price(100.0, "SELL", 0.004) == pytest.approx(99.6)
    assert fill_price(100.0, "BUY", 0.004) > 100.0 > fill_price(100.0, "SELL", 0.004)
    assert fill_price(57.25, "BUY", 0.0) == 57.25
    assert fill_price(57.25, "SELL", 0.0) == 57.25


def test_fill_price_with_model_slippage_is_bounded():
    s = slip(0.03, 50_000)
    assert 100.0 < fill_price(100.0, "BUY", s) <= 100.5
    assert 99.5 <= fill_price(100.0, "SELL", s) < 100.0


def test_fee_is_a_quarter_percent_of_notional():
    assert fee(1000.0, 0.0025) == pytest.approx(2.5, abs=1e-12)
    assert fee(123.45, 0.0025) == pytest.approx(0.308625, abs=1e-12)
    assert fee(-1000.0, 0.0025) == pytest.approx(2.5, abs=1e-12)
    assert fee(0.0, 0.0025) == 0.0
    assert fee(1000.0, 0.0) == 0.0
    qty, price = 3.5, fill_price(40.0, "BUY", 0.001)
    assert fee(qty * price, 0.0025) == pytest.approx(3.5 * 40.04 * 0.0025, abs=1e-12)


def test_a_short_opened_at_the_fill_is_held_to_the_position_and_gross_exposure_limits():
    from tools.portfolio import Position
    from tools.trading.fills import BrokerRules, order_fill

    rules = BrokerRules(fee_rate=0.0, max_slippage=0.0, max_position_pct=0.2, max_gross_exposure_pct=0.5,
                        min_order_notional=1.0, dust_notional=1.0, allow_short=True)
    snap = {"volume_avg20": 1e9, "atr_pct": 0.01}

    def short(ordered: float, positions: dict, cash: float = 1000.0):
        return order_fill(symbol="X", side="SELL", ordered=ordered, kind="entry", reference=10.0, factor=1.0,
                          snapshot=snap, volume_unit=1.0, cash=cash, positions=positions,
                          marks={s: p.avg_cost for s, p in positions.items()}, rules=rules)

    # equity 1,000: a short of 50 shares (500 USD) is cut to the 20% position cap, 20 shares
    assert short(50, {}).qty == pytest.approx(20.0)
    # adding to a short of 10 shares (100 USD): 10 more reach the cap
    assert short(50, {"X": Position(-10, 10.0)}, cash=1100.0).qty == pytest.approx(10.0)
    # 450 USD held long elsewhere (gross 450 of the 500 allowed): only 5 shares of room
    assert short(50, {"Y": Position(45, 10.0)}, cash=550.0).qty == pytest.approx(5.0)
    # no room at all: nothing trades (never a short beyond the limits)
    assert short(50, {"Y": Position(50, 10.0)}, cash=500.0) == "limits at the fill price leave nothing to trade"
