"""Consensus models: pure functions of the signed votes, the weights and the threshold,
each returning (action, score in [-1, 1]). The graph's consensus node (nodes/consensus.py,
which documents each model) and the decision simulator re-deciding a recorded vote under
another confidence threshold (tools/learning/simulator.py) both call these.
"""

from __future__ import annotations


def _side(score: float, threshold: float) -> str:
    return "BUY" if score >= threshold else "SELL" if score <= -threshold else "HOLD"


def weighted_vote(votes: dict[str, float], weights: dict[str, float], threshold: float) -> tuple[str, float]:
    total = sum(weights[a] for a in votes)
    score = sum(weights[a] * v for a, v in votes.items()) / total if total > 0 else 0.0
    return _side(score, threshold), score


def majority_vote(votes: dict[str, float], weights: dict[str, float], threshold: float) -> tuple[str, float]:
    """Weights and the threshold do not count here (thresholds already zeroed weak calls)."""
    if not votes:
        return "HOLD", 0.0
    buys, sells = sum(v > 0 for v in votes.values()), sum(v < 0 for v in votes.values())
    half = len(votes) / 2
    action = "BUY" if buys > half else "SELL" if sells > half else "HOLD"
    return action, (buys - sells) / len(votes)


def unanimous_vote(votes: dict[str, float], weights: dict[str, float], threshold: float) -> tuple[str, float]:
    if not votes:
        return "HOLD", 0.0
    score = sum(votes.values()) / len(votes)
    if all(v >= threshold for v in votes.values()):
        return "BUY", score
    if all(v <= -threshold for v in votes.values()):
        return "SELL", score
    return "HOLD", score


def confidence_weighted_vote(votes: dict[str, float], weights: dict[str, float],
                             threshold: float) -> tuple[str, float]:
    total = sum(weights[a] * abs(v) for a, v in votes.items())
    score = sum(weights[a] * abs(v) * v for a, v in votes.items()) / total if total > 0 else 0.0
    return _side(score, threshold), score


CONSENSUS_MODELS = {"weighted": weighted_vote, "majority": majority_vote, "unanimous": unanimous_vote,
                    "confidence_weighted": confidence_weighted_vote}
