"""graph.evaluate's statistics, checked by hand: bootstrap, deflated Sharpe, placebo, IC,
windows and universes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from graph.evaluate import analysis, stats
from graph.evaluate.windows import EvaluateError, draw_universes, rolling_windows

# ----------------------------------------------------------------- block bootstrap


def test_bootstrap_iid_interval_matches_the_normal_approximation():
    x = np.array([0.0, 1.0] * 200)  # mean 0.5, sd 0.5006, n 400: standard error 0.025
    ci = stats.block_bootstrap_ci(x, block=1, n_boot=4000, seed=1)
    assert ci["mean"] == pytest.approx(0.5)
    assert ci["low"] == pytest.approx(0.5 - 1.96 * 0.025, abs=0.006)
    assert ci["high"] == pytest.approx(0.5 + 1.96 * 0.025, abs=0.006)


def test_bootstrap_blocks_widen_the_interval_of_a_dependent_series():
    # runs of 10 equal values: iid resampling thinks there are 400 independent days, blocks know better
    x = np.repeat(np.where(np.arange(40) % 3 == 0, 1.0, -1.0), 10)
    narrow = stats.block_bootstrap_ci(x, block=1, seed=0)
    wide = stats.block_bootstrap_ci(x, block=10, seed=0)
    assert (wide["high"] - wide["low"]) > 2 * (narrow["high"] - narrow["low"])


def test_bootstrap_edge_cases_and_determinism():
    x = np.arange(10.0)
    full = stats.block_bootstrap_ci(x, block=10)  # a circular block of n days only rotates the series
    assert full["low"] == pytest.approx(4.5) and full["high"] == pytest.approx(4.5)
    const = stats.block_bootstrap_ci(np.full(30, 0.002))
    assert const["low"] == pytest.approx(0.002) and const["high"] == pytest.approx(0.002)
    assert stats.block_bootstrap_ci(x, seed=3) == stats.block_bootstrap_ci(x, seed=3)
    one = stats.block_bootstrap_ci([0.01])
    assert one["mean"] == 0.01 and one["low"] is None and one["high"] is None
    assert stats.block_bootstrap_ci([])["mean"] is None
    with pytest.raises(ValueError, match="non-finite"):
        stats.block_bootstrap_ci([0.1, float("nan"), 0.2])
    with pytest.raises(ValueError):
        stats.block_bootstrap_ci(x, block=0)


def test_paired_difference_refuses_unequal_lengths():
    assert stats.paired_difference([0.01, 0.02], [0.0, 0.03]).tolist() == pytest.approx([0.01, -0.01])
    with pytest.raises(ValueError, match="length"):
        stats.paired_difference([0.1, 0.2], [0.1])


# ----------------------------------------------------------------- deflated Sharpe


def test_deflated_sharpe_against_a_hand_computation():
    # x: mean 0.01, sd (ddof 1) 0.02 -> SR 0.5; centred values +-0.01, +-0.02, +-0.03, 0, 0:
    # m2 = 28e-4/8 = 3.5e-4, m3 = 0 (symmetric), m4 = 196e-8/8 = 24.5e-8 -> skew 0, kurtosis 2.0
    x = [0.02, -0.01, 0.03, 0.0, 0.01, -0.02, 0.04, 0.01]
    # trials 0.1, 0.2, 0.3: V = 0.01; SR0 = 0.1 * ((1 - 0.5772) * Z(2/3) + 0.5772 * Z(1 - 1/(3e)))
    #                                    = 0.1 * (0.4228 * 0.43073 + 0.5772 * 1.16196) = 0.085280
    sr0 = 0.1 * ((1 - 0.5772156649) * 0.4307272993 + 0.5772156649 * 1.1619569289)
    # DSR = Phi((0.5 - SR0) * sqrt(7) / sqrt(1 - 0 * 0.5 + (2 - 1) / 4 * 0.25)) = Phi(1.06449) = 0.8564
    d = stats.deflated_sharpe(x, [0.1, 0.2, 0.3])
    assert d["sharpe"] == pytest.approx(0.5)
    assert d["skew"] == pytest.approx(0.0, abs=1e-12) and d["kurtosis"] == pytest.approx(2.0)
    assert d["sr0"] == pytest.approx(sr0, rel=1e-9) and d["sr0"] == pytest.approx(0.085280, abs=1e-6)
    z = (0.5 - sr0) * math.sqrt(7) / math.sqrt(1.0625)
    assert d["dsr"] == pytest.approx(0.5 * (1 + math.erf(z / math.sqrt(2))), rel=1e-9)
    assert d["dsr"] == pytest.approx(0.8564, abs=1e-4)


def test_more_trials_deflate_more_and_one_trial_is_the_plain_psr():
    x = np.random.default_rng(0).normal(0.001, 0.01, 250)
    trials = [0.05, 0.1, 0.02, 0.08]
    few, many = stats.deflated_sharpe(x, trials, 4), stats.deflated_sharpe(x, trials, 100)
    assert many["sr0"] > few["sr0"] and many["dsr"] < few["dsr"]
    assert stats.deflated_sharpe(x, trials, 1)["sr0"] == 0.0
    flat = stats.deflated_sharpe(np.zeros(20), trials)
    assert flat["sharpe"] is None and flat["dsr"] is None


# ----------------------------------------------------------------- placebo


def _cell(window: int, days: list[str], on: list[float], off: list[float], universe: int = 0) -> dict:
    return {"cell": f"w{window:02d}-u{universe}", "window": window, "universe": universe, "days": days,
            "symbols": 5, "arms": {"on": {"dates": days, "returns": on}, "off": {"dates": days, "returns": off}}}


def test_placebo_compares_off_with_off_started_later_on_the_shared_days():
    days = [f"2024-01-{d:02d}" for d in range(1, 13)]
    early_off = [0.001] * 8
    late_off = [0.003] * 8
    # ON beats OFF by 5 bp a day late in the early window (days 5-8: it has had time to learn)
    early = _cell(0, days[:8], [0.0] * 4 + [0.0015] * 4, early_off)
    late = _cell(1, days[4:], [0.0] * 8, late_off)
    res = analysis.placebo([early, late], min_overlap=4)
    assert res["pairs"] == 1
    pair = res["detail"][0]
    assert pair["days"] == 4 and pair["early"] == "w00-u0" and pair["late"] == "w01-u0"
    assert pair["placebo"] == pytest.approx(0.002) and pair["on_off"] == pytest.approx(0.0005)
    assert res["observed_mean"] == pytest.approx(0.0005)
    assert res["share_placebo_as_large"] == 1.0  # the start alone moved OFF by more than ON - OFF
    # too little overlap, or another universe: no placebo pair
    assert analysis.placebo([early, late], min_overlap=5)["pairs"] == 0
    other = _cell(1, days[4:], [0.0] * 8, late_off, universe=1)
    assert analysis.placebo([early, other], min_overlap=1)["pairs"] == 0


def test_placebo_summary_spread_and_share():
    p = stats.placebo_summary([-0.002, -0.001, 0.0, 0.001, 0.002], [0.0015])
    assert p["placebo_std"] == pytest.approx(np.std([-2, -1, 0, 1, 2], ddof=1) * 1e-3)
    assert p["share_placebo_as_large"] == pytest.approx(0.4)
    assert stats.placebo_summary([], [0.1])["share_placebo_as_large"] is None


def test_treatment_effect_pools_cells_by_calendar_day():
    days = ["2024-01-01", "2024-01-02", "2024-01-03"]
    a = _cell(0, days, [0.01, 0.0, 0.02], [0.0, 0.0, 0.0])
    b = _cell(1, days[1:], [0.0, 0.0], [0.02, 0.0], universe=1)
    e = analysis.treatment_effect([a, b], block=1)
    # per day: 0.01 (a only), (0 + -0.02) / 2, (0.02 + 0) / 2
    assert e["series"]["diff"] == pytest.approx([0.01, -0.01, 0.01])
    assert e["mean_daily"] == pytest.approx(0.01 / 3)
    assert e["cell_days"] == 5 and e["cells_positive"] == 1 and e["cells_negative"] == 1


# ----------------------------------------------------------------- agents' predictions


def test_spearman_with_ties_and_agent_scores_by_hand():
    # ranks of x: 1, 2.5, 2.5, 4; of y: 1, 2, 3, 4 -> Pearson of the ranks = 0.9487
    assert stats.spearman([1, 2, 2, 3], [10, 20, 30, 40]) == pytest.approx(0.9486833, abs=1e-6)
    assert stats.spearman([1, 1, 1], [1, 2, 3]) is None and stats.spearman([1, 2], [1, 2]) is None
    s = stats.agent_scores(signal=[0.5, -0.5, 0.2, 0.4], confidence=[0.9, 0.6, 0.5, 0.8],
                           realized=[0.02, 0.01, -0.01, 0.03], hit=[1, 0, 0, 1])
    assert s["n"] == 4 and s["hit_rate"] == 0.5
    assert s["base_rate"] == 0.75  # 3 of 4 realized returns were up: always "up" hits 75 %
    assert s["brier"] == pytest.approx((0.01 + 0.36 + 0.25 + 0.04) / 4)
    assert s["brier_base"] == pytest.approx(0.25)
    assert s["ic"] == pytest.approx(0.6)  # ranks (4,1,2,3) vs (3,2,1,4): 1 - 6 * 4 / (4 * 15)
    assert stats.agent_scores([], [], [], [])["ic"] is None


# ----------------------------------------------------------------- windows and universes


def test_rolling_windows_end_on_the_last_day_and_overlap():
    days = [f"d{i:03d}" for i in range(100)]
    ws = rolling_windows(days, 4, 20)
    assert [len(w.days) for w in ws] == [20] * 4
    assert ws[-1].end == "d099" and ws[1].days[0] == days[days.index(ws[0].start) + 10]  # stride capped at 10
    assert [w.start for w in rolling_windows(days, 3, 20, stride=5)] == ["d070", "d075", "d080"]
    with pytest.raises(EvaluateError, match="does not fit"):
        rolling_windows(days, 2, 101)
    with pytest.raises(EvaluateError, match="need 120 decision days"):
        rolling_windows(days, 3, 20, stride=50)


def test_universes_are_seeded_sorted_draws():
    symbols = [f"S{i:03d}" for i in range(50)]
    a, b = draw_universes(symbols, 3, 10, seed=4), draw_universes(symbols, 3, 10, seed=4)
    assert a == b and len({u.symbols for u in a}) == 3
    assert all(list(u.symbols) == sorted(set(u.symbols)) and len(u.symbols) == 10 for u in a)
    assert draw_universes(symbols, 3, 10, seed=5) != a
    assert draw_universes(symbols, 1, 0, seed=0)[0].symbols == tuple(symbols)
    with pytest.raises(EvaluateError, match="same"):
        draw_universes(symbols, 2, 50, seed=0)


def test_arms_are_settings_overrides_and_unknown_settings_are_refused(monkeypatch):
    from graph.evaluate import runner

    cfg = runner.EvalConfig(arms=["on", "off", "no_gate"])
    assert [a.overrides for a in cfg.arm_list()] == [{}, {"learning": False}, {"learn_gate": False}]
    monkeypatch.setattr(runner, "ABLATIONS", [runner.Arm("typo", "t", "graph", {"learn_gaet": False})])
    with pytest.raises(EvaluateError, match="no setting learn_gaet"):
        runner.EvalConfig(arms=["on", "typo"]).arm_list()


def test_calibrated_brier_uses_only_earlier_days_and_rewards_a_constant_but_right_agent():
    # a rule agent: always 0.9 conviction ("95 %" raw), right 60 % of the time
    rng = np.random.default_rng(3)
    n = 400
    days = [f"2010-{1 + i // 28:02d}-{1 + i % 28:02d}" for i in range(n)]
    hit = (rng.random(n) < 0.6).astype(float)
    cols = {"signal": [0.9] * n, "confidence": [0.95] * n, "realized": [0.01 if h else -0.01 for h in hit],
            "hit": list(hit), "as_of": days}
    p = analysis.calibrated_hits(cols)
    assert p[0] == pytest.approx(0.5 + 0.1 * 0.9)  # no earlier day: the shrunk prior, not 0.95
    # out of sample: changing today's and later outcomes never changes today's probability
    flipped = dict(cols, hit=list(hit[:200]) + [1 - h for h in hit[200:]])
    assert analysis.calibrated_hits(flipped)[:201] == p[:201]
    s = stats.agent_scores(cols["signal"], cols["confidence"], cols["realized"], cols["hit"], p)
    assert s["n_calibrated"] == n
    assert s["brier"] > s["brier_base"]  # the raw 0.95 claims are worse than a constant
    assert s["brier_calibrated"] < s["brier"]  # calibrated, the same calls score far better
    assert s["brier_calibrated"] == pytest.approx(s["brier_calibrated_base"], abs=0.01)
    # neutral calls and rows without a day are left out, not scored as 0.5
    assert analysis.calibrated_hits({"signal": [0.0, 0.5], "hit": [1, 0], "as_of": ["a", "b"]})[0] is None
    assert analysis.calibrated_hits({"signal": [0.5], "hit": [1]}) == [None]
