"""tools/market/corporate_actions.py and the split views of MarketDataset.

Synthetic bars: a calm random walk for SPL with a 2:1 split on SPLIT_AT (as traded, the
price halves at that open and the share volume doubles), plus a clean symbol AAA. The
embedded S&P 500 set is checked for its known splits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tools.indicators import indicator_series, indicator_snapshot
from tools.market import DataOptions
from tools.market.corporate_actions import (
    Split,
    adjust_bars,
    detect_splits,
    due_splits,
    split_applies,
    split_position,
)
from tools.market_data import dataset_from_frame, load_dataset

DATES = pd.bdate_range("2021-01-04", periods=120)
SPLIT_AT = 80


def walk(symbol: str, seed: int, split: float | None = None, at: int = SPLIT_AT, start: float = 80.0) -> pd.DataFrame:
    """Long OHLCV rows; with ``split`` the prices from ``at`` on are divided by it and the
    volume multiplied (as traded)."""
    rng = np.random.default_rng(seed)
    n = len(DATES)
    close = start * np.exp(np.cumsum(rng.normal(0.0003, 0.012, n)))
    open_ = close * np.exp(rng.normal(0, 0.004, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0.001, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0.001, 0.01, n))
    volume = rng.integers(50_000, 60_000, n).astype(float)
    if split is not None:
        for arr in (open_, high, low, close):
            arr[at:] /= split
        volume[at:] *= split
    return pd.DataFrame({"Date": [f"{d:%Y%m%d}" for d in DATES], "Symbol": symbol, "Open": open_.round(4),
                         "High": high.round(4), "Low": low.round(4), "Close": close.round(4), "Volume": volume})


def frame_with(split: float | None = 2.0, **kw) -> pd.DataFrame:
    return pd.concat([walk("AAA", 1), walk("SPL", 2, split, **kw)], ignore_index=True)


@pytest.fixture(scope="module")
def ds():
    return dataset_from_frame(frame_with(), "synthetic")


# --- detection -------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [2.0, 3.0, 10.0, 0.5, 0.1, 1.5, 1.25])
def test_standard_split_is_detected_with_its_date_and_ratio(ratio):
    ds = dataset_from_frame(frame_with(ratio), "synthetic")
    assert [(s.symbol, s.ex_date, s.ratio) for s in ds.splits["SPL"]] == [("SPL", DATES[SPLIT_AT], ratio)]
    assert "AAA" not in ds.splits
    assert "AAA" not in ds.raw_bars  # no split: no copy, raw is bars


def test_news_crash_with_exploding_volume_is_not_a_split():
    frame = walk("SPL", 2, 2.0)
    # same OHLC as a 2:1 split, but the share volume is 10x (traded value 5x): a crash
    frame.loc[SPLIT_AT, "Volume"] = frame.loc[SPLIT_AT - 1, "Volume"] * 10
    frame.loc[SPLIT_AT + 1:, "Volume"] = frame.loc[SPLIT_AT + 1:, "Volume"] / 2
    bars = dataset_from_frame(frame, "x").bars["SPL"]  # raw: no split detected
    assert detect_splits("SPL", _raw(frame)) == []
    assert bars["close"].iloc[SPLIT_AT] < 0.6 * bars["close"].iloc[SPLIT_AT - 1]


def test_move_inside_the_days_range_is_not_a_split():
    frame = walk("SPL", 2, 2.0)  # the level halves from SPLIT_AT on and stays there...
    prev = frame.loc[SPLIT_AT - 1, "Close"]
    close = frame.loc[SPLIT_AT, "Close"]
    # ...but it opens at the previous close and slides within the day: the range explains it
    frame.loc[SPLIT_AT, ["Open", "High", "Low"]] = [prev, prev * 1.001, close * 0.99]
    assert detect_splits("SPL", _raw(frame)) == []


def test_small_ratio_across_a_gap_is_not_a_split():
    frame = walk("SPL", 2, 1.25)
    frame = frame.drop(index=range(SPLIT_AT - 3, SPLIT_AT)).reset_index(drop=True)  # 3 missing days
    assert detect_splits("SPL", _raw(frame)) == []
    frame2 = walk("SPL", 2, 2.0).drop(index=range(SPLIT_AT - 3, SPLIT_AT)).reset_index(drop=True)
    assert [s.ratio for s in detect_splits("SPL", _raw(frame2))] == [2.0]  # 2:1 still is


def test_split_adjust_off_keeps_prices_as_traded():
    ds = dataset_from_frame(frame_with(), "x", options=DataOptions(split_adjust=False))
    assert ds.splits == {} and ds.raw_bars == {}
    close = ds.bars["SPL"]["close"]
    assert close.iloc[SPLIT_AT] < 0.6 * close.iloc[SPLIT_AT - 1]


def _raw(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({c.lower(): frame[c].to_numpy(dtype=float) for c in ("Open", "High", "Low", "Close", "Volume")},
                        index=pd.DatetimeIndex(pd.to_datetime(frame["Date"], format="%Y%m%d")))


# --- adjustment and the point-in-time views --------------------------------------------


def test_bars_are_back_adjusted_and_raw_bars_as_traded(ds):
    raw, adj = ds.raw_bars["SPL"], ds.bars["SPL"]
    before, after = DATES[:SPLIT_AT], DATES[SPLIT_AT:]
    np.testing.assert_allclose(adj.loc[before, "close"], raw.loc[before, "close"] / 2, rtol=0, atol=0)
    np.testing.assert_allclose(adj.loc[before, "volume"], raw.loc[before, "volume"] * 2, rtol=0, atol=0)
    pd.testing.assert_frame_equal(adj.loc[after], raw.loc[after])
    # the adjusted series has no 50% drop: the panels see an ordinary day
    assert abs(ds.close_panel["SPL"].pct_change().iloc[SPLIT_AT]) < 0.1


@pytest.mark.parametrize("offset", [-1, 0, 1, 20])
def test_history_is_exactly_point_in_time(ds, offset):
    """history(D) equals what a data set cut at D (the file as it stood then) gives."""
    day = DATES[SPLIT_AT + offset]
    cut = frame_with()
    cut = cut[pd.to_datetime(cut["Date"], format="%Y%m%d") <= day]
    then = dataset_from_frame(cut, "then")
    pd.testing.assert_frame_equal(ds.history("SPL", day), then.bars["SPL"])
    assert ds.last_close("SPL", day) == float(cut[cut.Symbol == "SPL"]["Close"].iloc[-1])  # as traded on D
    pd.testing.assert_frame_equal(ds.history("AAA", day), then.bars["AAA"])


def test_history_without_a_split_is_a_view_of_bars(ds):
    day = DATES[50]
    hist = ds.history("AAA", day)
    assert np.shares_memory(hist["close"].to_numpy(), ds.bars["AAA"]["close"].to_numpy())


def test_bar_on_and_split_factor(ds):
    split_day = DATES[SPLIT_AT]
    raw = ds.raw_bars["SPL"]
    assert ds.bar_on("SPL", DATES[SPLIT_AT - 1])["close"] == raw["close"].iloc[SPLIT_AT - 1]
    assert ds.bar_on("SPL", split_day)["open"] == raw["open"].iloc[SPLIT_AT]
    assert ds.split_factor("SPL", DATES[SPLIT_AT - 1], split_day) == 2.0
    assert ds.split_factor("SPL", split_day, DATES[-1]) == 1.0
    assert ds.split_factor("AAA", DATES[0], DATES[-1]) == 1.0


def test_adjust_bars_returns_the_same_frame_when_nothing_applies(ds):
    raw = ds.raw_bars["SPL"]
    assert adjust_bars(raw, []) is raw
    assert adjust_bars(raw, ds.splits["SPL"], upto=DATES[SPLIT_AT - 1]) is raw
    assert Split("X", DATES[3], 0.1).label() == "1:10 reverse split"
    assert Split("X", DATES[3], 1.5).label() == "3:2 split"


@pytest.mark.parametrize("offset", [-1, 0, 1, 25])
def test_cached_indicator_series_equals_point_in_time_snapshot(ds, offset):
    day = DATES[SPLIT_AT + offset]
    hist = ds.history("SPL", day)
    uncached = indicator_snapshot("SPL", hist)
    assert indicator_snapshot("SPL", hist, series=indicator_series(ds, "SPL", day)) == uncached
    # without as_of a split symbol gets no series (the snapshot computes it): same answer
    assert indicator_series(ds, "SPL") is None
    assert indicator_snapshot("SPL", hist, series=indicator_series(ds, "SPL")) == uncached
    # the fully adjusted series would have given other price levels before the split
    if offset < 0:
        wrong = indicator_snapshot("SPL", ds.bars["SPL"].loc[:day])
        assert wrong["sma20"] != uncached["sma20"]


def test_notes_list_each_split_once(ds):
    notes = ds.adjustment_notes()
    assert len(notes) == 1
    assert notes[0].startswith(f"SPL 2:1 split on {DATES[SPLIT_AT]:%Y-%m-%d}: prices before it divided by 2")
    assert ds.adjustment_notes(["AAA"]) == []
    assert ds.adjustment_notes(["SPL"], end=DATES[SPLIT_AT - 1]) == []


# --- the embedded data set -------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded():
    return load_dataset(None)


def test_embedded_splits(embedded):
    found = {(s.symbol, f"{s.ex_date:%Y-%m-%d}", s.ratio) for sps in embedded.splits.values() for s in sps}
    assert found == {
        ("ETFC", "2010-06-30", 0.1),  # 1:10 reverse split (effective 2010-06-02; no bars in between)
        ("DHR", "2010-06-14", 2.0),
        ("ESRX", "2010-06-08", 2.0),
        ("GIS", "2010-06-09", 2.0),
        ("STR", "2010-07-01", 3.0),  # Questar's spin-off of QEP: the price fell to a third
    }
    gis = embedded.bars["GIS"]
    assert gis.loc["2010-06-08", "close"] == pytest.approx(75.14 / 2)
    assert embedded.raw_bars["GIS"].loc["2010-06-08", "close"] == 75.14
    assert embedded.history("GIS", pd.Timestamp("2010-06-08"))["close"].iloc[-1] == 75.14
    notes = embedded.adjustment_notes(["GIS"])
    assert notes[0].startswith("GIS 2:1 split on 2010-06-09: prices before it divided by 2")


def test_embedded_symbols_without_splits_are_not_copied(embedded):
    assert set(embedded.raw_bars) == set(embedded.splits)
    assert embedded.history("AAPL", embedded.calendar[100]) is not None


def test_backtest_report_lists_the_adjustments(embedded):
    from graph.backtest_report import _data_adjustments, render_text

    notes = _data_adjustments(embedded, None)
    assert any(n.startswith("ETFC 1:10 reverse split on 2010-06-30") for n in notes)
    assert _data_adjustments(embedded, ["GIS"]) == embedded.adjustment_notes(["GIS"])
    summary = {"period": {"first_decision": "a", "last_decision": "b", "days": 1, "last_fill": "c"},
               "universe_size": 1, "data_source": "x", "notes": [], "strategies": {}, "data_adjustments": notes,
               "llm": {"model_calls": 0, "cache_hits": 0, "tokens": None, "degraded_rate": None},
               "cache": {"enabled": False}, "timing": {}}
    text = render_text(summary)
    assert f"data adjustments ({len(notes)}):" in text
    assert "  DHR 2:1 split on 2010-06-14" in text


def test_cycle_notes_show_recent_adjustments_of_candidates_only(ds):
    from nodes.alt_data_ingestion import recent_adjustments

    split_day = DATES[SPLIT_AT]
    assert recent_adjustments(ds, ["SPL", "AAA"], DATES[SPLIT_AT - 1]) == []  # not known yet
    on = recent_adjustments(ds, ["SPL", "AAA"], split_day)
    assert len(on) == 1 and on[0].startswith("SPL 2:1 split")
    assert recent_adjustments(ds, ["SPL"], DATES[SPLIT_AT + 4]) == on  # near the day
    assert recent_adjustments(ds, ["SPL"], DATES[SPLIT_AT + 10]) == []  # long past
    assert recent_adjustments(ds, ["AAA"], split_day) == []  # not a candidate's


def test_data_options_are_part_of_the_cache_key(tmp_path, clean_env, monkeypatch):
    from graph.settings import VoltSettings
    from tools.data_source import market_dataset

    csv = tmp_path / "s.csv"
    frame_with().to_csv(csv, index=False)
    on = market_dataset(VoltSettings(home=tmp_path / "h", data_csv=csv))
    assert on.splits and market_dataset(VoltSettings(home=tmp_path / "h", data_csv=csv)) is on
    monkeypatch.setenv("VOLT_SPLIT_ADJUST", "0")
    off = market_dataset(VoltSettings(home=tmp_path / "h", data_csv=csv))
    assert off is not on and off.splits == {}
    monkeypatch.delenv("VOLT_SPLIT_ADJUST")
    monkeypatch.setenv("VOLT_OUTLIER_BAND_Z", "3")
    strict = market_dataset(VoltSettings(home=tmp_path / "h", data_csv=csv))
    assert strict is not on and strict.options.guard.band_z == 3.0


def test_held_position_split_rule_with_a_reverse_split():
    ts = pd.Timestamp
    splits = {"AAA": [Split("AAA", ts("2020-03-10"), 0.1), Split("AAA", ts("2020-01-06"), 2.0)],
              "BBB": [Split("BBB", ts("2020-03-09"), 3.0)], "CCC": [Split("CCC", ts("2020-02-03"), 2.0)]}
    # held symbols only, effective on or before the day, by symbol then ex-date
    assert due_splits(["BBB", "AAA"], splits, "2020-03-09") == [("AAA", "2020-01-06", 2.0), ("BBB", "2020-03-09", 3.0)]
    assert due_splits({"AAA"}, splits, ts("2020-03-10")) == [("AAA", "2020-01-06", 2.0), ("AAA", "2020-03-10", 0.1)]
    assert due_splits(["DDD"], splits, "2020-12-31") == []
    # applies after the last fill only; a nonsense ratio never does
    assert split_applies(0.1, "2020-03-10", None) and split_applies(0.1, "2020-03-10", "")
    assert split_applies(0.1, "2020-03-10", "2020-03-09")
    assert not split_applies(0.1, "2020-03-10", "2020-03-10")  # filled on the ex-date: already new shares
    assert not any(split_applies(r, "2020-03-10", None) for r in (0.0, -2.0, float("nan"), float("inf")))
    # 1:10 reverse: 25 shares at 4.0 -> 2.5 at 40.0, the cost unchanged; a short keeps its sign
    qty, cost = split_position(25.0, 4.0, 0.1)
    assert (qty, cost) == pytest.approx((2.5, 40.0)) and qty * cost == pytest.approx(100.0)
    assert split_position(-10.0, 30.0, 3.0) == pytest.approx((-30.0, 10.0))
