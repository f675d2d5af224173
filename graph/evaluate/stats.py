"""Paired statistics of ``graph.evaluate``. Pure numpy (and the standard library's normal
distribution); every input is a plain array of daily simple returns or prediction columns.

Conventions: returns are daily simple returns (0.001 = 0.1 %); Sharpe ratios here are per
day (not annualized) unless a name says otherwise; NaN inputs are rejected, never skipped
silently; an empty input gives ``None`` fields, never an exception.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

EULER_GAMMA = 0.5772156649015329
from tools.learning.sim_stats import (  # noqa: E402,F401  (moved to tools: one place for both)
    DEFAULT_BLOCK,
    block_bootstrap_ci,
    paired_difference,
)
from tools.learning.sim_stats import finite_array as _array  # noqa: E402


def placebo_summary(placebo_means, observed_means) -> dict:
    """The spread of same-arm start-offset differences next to the treatment's.

    ``placebo_means``: mean daily difference of OFF started at day j minus OFF started at
    day i < j, on the days both cover (nothing differs but the start). ``observed_means``:
    ON minus OFF (both started at i) on the same days. If the observed differences are no
    larger than the placebo ones, start-date noise alone explains them.
    Returns the placebo's std and 2.5/97.5 % quantiles, the observed mean, and the share of
    placebo differences at least as large in absolute value as the observed mean (``None``
    when there is no placebo)."""
    p, o = _array(placebo_means, "placebo"), _array(observed_means, "observed")
    out = {"pairs": len(p), "placebo_mean": None, "placebo_std": None, "placebo_low": None,
           "placebo_high": None, "placebo_mean_abs": None,
           "observed_mean": float(o.mean()) if len(o) else None, "share_placebo_as_large": None}
    if not len(p):
        return out
    out.update(placebo_mean=float(p.mean()), placebo_std=float(p.std(ddof=1)) if len(p) > 1 else 0.0,
               placebo_low=float(np.quantile(p, 0.025)), placebo_high=float(np.quantile(p, 0.975)),
               placebo_mean_abs=float(np.abs(p).mean()))
    if len(o):
        out["share_placebo_as_large"] = float(np.mean(np.abs(p) >= abs(float(o.mean()))))
    return out


def sharpe(x) -> float | None:
    """Per-day Sharpe ratio mean / std (ddof=1), ``None`` when undefined (n < 2 or std 0)."""
    a = _array(x)
    if len(a) < 2:
        return None
    sd = float(a.std(ddof=1))
    return float(a.mean()) / sd if sd > 0 else None


def expected_max_sharpe(trial_sharpes, n_trials: int) -> float:
    """SR0 = sqrt(V[SR_n]) * ((1 - g) * Z^-1(1 - 1/N) + g * Z^-1(1 - 1/(N e))), g = Euler's
    gamma: the Sharpe the best of N unskilled trials reaches by luck (Bailey & Lopez de
    Prado). ``V`` is the variance (ddof=1) of the trials' per-day Sharpes; 0 when N < 2."""
    s = _array(trial_sharpes, "trial_sharpes")
    if n_trials < 2 or len(s) < 2:
        return 0.0
    z = NormalDist().inv_cdf
    v = float(s.var(ddof=1))
    return math.sqrt(v) * ((1 - EULER_GAMMA) * z(1 - 1 / n_trials) + EULER_GAMMA * z(1 - 1 / (n_trials * math.e)))


def deflated_sharpe(x, trial_sharpes, n_trials: int | None = None) -> dict:
    """Deflated Sharpe ratio (Bailey & Lopez de Prado, 2014) of the daily returns ``x``:

        DSR = Phi( (SR - SR0) * sqrt(T - 1) / sqrt(1 - g3 * SR + (g4 - 1) / 4 * SR^2) )

    with SR the per-day Sharpe of ``x``, T its length, g3 its skewness, g4 its kurtosis
    (3 for a normal; population moments), SR0 :func:`expected_max_sharpe` over the Sharpes of
    every variant tried (``n_trials`` defaults to their count). DSR is the probability that
    the true Sharpe exceeds what the best of the trials reaches by luck; >= 0.95 is the usual
    bar. ``None`` fields when T < 3 or the returns are constant."""
    a = _array(x)
    s = _array(trial_sharpes, "trial_sharpes")
    n = int(n_trials if n_trials is not None else len(s))
    out = {"sharpe": sharpe(a), "sr0": expected_max_sharpe(s, n), "n_trials": n, "days": len(a),
           "skew": None, "kurtosis": None, "dsr": None}
    sr = out["sharpe"]
    if sr is None or len(a) < 3:
        return out
    c = a - a.mean()
    m2 = float(np.mean(c**2))
    g3, g4 = float(np.mean(c**3)) / m2**1.5, float(np.mean(c**4)) / m2**2
    denom = 1 - g3 * sr + (g4 - 1) / 4 * sr**2
    out.update(skew=g3, kurtosis=g4)
    if denom > 0:
        out["dsr"] = NormalDist().cdf((sr - out["sr0"]) * math.sqrt(len(a) - 1) / math.sqrt(denom))
    return out


def _ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a))
    ranks[order] = np.arange(1, len(a) + 1)
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def spearman(x, y) -> float | None:
    """Spearman rank correlation (ties averaged); ``None`` with < 3 pairs or a constant side."""
    a, b = _array(x, "x"), _array(y, "y")
    if len(a) != len(b):
        raise ValueError("spearman: lengths differ")
    if len(a) < 3:
        return None
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def agent_scores(signal, confidence, realized, hit, calibrated=None) -> dict:
    """One agent's resolved predictions: ``signal`` in -1..1, ``confidence`` in 0..1 (read as
    the probability of a hit), ``realized`` the return over the horizon, ``hit`` 0/1.

    - ``ic``: Spearman(signal, realized);
    - ``hit_rate`` next to ``base_rate``: the hit rate of always calling the majority
      direction of ``realized`` (what a constant guess reaches on these rows);
    - ``brier`` = mean((confidence - hit)^2) next to ``brier_base`` = the Brier of always
      saying the average hit rate (a calibrated constant); ``brier_skill`` = 1 - brier/base
      (> 0: the confidences carry information);
    - ``brier_calibrated``: the same with ``calibrated`` (each call's probability of a hit from
      the agent's own earlier calls, :mod:`tools.learning.calibration`, out of sample) instead
      of the raw confidence, over the rows where it is given (not None), next to
      ``brier_calibrated_base`` on those rows. This is what the weights are learned from: a
      rule's constant conviction scores badly raw but can be well calibrated."""
    s, c, r, h = (_array(v, k) for v, k in ((signal, "signal"), (confidence, "confidence"),
                                           (realized, "realized"), (hit, "hit")))
    n = len(s)
    empty_cal = {"brier_calibrated": None, "brier_calibrated_base": None, "n_calibrated": 0}
    if not n:
        return {"n": 0, "ic": None, "hit_rate": None, "base_rate": None, "brier": None, "brier_base": None,
                "brier_skill": None, **empty_cal}
    up = float(np.mean(r > 0))
    hit_rate = float(h.mean())
    brier = float(np.mean((np.clip(c, 0, 1) - h) ** 2))
    base = float(np.mean((hit_rate - h) ** 2))
    cal = dict(empty_cal)
    if calibrated is not None:
        given = [(p, y) for p, y in zip(calibrated, h, strict=True) if p is not None]
        if given:
            p_cal, h_cal = (np.array(v, dtype=float) for v in zip(*given, strict=True))
            cal = {"brier_calibrated": float(np.mean((np.clip(p_cal, 0, 1) - h_cal) ** 2)),
                   "brier_calibrated_base": float(np.mean((h_cal.mean() - h_cal) ** 2)), "n_calibrated": len(given)}
    return {"n": n, "ic": spearman(s, r), "hit_rate": hit_rate, "base_rate": max(up, 1 - up), "brier": brier,
            "brier_base": base, "brier_skill": (1 - brier / base) if base > 0 else None, **cal}
