"""Consensus models: pure functions of signed votes, weights and the threshold."""

from __future__ import annotations

import pytest

from graph.chains import CONSENSUS_MODELS as CONFIGURABLE
from nodes.consensus import (
    CONSENSUS_MODELS,
    confidence_weighted_vote,
    majority_vote,
    unanimous_vote,
    weighted_vote,
)

EQUAL = {"market_agent": 1.0, "strategy_agent": 1.0, "sentiment_agent": 1.0}


def test_every_configurable_model_has_a_function():
    assert set(CONSENSUS_MODELS) == set(CONFIGURABLE)


@pytest.mark.parametrize("model", sorted(CONSENSUS_MODELS))
def test_no_voters_is_a_hold_at_zero(model):
    assert CONSENSUS_MODELS[model]({}, {}, 0.25) == ("HOLD", 0.0)


@pytest.mark.parametrize("model", sorted(CONSENSUS_MODELS))
def test_zero_weights_never_divide_by_zero(model):
    action, score = CONSENSUS_MODELS[model]({"market_agent": 0.0}, {"market_agent": 0.0}, 0.25)
    assert action == "HOLD" and score == 0.0


def test_weighted_is_todays_weighted_mean():
    votes = {"market_agent": 0.8, "strategy_agent": -0.2}
    action, score = weighted_vote(votes, {"market_agent": 3.0, "strategy_agent": 1.0}, 0.25)
    assert score == pytest.approx((3 * 0.8 - 0.2) / 4) and action == "BUY"
    assert weighted_vote(votes, {"market_agent": 1.0, "strategy_agent": 1.0}, 0.31) == ("HOLD", pytest.approx(0.3))
    assert weighted_vote({"market_agent": -0.5}, {"market_agent": 1.0}, 0.25)[0] == "SELL"


def test_weighted_threshold_is_inclusive():
    assert weighted_vote({"market_agent": 0.25}, {"market_agent": 1.0}, 0.25)[0] == "BUY"
    assert weighted_vote({"market_agent": -0.25}, {"market_agent": 1.0}, 0.25)[0] == "SELL"


def test_majority_needs_more_than_half_and_ignores_weights():
    # two weak BUYs outvote one strong SELL however heavy its weight
    votes = {"market_agent": 0.1, "strategy_agent": 0.1, "sentiment_agent": -0.9}
    weights = {"market_agent": 0.1, "strategy_agent": 0.1, "sentiment_agent": 5.0}
    assert majority_vote(votes, weights, 0.25) == ("BUY", pytest.approx(1 / 3))
    assert weighted_vote(votes, weights, 0.25)[0] == "SELL"  # the same votes, weighted: SELL
    # a tie, or a HOLD (0) keeping either side at half, holds
    assert majority_vote({"market_agent": 0.5, "strategy_agent": -0.5}, EQUAL, 0.25)[0] == "HOLD"
    assert majority_vote({"market_agent": 0.5, "strategy_agent": 0.0}, EQUAL, 0.25)[0] == "HOLD"
    assert majority_vote({"market_agent": -0.5, "strategy_agent": -0.1, "sentiment_agent": 0.0}, EQUAL,
                         0.25) == ("SELL", pytest.approx(-2 / 3))


def test_unanimous_needs_every_voter_past_the_threshold():
    assert unanimous_vote({"market_agent": 0.6, "strategy_agent": 0.4}, EQUAL, 0.25) == ("BUY", pytest.approx(0.5))
    assert unanimous_vote({"market_agent": -0.6, "strategy_agent": -0.3}, EQUAL, 0.25)[0] == "SELL"
    # one HOLD, one weak vote or one dissenter vetoes
    assert unanimous_vote({"market_agent": 0.9, "strategy_agent": 0.0}, EQUAL, 0.25)[0] == "HOLD"
    assert unanimous_vote({"market_agent": 0.9, "strategy_agent": 0.2}, EQUAL, 0.25)[0] == "HOLD"
    assert unanimous_vote({"market_agent": 0.9, "strategy_agent": 0.9, "sentiment_agent": -0.3}, EQUAL,
                          0.25)[0] == "HOLD"


def test_confidence_weighted_lets_strong_calls_dominate_weak_ones():
    votes = {"market_agent": 0.9, "strategy_agent": -0.1, "sentiment_agent": -0.1, "forex_agent": -0.1}
    weights = dict.fromkeys(votes, 1.0)
    w_action, w_score = weighted_vote(votes, weights, 0.25)
    c_action, c_score = confidence_weighted_vote(votes, weights, 0.25)
    assert w_score == pytest.approx(0.15) and w_action == "HOLD"
    assert c_score == pytest.approx((0.81 - 0.03) / 1.2) and c_action == "BUY"
    # the learned weights still scale each voter
    assert confidence_weighted_vote({"market_agent": 0.5, "strategy_agent": -0.5},
                                    {"market_agent": 3.0, "strategy_agent": 1.0}, 0.25)[0] == "BUY"


@pytest.mark.parametrize("model", sorted(CONSENSUS_MODELS))
def test_scores_stay_in_range_and_mirror(model):
    votes = {"market_agent": 0.7, "strategy_agent": 0.9, "sentiment_agent": -0.2}
    action, score = CONSENSUS_MODELS[model](votes, EQUAL, 0.25)
    mirrored, neg = CONSENSUS_MODELS[model]({a: -v for a, v in votes.items()}, EQUAL, 0.25)
    assert -1.0 <= score <= 1.0 and neg == pytest.approx(-score)
    assert mirrored == {"BUY": "SELL", "SELL": "BUY", "HOLD": "HOLD"}[action]
