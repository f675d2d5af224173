"""Skill weights: exponentially weighted averaging (Hedge), ONE round per cycle.

A cycle's resolved predictions are one correlated observation of the market, so they make
one round: agent ``i``'s round loss ``l_i`` is the mean Brier score ``(p - y)^2`` of its
calibrated probabilities ``p`` (tools/learning/calibration.py) against ``y = 1`` when the
excess return over the universe was positive. Losses lie in [0, 1], as Hedge's bound needs.

    w_i <- w_i * exp(-eta * l_i), then normalized so the weights sum to N (1.0 = average).

No floor and no cap: normalization keeps the scale, and a weight only becomes tiny after
a long, consistent record of losing to the others. An agent with nothing resolved this
round ("asleep") takes the round's weighted mean loss, so its relative weight is unchanged.

Learning rate. Hedge over ``T`` rounds with N experts has regret <= sqrt(T ln N / 2) at
``eta = sqrt(8 ln N / T)``. With feedback delayed by ``d`` rounds (a prediction resolves
``d`` cycles after it is made) the bound scales with sqrt((d + 1) T), so

    eta = sqrt(8 ln N / ((d + 1) T)),

``d`` = the horizon in bars (one cycle per trading day) and ``T`` = the rounds the weights
should be accountable over (default 250: a trading year).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

STAY_IN_CASH_LOSS = 0.25  # Brier of "no opinion" (p = 0.5), whatever happens


def learning_rate(n_agents: int, rounds: int, delay: int) -> float:
    """``sqrt(8 ln N / ((d + 1) T))``; 0.0 for fewer than two agents or no rounds."""
    if n_agents < 2 or rounds < 1:
        return 0.0
    return math.sqrt(8.0 * math.log(n_agents) / ((max(0, delay) + 1) * rounds))


def brier(p: float, y: int) -> float:
    return (float(p) - float(y)) ** 2


def hedge_round(weights: Mapping[str, float], losses: Mapping[str, float], eta: float) -> dict[str, float]:
    """One Hedge round over the agents in ``weights`` (losses in [0, 1] for the agents that
    had resolutions; the others are asleep). Returns weights summing to ``len(weights)``."""
    agents = list(weights)
    n = len(agents)
    if n == 0:
        return {}
    w = {a: (float(weights[a]) if math.isfinite(weights[a]) and weights[a] > 0 else 1.0) for a in agents}
    awake = {a: min(1.0, max(0.0, float(losses[a]))) for a in agents if a in losses and math.isfinite(losses[a])}
    if not awake:
        return normalize(w)
    mean = sum(w[a] * awake[a] for a in awake) / sum(w[a] for a in awake)
    # relative to the mean: the same update after normalization, and no underflow over years
    return normalize({a: w[a] * math.exp(-eta * (awake.get(a, mean) - mean)) for a in agents})


def normalize(weights: Mapping[str, float]) -> dict[str, float]:
    """Scale to sum to the number of agents (equal when all are zero or unusable)."""
    total = sum(v for v in weights.values() if math.isfinite(v) and v > 0)
    if total <= 0:
        return {a: 1.0 for a in weights}
    n = len(weights)
    return {a: (v * n / total if math.isfinite(v) and v > 0 else 0.0) for a, v in weights.items()}


def comparators(rounds: Sequence[tuple[Mapping[str, float], Mapping[str, float]]]) -> dict[str, float]:
    """Cumulative loss over rounds of (weights in force, round losses): the learned mix
    (weight-averaged loss), equal weights (mean loss), staying in cash (no opinion, 0.25 a
    round) and the best single agent in hindsight. Only rounds with losses count."""
    learned = equal = cash = 0.0
    per_agent: dict[str, float] = {}
    n = 0
    for weights, losses in rounds:
        if not losses:
            continue
        n += 1
        total = sum(weights.get(a, 1.0) for a in losses)
        learned += (sum(weights.get(a, 1.0) * v for a, v in losses.items()) / total if total > 0
                    else sum(losses.values()) / len(losses))
        equal += sum(losses.values()) / len(losses)
        cash += STAY_IN_CASH_LOSS
        for a, v in losses.items():
            per_agent[a] = per_agent.get(a, 0.0) + v
    best = min(per_agent.items(), key=lambda kv: kv[1]) if per_agent else (None, None)
    return {"rounds": n, "learned_weights": round(learned, 6), "equal_weight": round(equal, 6),
            "stay_in_cash": round(cash, 6), "best_agent": best[0],
            "best_agent_loss": None if best[1] is None else round(best[1], 6)}
