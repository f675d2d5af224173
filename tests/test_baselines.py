"""Baselines on tiny hand-built data: fills at the next open, the broker's costs, hand-computed equity."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from ta.momentum import RSIIndicator
from ta.volatility import AverageTrueRange

from tools.baselines import CostModel, Simulator, average_true_range, run_baselines
from tools.market import DataOptions
from tools.market.price_guard import GuardConfig
from tools.market_data import dataset_from_frame

FEE = 0.0025
RAW = DataOptions(split_adjust=False, guard=GuardConfig(min_move=1e6))


def frame(closes: dict[str, list[float]], opens: dict[str, list[float]] | None = None, volume: float = 1000.0,
          options: DataOptions | None = None):
    rows = []
    for symbol, cl in closes.items():
        op = (opens or {}).get(symbol) or [cl[0], *cl[:-1]]
        for i, (d, o, c) in enumerate(zip(pd.bdate_range("2021-01-04", periods=len(cl)), op, cl, strict=True)):
            rows.append({"Date": f"{d:%Y-%m-%d}", "Symbol": symbol, "Open": o, "High": max(o, c) + 0.5,
                         "Low": min(o, c) - 0.5, "Close": c, "Volume": volume + i})
    return dataset_from_frame(pd.DataFrame(rows), "hand", options=options)


def decision_days(ds, min_history=50):
    return list(ds.calendar[min_history - 1 : -1])


def test_buy_and_hold_equal_weight_by_hand():
    # 56 bars: flat at 10; the last bar opens at 12 (AAA) and 8 (BBB). No slippage: fees only.
    a_open, b_open = [10.0] * 55 + [12.0], [10.0] * 55 + [8.0]
    ds = frame({"AAA": [10.0] * 56, "BBB": [10.0] * 56}, {"AAA": a_open, "BBB": b_open})
    days = decision_days(ds)
    assert len(days) == 6
    res = run_baselines(ds, days, ["AAA", "BBB"], CostModel(FEE, 0.0, 1000.0, 50), ["buy_and_hold"])["buy_and_hold"]
    qty = 500 / (10 * (1 + FEE))  # equal sleeve at the first close, fee included
    assert [f["side"] for f in res.fills] == ["BUY", "BUY"]
    assert [f["fill_date"] for f in res.fills] == [f"{ds.calendar[50]:%Y-%m-%d}"] * 2  # the next open
    assert res.fills[0]["qty"] == pytest.approx(qty)
    assert res.fills[0]["fee"] == pytest.approx(qty * 10 * FEE)
    assert res.equity.iloc[0] == pytest.approx(2 * qty * 10)  # marked at the next open (10)
    assert res.equity.iloc[-1] == pytest.approx(qty * 12 + qty * 8)  # 997.506...
    assert res.equity.iloc[-1] == pytest.approx(997.5062, abs=1e-4)
    assert res.cash.iloc[-1] == pytest.approx(0.0, abs=1e-6)


def test_sma_crossover_enters_and_exits_at_the_next_open_with_broker_slippage():
    # flat 10 for 50 bars, 20 on bars 50-51, then 1: SMA20 crosses above SMA50 on bar 50
    # and back below on bar 54 (solved by hand: the third bar at 1).
    closes = [10.0] * 50 + [20.0, 20.0] + [1.0] * 4
    opens = [10.0] * 51 + [21.0, 19.0, 1.5, 1.2, 0.9]
    # jumps of 2x and 1/20 on purpose: no outlier guard or split detection on this hand data
    ds = frame({"AAA": closes}, {"AAA": opens}, options=RAW)
    c = np.array(closes)
    sma20 = [c[i - 19 : i + 1].mean() for i in range(49, 55)]
    sma50 = [c[i - 49 : i + 1].mean() for i in range(49, 55)]
    assert [f > s for f, s in zip(sma20, sma50, strict=True)] == [False, True, True, True, True, False]

    costs = CostModel(FEE, 0.05, 1000.0, 50)
    res = run_baselines(ds, decision_days(ds), ["AAA"], costs, ["sma_crossover"])["sma_crossover"]
    assert [(f["as_of"], f["side"], f["fill_date"]) for f in res.fills] == [
        (f"{ds.calendar[50]:%Y-%m-%d}", "BUY", f"{ds.calendar[51]:%Y-%m-%d}"),
        (f"{ds.calendar[54]:%Y-%m-%d}", "SELL", f"{ds.calendar[55]:%Y-%m-%d}"),
    ]
    bars = ds.bars["AAA"]
    atr_pct = (AverageTrueRange(bars["high"], bars["low"], bars["close"], 14).average_true_range() / bars["close"]).to_numpy()
    avg_shares = bars["volume"].rolling(20).mean().to_numpy()

    def slip(row, shares):
        return min(0.05, 0.05 * atr_pct[row] + atr_pct[row] * math.sqrt(shares / avg_shares[row]))

    wanted = 1000 / (20 * (1 + FEE))
    s_buy = slip(50, wanted)
    buy_price = 21.0 * (1 + s_buy)
    qty = 1000 / (buy_price * (1 + FEE)) * (1 - 1e-12)  # clipped to the cash, fee included
    buy = res.fills[0]
    assert buy["slippage_pct"] == pytest.approx(s_buy)
    assert buy["price"] == pytest.approx(buy_price)
    assert buy["qty"] == pytest.approx(qty)
    s_sell = slip(54, qty)
    sell_price = 0.9 * (1 - s_sell)
    sell = res.fills[1]
    assert sell["price"] == pytest.approx(sell_price)
    cash = 1000 - qty * buy_price * (1 + FEE) + qty * sell_price * (1 - FEE)
    assert res.equity.iloc[-1] == pytest.approx(cash)
    assert sell["realized_pnl"] == pytest.approx(qty * sell_price * (1 - FEE) - qty * buy_price * (1 + FEE))
    # the days in between are marked at the next open: 21 after the fill, then 19, 1.5, 1.2
    assert list(res.equity.iloc[1:5]) == pytest.approx([1000 - qty * buy_price * (1 + FEE) + qty * p
                                                        for p in (21.0, 19.0, 1.5, 1.2)])


def test_rsi_rule_buys_below_30_only():
    closes = [10.0 + 0.5 * i for i in range(50)] + [30.0, 25.0, 20.0, 15.0, 14.0, 16.0]
    ds = frame({"AAA": closes})
    rsi = RSIIndicator(ds.bars["AAA"]["close"], 14).rsi().to_numpy()
    first_below = next(i for i in range(49, 55) if rsi[i] < 30)
    res = run_baselines(ds, decision_days(ds), ["AAA"], CostModel(FEE, 0.0, 1000.0, 50), ["rsi_rule"])["rsi_rule"]
    assert [(f["as_of"], f["side"]) for f in res.fills] == [(f"{ds.calendar[first_below]:%Y-%m-%d}", "BUY")]
    assert res.fills[0]["reference_price"] == closes[first_below]  # the next bar's open = this close here


def test_decisions_never_use_later_bars():
    closes = [10.0] * 50 + [20.0, 20.0] + [1.0] * 4
    base = frame({"AAA": closes})
    changed = frame({"AAA": closes[:-1] + [500.0]})  # only the last bar's close differs
    days = decision_days(base)
    a = run_baselines(base, days, ["AAA"], CostModel(), ["sma_crossover"])["sma_crossover"]
    b = run_baselines(changed, days, ["AAA"], CostModel(), ["sma_crossover"])["sma_crossover"]
    assert a.fills == b.fills  # same decisions and fills at the same opens


def test_untradable_symbols_are_skipped():
    ds = frame({"AAA": [10.0] * 56, "NEW": [10.0] * 30})  # NEW has too little history
    sim = Simulator(ds, decision_days(ds), ["AAA", "NEW", "GONE"], CostModel())
    assert sim.universe == ["AAA", "NEW"]
    assert not sim.tradable[:, 1].any()
    res = sim.run("buy_and_hold", sim.want_buy_and_hold())
    assert {f["symbol"] for f in res.fills} == {"AAA"}


def test_average_true_range_is_ta_bit_for_bit():
    ds = frame({"AAA": [10.0 + np.sin(i / 3) * 2 + i * 0.1 for i in range(80)]})
    bars = ds.bars["AAA"]
    ours = average_true_range(bars["high"].to_numpy(), bars["low"].to_numpy(), bars["close"].to_numpy())
    theirs = AverageTrueRange(bars["high"], bars["low"], bars["close"], 14).average_true_range().to_numpy()
    assert np.array_equal(ours, theirs)
    assert not average_true_range(np.ones(5), np.ones(5), np.ones(5)).any()  # shorter than the window: zeros


def wave(n: int, base: float, phase: float) -> list[float]:
    return [round(base + 3 * np.sin(i / 4 + phase) + 0.05 * i, 4) for i in range(n)]


def test_a_symbol_listed_later_changes_no_baseline_before_its_listing():
    n = 120
    closes = {"AAA": wave(n, 50, 0.0), "BBB": wave(n, 40, 1.0), "CCC": wave(n, 30, 2.0)}
    base = frame(closes)
    rows = []
    dates = list(base.calendar)
    late = 70  # NEW's first bar: day 70 (tradable 50 bars later, day 119)
    for i, d in enumerate(dates[late:], start=late):
        c = 20 + 2 * np.sin(i / 3)
        rows.append({"Date": f"{d:%Y-%m-%d}", "Symbol": "NEW", "Open": c, "High": c + 0.5, "Low": c - 0.5,
                     "Close": c, "Volume": 1000})
    long_rows = [{"Date": f"{d:%Y-%m-%d}", "Symbol": s, "Open": b.loc[d, "open"], "High": b.loc[d, "high"],
                  "Low": b.loc[d, "low"], "Close": b.loc[d, "close"], "Volume": b.loc[d, "volume"]}
                 for s, b in base.bars.items() for d in b.index]
    listed = dataset_from_frame(pd.DataFrame(long_rows + rows), "with NEW")
    days = decision_days(base)
    a = run_baselines(base, days, ["AAA", "BBB", "CCC"], CostModel())
    b = run_baselines(listed, days, ["AAA", "BBB", "CCC", "NEW"], CostModel())
    before = pd.DatetimeIndex(days) < dates[late]
    assert before.sum() > 10
    for name in a:
        pd.testing.assert_series_equal(a[name].equity[before], b[name].equity[before], check_exact=True)
        assert [f for f in b[name].fills if f["as_of"] < f"{dates[late]:%Y-%m-%d}"] == \
               [f for f in a[name].fills if f["as_of"] < f"{dates[late]:%Y-%m-%d}"]
    # buy-and-hold is invested from the first day, not holding NEW's sleeve in cash
    bh = b["buy_and_hold"]
    assert bh.cash.iloc[0] < 0.01 * 1000.0 and bh.exposure.iloc[0] > 0.99


def test_no_fill_through_a_gap_and_marks_at_the_last_close():
    # AAA has no bar on day 51 (the fill day of day 50): its order waits; it is marked at day 50's close
    closes = [10.0] * 60
    ds_full = frame({"AAA": closes, "BBB": closes}, {"AAA": [10.0] * 52 + [99.0] + [11.0] * 7}, options=RAW)
    rows = [{"Date": f"{d:%Y-%m-%d}", "Symbol": s, "Open": b.loc[d, "open"], "High": b.loc[d, "high"],
             "Low": b.loc[d, "low"], "Close": b.loc[d, "close"], "Volume": b.loc[d, "volume"]}
            for s, b in ds_full.bars.items() for d in b.index if not (s == "AAA" and d == ds_full.calendar[51])]
    ds = dataset_from_frame(pd.DataFrame(rows), "gap", options=RAW)
    days = list(ds.calendar[49:52])
    sim = Simulator(ds, days, ["AAA", "BBB"], CostModel(FEE, 0.0, 1000.0, 50))
    res = sim.run("buy_and_hold", sim.want_buy_and_hold())
    # day 49 fills both on day 50; day 50 -> day 51: AAA is in a gap, marked at its close (10), not at the 99 after the gap
    assert [(f["symbol"], f["fill_date"]) for f in res.fills] == [
        ("AAA", f"{ds.calendar[50]:%Y-%m-%d}"), ("BBB", f"{ds.calendar[50]:%Y-%m-%d}")]
    assert sim.mark[1, 0] == 10.0 and sim.next_row[1, 0] == -1
