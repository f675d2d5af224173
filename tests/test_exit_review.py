"""Exit review: a held symbol runs the exit chain every cycle: HOLD, REDUCE or EXIT."""

from __future__ import annotations

import pytest
from conftest import scripted

from graph.run import run_cycle
from memory.ledger import Ledger
from nodes.exit_review import assess_position, exit_order, review_verdict, trailing_stop
from tools.portfolio import Position
from tools.trading.fills import BrokerRules, order_fill
from tools.trading.plans import review_qty


def factory(model):
    return lambda spec: model


def hold_aaa(settings) -> float:
    """Cycle 1: a scripted approved BUY of AAA; returns the held quantity."""
    state = run_cycle(settings, chat_model_factory=factory(scripted())).state
    [d] = state["decisions"]
    assert d["chain"] == "entry" and d["outcome"] == "APPROVED"
    return state["portfolio_after"]["positions"]["AAA"]["qty"]


def second_cycle(settings, overrides):
    model = scripted(overrides)
    state = run_cycle(settings, chat_model_factory=factory(model)).state
    [d] = state["decisions"]
    return state, d, [agent for agent, *_ in model.calls]


def test_sell_consensus_on_a_held_symbol_exits_it_in_full(market_csv, settings_for):
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1)
    held = hold_aaa(settings)
    state, d, asked = second_cycle(settings, {"market": {"direction": "BEARISH"}, "strategy": {"action": "SELL"}})
    assert d["chain"] == "exit_review" and d["consensus"]["action"] == "SELL"
    assert d["exit_review"]["verdict"] == "EXIT" and "consensus SELL" in d["exit_review"]["reasons"][0]
    assert d["outcome"] == "APPROVED" and d["reason"].startswith("exit review EXIT")
    order = d["order"]
    assert order["side"] == "SELL" and order["kind"] == "exit_review" and order["qty"] == pytest.approx(held)
    assert order["price"] == state["snapshots"]["AAA"]["close"] and order["blocked"] is None
    assert order["notional"] == pytest.approx(held * order["price"])
    [fill] = state["fills"]
    assert fill["side"] == "SELL" and fill["qty"] == pytest.approx(held)
    assert state["portfolio_after"]["positions"] == {}
    # no entry reviewers for a held symbol: the exit chain is market, ..., strategy, consensus, review
    assert "risk" not in asked and "auditor" not in asked
    assert d["risk"] is None and d["review"] is None and d["market"] and d["strategy"]


def test_strategist_sell_without_consensus_reduces_by_the_fraction(market_csv, settings_for):
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1, reduce_fraction=0.25)
    held = hold_aaa(settings)
    state, d, _ = second_cycle(settings, {"strategy": {"action": "SELL", "confidence": 0.6}})
    assert d["consensus"]["action"] == "HOLD"  # BULLISH 0.8 against SELL 0.6
    assert d["exit_review"]["verdict"] == "REDUCE" and d["outcome"] == "APPROVED"
    assert "strategist says SELL" in d["exit_review"]["reasons"][0]
    assert d["order"]["kind"] == "reduce_review" and d["order"]["qty"] == pytest.approx(0.25 * held)
    [fill] = state["fills"]
    assert fill["side"] == "SELL" and fill["qty"] == pytest.approx(0.25 * held)
    left = Ledger(settings.ledger_path).account(settings.portfolio).positions["AAA"].qty
    assert left == pytest.approx(0.75 * held)


def test_bullish_views_hold_without_an_order(market_csv, settings_for):
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1)
    held = hold_aaa(settings)
    state, d, asked = second_cycle(settings, {})
    assert d["chain"] == "exit_review" and d["consensus"]["action"] == "BUY"
    assert d["exit_review"]["verdict"] == "HOLD" and d["outcome"] == "HOLD" and d["order"] is None
    assert d["exit_review"]["reasons"][0].startswith("no exit or reduce signal")
    assert state["fills"] == [] and state["portfolio_after"]["positions"]["AAA"]["qty"] == pytest.approx(held)
    assert "risk" not in asked  # a held symbol is never sized for more


def test_sell_consensus_against_the_strategist_is_not_followed(market_csv, settings_for):
    """Consensus SELL, strategist BUY: it is asked again, keeps BUY: no consensus exit."""
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1)
    hold_aaa(settings)
    state, d, asked = second_cycle(settings, {"market": {"direction": "BEARISH", "strength": 0.9},
                                              "strategy": {"action": "BUY", "confidence": 0.35}})
    assert asked.count("strategy") == 2  # asked again once
    assert d["coherence"]["status"] == "disagree"
    verdict, reasons = d["exit_review"]["verdict"], d["exit_review"]["reasons"]
    assert not any(r.startswith("consensus SELL (") for r in reasons)
    assert any("not followed" in r for r in reasons)
    assert verdict == "REDUCE"  # the strong BEARISH market view still trims (a protection)


def risk(**kw):
    base = {"qty": 10.0, "avg_cost": 100.0, "close": 100.0, "atr": 2.0, "unrealized_pct": 0.0,
            "weight": 0.1, "cap": 0.2, "over_cap": False, "loss_atr": 0.0, "stop": None, "stop_hit": False}
    return {**base, **kw}


CALM = {"direction": "NEUTRAL", "strength": 0.2}
STRAT_HOLD = {"action": "HOLD", "confidence": 0.5}
CONS_HOLD = {"action": "HOLD", "score": 0.0}


def test_verdict_rules():
    assert review_verdict(market=CALM, strategy=STRAT_HOLD, consensus=CONS_HOLD, coherence=None,
                          risk=risk())[0] == "HOLD"
    # a plan stop hit is the plan's exit (execution, on the fill day's bar), noted here
    verdict, reasons = review_verdict(market=CALM, strategy=STRAT_HOLD, consensus=CONS_HOLD, coherence=None,
                                      risk=risk(stop=98.0, stop_hit=True, close=97.0))
    assert verdict == "HOLD" and "plan stop 98.00: the plan exits it" in reasons[-1]
    assert review_verdict(market=CALM, strategy=STRAT_HOLD, consensus=CONS_HOLD, coherence=None,
                          risk=risk(loss_atr=3.0))[0] == "EXIT"
    verdict, reasons = review_verdict(market=CALM, strategy=STRAT_HOLD, consensus=CONS_HOLD, coherence=None,
                                      risk=risk(over_cap=True, weight=0.3))
    assert verdict == "REDUCE" and "over its 20.0% cap" in reasons[0]
    # a weak strategist SELL alone does not trim
    assert review_verdict(market=CALM, strategy={"action": "SELL", "confidence": 0.4}, consensus=CONS_HOLD,
                          coherence=None, risk=risk())[0] == "HOLD"
    # a short mirrors: a BUY consensus exits it, with a BUY order
    verdict, _ = review_verdict(market=CALM, strategy={"action": "BUY", "confidence": 0.7},
                                consensus={"action": "BUY", "score": 0.5}, coherence=None, risk=risk(qty=-10.0))
    assert verdict == "EXIT" and exit_order("X", verdict, risk(qty=-10.0), 0.5)["side"] == "BUY"


def test_assess_position_flags():
    snap = {"close": 90.0, "atr14": 3.0}
    flags = assess_position({"qty": 10.0, "avg_cost": 100.0, "plan": {"stop": 91.0}}, snap,
                            equity=10_000.0, cap_pct=0.2)
    assert flags["stop_hit"] and flags["loss_atr"] == pytest.approx(10 / 3, abs=1e-4) and not flags["over_cap"]
    assert flags["unrealized_pct"] == pytest.approx(-0.1) and flags["weight"] == pytest.approx(0.09)
    flags = assess_position({"qty": 10.0, "avg_cost": 80.0, "stop": 85.0}, snap, equity=3000.0, cap_pct=0.2)
    assert flags["stop"] == 85.0 and not flags["stop_hit"] and flags["loss_atr"] == 0.0
    assert flags["over_cap"]  # 30% of equity against a 20% cap
    # within 110% of the cap is marks drift, not over it
    assert not assess_position({"qty": 10.0, "avg_cost": 80.0}, snap, equity=3000.0, cap_pct=0.28)["over_cap"]
    assert assess_position({"qty": 10.0, "avg_cost": 80.0}, snap, equity=0.0, cap_pct=0.2)["weight"] == 0.0
    # hostile: a non-numeric or negative stop is no stop
    assert assess_position({"qty": 1.0, "avg_cost": 80.0, "stop": "95"}, snap, 1000.0, 0.2)["stop"] is None
    assert assess_position({"qty": 1.0, "avg_cost": 80.0, "stop": -1.0}, snap, 1000.0, 0.2)["stop"] is None


def test_exit_and_reduce_orders_and_trailing_stop():
    assert exit_order("X", "HOLD", risk(), 0.5) is None
    assert exit_order("X", "EXIT", risk(qty=0.0), 0.5) is None
    assert exit_order("X", "REDUCE", risk(qty=3.0), 0.5)["qty"] == pytest.approx(1.5)
    assert trailing_stop(risk(close=110.0)) == pytest.approx(106.0)  # above the average cost
    assert trailing_stop(risk(close=103.0)) is None  # 99 would not protect the cost
    assert trailing_stop(risk(close=110.0, stop=107.0)) is None  # never looser than the stop
    assert trailing_stop(risk(qty=-5.0, close=90.0)) == pytest.approx(94.0)  # short: above the price


def test_a_restarted_cycles_own_fill_is_not_a_holding():
    """After a crash the ledger already holds this cycle's BUY: that symbol is not 'held' (it
    runs the entry chain again and the ledger returns the fill it made); older holdings are."""
    from nodes.fan_out import held_symbols

    class FakeLedger:
        def recent_fills(self, portfolio, limit=10, symbol=None):
            return [{"order_id": "p:2020-03-10:AAA", "symbol": "AAA", "side": "BUY", "qty": 2.0},
                    {"order_id": "p:2020-03-10:BBB", "symbol": "BBB", "side": "BUY", "qty": 1.0},
                    {"order_id": "p:2020-03-09:CCC", "symbol": "CCC", "side": "BUY", "qty": 3.0}]

    state = {"portfolio_id": "p", "as_of": "2020-03-10", "candidates": ["AAA", "BBB", "CCC", "DDD"],
             "portfolio_before": {"positions": {"AAA": {"qty": 2.0}, "BBB": {"qty": 4.0}, "CCC": {"qty": 3.0}}}}
    # AAA: all of it is today's fill; BBB: 3 held before today's 1; CCC: bought yesterday; DDD: none
    assert held_symbols(state, FakeLedger()) == {"BBB", "CCC"}
    assert held_symbols({**state, "portfolio_before": {"positions": {}}}, None) == set()  # no query


def test_review_qty_exit_all_reduce_a_fraction_and_leave_dust_to_the_close_out():
    assert review_qty("HOLD", 10.0, 0.5) is None
    assert review_qty("EXIT", 1e-10, 0.5) is None  # nothing held
    assert review_qty("EXIT", -7.25, 0.5) == 7.25  # a short's cover: unsigned shares
    assert review_qty("REDUCE", 10.0, 0.3) == 3.0
    assert review_qty("REDUCE", 1.0 / 3.0, 0.5) == 0.16666667  # rounded to 1e-8 shares
    # a reduce that would leave dust: the review asks for the fraction, the broker's fill closes it all
    rules = BrokerRules(fee_rate=0.0, max_slippage=0.0, max_position_pct=1.0, max_gross_exposure_pct=1.0,
                        min_order_notional=0.0, dust_notional=5.0, allow_short=False)
    snapshot = {"volume_avg20": 1e6, "atr_pct": 0.01}

    def sold(held: float, price: float) -> tuple[float, float]:
        qty = review_qty("REDUCE", held, 0.5)
        terms = order_fill(symbol="X", side="SELL", ordered=qty, kind="reduce_review", reference=price,
                           factor=1.0, snapshot=snapshot, volume_unit=1.0, cash=0.0,
                           positions={"X": Position(held, price)}, marks={"X": price}, rules=rules)
        return qty, terms.qty

    assert sold(1.5e-6, 100.0) == (pytest.approx(7.5e-7), 1.5e-6)  # 7.5e-7 shares left: under DUST_QTY
    assert sold(0.08, 100.0) == (0.04, 0.08)  # 4 USD left: under the dust notional
    assert sold(0.2, 100.0) == (0.1, 0.1)  # 10 USD left: a real position stays
