"""The RL controller: features, the clip, the hard limits around any multiplier, the graph
node (off, degraded, on with a real PPO policy), the gymnasium environment over the decision
simulator, PPO training and the CLI.

Tests that need the extra ``rl`` (stable-baselines3, torch, gymnasium; ``make rl``) skip when
it is missing, unless ``VOLT_TEST_REQUIRE_RL=1`` (CI), which makes that a failure.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import sys

import numpy as np
import pytest
from conftest import scripted

from graph.run import run_cycle
from memory import rl_store
from memory.ledger import Ledger
from nodes.risk_agent import hard_sized_order, limits_from
from tools.learning import rl_policy
from tools.learning.rl_features import (
    FEATURE_NAMES,
    HIGH,
    LOW,
    as_vector,
    observation,
    signals_by_day,
)
from tools.learning.rl_policy import MULTIPLIERS, applied_multiplier, clip_multiplier

RL_MISSING = [m for m in ("stable_baselines3", "gymnasium", "torch") if importlib.util.find_spec(m) is None]
if RL_MISSING and os.environ.get("VOLT_TEST_REQUIRE_RL") == "1":
    raise RuntimeError(f"VOLT_TEST_REQUIRE_RL=1 but the extra rl is not installed ({', '.join(RL_MISSING)}): make rl")
requires_rl = pytest.mark.skipif(bool(RL_MISSING), reason=f"extra rl not installed: {', '.join(RL_MISSING)}")


def factory(model):
    return lambda spec: model


# -- features and the clip ---------------------------------------------------------------------
def test_observation_is_finite_clipped_and_in_a_fixed_order():
    f = observation(equity=900.0, peak_equity=1000.0, gross_exposure=450.0, cash=450.0,
                    market_context={"available": True, "realized_vol_pct": 25.0, "index_vs_sma50": 0.02},
                    mean_signal=0.3, recent_return=-0.01)
    assert list(f) == list(FEATURE_NAMES)
    assert f["drawdown"] == pytest.approx(0.1) and f["gross_exposure"] == pytest.approx(0.5)
    assert f["cash"] == pytest.approx(0.5) and f["market_vol"] == pytest.approx(0.25)
    assert f["market_trend"] == pytest.approx(0.2) and f["recent_reward"] == pytest.approx(-0.1)
    hostile = observation(equity=0.0, peak_equity=float("nan"), gross_exposure=float("inf"), cash=-1e12,
                          market_context={"available": False}, mean_signal=float("nan"), recent_return=1e9)
    vec = as_vector(hostile)
    assert vec.dtype == np.float32 and np.all(np.isfinite(vec))
    assert np.all(vec >= LOW) and np.all(vec <= HIGH)
    assert hostile["recent_reward"] == 1.0 and hostile["market_vol"] == 0.0


def test_clip_never_exceeds_the_largest_multiplier():
    assert [clip_multiplier(v) for v in (-3, 0.7, 9, float("nan"), "x", None)] == [0.0, 0.7, 1.5, 1.0, 1.0, 1.0]
    assert rl_policy.multiplier_of(np.array([99])) == MULTIPLIERS[-1]
    assert applied_multiplier(1.5, {"blocks_buys": "drawdown halt"}) == 0.0  # nothing can open: says so
    assert applied_multiplier(1.5, {"blocks_buys": "halt"}, allow_short=True) == 1.5


def test_signals_are_calibrated_from_outcomes_resolved_before_the_day():
    rows = [{"as_of": "2020-03-02", "agent": "a", "signal": 0.8}, {"as_of": "2020-03-09", "agent": "a", "signal": 0.8}]
    # agent a was right on every earlier call, resolved on 03-05: it counts for 03-09 only
    history = [{"agent": "a", "signal": 0.8, "hit": 1, "resolved_as_of": "2020-03-05"}] * 40
    s = signals_by_day(rows, history)
    assert 0 < s["2020-03-02"] < 0.2  # no history yet: shrunk hard towards a coin
    assert s["2020-03-09"] > s["2020-03-02"] + 0.3


# -- the hard limits around any multiplier -----------------------------------------------------
def _candidate(rng, multiplier):
    equity = float(rng.uniform(100, 5000))
    held_frac = float(rng.uniform(0, 0.3))
    close = float(rng.uniform(5, 500))
    cash = float(rng.uniform(0, equity))
    gross = float(rng.uniform(0, equity))
    return {"symbol": "AAA", "portfolio": {
        "positions": {"AAA": {"qty": held_frac * equity / close, "market_value": held_frac * equity}},
        "equity": equity, "cash": cash, "gross_exposure": gross, "peak_equity": equity * float(rng.uniform(1, 1.3)),
        "protections": {}}, "snapshot": {"close": close, "atr14": close * 0.02},
        "consensus": {"action": "BUY", "size_pct": float(rng.uniform(0.01, 1.0))},
        "strategy": {"output": {"action": "BUY", "stop_loss": close * 0.95, "exit": close * 1.1}},
        "regime": {"position_scale": float(rng.choice([0.5, 0.75, 1.0]))}, "rl_multiplier": multiplier}


def test_no_multiplier_produces_an_entry_beyond_the_hard_limits(settings_for, market_csv):
    settings = settings_for(market_csv)
    limits = limits_from(settings)
    rng = np.random.default_rng(7)
    for multiplier in (*MULTIPLIERS, 1e6, float("nan"), -4.0):
        for _ in range(60):
            state = _candidate(rng, multiplier)
            p, close = state["portfolio"], state["snapshot"]["close"]
            order = hard_sized_order(state, settings)
            held_value = p["positions"]["AAA"]["qty"] * close
            cap = limits.max_position_pct * state["regime"]["position_scale"] * p["equity"]
            assert order.notional <= max(0.0, cap - held_value) + 1e-6
            assert order.notional <= max(0.0, limits.max_gross_exposure_pct * p["equity"] - p["gross_exposure"]) + 1e-6
            assert order.notional <= p["cash"] / (1 + limits.fee_rate) + 1e-6
            assert order.qty * close * 0.05 <= limits.risk_per_trade_pct * p["equity"] + 1e-6
            unscaled = hard_sized_order({**state, "rl_multiplier": 1.0}, settings)
            if clip_multiplier(multiplier) <= 1.0:
                assert order.notional <= unscaled.notional + 1e-9  # a multiplier <= 1 never enlarges


def test_exits_are_never_scaled(settings_for, market_csv):
    settings = settings_for(market_csv)
    state = _candidate(np.random.default_rng(1), 0.0)
    state["consensus"] = {"action": "SELL", "size_pct": 1.0}
    exit_order = hard_sized_order(state, settings)
    assert exit_order.blocked is None and exit_order.qty == pytest.approx(state["portfolio"]["positions"]["AAA"]["qty"])


# -- the graph node ----------------------------------------------------------------------------
def test_controller_off_changes_nothing_and_records_nothing(market_csv, settings_for, tmp_path):
    runs = {}
    for name, extra in (("default", {}), ("off", {"rl_controller": False})):
        settings = settings_for(market_csv, home=tmp_path / name, watchlist=["AAA", "BBB"], top_k=2, **extra)
        state = run_cycle(settings, chat_model_factory=factory(scripted())).state
        runs[name] = [(f["symbol"], round(f["qty"], 8), round(f["price"], 6)) for f in state["fills"]]
        assert state["rl_multiplier"] == 1.0
        assert rl_store.actions(settings.ledger_path, settings.portfolio) == []
    assert runs["default"] == runs["off"] and runs["off"]


def test_missing_policy_or_extra_degrades_to_one(market_csv, settings_for, tmp_path, monkeypatch, capsys):
    base = settings_for(market_csv, home=tmp_path / "base", watchlist=["AAA"], top_k=1)
    fills = run_cycle(base, chat_model_factory=factory(scripted())).state["fills"]
    settings = settings_for(market_csv, home=tmp_path / "on", watchlist=["AAA"], top_k=1, rl_controller=True)
    state = run_cycle(settings, chat_model_factory=factory(scripted())).state
    assert state["rl_multiplier"] == 1.0
    assert [f["qty"] for f in state["fills"]] == pytest.approx([f["qty"] for f in fills])
    [row] = rl_store.actions(settings.ledger_path, settings.portfolio)
    assert row["policy"] == "none" and row["action"] == 1.0 and row["applied"] == 1.0
    assert list(row["observation"]) == list(FEATURE_NAMES)
    assert "no RL policy at" in capsys.readouterr().err
    # a policy file but no extra: the same 1.0, the install hint in the warning
    bogus = tmp_path / "policy.zip"
    bogus.write_bytes(b"not a zip")
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)
    with pytest.raises(rl_policy.PolicyUnavailable, match="make rl"):
        rl_policy.load_policy(bogus)


def test_a_resumed_cycle_keeps_its_first_row(tmp_path):
    path = tmp_path / "volt.db"
    obs = dict.fromkeys(FEATURE_NAMES, 0.0)
    assert rl_store.record_action(path, "p", "2020-01-02", policy="x", observation=obs, action=1.5, applied=1.5)
    assert not rl_store.record_action(path, "p", "2020-01-02", policy="y", observation=obs, action=0.0, applied=0.0)
    [row] = rl_store.actions(path, "p")
    assert (row["policy"], row["applied"]) == ("x", 1.5)


def _greedy_policy(path, index: int):
    """A real SB3 PPO policy whose action head always prefers ``index`` (weights 0, bias)."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO

    class Spaces(gym.Env):  # only the spaces: PPO needs them to build the network
        observation_space = gym.spaces.Box(LOW, HIGH, dtype=np.float32)
        action_space = gym.spaces.Discrete(len(MULTIPLIERS))

    model = PPO("MlpPolicy", Spaces(), device="cpu", n_steps=8, batch_size=8, policy_kwargs={"net_arch": [8]})
    with torch.no_grad():
        model.policy.action_net.weight.zero_()
        model.policy.action_net.bias.copy_(torch.tensor([10.0 if i == index else -10.0
                                                         for i in range(len(MULTIPLIERS))]))
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(path))
    return path


@requires_rl
def test_largest_multiplier_stays_within_the_hard_limits(market_csv, settings_for, tmp_path, capsys):
    kw = {"watchlist": ["AAA", "BBB"], "top_k": 2, "max_position_pct": 0.12}
    base = run_cycle(settings_for(market_csv, home=tmp_path / "base", **kw),
                     chat_model_factory=factory(scripted())).state
    settings = settings_for(market_csv, home=tmp_path / "on", rl_controller=True, **kw)
    _greedy_policy(settings.rl_policy_path, len(MULTIPLIERS) - 1)
    state = run_cycle(settings, chat_model_factory=factory(scripted())).state
    [row] = rl_store.actions(settings.ledger_path, settings.portfolio)
    assert row["action"] == 1.5 and row["applied"] == 1.5 and row["policy"].startswith("policy.zip@")
    from graph.rl import main

    assert main(["show", "--home", str(settings.home)]) == 0
    assert re.search(rf"^{row['as_of']} +1\.50 +1\.50  policy\.zip@", capsys.readouterr().out, re.M)
    assert state["fills"] and len(state["fills"]) == len(base["fills"])
    equity = base["portfolio_before"]["equity"]
    for fill, before in zip(sorted(state["fills"], key=lambda f: f["symbol"]),
                            sorted(base["fills"], key=lambda f: f["symbol"]), strict=True):
        close = state["snapshots"][fill["symbol"]]["close"]
        # 0.10 x 1.5 = 0.15 is asked; the 12 % position cap clips it
        assert fill["qty"] * close <= 0.12 * equity + 1e-6
        assert fill["qty"] > before["qty"]  # 0.10 -> 0.12: larger, but only up to the cap
        assert fill["qty"] * close > 0.11 * equity  # at the cap (less the broker's fee/slippage room)


@requires_rl
def test_a_policy_choosing_one_trades_as_the_controller_off(market_csv, settings_for, tmp_path):
    kw = {"watchlist": ["AAA", "BBB"], "top_k": 2}
    off = run_cycle(settings_for(market_csv, home=tmp_path / "off", **kw), chat_model_factory=factory(scripted())).state
    settings = settings_for(market_csv, home=tmp_path / "one", rl_controller=True, **kw)
    _greedy_policy(settings.rl_policy_path, MULTIPLIERS.index(1.0))
    one = run_cycle(settings, chat_model_factory=factory(scripted())).state
    assert one["rl_multiplier"] == 1.0 and one["fills"]
    assert [(f["symbol"], f["qty"], f["price"]) for f in one["fills"]] == \
        [(f["symbol"], f["qty"], f["price"]) for f in off["fills"]]


@requires_rl
def test_zero_multiplier_policy_opens_nothing(market_csv, settings_for, tmp_path):
    settings = settings_for(market_csv, home=tmp_path / "zero", watchlist=["AAA"], top_k=1, rl_controller=True)
    _greedy_policy(settings.rl_policy_path, 0)
    state = run_cycle(settings, chat_model_factory=factory(scripted())).state
    assert state["rl_multiplier"] == 0.0 and state["fills"] == []
    assert Ledger(settings.ledger_path).account(settings.portfolio).cash == pytest.approx(settings.starting_cash)


def test_feature_names_are_unique_and_bounds_ordered():
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert all(lo < hi for lo, hi in zip(LOW, HIGH, strict=True))
    assert not math.isnan(float(np.sum(LOW)))
    assert json.loads(json.dumps(dict.fromkeys(FEATURE_NAMES, 0.0)))


# -- the environment, PPO and the CLI over a recorded home ---------------------------------------
@pytest.fixture(scope="module")
def recorded_home(tmp_path_factory):
    """A home with 16 recorded cycles of scripted agents that trade every day (entries, adds,
    review reductions), on the synthetic market: what training replays."""
    from conftest import held_reduces, synthetic_frame

    from graph.settings import VoltSettings

    root = tmp_path_factory.mktemp("rl_home")
    csv = root / "market.csv"
    synthetic_frame({"AAA": 0.25, "BBB": 0.15, "CCC": -0.05, "DDD": 0.1}, days=72).to_csv(csv, index=False)
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("VOLT_") or key == "OLLAMA_HOST":
                mp.delenv(key, raising=False)
        settings = VoltSettings(home=root / "home", data_csv=csv, models=["m1"], top_k=3)
        model = scripted(respond=held_reduces)
        for _ in range(16):
            run_cycle(settings, chat_model_factory=factory(model))
    return settings


@requires_rl
def test_env_passes_the_gymnasium_checker_and_stays_in_bounds(recorded_home):
    from gymnasium.utils.env_checker import check_env

    from graph.rl import home_replay
    from tools.learning.rl_env import SizeMultiplierEnv

    env = SizeMultiplierEnv([home_replay(recorded_home)], episode_days=6)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=3)
    seen, done = [obs], False
    while not done:
        obs, reward, done, truncated, info = env.step(env.action_space.sample())
        seen.append(obs)
        assert math.isfinite(reward) and not truncated
    arr = np.array(seen)
    assert np.all(np.isfinite(arr)) and np.all(arr >= LOW) and np.all(arr <= HIGH)
    assert len(seen) == 7  # 6 steps: one per day


@requires_rl
def test_multiplier_one_replays_the_recorded_equity(recorded_home):
    from graph.rl import home_replay
    from tools.learning.rl_env import rollout

    replay = home_replay(recorded_home)
    cycles = Ledger(recorded_home.ledger_path).cycles(recorded_home.portfolio)
    equity = [recorded_home.starting_cash, *(c["equity"] for c in cycles)]
    recorded = [equity[i + 1] / equity[i] - 1 for i in range(len(equity) - 1)]
    assert rollout(replay, 1.0)["returns"] == pytest.approx(recorded, abs=1e-8)  # the ledger rounds to 1e-6 USD
    assert rollout(replay, 0.0)["total_return"] != pytest.approx(rollout(replay, 1.5)["total_return"])


@requires_rl
def test_train_cli_saves_a_policy_that_loads_and_acts(recorded_home, capsys, clean_env, monkeypatch):
    from graph.rl import main

    home = str(recorded_home.home)
    assert main(["train", "--home", home, "--timesteps", "64", "--no-progress"]) == 2  # not the embedded data
    assert "VOLT_DATA_CSV" in capsys.readouterr().err
    monkeypatch.setenv("VOLT_DATA_CSV", str(recorded_home.data_csv))
    assert main(["train", "--home", home, "--timesteps", "256", "--seed", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "held-out" in out and "in-sample" in out
    meta = json.loads(rl_policy.meta_path(recorded_home.rl_policy_path).read_text())
    assert meta["features"] == list(FEATURE_NAMES) and meta["multipliers"] == list(MULTIPLIERS)
    assert meta["training_days"]["count"] + meta["held_out_days"]["count"] == 16
    assert meta["held_out_days"]["first"] > meta["training_days"]["last"]  # never trained on
    policy = rl_policy.load_policy(recorded_home.rl_policy_path)
    assert policy.act(dict.fromkeys(FEATURE_NAMES, 0.0)) in MULTIPLIERS
    # --until: only days strictly before it
    until = meta["held_out_days"]["first"]
    assert main(["train", "--home", home, "--timesteps", "64", "--until", until, "--no-progress"]) == 0
    meta = json.loads(rl_policy.meta_path(recorded_home.rl_policy_path).read_text())
    assert meta["held_out_days"]["last"] < until
    assert main(["show", "--home", home]) == 0
    assert "0 recorded action(s)" in capsys.readouterr().out


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    from graph.rl import main

    assert main(["show", "--home", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    assert main(["train", "--home", str(tmp_path / "empty")]) == 2
    assert "no VOLT data" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["train", "--home", str(tmp_path), "--until", "tomorrow"])
    assert exc.value.code == 2


# -- the evaluation arm ------------------------------------------------------------------------
def test_rl_arm_is_opt_in_needs_on_and_runs_after_the_others():
    from graph.evaluate.report import rl_effect
    from graph.evaluate.runner import RL_ARM, Cell, EvalConfig, _phases
    from graph.evaluate.windows import EvaluateError, Universe, Window

    assert "rl" not in EvalConfig().arms
    with pytest.raises(EvaluateError, match="on,rl"):
        EvalConfig(arms=["off", "rl"]).arm_list()
    arms = EvalConfig(arms=["rl", "on"]).arm_list()
    cells = [Cell(Window(i, (f"2020-01-0{i + 1}",)), Universe(0, ("AAA",))) for i in range(3)]
    first, then = _phases([(c, a) for c in cells for a in arms])
    assert [a.name for _, a in first] == ["on"] * 3  # every on replay done before any rl arm starts
    assert [(c.id, a) for c, a in then] == [(c.id, RL_ARM) for c in cells]
    assert _phases([(cells[0], arms[1])]) == [[(cells[0], arms[1])]]

    def cell(i, rl_returns, trained):
        days = ["2020-01-02", "2020-01-03"]
        return {"cell": f"w{i}", "arms": {"on": {"dates": days, "returns": [0.0, 0.0]},
                                          "rl": {"dates": days, "returns": rl_returns, "rl": {"trained": trained}}}}

    effect = rl_effect([cell(0, [0.5, 0.5], False), cell(1, [0.01, 0.01], True)], seed=0)
    assert (effect["trained_cells"], effect["untrained_cells"]) == (1, 1)
    assert effect["mean_daily"] == pytest.approx(0.01)  # the untrained cell is left out


# -- train/serve: the replay observes what the graph observed ------------------------------------
@requires_rl
def test_the_replay_observes_exactly_what_the_graph_observed(tmp_path):
    """A real backtest (priors, five symbols) with the controller on and a recorded PPO policy;
    the replay of its ledger, from the first day and from mid-history (an episode start), must
    build every day's observation equal, feature by feature, to the one the graph recorded."""
    from graph.backtest import BacktestConfig, run_backtest
    from graph.rl import home_replay
    from graph.simulate import resolve_settings
    from tools.learning.rl_env import SizeMultiplierEnv, features_of, next_decision

    policy = _greedy_policy(tmp_path / "policy" / "policy.zip", MULTIPLIERS.index(1.5))
    out = tmp_path / "bt"
    cfg = BacktestConfig(start="2010-04-08", end="2010-05-21", symbols=["GIS", "DHR", "ETFC", "JPM", "AAPL"],
                         models=[], top_k=5, cache=False, frozen_baseline=False,
                         settings_overrides={"max_holding_days": 6, "rl_controller": True, "rl_policy": str(policy)})
    run_backtest(cfg, out, reports=False)
    settings = resolve_settings(out, None)
    recorded = {r["as_of"]: r for r in rl_store.actions(settings.ledger_path, settings.portfolio)}
    assert {r["policy"] for r in recorded.values()} == {rl_policy.policy_id(policy)}
    replay = home_replay(settings)
    assert replay.days == sorted(recorded) and len(replay.days) >= 25
    seen = np.array([[recorded[d]["observation"][n] for n in FEATURE_NAMES] for d in replay.days])
    # a meaningful run: held positions, a drawdown, non-zero returns and signals on some days
    for name in ("drawdown", "gross_exposure", "recent_reward", "mean_signal", "market_vol"):
        assert np.any(seen[:, FEATURE_NAMES.index(name)] != 0.0), name

    def replayed_from(start: int) -> int:
        state, checked = replay.simulator.reset(start=start), 0
        while not state.done:
            day = replay.days[next_decision(state)]
            features, live = features_of(replay, state), recorded[day]["observation"]
            for name in FEATURE_NAMES:
                assert features[name] == pytest.approx(live[name], abs=1e-9), (day, name, features[name], live[name])
            state, checked = replay.simulator.step(size_multiplier=1.0), checked + 1
        return checked

    n = len(replay.days)
    assert replayed_from(0) == n
    assert replayed_from(n // 2) == n - n // 2  # an episode starting mid-history: its first return too
    # the environment's own observations (float32) are the recorded ones
    env = SizeMultiplierEnv([replay], episode_days=n)
    obs, _ = env.reset(options={"replay": 0, "start": 3})
    for day in replay.days[3:8]:
        assert obs == pytest.approx(as_vector(recorded[day]["observation"]), abs=1e-6), day
        obs, *_ = env.step(MULTIPLIERS.index(1.0))
