"""select_candidates (numpy, fast) returns exactly what the plain pandas version returned.

``reference_select`` is the former pandas implementation, kept verbatim as the oracle.
"""

from __future__ import annotations

import builtins
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_frame

import tools.universe
from graph.settings import VoltSettings
from tools.data_source import market_dataset
from tools.market_data import MarketDataset, dataset_from_frame, load_dataset
from tools.universe import UniverseSelection, _issue_by, select_candidates


def reference_select(dataset: MarketDataset, as_of: pd.Timestamp, *, k: int, held: list[str],
                     watchlist: list[str] | None = None, min_history: int = 50) -> UniverseSelection:
    universe = sorted(set(watchlist) if watchlist else set(dataset.symbols))
    end = dataset.calendar.searchsorted(as_of, side="right")
    counts = dataset.close_panel.iloc[:end].notna().sum().to_dict()
    if not watchlist:
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
        cols = [s for s in cols if pd.notna(today[s])]
        if cols:
            vol = volumes[cols]
            surge = np.log(vol.iloc[-5:].mean() / vol.iloc[-50:].mean())
            momentum = closes[cols].iloc[-1] / _reference_bars_back(closes[cols], 20) - 1.0
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


def _reference_bars_back(closes: pd.DataFrame, bars: int) -> pd.Series:
    values = closes.to_numpy()
    present = ~np.isnan(values)
    from_end = present[::-1].cumsum(axis=0)[::-1]
    hit = present & (from_end == bars + 1)
    rows = hit.argmax(axis=0)
    found = hit.any(axis=0)
    picked = values[rows, np.arange(values.shape[1])]
    return pd.Series(np.where(found, picked, np.nan), index=closes.columns)


def as_tuple(sel: UniverseSelection) -> tuple:
    """Everything a caller can see, orders included (DataError compares by identity)."""
    errors = [(type(e), e.symbol, e.reason, str(e)) for e in sel.data_errors]
    return sel.candidates, list(sel.scores.items()), errors, sel.eligible


def assert_same(dataset: MarketDataset, days, **kwargs) -> int:
    scored = 0
    for day in days:
        new = select_candidates(dataset, day, **kwargs)
        assert as_tuple(new) == as_tuple(reference_select(dataset, day, **kwargs)), (day, kwargs)
        scored += new.eligible
    return scored


@pytest.fixture(scope="module")
def embedded() -> MarketDataset:
    return market_dataset(VoltSettings(models=[]))


def test_embedded_every_fifth_day(embedded):
    days = embedded.calendar[50::5]
    assert assert_same(embedded, days, k=5, held=[]) > 400 * len(days)
    assert assert_same(embedded, days, k=10, held=["XOM", "AAPL", "NOPE"], min_history=60) > 0
    watchlist = [*embedded.symbols[::7], "NOPE"]
    assert assert_same(embedded, days, k=3, held=["MSFT", embedded.symbols[3]], watchlist=watchlist) > 0


def test_embedded_short_history_and_single_symbol(embedded):
    # early days: most symbols have too little history (data errors), some scores missing
    assert_same(embedded, embedded.calendar[[0, 1, 5, 19, 20, 21, 30, 49]], k=5, held=["AAPL"])
    assert_same(embedded, embedded.calendar[[0, 20, 21, 60, -1]], k=5, held=[], min_history=1)
    # one eligible symbol: its std is 0 (counted as 1); before the first day: nothing
    assert_same(embedded, embedded.calendar[[60, 120, -1]], k=2, held=[], watchlist=["AAPL"])
    assert_same(embedded, [embedded.calendar[0] - pd.Timedelta(days=3)], k=2, held=["AAPL"])


def test_market_csv_fixture(market_csv):
    dataset = load_dataset(market_csv)
    assert_same(dataset, dataset.calendar, k=2, held=["CCC"], min_history=21)
    assert_same(dataset, dataset.calendar[40:], k=1, held=[], watchlist=["AAA", "CCC", "ZZZ"])


@pytest.fixture(scope="module")
def synthetic() -> MarketDataset:
    """Gaps, a late listing, a sparse symbol, zero volume and two data issues."""
    frame = synthetic_frame({"AAA": 0.25, "BBB": 0.15, "CCC": -0.05, "DDD": 0.1, "EEE": 0.3,
                             "FFF": 0.0, "GGG": -0.2}, days=90)
    rows = frame["Symbol"]
    day_no = frame.groupby("Symbol").cumcount()
    drop = ((rows == "BBB") & day_no.isin([30, 31, 32, 70, 74, 80, 81, 82, 83, 84]))  # gaps
    drop |= (rows == "DDD") & (day_no < 45)  # listed late
    drop |= (rows == "GGG") & (day_no % 3 == 1)  # sparse: momentum skips its own gaps
    frame = frame[~drop].copy()
    frame.loc[(rows == "CCC") & (day_no == 60), "Volume"] = np.nan  # a data issue from day 60
    frame.loc[(rows == "EEE") & (day_no == 75), "Close"] = -1.0  # another, from day 75
    frame.loc[rows == "FFF", "Volume"] = 0  # zero volume: surge is NaN, FFF is dropped
    dataset = dataset_from_frame(frame, "synthetic")
    assert set(dataset.issues) == {"CCC", "EEE"}
    return dataset


def test_synthetic_gaps_listings_and_data_issues(synthetic):
    for min_history in (10, 21, 50):
        assert_same(synthetic, synthetic.calendar, k=3, held=["CCC", "BBB"], min_history=min_history)
    assert_same(synthetic, synthetic.calendar[20:], k=2, held=["EEE"],
                watchlist=["BBB", "CCC", "GGG"], min_history=15)


def test_raw_scores_are_bit_identical(monkeypatch, embedded, synthetic):
    """Before rounding too: the numpy sums run in pandas' order, so no score can round apart."""
    for module in (tools.universe, sys.modules[__name__]):
        monkeypatch.setattr(module, "round", lambda value, digits: value, raising=False)
    raw = select_candidates(embedded, embedded.calendar[60], k=1, held=[]).scores
    assert any(v != builtins.round(v, 4) for v in raw.values())  # the patch took effect
    assert_same(embedded, embedded.calendar[50::10], k=5, held=[])
    assert_same(synthetic, synthetic.calendar, k=3, held=[], min_history=10)
