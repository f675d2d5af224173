"""tools/trading/plans.py: exits a broker can enforce from one daily bar, and tightening only."""

from __future__ import annotations

import math

import pytest

from tools.trading.plans import (
    Plan,
    advance,
    coherent_levels,
    exit_on_bar,
    in_plan_units,
    merge_add,
    plan_levels,
    tighten,
)

LONG = Plan(direction=1, entry=100.0, stop=95.0, target=110.0, horizon_days=5, opened="2020-01-02")
SHORT = Plan(direction=-1, entry=100.0, stop=105.0, target=90.0, horizon_days=5, opened="2020-01-02")


def bar(o, h, lo, c=None):
    return {"open": o, "high": h, "low": lo, "close": c if c is not None else o}


def test_gap_through_the_stop_fills_at_the_open_not_the_level():
    ex = exit_on_bar(LONG, bar(92.0, 96.0, 90.0), days_held=1)
    assert (ex.kind, ex.price) == ("stop", 92.0)


def test_intraday_touch_of_the_stop_fills_at_the_level():
    ex = exit_on_bar(LONG, bar(98.0, 99.0, 94.0), days_held=1)
    assert (ex.kind, ex.price) == ("stop", 95.0)


def test_target_gap_and_touch():
    assert (exit_on_bar(LONG, bar(112.0, 113.0, 111.0), 1).kind, exit_on_bar(LONG, bar(112.0, 113.0, 111.0), 1).price) \
        == ("target", 112.0)
    ex = exit_on_bar(LONG, bar(105.0, 110.5, 104.0), 1)
    assert (ex.kind, ex.price) == ("target", 110.0)


def test_both_levels_in_one_bar_is_read_as_the_stop_first():
    ex = exit_on_bar(LONG, bar(100.0, 111.0, 94.0), 1)
    assert (ex.kind, ex.price) == ("stop", 95.0)


def test_quiet_bar_no_exit_and_time_exit_at_the_open_on_the_horizon():
    assert exit_on_bar(LONG, bar(100.0, 101.0, 99.0), 4) is None
    ex = exit_on_bar(LONG, bar(100.0, 101.0, 99.0), 5)
    assert (ex.kind, ex.price) == ("time", 100.0)
    # a gap through the stop on the horizon day is still a stop
    assert exit_on_bar(LONG, bar(90.0, 91.0, 89.0), 5).kind == "stop"


def test_short_mirrors_every_rule():
    assert (exit_on_bar(SHORT, bar(107.0, 108.0, 103.0), 1).kind, exit_on_bar(SHORT, bar(107.0, 108.0, 103.0), 1).price) \
        == ("stop", 107.0)
    assert exit_on_bar(SHORT, bar(100.0, 106.0, 99.0), 1).price == 105.0
    ex = exit_on_bar(SHORT, bar(95.0, 96.0, 89.0), 1)
    assert (ex.kind, ex.price) == ("target", 90.0)


def test_exit_price_is_always_inside_the_bar():
    # stop at 95 but the bar traded 96.5..99 after an open of 97 would not exit; one that
    # traded through it exits at a price within [low, high]
    for b in (bar(97.0, 99.0, 94.9), bar(96.0, 120.0, 80.0)):
        ex = exit_on_bar(LONG, b, 1)
        assert b["low"] <= ex.price <= b["high"]


@pytest.mark.parametrize("open_", [float("nan"), None, -1.0, "x", float("inf")])
def test_a_bar_without_a_usable_open_never_exits(open_):
    assert exit_on_bar(LONG, {"open": open_, "high": 200.0, "low": 1.0}, 99) is None


def test_trailing_stop_moves_after_the_bar_it_checked_not_during_it():
    plan = Plan(1, 100.0, 90.0, None, None, "2020-01-02", trailing_pct=0.05, best=100.0)
    assert plan.effective_stop() == (95.0, "trailing")
    # a bar that rallies to 120 then drops to 100: the stop it is checked against is still 95
    big = bar(101.0, 120.0, 100.0)
    assert exit_on_bar(plan, big, 1) is None
    moved = advance(plan, big)
    assert moved.best == 120.0 and moved.effective_stop() == (pytest.approx(114.0), "trailing")
    ex = exit_on_bar(moved, bar(115.0, 116.0, 110.0), 2)
    assert ex.kind == "trailing" and ex.price == pytest.approx(114.0)
    assert advance(moved, bar(100.0, 101.0, 99.0)).best == 120.0  # never moves back


def test_tighten_only_toward_the_price():
    plan, note = tighten(LONG, {"stop": 97.0}, price=101.0)
    assert plan.stop == 97.0 and "95 -> 97" in note
    same, note = tighten(plan, {"stop": 96.0}, price=101.0)  # looser: refused
    assert same.stop == 97.0 and "never loosened" in note
    same, note = tighten(plan, {"stop": 101.5}, price=101.0)  # at/above the price: refused
    assert same.stop == 97.0 and "beyond the price" in note
    for hostile in ({"stop": "abc"}, {"stop": float("nan")}, {"stop": -3}, {"stop": math.inf}):
        assert tighten(plan, hostile, price=101.0)[0].stop == 97.0
    assert tighten(plan, None, price=101.0) == (plan, None)
    short, _ = tighten(SHORT, {"stop": 103.0}, price=99.0)
    assert short.stop == 103.0
    assert tighten(short, {"stop": 104.0}, price=99.0)[0].stop == 103.0


def test_coherent_levels():
    assert coherent_levels("BUY", 100.0, 95.0, 110.0) is None
    assert "stop" in coherent_levels("BUY", 100.0, 100.0, 110.0)
    assert "stop" in coherent_levels("BUY", 100.0, 106.0, 110.0)
    assert "target" in coherent_levels("BUY", 100.0, 95.0, 99.0)
    assert coherent_levels("SELL", 100.0, 105.0, 90.0) is None
    assert "stop" in coherent_levels("SELL", 100.0, 95.0, 90.0)


def test_plan_round_trips_and_scales_with_a_split():
    plan = Plan.from_dict({**LONG.as_dict(), "levels_from": "strategy"})  # unknown keys ignored
    assert plan == LONG
    half = LONG.scaled(2.0)
    assert (half.entry, half.stop, half.target) == (50.0, 47.5, 55.0)
    assert LONG.scaled(float("nan")) == LONG


def test_plan_levels_are_the_strategists_on_its_side_else_the_atr_rule():
    # the strategist called BUY with its levels: taken as given (target may be absent)
    assert plan_levels("BUY", "BUY", 95, 112, close=100.0, atr=2.0) == (95.0, 112.0, "strategy")
    assert plan_levels("BUY", "BUY", 95.0, None, close=100.0, atr=2.0) == (95.0, None, "strategy")
    # another side, or no stop: 2 ATR against, 3 ATR with the trade, never the other side's stop
    assert plan_levels("BUY", "SELL", 105.0, 90.0, close=100.0, atr=2.0) == (96.0, 106.0, "atr")
    assert plan_levels("SELL", None, None, None, close=100.0, atr=2.0) == (104.0, 94.0, "atr")
    # no usable ATR: 2% of the close stands in for it
    assert plan_levels("BUY", "BUY", None, 120.0, close=50.0, atr=float("nan")) == pytest.approx((48.0, 53.0, "atr"))


def test_an_add_after_a_reverse_split_is_put_in_the_open_plans_units():
    # plan opened before a 1:10 reverse split (its units: old shares); an add fills at 200 new-share USD
    added = {"direction": 1, "entry": 200.0, "stop": 190.0, "target": None, "best": 200.0, "opened": "2020-03-02"}
    scaled = in_plan_units(added, 0.1)
    assert scaled == pytest.approx({**added, "entry": 20.0, "stop": 19.0, "best": 20.0}) and scaled["target"] is None
    assert added["entry"] == 200.0  # the input is left alone
    assert in_plan_units(added, 1.0) == added and in_plan_units(added, 1.0) is not added
    assert in_plan_units(added, 2.0)["stop"] == 380.0  # a 2:1 split after the plan opened


def test_an_add_at_another_price_only_ever_tightens_the_stop():
    current = {"direction": 1, "entry": 100.0, "stop": 95.0, "target": 110.0, "opened": "2020-01-02",
               "horizon_days": 10}
    # an add higher up with a higher stop: the stop tightens; entry, target, day and horizon stay
    merged = merge_add(current, {"direction": 1, "entry": 104.0, "stop": 99.0, "target": 115.0,
                                 "opened": "2020-01-09", "horizon_days": 20})
    assert merged == {**current, "stop": 99.0} and current["stop"] == 95.0
    # an add lower down with a looser stop: nothing changes
    assert merge_add(current, {"entry": 97.0, "stop": 92.0}) == current
    assert merge_add(current, {"entry": 97.0, "stop": None}) == current
    # a short tightens downward; a plan without a stop takes the add's
    short = {"direction": -1, "entry": 100.0, "stop": 105.0}
    assert merge_add(short, {"stop": 103.0})["stop"] == 103.0 and merge_add(short, {"stop": 107.0})["stop"] == 105.0
    assert merge_add({"direction": 1, "stop": None}, {"stop": 90.0})["stop"] == 90.0
