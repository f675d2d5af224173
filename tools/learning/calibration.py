"""Online, out-of-sample calibration: an agent's conviction -> P(excess return > 0).

An agent's signal ``s`` in [-1, 1] is a direction times a conviction ``|s|``. What it is
worth is learned from the agent's OWN resolved predictions dated strictly before the one
being scored (so a score never uses its own outcome): the probability that a call of
conviction ``|s|`` is right, a Beta-binomial estimate with two levels of shrinkage:

1. the agent's overall hit rate, shrunk towards the prior ``0.5 + PRIOR_SLOPE * |s|``
   (with no history a 0.6 conviction is worth 0.56, not the 0.8 that ``(1 + s) / 2``
   would claim) with ``PRIOR_N`` pseudo-observations;
2. the hit rate of its conviction bucket (``BUCKETS`` on ``|s|``), shrunk towards (1).

``P(up) = p_right`` for a bullish call, ``1 - p_right`` for a bearish one, 0.5 for a
neutral one (a HOLD says nothing about the direction); clipped to [``P_MIN``, 1 - ``P_MIN``].
A "hit" is a directional call whose sign matched the excess return's (tools/outcomes.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BUCKETS = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0 + 1e-9])  # edges on |s|
PRIOR_SLOPE = 0.1   # what a conviction is worth before any evidence: shrunk hard towards a coin
PRIOR_N = 20.0      # pseudo-observations behind each prior
P_MIN = 0.02


def _bucket(conviction: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(BUCKETS, conviction, side="right") - 1, 0, len(BUCKETS) - 2)


def p_right(conviction: float, hist_conviction: np.ndarray, hist_hit: np.ndarray) -> float:
    """Probability that a directional call of this conviction is right, given past calls
    (``hist_conviction`` in [0, 1], ``hist_hit`` 0/1; only directional ones)."""
    c = float(min(1.0, max(0.0, abs(conviction))))
    prior = 0.5 + PRIOR_SLOPE * c
    n_all, h_all = len(hist_hit), float(np.sum(hist_hit))
    agent_rate = (PRIOR_N * prior + h_all) / (PRIOR_N + n_all)
    in_bucket = _bucket(np.asarray(hist_conviction, dtype=float)) == _bucket(np.array([c]))[0]
    n_b, h_b = int(in_bucket.sum()), float(np.sum(np.asarray(hist_hit)[in_bucket]))
    return (PRIOR_N * agent_rate + h_b) / (PRIOR_N + n_b)


def prob_up(signal: float, hist_signal: Sequence[float], hist_hit: Sequence[int]) -> float:
    """Calibrated P(excess return > 0) of a call ``signal`` from the agent's past calls
    (signals and 0/1 hits; neutral past calls are ignored)."""
    if not np.isfinite(signal) or signal == 0:
        return 0.5
    s = np.asarray(hist_signal, dtype=float).reshape(-1)
    h = np.asarray(hist_hit, dtype=float).reshape(-1)
    keep = (s != 0) & np.isfinite(s) & np.isfinite(h)
    p = p_right(signal, np.abs(s[keep]), h[keep])
    p = p if signal > 0 else 1.0 - p
    return float(min(1.0 - P_MIN, max(P_MIN, p)))


def out_of_sample_probs(signals: Sequence[float], as_ofs: Sequence[str], hist_signal: Sequence[float],
                        hist_hit: Sequence[int], hist_as_of: Sequence[str]) -> list[float]:
    """``prob_up`` for each prediction, each from the history dated strictly before it
    (dates as comparable strings, YYYY-MM-DD)."""
    hs, hh = np.asarray(hist_signal, dtype=float), np.asarray(hist_hit, dtype=float)
    hd = np.asarray(hist_as_of, dtype=object)
    out = []
    for s, d in zip(signals, as_ofs, strict=True):
        before = hd < d if len(hd) else np.zeros(0, dtype=bool)
        out.append(prob_up(float(s), hs[before], hh[before]))
    return out
