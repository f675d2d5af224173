"""Paired statistics for comparing two replays of the same days (pure numpy): the paired
daily difference and a circular moving-block bootstrap interval of its mean. Used by
AgentImprover's paired replay (nodes/agent_improver.py) and by ``graph.evaluate``
(graph/evaluate/stats.py re-exports them). Returns are daily simple returns (0.001 = 0.1 %);
NaN inputs are rejected, never skipped silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_BLOCK = 5  # trading days: a week; positions are held for days, so returns are not iid


def finite_array(x, name: str = "series") -> np.ndarray:
    a = np.asarray(x, dtype=float).ravel()
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: non-finite values")
    return a


def paired_difference(a, b) -> np.ndarray:
    """``a - b`` day by day: the two arms' returns on the same days (equal lengths)."""
    x, y = finite_array(a, "a"), finite_array(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"paired series differ in length ({len(x)} vs {len(y)})")
    return x - y


def block_bootstrap_ci(x, *, block: int = DEFAULT_BLOCK, n_boot: int = 2000, level: float = 0.95,
                       seed: int = 0) -> dict:
    """Mean of ``x`` with a circular moving-block bootstrap percentile interval.

    Each resample glues ``ceil(n / block)`` blocks of ``block`` consecutive values, each block
    starting at a uniformly drawn day and wrapping around the end (circular, so every day is
    equally likely to be drawn), cut to ``n`` values. Blocks keep the serial dependence of
    returns within ``block`` days (default 5, a trading week: positions live for days);
    ``block=1`` is the ordinary iid bootstrap and ``block >= n`` only rotates the series, so
    the interval collapses onto the mean. Seeded: the same input gives the same interval.

    Returns ``{"mean", "low", "high", "n", "block", "level"}``; ``low``/``high`` are ``None``
    with fewer than 2 values."""
    a = finite_array(x)
    n = len(a)
    out = {"mean": float(a.mean()) if n else None, "low": None, "high": None, "n": n, "block": int(block),
           "level": level, "n_boot": n_boot}
    if n < 2:
        return out
    if block < 1 or not 0 < level < 1 or n_boot < 10:
        raise ValueError("block >= 1, 0 < level < 1 and n_boot >= 10 are required")
    b = min(int(block), n)
    k = math.ceil(n / b)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, size=(n_boot, k))
    idx = (starts[:, :, None] + np.arange(b)[None, None, :]).reshape(n_boot, k * b)[:, :n] % n
    means = a[idx].mean(axis=1)
    tail = (1 - level) / 2
    out["low"], out["high"] = float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))
    return out


@dataclass(frozen=True)
class PairedVerdict:
    """A paired comparison of two replays of the same days: ``favoured`` when the candidate's
    mean daily return difference is > 0 and its one-sided lower bound (``level``) too, over
    at least ``min_days`` days. Figures are fractions per day; ``reason`` says it in words."""

    favoured: bool
    n: int
    mean: float | None
    low: float | None
    level: float
    reason: str

    def as_dict(self) -> dict:
        return {"favoured": self.favoured, "days": self.n, "mean_daily_difference": self.mean,
                "lower_bound": self.low, "level": self.level}


def paired_verdict(candidate, current, *, min_days: int, level: float = 0.95, block: int = DEFAULT_BLOCK,
                   label: str = "candidate vs current") -> PairedVerdict:
    """Does the candidate's replay beat the current one on the same days? ``candidate`` and
    ``current`` are daily returns (fractions) of the two replays, day by day."""
    diff = paired_difference(candidate, current)
    n = len(diff)
    if n < max(2, min_days):
        return PairedVerdict(False, n, float(diff.mean()) if n else None, None, level,
                             f"paired replay ({label}): {n} days, fewer than the {min_days} needed")
    ci = block_bootstrap_ci(diff, block=block, level=2 * level - 1)  # its low end: a one-sided bound
    favoured = ci["mean"] > 0 and ci["low"] > 0
    return PairedVerdict(favoured, n, ci["mean"], ci["low"], level,
                         f"paired replay ({label}) over {n} days: mean daily return difference "
                         f"{ci['mean']:+.4%}, one-sided {level:.0%} lower bound {ci['low']:+.4%} "
                         f"({'favours' if favoured else 'does not favour'} the candidate)")
