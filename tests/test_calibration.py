"""Online, out-of-sample calibration of conviction -> P(excess return > 0)."""

from __future__ import annotations

import numpy as np
import pytest

from tools.learning.calibration import P_MIN, PRIOR_SLOPE, out_of_sample_probs, prob_up


def test_no_history_is_a_shrunk_claim_not_the_raw_one():
    assert prob_up(0.6, [], []) == pytest.approx(0.5 + PRIOR_SLOPE * 0.6)
    assert prob_up(-0.6, [], []) == pytest.approx(0.5 - PRIOR_SLOPE * 0.6)
    assert prob_up(0.0, [], []) == 0.5  # a HOLD says nothing about the direction


def test_it_learns_the_agents_real_hit_rate():
    rng = np.random.default_rng(1)
    signals = np.where(rng.random(2000) < 0.5, 0.6, -0.6)
    hits = (rng.random(2000) < 0.6).astype(int)  # right 60% of the time at a stated 0.8
    assert prob_up(0.6, signals, hits) == pytest.approx(0.6, abs=0.03)
    assert prob_up(-0.6, signals, hits) == pytest.approx(0.4, abs=0.03)
    # an agent that is always wrong at this conviction is read backwards
    assert prob_up(0.6, [0.6] * 500, [0] * 500) < 0.1


def test_buckets_separate_convictions_with_shrinkage():
    # strong calls right, weak calls coin flips
    signals = [0.9] * 300 + [0.1] * 300
    hits = [1] * 240 + [0] * 60 + [1, 0] * 150
    strong, weak = prob_up(0.9, signals, hits), prob_up(0.1, signals, hits)
    assert strong > 0.75 and 0.45 < weak < 0.6


def test_hostile_inputs_are_clipped_and_ignored():
    assert P_MIN <= prob_up(1.0, [1.0] * 10_000, [1] * 10_000) <= 1 - P_MIN
    assert prob_up(float("nan"), [], []) == 0.5
    # neutral and non-finite past calls are ignored
    assert prob_up(0.6, [0.0, float("nan")], [1, 1]) == prob_up(0.6, [], [])
    assert prob_up(5.0, [], []) == prob_up(1.0, [], [])  # conviction capped at 1


def test_out_of_sample_uses_only_strictly_earlier_calls():
    hist_s, hist_h, hist_d = [0.6] * 40, [0] * 40, ["2021-03-01"] * 20 + ["2021-03-02"] * 20
    probs = out_of_sample_probs([0.6, 0.6, 0.6], ["2021-03-01", "2021-03-02", "2021-03-03"], hist_s, hist_h, hist_d)
    assert probs[0] == pytest.approx(prob_up(0.6, [], []))      # nothing before it
    assert probs[1] == pytest.approx(prob_up(0.6, [0.6] * 20, [0] * 20))
    assert probs[2] < probs[1] < probs[0]
    assert out_of_sample_probs([0.6], ["2021-01-01"], [], [], []) == [prob_up(0.6, [], [])]
