"""PerformanceAnalyzer on hand-checked trades."""

import pandas as pd
import pytest

from tools.performance import analyze_trades


def trade(pnl, closed, symbol="AAA", days=3):
    return {"pnl": pnl, "closed": closed, "symbol": symbol, "duration_days": days}


def test_statistics_by_hand():
    # Mon +10, Tue -4, Wed +6, Thu +2, Fri +1 (AAA/BBB)
    trades = [trade(10, "2010-01-04"), trade(-4, "2010-01-05", "BBB", 1), trade(6, "2010-01-06", days=5),
              trade(2, "2010-01-07", "BBB"), trade(1, "2010-01-08")]
    r = analyze_trades(trades)
    assert r["total_trades"] == 5 and r["winning_trades"] == 4 and r["losing_trades"] == 1
    assert r["win_rate"] == pytest.approx(0.8)
    assert r["total_pnl"] == pytest.approx(15)
    assert r["avg_win"] == pytest.approx(19 / 4) and r["avg_loss"] == pytest.approx(-4)
    assert r["largest_win"] == 10 and r["largest_loss"] == -4
    assert r["avg_duration_days"] == pytest.approx(15 / 5)
    assert r["best_weekday"] == "Monday" and r["best_hour"] is None
    assert r["per_symbol"]["BBB"] == {"trades": 2, "pnl": -2, "wins": 1, "win_rate": 0.5}
    [streak] = r["patterns"]  # +6 +2 +1 after the loss: one winning streak of 3
    assert streak["type"] == "winning_streak" and streak["avg_length"] == 3
    assert streak["recommendation"] == "Consider increasing position size during streaks"


def test_losing_streaks_and_market_correlation():
    trades = [trade(-1, f"2010-01-{d:02d}") for d in (4, 5, 6, 7)] + [trade(2, "2010-01-08")]
    days = pd.bdate_range("2010-01-04", periods=6)
    market = pd.Series([0.0, 0.01, -0.02, 0.03, -0.01, 0.02], index=days)
    equity = (1 + market).cumprod() * 1000  # moves exactly with the market
    r = analyze_trades(trades, equity, market)
    assert [p["type"] for p in r["patterns"]] == ["losing_streak"]
    assert r["patterns"][0]["avg_length"] == 4
    assert r["market_correlation"] == pytest.approx(1.0)


def test_no_trades():
    r = analyze_trades([])
    assert r["total_trades"] == 0 and r["win_rate"] is None and r["patterns"] == []
