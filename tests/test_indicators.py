"""tools/indicators.py: values match the ``ta`` library, snapshots are point-in-time."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from ta.momentum import RSIIndicator, StochasticOscillator
from ta.trend import MACD, ADXIndicator, SMAIndicator
from ta.volatility import AverageTrueRange, BollingerBands
from ta.volume import VolumeWeightedAveragePrice

from tools.indicators import _window_stats, compute_indicators, indicator_series, indicator_snapshot
from tools.market_data import dataset_from_frame

N = 120


def make_bars(n: int = N, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.001, 0.015, n)))
    open_ = close * (1 + rng.normal(0, 0.004, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0.001, 0.012, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0.001, 0.012, n))
    volume = rng.integers(100_000, 900_000, n).astype(float)
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume},
        index=pd.bdate_range("2021-01-04", periods=n, name="date"),
    )


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return make_bars()


def expected_from_ta(b: pd.DataFrame) -> dict[str, pd.Series]:
    h, lo, c, v = b["high"], b["low"], b["close"], b["volume"]
    macd = MACD(close=c, window_slow=26, window_fast=12, window_sign=9)
    bb = BollingerBands(close=c, window=20, window_dev=2)
    stoch = StochasticOscillator(high=h, low=lo, close=c, window=14, smooth_window=3)
    return {
        "sma20": SMAIndicator(close=c, window=20).sma_indicator(),
        "sma50": SMAIndicator(close=c, window=50).sma_indicator(),
        "rsi14": RSIIndicator(close=c, window=14).rsi(),
        "macd": macd.macd(),
        "macd_signal": macd.macd_signal(),
        "macd_hist": macd.macd_diff(),
        "atr14": AverageTrueRange(high=h, low=lo, close=c, window=14).average_true_range(),
        "bb_high": bb.bollinger_hband(),
        "bb_mid": bb.bollinger_mavg(),
        "bb_low": bb.bollinger_lband(),
        "bb_pband": bb.bollinger_pband(),
        "adx14": ADXIndicator(high=h, low=lo, close=c, window=14).adx(),
        "stoch_k": stoch.stoch(),
        "stoch_d": stoch.stoch_signal(),
        "vwap14": VolumeWeightedAveragePrice(
            high=h, low=lo, close=c, volume=v, window=14
        ).volume_weighted_average_price(),
    }


def test_compute_indicators_matches_ta(bars):
    out = compute_indicators(bars)
    expected = expected_from_ta(bars)
    assert set(out.columns) == set(expected)
    assert out.index.equals(bars.index)
    for name, series in expected.items():
        pd.testing.assert_series_equal(out[name], series, check_names=False, obj=name)
    # Every indicator is defined once the longest window (SMA50) is full.
    assert out.iloc[49:].notna().all().all()


def test_indicator_values_are_plausible(bars):
    out = compute_indicators(bars).iloc[49:]
    assert out["rsi14"].between(0, 100).all()
    assert out["stoch_k"].between(0, 100).all()
    assert out["adx14"].between(0, 100).all()
    assert (out["atr14"] > 0).all()
    assert (out["bb_low"] < out["bb_mid"]).all() and (out["bb_mid"] < out["bb_high"]).all()
    np.testing.assert_allclose(out["bb_mid"], out["sma20"])
    np.testing.assert_allclose(out["macd_hist"], out["macd"] - out["macd_signal"], atol=1e-12)


def test_snapshot_matches_ta_and_hand_computed_facts(bars):
    window = bars.iloc[:60]
    snap = indicator_snapshot("XYZ", window)
    expected = {k: float(v.iloc[-1]) for k, v in expected_from_ta(window).items()}
    for name, value in expected.items():
        assert snap[name] == pytest.approx(value, abs=1e-6), name

    last, prev = window.iloc[-1], window.iloc[-2]
    assert snap["symbol"] == "XYZ"
    assert snap["date"] == f"{window.index[-1]:%Y-%m-%d}"
    assert snap["bars"] == 60
    for col in ("open", "high", "low", "close", "volume"):
        assert snap[col] == pytest.approx(last[col], abs=1e-6)
    assert snap["prev_close"] == pytest.approx(prev["close"], abs=1e-6)
    vol20 = window["volume"].iloc[40:60].mean()
    assert snap["volume_avg20"] == pytest.approx(vol20, abs=1e-6)
    assert snap["volume_ratio"] == pytest.approx(last["volume"] / vol20, abs=1e-6)
    assert snap["high20"] == pytest.approx(window["high"].iloc[40:60].max(), abs=1e-6)
    assert snap["low20"] == pytest.approx(window["low"].iloc[40:60].min(), abs=1e-6)
    assert snap["return_20d"] == pytest.approx(last["close"] / window["close"].iloc[39] - 1, abs=1e-6)
    assert snap["atr_pct"] == pytest.approx(expected["atr14"] / last["close"], abs=1e-6)
    assert snap["change_pct"] == pytest.approx(last["close"] / prev["close"] - 1, abs=1e-6)


def test_snapshot_is_json_safe_and_finite(bars):
    snap = indicator_snapshot("XYZ", bars)
    assert json.loads(json.dumps(snap)) == snap
    for key, value in snap.items():
        if isinstance(value, float):
            assert math.isfinite(value), key
            assert value == round(value, 6), key


@pytest.mark.parametrize("n", [0, 1])
def test_snapshot_rejects_fewer_than_two_bars(bars, n):
    with pytest.raises(ValueError, match=f"only {n} bars"):
        indicator_snapshot("XYZ", bars.iloc[:n])


@pytest.mark.parametrize("n", [28, 33, 40, 49])
def test_snapshot_rejects_too_short_history_naming_the_indicator(bars, n):
    with pytest.raises(ValueError, match="not computable: .*sma50"):
        indicator_snapshot("XYZ", bars.iloc[:n])


@pytest.mark.parametrize("n", [2, 10, 20, 27])
def test_snapshot_short_history_raises_value_error(bars, n):
    with pytest.raises(ValueError):
        indicator_snapshot("XYZ", bars.iloc[:n])


def test_snapshot_at_exactly_fifty_bars(bars):
    snap = indicator_snapshot("XYZ", bars.iloc[:50])
    assert snap["bars"] == 50
    assert snap["sma50"] == pytest.approx(bars["close"].iloc[:50].mean(), abs=1e-6)


def test_snapshot_rejects_degenerate_history(bars):
    flat = bars.iloc[:60].copy()
    flat[["open", "high", "low", "close"]] = 10.0
    with pytest.raises(ValueError, match="bb_pband"):
        indicator_snapshot("XYZ", flat)
    gap = bars.iloc[:60].copy()
    gap.iloc[-1, gap.columns.get_loc("close")] = np.nan
    with pytest.raises(ValueError, match="close"):
        indicator_snapshot("XYZ", gap)


def test_indicators_use_no_future_bars(bars):
    full = compute_indicators(bars)
    for n in (50, 60, 90):
        pd.testing.assert_frame_equal(compute_indicators(bars.iloc[:n]), full.iloc[:n])


def test_snapshot_uses_only_the_bars_given(bars):
    early = bars.iloc[:60]
    snap = indicator_snapshot("XYZ", early)
    # Wild later bars change nothing about the earlier slice ...
    shocked = bars.copy()
    shocked.iloc[60:, :4] *= 3.0
    shocked.iloc[60:, 4] *= 50.0
    assert indicator_snapshot("XYZ", shocked.iloc[:60]) == snap
    later = compute_indicators(shocked).iloc[59]
    for name, value in later.items():
        assert snap[name] == pytest.approx(value, abs=1e-6), name
    # ... while appending one bar does move the snapshot to that bar.
    appended = indicator_snapshot("XYZ", shocked.iloc[:61])
    assert appended["date"] == f"{bars.index[60]:%Y-%m-%d}"
    assert appended["bars"] == 61
    assert appended["close"] == pytest.approx(shocked["close"].iloc[60], abs=1e-6)
    assert appended["sma20"] != snap["sma20"]


def test_snapshot_of_dataset_history_is_point_in_time(bars):
    raw = pd.DataFrame(
        {
            "Date": [f"{d:%Y%m%d}" for d in bars.index],
            "Symbol": "XYZ",
            "Open": bars["open"].map(repr),
            "High": bars["high"].map(repr),
            "Low": bars["low"].map(repr),
            "Close": bars["close"].map(repr),
            "Volume": bars["volume"].map(repr),
        }
    ).reset_index(drop=True)
    dataset = dataset_from_frame(raw, "synthetic")
    as_of = bars.index[69]
    snap = indicator_snapshot("XYZ", dataset.history("XYZ", as_of))
    assert snap["date"] == f"{as_of:%Y-%m-%d}"
    assert snap == indicator_snapshot("XYZ", bars.iloc[:70].rename_axis("date"))


# The pandas implementation indicator_snapshot had before it read bars through numpy, kept
# verbatim as the reference: the faster one must return the same dict, bit for bit.
def _reference_series_row(series, bars):
    n = len(bars)
    if series is None or n > len(series) or series.index[0] != bars.index[0] or series.index[n - 1] != bars.index[-1]:
        return None
    return series.iloc[n - 1]


def reference_snapshot(symbol, bars, series=None):
    if len(bars) < 2:
        raise ValueError(f"only {len(bars)} bars")
    last = _reference_series_row(series, bars)
    if last is None:
        try:
            ind = compute_indicators(bars)
        except (IndexError, ZeroDivisionError) as exc:
            raise ValueError(f"indicators not computable on {len(bars)} bars ({type(exc).__name__})") from exc
        last = ind.iloc[-1]
    bar = bars.iloc[-1]
    close = float(bar["close"])
    vol20 = float(bars["volume"].iloc[-20:].mean())
    window20 = bars.iloc[-20:]
    ref = float(bars["close"].iloc[-21]) if len(bars) > 20 else float(bars["close"].iloc[0])
    ref5 = float(bars["close"].iloc[-6]) if len(bars) > 5 else float(bars["close"].iloc[0])
    vol_std20 = float(bars["volume"].iloc[-20:].std(ddof=0))
    snap = {
        "symbol": symbol,
        "date": f"{bars.index[-1]:%Y-%m-%d}",
        "bars": len(bars),
        "open": float(bar["open"]),
        "high": float(bar["high"]),
        "low": float(bar["low"]),
        "close": close,
        "prev_close": float(bars["close"].iloc[-2]),
        "volume": float(bar["volume"]),
        "volume_avg20": vol20,
        "volume_ratio": float(bar["volume"]) / vol20 if vol20 > 0 else 0.0,
        "high20": float(window20["high"].max()),
        "low20": float(window20["low"].min()),
        "return_20d": close / ref - 1.0,
        "return_5d": close / ref5 - 1.0,
        "volume_z20": (float(bar["volume"]) - vol20) / vol_std20 if vol_std20 > 0 else 0.0,
        **{k: float(v) for k, v in last.items()},
    }
    snap["atr_pct"] = snap["atr14"] / close
    snap["change_pct"] = close / snap["prev_close"] - 1.0
    bad = [k for k, v in snap.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise ValueError(f"indicator(s) not computable: {', '.join(bad)}")
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in snap.items()}


def outcome(snapshot, *args, **kwargs):
    """The snapshot as its repr (key order, types and every float bit show), or the error."""
    try:
        return repr(snapshot(*args, **kwargs))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def assert_same_as_reference(symbol, bars, series=None):
    expected = outcome(reference_snapshot, symbol, bars, series=series)
    assert outcome(indicator_snapshot, symbol, bars, series=series) == expected, (symbol, len(bars))
    return expected


def test_snapshot_equals_the_pandas_reference_on_the_embedded_data():
    from graph.settings import VoltSettings
    from tools.data_source import market_dataset

    dataset = market_dataset(VoltSettings(models=[]))
    symbols = sorted(dataset.bars)[::max(1, len(dataset.bars) // 30)][:30]
    outcomes = []
    for i, symbol in enumerate(symbols):
        series = indicator_series(dataset, symbol)
        for j, day in enumerate(dataset.calendar[50::7]):
            history = dataset.history(symbol, day)
            outcomes.append(assert_same_as_reference(symbol, history, series))
            if i % 4 == 0 and j % 4 == 0:  # recomputing the indicators is slow: a sample
                assert_same_as_reference(symbol, history)
    snapshots = [o for o in outcomes if o.startswith("{")]
    assert len(set(snapshots)) > 600  # distinct snapshots (a delisted symbol repeats its last)


def _with(frame, column, at, value):
    frame = frame.copy()
    frame.iloc[at, frame.columns.get_loc(column)] = value
    return frame


@pytest.mark.parametrize("case", [
    "plain", "nan_volume_in_window", "nan_high_in_window", "nan_low_in_window", "nan_close_last",
    "inf_volume", "zero_volumes", "flat_prices", "int_volume", "extra_text_column",
])
@pytest.mark.parametrize("numpy_stats", [True, False])  # False: as when bottleneck is installed
def test_snapshot_equals_the_pandas_reference_on_odd_bars(bars, case, numpy_stats, monkeypatch):
    monkeypatch.setattr("tools.indicators._NUMPY_STATS_MATCH_PANDAS", numpy_stats)
    b = bars.iloc[:70]
    b = {
        "plain": b,
        "nan_volume_in_window": _with(b, "volume", -5, np.nan),  # pandas skips it: still a snapshot
        "nan_high_in_window": _with(b, "high", -3, np.nan),
        "nan_low_in_window": _with(b, "low", -19, np.nan),
        "nan_close_last": _with(b, "close", -1, np.nan),
        "inf_volume": _with(b, "volume", -2, np.inf),
        "zero_volumes": b.assign(volume=0.0),
        "flat_prices": b.assign(open=10.0, high=10.0, low=10.0, close=10.0),
        "int_volume": b.assign(volume=b["volume"].astype("int64")),
        "extra_text_column": b.assign(note="x"),
    }[case]
    with np.errstate(all="ignore"):
        own = compute_indicators(b)
        clean = compute_indicators(bars.iloc[:70])  # finite indicators: the bar facts decide
        for n in (2, 5, 20, 21, 49, 50, 70):
            assert_same_as_reference("XYZ", b.iloc[:n])
            assert_same_as_reference("XYZ", b.iloc[:n], own)
            last = assert_same_as_reference("XYZ", b.iloc[:n], clean)
    if case not in {"nan_close_last", "inf_volume", "flat_prices"}:
        assert last.startswith("{"), last  # a snapshot: pandas skipped any NaN in the window



def test_window_stats_are_bit_identical_to_pandas():
    """Unrounded, on values whose sums round differently in a different order."""
    rng = np.random.default_rng(3)
    for n in (2, 7, 19, 20, 21, 64):
        b = pd.DataFrame(rng.lognormal(10, 2, (n, 3)) * rng.choice([1e-3, 1.0, 1e6], (n, 3)),
                         columns=["volume", "high", "low"])
        v = b.to_numpy()
        w = b.iloc[-20:]
        expected = (w["volume"].mean(), w["volume"].std(ddof=0), w["high"].max(), w["low"].min())
        assert _window_stats(b, v[:, 0], v[:, 1], v[:, 2]) == tuple(map(float, expected)), n

@pytest.mark.parametrize("n", [0, 1])
def test_snapshot_too_few_bars_same_error_as_reference(bars, n):
    assert assert_same_as_reference("XYZ", bars.iloc[:n], compute_indicators(bars)) == f"ValueError: only {n} bars"



@pytest.mark.parametrize("column", ["open", "high", "low", "close", "volume"])
def test_snapshot_missing_column_same_error_as_reference(bars, column):
    b = bars.iloc[:60]
    for series in (None, compute_indicators(b)):
        assert assert_same_as_reference("XYZ", b.drop(columns=column), series) == f"KeyError: '{column}'"

def test_snapshot_ignores_a_series_that_does_not_match_the_bars(bars):
    other = make_bars(seed=1)
    shifted = compute_indicators(bars.iloc[1:])  # starts a bar later: not a prefix match
    for series in (compute_indicators(other.iloc[:40]), shifted, compute_indicators(bars.iloc[:59])):
        snap = assert_same_as_reference("XYZ", bars.iloc[:60], series)
        assert snap == repr(indicator_snapshot("XYZ", bars.iloc[:60]))
