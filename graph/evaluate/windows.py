"""Rolling walk-forward windows and seeded universes for ``graph.evaluate``.

Windows are ``length`` consecutive decision days; window ``i`` starts ``i * stride`` days
after the first one. The block of windows ends on the last decision day of the data (the
most recent days are always evaluated). The default stride spreads the windows over the
tradable days but never exceeds half a window, so neighbouring windows overlap by at least
half: the overlap is what the start-offset placebo compares (the same arm started on two
different days, looked at on the same days).

Universes are seeded random draws (without replacement) of ``size`` symbols; ``size`` 0 or
at least the number of symbols means the full set, which is then the only universe.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from graph.errors import OperationalError


class EvaluateError(OperationalError):
    """An evaluation that cannot start or continue (one line for the user, exit code 2)."""


@dataclass(frozen=True)
class Window:
    index: int
    days: tuple[str, ...]  # decision days, YYYY-MM-DD, ascending

    @property
    def start(self) -> str:
        return self.days[0]

    @property
    def end(self) -> str:
        return self.days[-1]


@dataclass(frozen=True)
class Universe:
    index: int
    symbols: tuple[str, ...]


def rolling_windows(days: list[str], count: int, length: int, stride: int | None = None) -> list[Window]:
    """``count`` windows of ``length`` decision days from ``days`` (ascending, unique).

    ``stride`` (days between window starts) defaults to ``min(length // 2, spread)`` where
    ``spread`` would spread the windows over all the days; at least 1. Raises
    :class:`EvaluateError` when the days cannot hold the windows."""
    if count < 1 or length < 2:
        raise EvaluateError(f"need at least 1 window of at least 2 days (got {count} x {length})")
    n = len(days)
    if length > n:
        raise EvaluateError(f"a window of {length} days does not fit in the {n} decision days of the data")
    if stride is None:
        spread = (n - length) // (count - 1) if count > 1 else 0
        stride = max(1, min(length // 2, spread))
    if stride < 1:
        raise EvaluateError(f"--stride must be at least 1 (got {stride})")
    span = (count - 1) * stride + length
    if span > n:
        raise EvaluateError(f"{count} windows of {length} days {stride} days apart need {span} decision days; "
                            f"the data has {n} (fewer or shorter windows, or a smaller --stride)")
    first = n - span  # the last window ends on the last decision day
    return [Window(i, tuple(days[first + i * stride: first + i * stride + length])) for i in range(count)]


def draw_universes(symbols: list[str], count: int, size: int, seed: int) -> list[Universe]:
    """``count`` seeded draws of ``size`` symbols (sorted); the full set when ``size`` is 0 or
    covers every symbol (then ``count`` must be 1: more would be the same universe)."""
    pool = sorted(set(symbols))
    if not pool:
        raise EvaluateError("the data has no symbol")
    if count < 1 or size < 0:
        raise EvaluateError(f"need at least 1 universe of a non-negative size (got {count} x {size})")
    if size == 0 or size >= len(pool):
        if count > 1:
            raise EvaluateError(f"--universe-size {size} takes all {len(pool)} symbols: every universe would be "
                                "the same (use --universes 1 or a smaller --universe-size)")
        return [Universe(0, tuple(pool))]
    rng = random.Random(seed)
    return [Universe(i, tuple(sorted(rng.sample(pool, size)))) for i in range(count)]
