"""Skill weights through the production update (nodes.learning_agent.score_round): a planted
skilled agent rises, unskilled ones fall, all-noise agents stay equal; reviewer weights
weigh the peer-review votes."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from nodes.learning_agent import VOTER_POOL, score_round
from nodes.peer_review import review_verdict
from tools.learning.weights import comparators, hedge_round, learning_rate

SKILLED = "strategy_agent"
HORIZON = 5       # bars until a call resolves: feedback arrives 5 rounds late
SYMBOLS = 6       # calls per agent per cycle (one correlated observation)
CONVICTION = 0.6  # every agent states 60%


def simulate(skill: dict[str, float], rounds: int, seed: int) -> list[dict[str, float]]:
    """Weights after each round. Each cycle every agent calls SYMBOLS symbols at
    CONVICTION, right with probability skill[agent] (0.5 when absent) about the sign of the
    excess return; calls resolve HORIZON cycles later, and the resolved calls join the
    agent's calibration history exactly as learning_agent feeds it."""
    rng = np.random.default_rng(seed)
    days = [f"{d:%Y-%m-%d}" for d in pd.bdate_range("2022-01-03", periods=rounds + HORIZON)]
    weights = {a: 1.0 for a in VOTER_POOL}
    history: dict[str, list[dict]] = {a: [] for a in VOTER_POOL}
    made: dict[int, list[dict]] = {}
    path = []
    for t in range(rounds + HORIZON):
        excess = rng.normal(0.0, 0.02, SYMBOLS)
        made[t] = [{"agent": a, "as_of": days[t], "symbol": f"S{k}", "excess_return": float(excess[k]),
                    "signal": CONVICTION * float(np.sign(excess[k]) if rng.random() < skill.get(a, 0.5)
                                                 else -np.sign(excess[k]))}
                   for a in VOTER_POOL for k in range(SYMBOLS)]
        if t < HORIZON:
            continue
        resolved = made.pop(t - HORIZON)
        weights, _ = score_round(resolved, history, weights, rounds=250, delay=HORIZON)
        for u in resolved:  # newest first, as LearningStore.outcomes returns them
            history[u["agent"]].insert(0, {"as_of": u["as_of"], "signal": u["signal"], "hit": u["hit"]})
        path.append(dict(weights))
    return path


def test_a_skilled_agent_rises_above_the_others_within_60_cycles_and_the_unskilled_fall():
    path = simulate({SKILLED: 0.6}, rounds=60, seed=7)
    others = [a for a in VOTER_POOL if a != SKILLED]
    final = path[-1]
    assert all(final[SKILLED] > final[a] for a in others)
    assert final[SKILLED] > 1.0 and all(final[a] < 1.0 for a in others)
    assert sum(final.values()) == pytest.approx(len(VOTER_POOL))  # normalized: 1.0 is average
    # and it stays on top once there (checked over the last 20 cycles)
    assert all(w[SKILLED] == max(w.values()) for w in path[-20:])


def test_the_stated_number_of_cycles_holds_across_seeds():
    # "within 60 cycles": the skilled agent is the top weight at cycle 60 for every seed
    tops = [simulate({SKILLED: 0.6}, rounds=60, seed=s)[-1] for s in range(4)]
    assert all(max(w, key=w.get) == SKILLED for w in tops)


def test_all_noise_agents_stay_near_equal_after_100_rounds():
    path = simulate({}, rounds=100, seed=3)
    assert max(abs(w - 1.0) for weights in path for w in weights.values()) < 0.10


def test_one_round_per_cycle_however_many_calls_resolve():
    # 6 or 60 resolved calls of the same quality move the weights the same: one round
    def round_with(n):
        ups = [{"agent": a, "as_of": "2022-03-01", "symbol": f"S{k}", "signal": 0.6,
                "excess_return": 0.01 if (a == SKILLED or k % 2) else -0.01}
               for a in VOTER_POOL for k in range(n)]
        return score_round(ups, {}, {a: 1.0 for a in VOTER_POOL}, rounds=250, delay=5)[0]
    assert round_with(6)[SKILLED] == pytest.approx(round_with(60)[SKILLED])


def test_scores_are_calibrated_out_of_sample_not_the_raw_claim():
    ups = [{"agent": SKILLED, "as_of": "2022-03-01", "symbol": "S", "signal": 0.6, "excess_return": 0.01}]
    # no history: 0.56 (shrunk), not (1 + 0.6) / 2 = 0.8
    score_round(ups, {}, {a: 1.0 for a in VOTER_POOL}, rounds=250, delay=5)
    assert ups[0]["prob_up"] == pytest.approx(0.56) and ups[0]["hit"] == 1
    assert ups[0]["loss"] == pytest.approx(0.44 ** 2)
    # a history dated on or after the call is NOT used (out of sample)
    future = [{"as_of": "2022-03-01", "signal": 0.6, "hit": 0}] * 50
    score_round(ups, {SKILLED: future}, {a: 1.0 for a in VOTER_POOL}, rounds=250, delay=5)
    assert ups[0]["prob_up"] == pytest.approx(0.56)
    past = [{"as_of": "2022-02-01", "signal": 0.6, "hit": 0}] * 50  # it was always wrong before
    score_round(ups, {SKILLED: past}, {a: 1.0 for a in VOTER_POOL}, rounds=250, delay=5)
    assert ups[0]["prob_up"] < 0.5


def test_learning_off_returns_the_weights_unchanged_and_asleep_agents_keep_their_share():
    ups = [{"agent": SKILLED, "as_of": "2022-03-01", "symbol": "S", "signal": 0.6, "excess_return": 0.01}]
    w = {a: 1.0 for a in VOTER_POOL}
    assert score_round(ups, {}, w, rounds=250, delay=5, learn=False)[0] == w
    # hostile inputs: NaN / negative stored weights are treated as 1.0, losses clipped to [0, 1]
    out = hedge_round({"a": float("nan"), "b": -3.0, "c": 1.0}, {"a": 5.0, "b": -1.0}, eta=0.1)
    assert sum(out.values()) == pytest.approx(3.0) and all(math.isfinite(v) and v > 0 for v in out.values())
    assert out["b"] > out["c"] > out["a"]  # c was asleep: the weighted mean loss, in between


def test_learning_rate_follows_the_delayed_feedback_bound():
    assert learning_rate(4, 250, 0) == pytest.approx(math.sqrt(8 * math.log(4) / 250))
    assert learning_rate(4, 250, 20) == pytest.approx(math.sqrt(8 * math.log(4) / (21 * 250)))
    assert learning_rate(1, 250, 5) == 0.0 and learning_rate(4, 0, 5) == 0.0


def test_comparators_cumulate_learned_equal_and_cash():
    rounds = [({"a": 1.5, "b": 0.5}, {"a": 0.2, "b": 0.3}), ({}, {}), ({}, {"a": 0.1, "b": 0.4})]
    c = comparators(rounds)
    assert c["rounds"] == 2 and c["stay_in_cash"] == pytest.approx(0.5)
    assert c["equal_weight"] == pytest.approx(0.25 + 0.25)
    assert c["learned_weights"] == pytest.approx((1.5 * 0.2 + 0.5 * 0.3) / 2 + 0.25)
    assert (c["best_agent"], c["best_agent_loss"]) == ("a", pytest.approx(0.3))


def test_equal_reviewer_weights_reproduce_the_two_of_three_rule_exactly():
    agents = ("risk_agent", "auditor_agent", "history_reviewer")
    for combo in itertools.product([False, True], repeat=3):
        votes = dict(zip(agents, combo, strict=True))
        n = sum(combo)
        expected = "APPROVED" if n >= 2 else "CAUTION" if n == 1 else "REJECTED"
        for scale in (1.0, 0.3, 7.0):  # any equal weights
            assert review_verdict(votes, dict.fromkeys(agents, scale))[0] == expected, (combo, scale)


def test_learned_reviewer_weights_weigh_the_votes():
    votes = {"risk_agent": True, "auditor_agent": True, "history_reviewer": False}
    # two approvals from reviewers with a poor record against a strong dissenter: CAUTION
    assert review_verdict(votes, {"risk_agent": 0.6, "auditor_agent": 0.6, "history_reviewer": 1.8})[0] == "CAUTION"
    lone = {"risk_agent": True, "auditor_agent": False, "history_reviewer": False}
    assert review_verdict(lone, {"risk_agent": 0.2, "auditor_agent": 1.4, "history_reviewer": 1.4})[0] == "REJECTED"
    assert review_verdict(lone, {"risk_agent": 2.0, "auditor_agent": 0.5, "history_reviewer": 0.5})[0] == "APPROVED"
    # hostile weights: zeros, NaN, negatives, missing -> never a crash, never a division by zero
    assert review_verdict(votes, dict.fromkeys(votes, 0.0))[0] == "APPROVED"
    assert review_verdict(votes, {"risk_agent": float("nan"), "auditor_agent": -1.0})[0] == "APPROVED"
