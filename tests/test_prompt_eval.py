"""Prompt evaluation: accuracy, IC and calibration per (agent, prompt_version)."""

from __future__ import annotations

import pytest

from tools.learning.prompt_eval import evaluate, spearman


def test_spearman_ranks_with_ties_and_refuses_degenerate_input():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 100, 1000, 1e9]) == pytest.approx(1.0)  # ranks, not values
    assert spearman([1, 1, 2, 2], [1, 2, 3, 4]) == pytest.approx(0.894427, abs=1e-6)
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None
    assert spearman([1, 2, float("nan"), 4], [1, 2, 3, 4]) == pytest.approx(1.0)


def test_per_agent_and_prompt_version():
    rows = []
    for i in range(10):  # v1: good calls, signal ranks the excess returns
        x = (i - 4.5) / 100
        rows.append({"agent": "strategy_agent", "prompt_version": "v1", "signal": 0.8 if x > 0 else -0.8,
                     "hit": 1, "loss": 0.1, "excess_return": x})
    for i in range(10):  # v2: always BUY at 0.8, right half the time
        rows.append({"agent": "strategy_agent", "prompt_version": "v2", "signal": 0.8, "hit": i % 2,
                     "loss": 0.26, "excess_return": 0.01 if i % 2 else -0.01})
    rows.append({"agent": "market_agent", "prompt_version": None, "signal": 0.0, "hit": 1, "loss": 0.25})
    out = {(e["agent"], e["prompt_version"]): e for e in evaluate(rows)}
    v1, v2 = out[("strategy_agent", "v1")], out[("strategy_agent", "v2")]
    assert (v1["n"], v1["accuracy"], v1["brier"]) == (10, 1.0, 0.1)
    assert v1["ic"] > 0.8 and v2["ic"] is None  # a constant signal has no rank information
    assert v2["accuracy"] == 0.5 and v2["overconfidence"] == pytest.approx(0.9 - 0.5)
    m = out[("market_agent", "-")]
    assert m["ic"] is None and m["claimed"] is None and m["overconfidence"] is None
    assert evaluate([]) == []
