"""The statistical BUY gate (tools/learning/gate.py) and the history reviewer that uses it:
no learned weight is ever an absolute veto."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from langgraph.runtime import Runtime

from graph.context import VoltContext
from memory.db import open_db
from memory.learning_store import LearningStore
from nodes.history_reviewer import history_reviewer
from tools.learning.gate import base_up_rate, binom_cdf, weekly_blocks, worse_than_base

MONDAYS = [f"{d:%Y-%m-%d}" for d in pd.date_range("2021-01-04", periods=20, freq="W-MON")]


def calls(hits, signal=0.6, days=MONDAYS):
    return [{"as_of": d, "symbol": "S", "signal": signal, "hit": int(h)} for d, h in zip(days, hits, strict=False)]


def test_binomial_cdf_is_exact():
    assert binom_cdf(0, 10, 0.5) == pytest.approx(0.5 ** 10)
    assert binom_cdf(2, 10, 0.5) == pytest.approx(sum(math.comb(10, i) for i in range(3)) / 1024)
    assert binom_cdf(-1, 5, 0.5) == 0.0 and binom_cdf(5, 5, 0.3) == 1.0


def test_one_call_per_iso_week_the_first_one():
    rows = [{"as_of": "2021-01-05", "symbol": "B", "signal": 0.5, "hit": 1},
            {"as_of": "2021-01-04", "symbol": "Z", "signal": 0.5, "hit": 0},
            {"as_of": "2021-01-08", "symbol": "A", "signal": 0.5, "hit": 1},   # same week
            {"as_of": "2021-01-11", "symbol": "A", "signal": 0.0, "hit": 1},   # neutral: skipped
            {"as_of": "2021-01-12", "symbol": "A", "signal": -0.5, "hit": None}]  # unresolved: skipped
    assert [(r["as_of"], r["symbol"]) for r in weekly_blocks(rows)] == [("2021-01-04", "Z")]


def test_too_few_independent_weeks_have_no_effect_however_bad():
    # 50 misses, all in 7 weeks: no evidence (the old rule vetoed after a weight dip)
    days = [d for d in MONDAYS[:7] for _ in range(7)]
    r = worse_than_base([{"as_of": d, "symbol": f"S{i}", "signal": 0.6, "hit": 0} for i, d in enumerate(days)], 0.5)
    assert not r.significant and r.blocks == 7 and r.p_value is None and "no evidence" in r.reason


def test_significantly_worse_is_flagged_and_chance_is_not():
    bad = worse_than_base(calls([0] * 10), 0.5)
    assert bad.significant and bad.p_value == pytest.approx(0.5 ** 10)
    # 4 of 10 at a 50% base rate is what chance does
    assert not worse_than_base(calls([1, 0, 0, 1, 0, 1, 0, 0, 1, 0]), 0.5).significant
    # a 60% agent is never flagged
    assert not worse_than_base(calls([1, 1, 0, 1, 1, 0, 1, 1, 0, 1]), 0.5).significant


def test_the_base_rate_is_that_of_the_direction_called():
    # 3 of 10 BUYs right in a falling market (base rate of "up" 20%) is not skill-less...
    buys = calls([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    assert not worse_than_base(buys, 0.2).significant
    assert worse_than_base(buys, 0.8).significant  # ...but in a rising one it is bad
    # SELL calls are judged against 1 - base_up
    sells = calls([1, 1, 1, 0, 0, 0, 0, 0, 0, 0], signal=-0.6)
    assert not worse_than_base(sells, 0.8).significant
    # hostile base rates are clamped, never a crash
    assert worse_than_base(buys, float("nan")).null_rate == 0.5
    assert worse_than_base(buys, 7.0).null_rate == 0.95


def test_base_up_rate_counts_each_symbol_day_once():
    rows = [{"as_of": "d1", "symbol": "A", "signal": 0.5, "hit": 1},    # up
            {"as_of": "d1", "symbol": "A", "signal": -0.5, "hit": 0},   # the same outcome again
            {"as_of": "d1", "symbol": "B", "signal": -0.5, "hit": 1}]   # down
    assert base_up_rate(rows) == 0.5 and base_up_rate([]) == 0.5


# --- the history reviewer ----------------------------------------------------------------

def _seed(store, agent, days, hits, symbol_prefix):
    rows = [{"prediction_id": f"{agent}:{d}:{symbol_prefix}", "portfolio": "main", "cycle_id": f"main:{d}",
             "agent": agent, "source": "model", "symbol": f"{symbol_prefix}{i}", "as_of": d, "action": "BUY",
             "confidence": 0.6, "signal": 0.6, "features": {}, "horizon": 5, "profile_version": 0, "filled_qty": 0.0}
            for i, d in enumerate(days)]
    store.record_predictions(rows)
    with open_db(store.path) as conn:
        for r, h in zip(rows, hits, strict=True):
            conn.execute("UPDATE agent_predictions SET resolved=1, resolved_as_of=?, hit=?, loss=0.25"
                         " WHERE prediction_id=?", (r["as_of"], int(h), r["prediction_id"]))


def _review(settings, side="BUY", weights=None, as_of="2021-12-31"):
    state = {"symbol": "AAA", "consensus": {"action": side}, "portfolio_id": "main", "as_of": as_of,
             "weights": weights or {}}
    return history_reviewer(state, Runtime(context=VoltContext(settings=settings)))["history"]


def test_a_low_weight_alone_never_vetoes(market_csv, settings_for):
    settings = settings_for(market_csv)
    h = _review(settings, weights={"strategy_agent": 0.05})
    assert h["verdict"] == "APPROVED"


def test_the_reviewer_rejects_buys_only_on_significant_evidence(market_csv, settings_for):
    settings = settings_for(market_csv)
    store = LearningStore(settings.ledger_path)
    _seed(store, "strategy_agent", MONDAYS[:10], [0] * 10, "S")   # 10 weeks of wrong BUYs
    _seed(store, "market_agent", MONDAYS[:10], [1] * 10, "T")     # while other symbols rose
    h = _review(settings)
    assert h["verdict"] == "REJECTED" and "0/10 weekly calls right, significantly below" in h["reasons"][0]
    assert h["gate"]["blocks"] == 10 and h["gate"]["p_value"] < 0.05
    assert _review(settings, side="SELL")["verdict"] == "APPROVED"  # exits always pass
    # point in time: outcomes resolved after the decision day are not read
    assert _review(settings, as_of=MONDAYS[5])["verdict"] == "APPROVED"
    # switched off (the ablation is a setting)
    for off in ({"learn_gate": False}, {"learning": False}):
        assert _review(settings.model_copy(update=off))["verdict"] == "APPROVED"
