"""Decision simulator (issue #12, part 5): a replay of "no change" books exactly what the
graph booked; other sizes stay within the hard limits; planted alternatives replay as expected.

One short real backtest (quantitative priors, five symbols, 2010-04-08..2010-06-11 of the
embedded year, horizon 6 days) gives entries, stop, target and time exits, an unfilled
order and GIS's 2:1 split on 2010-06-09 across a held position.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from graph.backtest import BacktestConfig, run_backtest
from memory.replay_source import read_history
from tools.data_source import market_dataset
from tools.learning.sim_history import ReplayHistory
from tools.learning.sim_variants import Variant, redecide
from tools.learning.simulator import DecisionSimulator, SimSettings
from tools.trading.consensus import weighted_vote

SYMBOLS = ["GIS", "DHR", "ETFC", "JPM", "AAPL"]
EXITS = ("stop", "target", "time", "trailing", "untraded", "exit_review")


@pytest.fixture(scope="module")
def backtest_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "bt"
    cfg = BacktestConfig(start="2010-04-08", end="2010-06-11", symbols=SYMBOLS, models=[], top_k=len(SYMBOLS),
                         cache=False, frozen_baseline=False, settings_overrides={"max_holding_days": 6})
    run_backtest(cfg, out, reports=False)
    return out


@pytest.fixture(scope="module")
def recorded(backtest_out):
    from graph.simulate import resolve_settings

    settings = resolve_settings(backtest_out, None)  # the backtest's own settings, from its manifest
    assert settings.max_holding_days == 6
    history = read_history(settings.ledger_path, settings.portfolio)
    # what an evaluation keeps in a file after deleting the ledger
    history = ReplayHistory.from_dict(json.loads(json.dumps(history.to_dict())))
    return history, market_dataset(settings), SimSettings.from_settings(settings)


def _key(f: dict) -> tuple:
    return f["fill_date"], f["symbol"], f["side"], f["kind"] in EXITS or f["kind"] == "dust"


def _mismatches(history: ReplayHistory, result) -> list[str]:
    """Every difference between the ledger and a replay: fills (day, symbol, side, qty, price,
    fee) and each cycle's cash and equity (the ledger stores those rounded to 1e-6 USD)."""
    recorded_fills = sorted((f for d in history.days for f in d.fills), key=_key)
    replayed = sorted(result.fills, key=_key)
    out = [] if len(recorded_fills) == len(replayed) else [f"{len(recorded_fills)} fills vs {len(replayed)}"]
    for a, b in zip(recorded_fills, replayed, strict=False):
        for k in ("fill_date", "symbol", "side", "qty", "price", "fee", "reference_price", "realized_pnl"):
            if a[k] != b[k]:
                out.append(f"fill {a['fill_date']} {a['symbol']} {k}: {a[k]!r} != {b[k]!r}")
    for day, equity, cash, as_of in zip(history.days, result.equity, result.cash, result.dates, strict=True):
        assert day.as_of == as_of
        if day.equity != round(equity, 6) or day.cash != round(cash, 6):
            out.append(f"cycle {as_of}: equity {day.equity!r} vs {equity!r}, cash {day.cash!r} vs {cash!r}")
    return out


def test_the_run_has_what_the_replay_must_reproduce(recorded):
    history, _, _ = recorded
    kinds = {f["kind"] for d in history.days for f in d.fills}
    assert {"entry", "stop", "target", "time"} <= kinds
    assert [s["symbol"] for s in history.splits_applied] == ["GIS"]
    assert any(o["status"] == "UNFILLED" for d in history.days for o in d.orders)
    assert len(history.days) >= 40


def test_no_change_reproduces_the_ledger_exactly(recorded):
    history, dataset, settings = recorded
    sim = DecisionSimulator(history, dataset, settings)
    result = sim.run()
    assert result.dates == sim.days == [d.as_of for d in history.days]
    assert _mismatches(history, result) == []
    # a second run (cached indicators) and the stepping API give the same
    assert _mismatches(history, sim.run(1.0)) == []
    state, equities = sim.reset(), []
    while not state.done:
        state = sim.step(1.0)
        equities.append(state.equity)
    assert equities == result.equity


def test_asking_for_the_next_decisions_inputs_changes_nothing(recorded):
    """What the RL observation reads before each day (the pre-cycle valuation, splits by D
    applied, and the previous cycle) leaves the no-change replay exact, across GIS's split;
    the previous cycle is the ledger's, to the 1e-6 USD it stores."""
    history, dataset, settings = recorded
    sim = DecisionSimulator(history, dataset, settings)
    expected = sim.run().equity
    state, equities = sim.reset(), []
    assert sim.previous_cycle() is None
    while not state.done:
        i = len(equities)
        before = sim.portfolio_before()
        assert before["as_of"] == history.days[i].as_of
        previous = sim.previous_cycle()
        if i:
            assert previous["as_of"] == history.days[i - 1].as_of and previous["equity"] == history.days[i - 1].equity
        state = sim.step(1.0)
        equities.append(state.equity)
    assert equities == expected and sim.portfolio_before() is None


def test_a_broken_cost_model_is_caught(recorded):
    """The check above is not vacuous: a replay without the fee, or without slippage, differs."""
    history, dataset, settings = recorded
    for rules in (dataclasses.replace(settings.rules, fee_rate=0.0), dataclasses.replace(settings.rules, max_slippage=0.0)):
        result = DecisionSimulator(history, dataset, dataclasses.replace(settings, rules=rules)).run()
        assert _mismatches(history, result)


def test_reset_mid_run_continues_from_the_recorded_state(recorded):
    history, dataset, settings = recorded
    sim = DecisionSimulator(history, dataset, settings)
    full = sim.run()
    start = 20
    part = sim.run(start=start)
    assert part.dates == full.dates[start:]
    assert part.equity == full.equity[start:]
    assert part.start_equity == full.equity[start - 1]


def test_other_sizes_change_entries_but_never_break_a_hard_limit(recorded):
    history, dataset, settings = recorded
    limits = settings.limits
    recorded_first = {o["symbol"]: o["qty"] for o in history.days[0].orders if o["side"] == "BUY"}
    assert recorded_first
    for m in (0.5, 1.6, 3.0):
        sim = DecisionSimulator(history, dataset, settings)
        state = sim.reset()
        first = True
        sizes_differ = False
        while not state.done:
            held_before = dict(sim.positions)
            state = sim.step(m)
            assert state.cash >= 0.0
            assert state.gross_exposure <= limits.max_gross_exposure_pct * state.equity * 1.01
            day = history.days[state.index]
            replay_fills = sim.last_fills
            for f in replay_fills:
                if f["side"] == "BUY" and f["kind"] == "entry":
                    value = sim.positions[f["symbol"]] * f["reference_price"]
                    assert value <= limits.max_position_pct * state.equity * 1.02
                if f["kind"] in EXITS:  # an exit closes the whole position
                    assert f["symbol"] not in sim.positions
                    assert f["qty"] == pytest.approx(abs(held_before[f["symbol"]]), rel=1e-12)
            if first:
                for f in replay_fills:
                    if f["symbol"] in recorded_first and f["kind"] == "entry" and m < 1:
                        assert f["qty"] == pytest.approx(recorded_first[f["symbol"]] * m, rel=1e-6)
                first = False
            ours = {(f["symbol"], f["side"]): f["qty"] for f in replay_fills}
            theirs = {(f["symbol"], f["side"]): f["qty"] for f in day.fills}
            sizes_differ |= ours != theirs
        assert sizes_differ


def test_a_planted_rejected_proposal_is_taken(recorded):
    """(c): a proposal the graph rejected, taken as if traded: it fills at the next day's open
    (plus slippage) sized by the hard limits; nothing before that day changes."""
    history, dataset, settings = recorded
    history = copy.deepcopy(history)
    i, target = _planted_day(history)
    day = history.days[i]
    p = next(p for p in day.proposals if p["symbol"] == target)
    p.update(action="BUY", result="REJECTED", size_pct=0.05, stop_loss=None, exit=None,
             calls={**p["calls"], "strategy_agent": {"action": "BUY", "confidence": 0.6, "signal": 0.6}})
    sim = DecisionSimulator(history, dataset, settings)
    base = sim.run()
    alt = sim.run(variant=Variant(take=("REJECTED",), only=frozenset({(day.as_of, target)})))
    assert alt.equity[:i] == base.equity[:i]
    fill_day = dataset.fill_day(pd.Timestamp(day.as_of))
    taken = [f for f in alt.fills if f["as_of"] == day.as_of and f["symbol"] == target]
    assert len(taken) == 1 and taken[0]["side"] == "BUY"
    assert taken[0]["reference_price"] == float(dataset.bar_on(target, fill_day)["open"])
    assert taken[0]["price"] > taken[0]["reference_price"]  # a buy pays slippage
    close = float(dataset.history(target, pd.Timestamp(day.as_of))["close"].iloc[-1])
    # never more than asked: 5% of the equity before the decision (marked at D's close)
    assert taken[0]["qty"] * close <= 0.05 * base.equity[i - 1] * 1.02
    assert alt.equity[i] != base.equity[i]


def _planted_day(history: ReplayHistory) -> tuple[int, str]:
    """A day in the middle with a candidate that was neither traded nor held."""
    traded = {}
    for d in history.days:
        traded[d.as_of] = {o["symbol"] for o in d.orders} | {f["symbol"] for f in d.fills}
    for i in range(10, len(history.days) - 5):
        d = history.days[i]
        for p in d.proposals:
            untouched = not any(p["symbol"] == f["symbol"] for dd in history.days[max(0, i - 8):i + 1] for f in dd.fills)
            if p["result"] == "HOLD" and p["symbol"] not in traded[d.as_of] and p.get("calls") and untouched:
                return i, p["symbol"]
    raise AssertionError("no day to plant a proposal on")


def test_a_higher_threshold_drops_the_entries_it_silences(recorded):
    """(d): with market and strategy thresholds above every call (a conviction is at most 1),
    no entry consensus forms:
    every recorded entry is dropped; exits of what is held still run."""
    history, dataset, settings = recorded
    sim = DecisionSimulator(history, dataset, settings)
    alt = sim.run(variant=Variant(thresholds={"market_agent": 1.01, "strategy_agent": 1.01}))
    assert not [f for f in alt.fills if f["kind"] == "entry"]
    assert alt.equity[-1] == pytest.approx(history.starting_cash)


def test_redecide_uses_the_graphs_consensus_rule():
    proposal = {"action": "HOLD", "model": "weighted", "threshold": 0.25,
                "votes": {"market_agent": {"vote": 0.0, "weight": 1.0, "threshold": 0.3},
                          "strategy_agent": {"vote": 0.6, "weight": 1.0, "threshold": 0.3}},
                "calls": {"market_agent": {"action": "BULLISH", "confidence": 0.25, "signal": 0.25},
                          "strategy_agent": {"action": "BUY", "confidence": 0.6, "signal": 0.6}}}
    # as recorded: the market call is under its 0.3 threshold and counts 0 -> 0.3 >= 0.25 BUY
    assert redecide(proposal, {}, "weighted", 0.25) == weighted_vote({"market_agent": 0.0, "strategy_agent": 0.6},
                                                                      {"market_agent": 1.0, "strategy_agent": 1.0}, 0.25)
    assert redecide(proposal, {"market_agent": 0.2}, "weighted", 0.25) == ("BUY", pytest.approx(0.425))
    assert redecide(proposal, {"strategy_agent": 0.7}, "weighted", 0.25) == ("HOLD", 0.0)
    assert redecide({**proposal, "calls": {}}, {"market_agent": 0.2}, "weighted", 0.25) is None


def test_history_round_trips_through_json(recorded):
    history, _, _ = recorded
    again = ReplayHistory.from_dict(json.loads(json.dumps(history.to_dict())))
    assert again == history


def test_bad_multiplier_and_done_replay_are_refused(recorded):
    history, dataset, settings = recorded
    sim = DecisionSimulator(history, dataset, settings)
    sim.reset(0, 1)
    with pytest.raises(ValueError):
        sim.step(float("nan"))
    assert sim.step(1.0).done
    with pytest.raises(RuntimeError):
        sim.step(1.0)
    with pytest.raises(ValueError):
        sim.reset(5, 2)


def test_unknown_portfolio_is_a_key_error(tmp_path: Path):
    from memory.ledger import Ledger

    Ledger(tmp_path / "volt.db").ensure_portfolio("p", 1000.0)
    assert read_history(tmp_path / "volt.db", "p").days == []
    with pytest.raises(KeyError):
        read_history(tmp_path / "volt.db", "nope")


def test_simulate_cli_prints_the_paired_comparison(recorded, backtest_out, capsys):
    from graph.simulate import main

    assert main(["--home", str(backtest_out), "--size", "0.5", "--threshold", "market_agent=0.6", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["no_change_reproduces_ledger"] is True and out["days"] == len(recorded[0].days)
    assert out["ci95"][0] <= out["mean_daily_difference"] <= out["ci95"][1]
    assert out["alternative"]["equity"] != out["no_change"]["equity"]
    for bad in (["--home", str(backtest_out), "--size", "x"], ["--home", str(backtest_out / "nope")],
                ["--home", str(backtest_out), "--threshold", "risk_agent=0.5"],
                ["--home", str(backtest_out), "--take", "APPROVED"]):
        with pytest.raises(SystemExit) as exc:
            raise SystemExit(main(bad))
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1


def test_no_change_reproduces_a_postgres_ledger_exactly(tmp_path, pg_url, monkeypatch):
    """The same backtest with its ledger in PostgreSQL (VOLT_DATABASE_URL): read back from the
    database, the replay books exactly what the ledger holds there."""
    from memory.db import DatabaseURL, open_db

    for key in list(__import__("os").environ):
        if key.startswith("VOLT_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("VOLT_DATABASE_URL", pg_url)
    cfg = BacktestConfig(start="2010-04-08", end="2010-05-14", symbols=SYMBOLS, models=[], top_k=len(SYMBOLS),
                         cache=False, frozen_baseline=False, settings_overrides={"max_holding_days": 6})
    run_backtest(cfg, tmp_path / "bt", reports=False)
    with open_db(DatabaseURL(pg_url)) as conn:
        [portfolio] = [r[0] for r in conn.execute("SELECT id FROM portfolios").fetchall()]
    history = read_history(DatabaseURL(pg_url), portfolio)
    assert sum(len(d.fills) for d in history.days) > 0
    from graph.simulate import resolve_settings

    settings = resolve_settings(tmp_path / "bt", None)
    result = DecisionSimulator(history, market_dataset(settings), SimSettings.from_settings(settings)).run()
    assert _mismatches(history, result) == []
