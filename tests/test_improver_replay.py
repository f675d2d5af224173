"""AgentImprover adopts and judges a threshold change by a paired replay of past days."""

from __future__ import annotations

import numpy as np
import pytest
from langgraph.runtime import Runtime

from graph.backtest import BacktestConfig, run_backtest, run_settings
from graph.context import VoltContext
from memory.learning_store import LearningStore
from memory.replay_source import read_history
from nodes.agent_improver import PairedReplay, agent_improver
from nodes.learning_agent import default_profiles
from tools.data_source import market_dataset
from tools.learning.sim_stats import paired_verdict
from tools.learning.sim_variants import Variant
from tools.learning.simulator import DecisionSimulator, SimSettings


def test_paired_verdict_needs_a_positive_mean_and_lower_bound_over_enough_days():
    rng = np.random.default_rng(1)
    base = rng.normal(0, 0.01, 60)
    better = paired_verdict(base + 0.002 + rng.normal(0, 0.0005, 60), base, min_days=20)
    assert better.favoured and better.mean > 0 and better.low > 0 and "over 60 days" in better.reason
    noise = paired_verdict(base + rng.normal(0, 0.01, 60), base, min_days=20)
    assert noise.low is not None and noise.low < 0 and not noise.favoured
    assert not paired_verdict(base[:10] + 0.01, base[:10], min_days=20).favoured  # too few days
    worse = paired_verdict(base - 0.002, base, min_days=20)
    assert not worse.favoured and worse.mean < 0


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("improver") / "bt"
    cfg = BacktestConfig(start="2010-04-08", end="2010-05-14", symbols=["DHR", "JPM", "AAPL"], models=[], top_k=3,
                         cache=False, frozen_baseline=False,
                         settings_overrides={"max_holding_days": 6, "gate_min_blocks": 2})
    run_backtest(cfg, out, reports=False)
    state = next(p.name for p in out.iterdir() if p.name.startswith("runs-"))
    return run_settings(cfg, out, "agents", state)


def test_a_change_is_judged_by_a_paired_replay_of_the_days_since(run):
    settings = run
    store = LearningStore(settings.ledger_path)
    history = read_history(settings.ledger_path, settings.portfolio)
    days = [d.as_of for d in history.days]
    assert len(days) >= 20
    profile = default_profiles(settings)["market_agent"]
    store.change_parameter(settings.portfolio, profile, target="confidence_threshold", old=0.3, new=0.95,
                           reason="planted", as_of=days[0], accuracy_before=0.5)
    # the verdict the node must reach: old value (candidate to go back to) vs new, same days
    sim = DecisionSimulator(history, market_dataset(settings), SimSettings.from_settings(settings))
    old = sim.run(variant=Variant(thresholds={"market_agent": 0.3}))
    new = sim.run(variant=Variant(thresholds={"market_agent": 0.95}))
    expected = paired_verdict(old.daily_returns, new.daily_returns, min_days=20)
    assert old.equity != new.equity  # the threshold matters on these days

    out = agent_improver({"portfolio_id": settings.portfolio, "as_of": days[-1],
                          "cycle_id": f"{settings.portfolio}:{days[-1]}"}, Runtime(context=VoltContext(settings=settings)))
    [change] = store.parameter_changes(settings.portfolio)[:1]
    assert change["evaluated"] == 1 and change["rolled_back"] == int(expected.favoured)
    if expected.favoured:
        [rollback] = out["improvements"]
        assert rollback["new"] == 0.3 and rollback["replay"]["mean_daily_difference"] == pytest.approx(expected.mean)
        assert f"over {expected.n} days" in rollback["reason"]
        assert "paired replay (old 0.3 vs new 0.95)" in store.parameter_changes(settings.portfolio)[1]["reason"]
        assert out["agent_messages"][0]["payload"]["parameter_change"]["replay"]["days"] == expected.n
    else:
        assert out["improvements"] == []


def test_replay_compare_adopts_only_what_the_replay_favours(run):
    settings = run
    replay = PairedReplay(settings, settings.portfolio)
    for candidate in (0.95, 0.1):
        verdict = replay.compare("market_agent", candidate, 0.3, label="c")
        assert verdict.n >= 20 and verdict.mean is not None
        assert verdict.favoured == (verdict.mean > 0 and verdict.low > 0)
        assert "paired replay (c) over" in verdict.reason and "equity" in verdict.reason
    assert not replay.compare("risk_agent", 0.5, 0.3, label="r").favoured  # not replayable: never adopted
    tight = settings.model_copy(update={"gate_min_blocks": 20})  # 100 days needed
    assert "fewer than the 100 needed" in PairedReplay(tight, settings.portfolio).compare(
        "market_agent", 0.95, 0.3, label="t").reason


# --- the node's wiring, with the replay's answer planted (the replay itself is tested above)

def _seed_weekly_misses(store, agent: str, weeks: list[str]) -> None:
    from memory.db import open_db
    from tools.situation_features import FEATURES

    rows = [{"prediction_id": f"main:{day}:{agent}:S{i}", "portfolio": "main", "cycle_id": f"main:{day}",
             "agent": agent, "source": "model", "model": "m1", "profile_version": 0, "prompt_version": "1",
             "symbol": f"S{i}", "as_of": day, "action": "BUY", "confidence": 0.8, "signal": 0.8,
             "features": dict.fromkeys(FEATURES, 0.1), "horizon": 5, "filled_qty": 0.0, "fill_price": None}
            for i, day in enumerate(weeks)]
    store.record_predictions(rows)
    with open_db(store.path) as conn:
        for r in rows:
            conn.execute("UPDATE agent_predictions SET resolved=1, hit=0, loss=0.8 WHERE prediction_id=?",
                         (r["prediction_id"],))


def _planted(favoured: bool):
    from tools.learning.sim_stats import PairedVerdict

    def compare(self, agent, candidate, current, *, since="", label):
        return PairedVerdict(favoured, 60, 0.001 if favoured else -0.001, 0.0004 if favoured else -0.002, 0.95,
                             f"paired replay ({label}) over 60 days: planted")
    return compare


@pytest.mark.parametrize("favoured", [True, False])
def test_a_proposal_is_adopted_only_when_the_replay_favours_it(market_csv, settings_for, monkeypatch, favoured):
    import pandas as pd

    settings = settings_for(market_csv)
    store = LearningStore(settings.ledger_path)
    weeks = [f"{d:%Y-%m-%d}" for d in pd.date_range("2020-01-06", periods=12, freq="W-MON")]
    _seed_weekly_misses(store, "strategy_agent", weeks)
    for i, day in enumerate(weeks):  # the base rate: other calls rose
        store.record_predictions([{"prediction_id": f"main:{day}:market_agent:T{i}", "portfolio": "main",
                                   "cycle_id": f"main:{day}", "agent": "market_agent", "source": "model",
                                   "model": "m1", "profile_version": 0, "prompt_version": "1", "symbol": f"T{i}",
                                   "as_of": day, "action": "BUY", "confidence": 0.8, "signal": 0.8,
                                   "features": {}, "horizon": 5, "filled_qty": 0.0, "fill_price": None}])
    from memory.db import open_db

    with open_db(store.path) as conn:
        conn.execute("UPDATE agent_predictions SET resolved=1, hit=1, loss=0.1 WHERE agent='market_agent'")
    monkeypatch.setattr(PairedReplay, "compare", _planted(favoured))
    day = "2020-06-01"
    out = agent_improver({"portfolio_id": "main", "as_of": day, "cycle_id": f"main:{day}"},
                         Runtime(context=VoltContext(settings=settings)))
    version = store.profiles("main", default_profiles(settings))["strategy_agent"].version
    if favoured:
        [change] = out["improvements"]
        assert change["agent"] == "strategy_agent" and change["replay"]["mean_daily_difference"] == 0.001
        [row] = store.parameter_changes("main")
        assert "significantly below" in row["reason"] and "paired replay (threshold" in row["reason"]
        assert out["agent_messages"][0]["payload"]["parameter_change"]["replay"]["lower_bound"] == 0.0004
        assert version == 1
    else:
        assert out["improvements"] == [] and store.parameter_changes("main") == [] and version == 0
        [msg] = out["agent_messages"]
        assert msg["payload"]["parameter_proposal"]["adopted"] is False
        assert "not adopted: paired replay" in msg["payload"]["parameter_proposal"]["reason"]


def test_a_change_the_replay_judges_worse_is_rolled_back(market_csv, settings_for, monkeypatch):
    settings = settings_for(market_csv)
    store = LearningStore(settings.ledger_path)
    from tools.market_data import load_dataset

    cal = load_dataset(market_csv).calendar
    profile = default_profiles(settings)["strategy_agent"]
    store.change_parameter("main", profile, target="confidence_threshold", old=0.3, new=0.33, reason="planted",
                           as_of=f"{cal[10]:%Y-%m-%d}", accuracy_before=0.45)
    monkeypatch.setattr(PairedReplay, "compare", _planted(True))
    early = f"{cal[30]:%Y-%m-%d}"  # 21 days since the change: fewer than the 40 needed, not judged yet
    run = lambda day: agent_improver({"portfolio_id": "main", "as_of": day, "cycle_id": f"main:{day}"},  # noqa: E731
                                     Runtime(context=VoltContext(settings=settings)))
    assert run(early)["improvements"] == [] and store.parameter_changes("main")[0]["evaluated"] == 0
    [rollback] = run(f"{cal[55]:%Y-%m-%d}")["improvements"]
    assert rollback["new"] == 0.3 and rollback["reason"].startswith("rollback of change #1: paired replay (old 0.3")
    first = store.parameter_changes("main")[0]
    assert first["evaluated"] == 1 and first["rolled_back"] == 1
    assert store.profiles("main", default_profiles(settings))["strategy_agent"].confidence_threshold == 0.3
