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
    universe = sorted(set(watchlist) if watchlist else set(dataset.symbols))
    end = dataset.calendar.searchsorted(as_of, side="right")
    # bars per symbol up to D in one vectorized pass (the panel has a column per clean symbol)
    counts = dataset.close_panel.iloc[:end].notna().sum().to_dict()
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

    closes = dataset.close_panel.iloc[:end]
    volumes = dataset.volume_panel.iloc[:end]
    cols = [s for s in universe if s not in bad and s in closes.columns]
    scores: dict[str, float] = {}
    if cols and end > 0:
        today = closes[cols].iloc[-1]
        cols = [s for s in cols if pd.notna(today[s])]  # a bar on D
        if cols:
            vol = volumes[cols]
            surge = np.log(vol.iloc[-5:].mean() / vol.iloc[-50:].mean())
            momentum = closes[cols].iloc[-1] / _close_bars_back(closes[cols], 20) - 1.0
            frame = pd.DataFrame({"surge": surge, "momentum": momentum}).replace(
                [np.inf, -np.inf], np.nan
            ).dropna()
            if not frame.empty:
                z = (frame - frame.mean()) / frame.std(ddof=0).replace(0, 1.0)
                score = (0.5 * z["surge"] + 0.5 * z["momentum"]).fillna(0.0)
                scores = {s: round(float(v), 4) for s, v in score.items()}
    ranked = sorted(scores, key=lambda s: (-scores[s], s))
    candidates = ranked[:k]
    for symbol in sorted(held):
        if symbol not in candidates and symbol not in bad and dataset.has_bar(symbol, as_of):
            candidates.append(symbol)
    return UniverseSelection(candidates, scores, errors, eligible=len(scores))


def _issue_by(dataset: MarketDataset, symbol: str, as_of: pd.Timestamp) -> bool:
    issue = dataset.issues.get(symbol)
    return issue is not None and (issue.from_date is None or issue.from_date <= as_of)


def _close_bars_back(closes: pd.DataFrame, bars: int) -> pd.Series:
    """Per symbol, the close ``bars`` of its own bars before its last (gaps skipped); NaN if short."""
    values = closes.to_numpy()
    present = ~np.isnan(values)
    # rank of each row counted from the end, per column: 1 = the symbol's last bar
    from_end = present[::-1].cumsum(axis=0)[::-1]
    hit = present & (from_end == bars + 1)
    rows = hit.argmax(axis=0)
    found = hit.any(axis=0)
    picked = values[rows, np.arange(values.shape[1])]
    return pd.Series(np.where(found, picked, np.nan), index=closes.columns)
