"""tools/market/price_guard.py: outlier bars are data issues, not prices.

Synthetic volatile markets (daily moves of several percent) in which one symbol carries a
spike, a bad intraday bar, a persistent re-rating or a zero/inf bar.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tools.market import DataOptions, GuardConfig
from tools.market.price_guard import quote_is_plausible, return_rejects
from tools.market_data import dataset_from_frame

DATES = pd.bdate_range("2021-01-04", periods=100)
AT = 70


def walk(symbol: str, seed: int, vol: float = 0.03, common: np.ndarray | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(DATES)
    steps = rng.normal(0, vol, n) + (0 if common is None else common)
    close = 50.0 * np.exp(np.cumsum(steps))
    open_ = close * np.exp(rng.normal(0, 0.004, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0.001, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0.001, 0.01, n))
    return pd.DataFrame({"Date": [f"{d:%Y%m%d}" for d in DATES], "Symbol": symbol, "Open": open_, "High": high,
                         "Low": low, "Close": close, "Volume": rng.integers(50_000, 60_000, n).astype(float)})


def scale_row(frame: pd.DataFrame, i: int, factor: float) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[i, ["Open", "High", "Low", "Close"]] = frame.loc[i, ["Open", "High", "Low", "Close"]].astype(float) * factor
    return frame


def test_spike_is_rejected_and_the_next_bar_is_judged_against_the_last_good_close():
    frame = scale_row(walk("SPK", 1), AT, 1000.0)  # 50 -> ~50,000: finite, below the absurd limit
    ds = dataset_from_frame(frame, "x")
    assert [r.date for r in ds.rejected["SPK"]] == [DATES[AT]]
    assert "x the last accepted close" in ds.rejected["SPK"][0].reason
    assert DATES[AT] not in ds.bars["SPK"].index
    assert np.isnan(ds.close_panel.loc[DATES[AT], "SPK"])
    assert ds.bar_on("SPK", DATES[AT]) is None  # no fill
    assert ds.last_close("SPK", DATES[AT]) == ds.last_close("SPK", DATES[AT - 1])  # no mark, no peak
    assert ds.bar_on("SPK", DATES[AT + 1]) is not None  # the next bar is a price again
    assert len(ds.bars["SPK"]) == len(DATES) - 1
    assert ds.adjustment_notes() == [f"SPK bar of {DATES[AT]:%Y-%m-%d} rejected: {ds.rejected['SPK'][0].reason}"]


def test_real_volatile_days_pass():
    # 6% daily volatility with a 35% jump: large, but within the band and below the floor
    frame = scale_row(walk("VOL", 2, vol=0.06), AT, 1.0)
    frame.loc[AT:, ["Open", "High", "Low", "Close"]] *= 1.35
    ds = dataset_from_frame(frame, "x")
    assert ds.rejected == {}
    assert len(ds.bars["VOL"]) == len(DATES)


def test_a_persistent_new_level_is_accepted_after_the_confirm_bars():
    frame = walk("RER", 3, vol=0.01)
    frame.loc[AT:, ["Open", "High", "Low", "Close"]] *= 0.3  # a 70% re-rating that stays
    ds = dataset_from_frame(frame, "x")
    assert [r.date for r in ds.rejected["RER"]] == list(DATES[AT:AT + 3])  # confirm = 3
    assert ds.bar_on("RER", DATES[AT + 3]) is not None
    confirm1 = dataset_from_frame(frame, "x", options=DataOptions(guard=GuardConfig(confirm=1)))
    assert [r.date for r in confirm1.rejected["RER"]] == [DATES[AT]]


def test_a_spike_inside_a_new_level_does_not_count_as_agreeing():
    close = 50.0 * np.exp(np.cumsum(np.random.default_rng(4).normal(0, 0.01, 60)))
    close[40:] *= 0.3
    close[41] *= 50  # a spike while the new level is being confirmed
    rejected = return_rejects(DATES[:60], close, GuardConfig())
    assert 41 in rejected
    assert all(i in rejected for i in (40, 41, 42, 43))  # the streak restarts after the spike


def test_the_return_test_never_reads_a_later_bar():
    close = 50.0 * np.exp(np.cumsum(np.random.default_rng(5).normal(0, 0.01, 80)))
    close[60] *= 8
    full = return_rejects(DATES[:80], close, GuardConfig())
    for cut in (59, 60, 61, 70):
        part = return_rejects(DATES[:cut + 1], close[:cut + 1], GuardConfig())
        assert part == {i: r for i, r in full.items() if i <= cut}


@pytest.mark.parametrize(("field", "factor", "rejected"), [("Open", 1.05, True), ("Open", 1.005, False)])
def test_open_outside_the_days_range(field, factor, rejected):
    frame = walk("RNG", 6)
    frame.loc[AT, field] = frame.loc[AT, "High"] * factor
    ds = dataset_from_frame(frame, "x")
    assert (DATES[AT] not in ds.bars["RNG"].index) == rejected
    if rejected:
        assert "outside the day's range" in ds.rejected["RNG"][0].reason


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, 0.0, -1.0, 1e300, 1e12])
def test_quote_is_plausible_rejects_non_prices(bad):
    assert not quote_is_plausible(bad, 50.0)
    assert not quote_is_plausible(bad, None)


def test_quote_is_plausible_band():
    assert quote_is_plausible(55.0, 50.0)
    assert quote_is_plausible(79.0, 50.0)  # +58%: inside the 60% band
    assert not quote_is_plausible(81.0, 50.0)
    assert not quote_is_plausible(30.0, 50.0)  # -40%: below 1/1.6
    assert quote_is_plausible(55.0, None)
    assert quote_is_plausible(55.0, math.nan)  # no usable reference: sanity checks only
    assert not quote_is_plausible(55.0, 50.0, GuardConfig(min_move=0.05))


# --- the market index ------------------------------------------------------------------


def volatile_market(bad: str | None) -> pd.DataFrame:
    common = np.random.default_rng(9).normal(0, 0.035, len(DATES))  # ~55% annualized
    frames = [walk(f"S{i}", 20 + i, vol=0.01, common=common) for i in range(6)]
    if bad is not None:
        frames[0]["Close"] = frames[0]["Close"].astype(object)
        frames[0].loc[AT, "Close"] = bad  # as text, the way a CSV carries it
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("bad", ["0", "inf", "1e300", "-inf"])
def test_a_skipped_bad_symbol_does_not_poison_the_regime(bad):
    from nodes.alt_data_ingestion import market_context
    from nodes.macro_agent import REGIME_POSITION_SCALE, macro_prior

    ds = dataset_from_frame(volatile_market(bad), "x")
    assert ds.issues["S0"].from_date == DATES[AT]
    clean_only = dataset_from_frame(volatile_market(None).query("Symbol != 'S0'"), "y")
    for day in (DATES[AT], DATES[AT + 1], DATES[-1]):
        ctx = market_context(ds, day)
        vol = ctx["realized_vol_pct"]
        assert math.isfinite(vol) and vol > 30, (day, ctx)
        assert all(math.isfinite(v) for v in ctx.values() if isinstance(v, float))
        view = macro_prior({"market_context": ctx}, None)
        assert view.regime == "HIGH_VOLATILITY" and REGIME_POSITION_SCALE[view.regime] == 0.5
        if day > DATES[AT]:  # S0 no longer counts at all
            ref = market_context(clean_only, day)["realized_vol_pct"]
            later = market_context(ds, day)["realized_vol_pct"]
            assert later == pytest.approx(ref, rel=0.25)


def test_baseline_peak_equity_ignores_a_bad_bar():
    from tools.baselines import CostModel, run_baselines

    frame = volatile_market(None)
    spiked = frame.copy()
    row = spiked.index[(spiked.Symbol == "S1") & (spiked.Date == f"{DATES[AT]:%Y%m%d}")][0]
    spiked = scale_row(spiked, row, 5000.0)  # far outside S1's range, below the absurd limit
    a, b = dataset_from_frame(frame, "a"), dataset_from_frame(spiked, "b")
    assert [r.date for r in b.rejected["S1"]] == [DATES[AT]]
    days = list(a.calendar[50:])
    ra = run_baselines(a, days, sorted(a.bars), CostModel())["buy_and_hold"]
    rb = run_baselines(b, days, sorted(b.bars), CostModel())["buy_and_hold"]
    assert rb.equity.max() < 2 * CostModel().starting_cash
    assert rb.equity.loc[DATES[AT]] != pytest.approx(ra.equity.loc[DATES[AT]] * 100)  # not marked at the spike
