"""Backtest metrics against numbers computed by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tools.metrics import compute_metrics, drawdown_curve, max_drawdown, trade_stats

DAYS = pd.DatetimeIndex(["2020-01-02", "2020-01-03", "2020-01-06"])


def test_returns_volatility_sharpe_sortino_by_hand():
    # 1000 -> 1100 -> 990 -> 1089: daily returns +10%, -10%, +10%
    m = compute_metrics(pd.Series([1100.0, 990.0, 1089.0], index=DAYS), starting_cash=1000.0)
    assert m["total_return"] == pytest.approx(0.089)
    mean = 0.1 / 3
    std = math.sqrt(((0.1 - mean) ** 2 * 2 + (-0.1 - mean) ** 2) / 2)  # ddof=1
    assert m["volatility"] == pytest.approx(std * math.sqrt(252))
    assert m["sharpe"] == pytest.approx(mean / std * math.sqrt(252))
    downside = math.sqrt(0.01 / 3)  # only the -10% day counts
    assert m["sortino"] == pytest.approx(mean / downside * math.sqrt(252))
    assert m["annualized_return"] == pytest.approx(1.089 ** (252 / 3) - 1)
    assert m["max_drawdown"] == pytest.approx(-0.1)
    assert (m["max_drawdown_peak"], m["max_drawdown_trough"], m["max_drawdown_recovery"]) == (
        "2020-01-02", "2020-01-03", None)  # 1089 < 1100: not recovered
    assert m["calmar"] == pytest.approx(m["annualized_return"] / 0.1)


def test_risk_free_rate_lowers_sharpe():
    equity = pd.Series([1010.0, 1005.0, 1020.0], index=DAYS)
    base = compute_metrics(equity, starting_cash=1000.0)
    rf = compute_metrics(equity, starting_cash=1000.0, risk_free=0.05)
    daily = 1.05 ** (1 / 252) - 1
    rets = pd.Series([0.01, 1005 / 1010 - 1, 1020 / 1005 - 1])
    assert rf["sharpe"] == pytest.approx((rets - daily).mean() / (rets - daily).std() * math.sqrt(252))
    assert rf["sharpe"] < base["sharpe"]


def test_drawdown_from_the_start_and_recovery():
    days = pd.bdate_range("2021-03-01", periods=5)
    dd = max_drawdown(pd.Series([950.0, 900.0, 980.0, 1000.0, 1010.0], index=days), 1000.0)
    assert dd["max_drawdown"] == pytest.approx(-0.1)
    assert (dd["peak"], dd["trough"], dd["recovery"]) == ("start", "2021-03-02", "2021-03-04")
    assert dd["duration_days"] == 4  # start -> recovery, in trading days
    curve = drawdown_curve(pd.Series([950.0, 900.0], index=days[:2]), 1000.0)
    assert list(curve.round(6)) == [-0.05, -0.1]


def test_trade_stats_win_rate_profit_factor_costs():
    fills = [
        {"side": "BUY", "qty": 10, "price": 10.05, "reference_price": 10.0, "fee": 0.25, "realized_pnl": 0.0},
        {"side": "SELL", "qty": 5, "price": 11.0, "reference_price": 11.05, "fee": 0.1375, "realized_pnl": 4.5},
        {"side": "SELL", "qty": 5, "price": 9.0, "reference_price": 9.0, "fee": 0.1125, "realized_pnl": -5.5},
        {"side": "BUY", "qty": 2, "price": 20.0, "reference_price": 20.0, "fee": 0.1, "realized_pnl": 0.0},
        {"side": "SELL", "qty": 2, "price": 21.0, "reference_price": 21.0, "fee": 0.105, "realized_pnl": 1.5},
    ]
    s = trade_stats(fills)
    assert s["closing_trades"] == 3
    assert s["win_rate"] == pytest.approx(2 / 3)
    assert s["profit_factor"] == pytest.approx(6.0 / 5.5)
    assert s["fees_paid"] == pytest.approx(0.25 + 0.1375 + 0.1125 + 0.1 + 0.105)
    assert s["slippage_paid"] == pytest.approx(10 * 0.05 + 5 * 0.05)
    assert s["traded_notional"] == pytest.approx(100.5 + 55 + 45 + 40 + 42)


def test_turnover_exposure_and_no_trades():
    days = pd.bdate_range("2021-03-01", periods=4)
    equity = pd.Series([1000.0, 1000.0, 1000.0, 1000.0], index=days)
    fills = [{"side": "BUY", "qty": 1, "price": 500.0, "reference_price": 500.0, "fee": 0.0, "realized_pnl": 0.0}]
    m = compute_metrics(equity, starting_cash=1000.0, fills=fills, exposure=pd.Series([0.5, 0.5, 0.0, 0.0], index=days))
    assert m["turnover"] == pytest.approx(0.5)
    assert m["exposure"] == pytest.approx(0.25)
    assert m["sharpe"] is None and m["sortino"] is None  # flat: no volatility
    assert m["win_rate"] is None and m["profit_factor"] is None and m["calmar"] is None
    assert m["max_drawdown"] == 0.0
