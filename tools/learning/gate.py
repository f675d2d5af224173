"""A statistical gate instead of an absolute veto.

Is an agent's hit rate significantly WORSE than the base rate of the directions it calls?
Its resolved calls are cut into non-overlapping ISO weeks and each week contributes ONE
call (the week's first, by date then symbol), so the observations are close to
independent (a week's calls share the same market move). Under "no skill" a BUY is right
with probability ``base_up`` (the share of excess returns that were positive), a SELL
with ``1 - base_up``; the null hit probability is their mean over the chosen calls. A
one-sided exact binomial test; below ``min_blocks`` weeks there is no evidence and no
effect.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

MIN_BLOCKS = 8
ALPHA = 0.05


@dataclass(frozen=True)
class GateResult:
    significant: bool       # hit rate significantly below the base rate
    blocks: int             # independent weeks tested
    hits: int
    null_rate: float
    p_value: float | None   # None: fewer than min_blocks weeks
    reason: str


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), exact."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    p = min(1.0, max(0.0, p))
    return min(1.0, sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1)))


def weekly_blocks(rows: Iterable[dict]) -> list[dict]:
    """One call per ISO week: the first by (as_of, symbol). Rows need ``as_of``
    (YYYY-MM-DD), ``signal`` (non-zero) and ``hit`` (0/1); others are skipped."""
    chosen: dict[tuple[int, int], dict] = {}
    for r in sorted((r for r in rows if r.get("signal") and r.get("hit") is not None),
                    key=lambda r: (r["as_of"], r.get("symbol", ""))):
        iso = pd.Timestamp(r["as_of"]).isocalendar()
        chosen.setdefault((int(iso[0]), int(iso[1])), r)
    return list(chosen.values())


def worse_than_base(rows: Iterable[dict], base_up: float, *, min_blocks: int = MIN_BLOCKS,
                    alpha: float = ALPHA) -> GateResult:
    """One-sided test of the weekly-block hit rate against the base rate of its calls."""
    base_up = min(0.95, max(0.05, base_up)) if math.isfinite(base_up) else 0.5
    blocks = weekly_blocks(rows)
    n, hits = len(blocks), sum(int(r["hit"]) for r in blocks)
    null = sum(base_up if r["signal"] > 0 else 1.0 - base_up for r in blocks) / n if n else base_up
    if n < min_blocks:
        return GateResult(False, n, hits, null, None, f"{n} independent weeks < {min_blocks}: no evidence yet")
    p = binom_cdf(hits, n, null)
    sig = p < alpha
    verb = "significantly below" if sig else "not significantly below"
    return GateResult(sig, n, hits, null, p, f"{hits}/{n} weekly calls right, {verb} the base rate "
                      f"{null:.0%} (p={p:.3f})")


def base_up_rate(rows: Iterable[dict]) -> float:
    """Share of resolved directional outcomes whose excess return was positive, one per
    (symbol, as_of): a BUY's hit, a SELL's miss. 0.5 without data."""
    seen: dict[tuple[str, str], int] = {}
    for r in rows:
        if r.get("signal") and r.get("hit") is not None:
            up = int(r["hit"]) if r["signal"] > 0 else 1 - int(r["hit"])
            seen.setdefault((r.get("symbol", ""), r["as_of"]), up)
    return sum(seen.values()) / len(seen) if seen else 0.5
