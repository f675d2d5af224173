"""Universe selection ("trending symbols"): which symbols reach the LLM agents this cycle.

Score, per eligible symbol as of day D (cross-sectional, so it is comparable across
symbols of any price or size)::

    volume_surge = log(mean volume of the last 5 bars / mean volume of the last 50 bars)
    momentum     = close(D) / close(D - 20 bars) - 1
    score        = 0.5 * z(volume_surge) + 0.5 * z(momentum)

where ``z`` is the z-score across the eligible symbols that day. Eligible: in the
watchlist, a bar on D, no data issue up to D, and at least ``min_history`` bars. The top
``k`` by score are the candidates; every currently held symbol is added after them, so
exits are always considered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from graph.errors import DataError
from tools.market_data import MarketDataset


@dataclass(frozen=True)
class UniverseSelection:
    candidates: list[str]
    scores: dict[str, float]
    data_errors: list[DataError]
    eligible: int


def select_candidates(
    dataset: MarketDataset,
    as_of: pd.Timestamp,
    *,
    k: int,
    held: list[str],
    watchlist: list[str] | None = None,
    min_history: int = 50,
) -> UniverseSelection:
    # Runs once per simulated day over ~500 symbols, so the panel work is on the dataset's
    # precomputed numpy arrays (row j = the symbol with column_of[symbol] == j): pandas
    # indexing cost ~10x more than the arithmetic.
    universe = sorted(set(watchlist)) if watchlist else dataset.symbols  # symbols: sorted, unique
    end = int(dataset.calendar.searchsorted(as_of, side="right"))
    column = dataset.column_of
    seen = dataset.closes_seen[end]  # bars per symbol up to D (a column per clean symbol)
    counts = {s: int(seen[column[s]]) for s in universe if s in column}
    if not watchlist:
        # Symbols not listed yet (no bar up to D, no issue up to D) are not part of that day's market.
        universe = [s for s in universe if counts.get(s, 0) or _issue_by(dataset, s, as_of)]
    errors = [e for s in universe if (counts.get(s, 0) < min_history or s in dataset.issues)
              and (e := dataset.data_error(s, as_of, min_history)) is not None]
    bad = {e.symbol for e in errors}
    for symbol in held:
        if symbol not in universe and (e := dataset.data_error(symbol, as_of, min_history)):
            errors.append(e)
            bad.add(symbol)

    cols = [s for s in universe if s not in bad and s in column]
    scores: dict[str, float] = {}
    if cols and end > 0:
        rows = np.array([column[s] for s in cols], dtype=np.intp)
        today = dataset.symbol_closes[rows, end - 1]
        on_day = ~np.isnan(today)  # a bar on D
        cols = [s for s, ok in zip(cols, on_day, strict=True) if ok]
        rows, today = rows[on_day], today[on_day]
        if cols:
            vol = dataset.symbol_volumes[rows, max(0, end - 50):end]
            with np.errstate(divide="ignore", invalid="ignore"):
                surge = np.log(_mean(vol[:, -5:]) / _mean(vol))
                momentum = today / _close_bars_back(dataset, rows, end, 20) - 1.0
            finite = np.isfinite(surge) & np.isfinite(momentum)  # NaN/inf dropped
            if finite.any():
                score = 0.5 * _z(surge[finite]) + 0.5 * _z(momentum[finite])
                score[np.isnan(score)] = 0.0
                kept = [s for s, ok in zip(cols, finite, strict=True) if ok]
                scores = {s: round(v, 4) for s, v in zip(kept, score.tolist(), strict=True)}
    ranked = sorted(scores, key=lambda s: (-scores[s], s))
    candidates = ranked[:k]
    for symbol in sorted(held):
        if symbol not in candidates and symbol not in bad and dataset.has_bar(symbol, as_of):
            candidates.append(symbol)
    return UniverseSelection(candidates, scores, errors, eligible=len(scores))


def _issue_by(dataset: MarketDataset, symbol: str, as_of: pd.Timestamp) -> bool:
    issue = dataset.issues.get(symbol)
    return issue is not None and (issue.from_date is None or issue.from_date <= as_of)


# _mean and _z reproduce pandas' DataFrame.mean()/.std(ddof=0) exactly: the same sums over
# the same contiguous runs (numpy's pairwise summation), so rounded scores never differ.


def _mean(values: np.ndarray) -> np.ndarray:
    """Per row, the mean of the non-NaN values; NaN for a row without any."""
    present = ~np.isnan(values)
    with np.errstate(invalid="ignore"):
        return np.where(present, values, 0.0).sum(axis=1) / present.sum(axis=1)


def _z(values: np.ndarray) -> np.ndarray:
    """z-scores with the population std (ddof=0); a std of 0 counts as 1."""
    mean = values.sum() / len(values)
    std = np.sqrt(((mean - values) ** 2).sum() / len(values))
    return (values - mean) / (std if std != 0 else 1.0)


def _close_bars_back(dataset: MarketDataset, rows: np.ndarray, end: int, bars: int) -> np.ndarray:
    """Per symbol row, the close ``bars`` of its own bars before its last bar up to ``end``
    (gaps skipped); NaN if it has fewer."""
    back = dataset.closes_seen[end, rows] - 1 - bars  # 0-based index among the symbol's bars
    picked = dataset.symbol_closes[rows, dataset.bar_rows[rows, np.maximum(back, 0)]]
    return np.where(back >= 0, picked, np.nan)
