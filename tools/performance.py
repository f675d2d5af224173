"""PerformanceAnalyzer: statistics over closed trades (seed 000, section 5.1). Pure.

Trades are dicts with ``pnl`` (USD, net of fees), ``symbol``, ``closed`` (YYYY-MM-DD) and
``duration_days`` (trading days held). With daily bars there is no intraday hour, so
``best_hour`` is ``None``. ``market_correlation`` correlates the portfolio's daily equity
returns with the market's (equal-weight mean of the universe's daily close returns).
"""

from __future__ import annotations

import math

import pandas as pd

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
STREAK_MIN = 3


def _streaks(pnls: list[float], winning: bool) -> list[int]:
    out, run = [], 0
    for p in pnls:
        if (p > 0) if winning else (p < 0):
            run += 1
        else:
            if run >= STREAK_MIN:
                out.append(run)
            run = 0
    if run >= STREAK_MIN:
        out.append(run)
    return out


def analyze_trades(trades: list[dict], equity: pd.Series | None = None, market: pd.Series | None = None) -> dict:
    pnls = [t["pnl"] for t in trades]
    wins, losses = [p for p in pnls if p > 0], [p for p in pnls if p < 0]
    report: dict = {
        "total_trades": len(trades),
        "winning_trades": len(wins),
        "losing_trades": len(losses),
        "win_rate": len(wins) / len(trades) if trades else None,
        "total_pnl": sum(pnls),
        "avg_win": sum(wins) / len(wins) if wins else None,
        "avg_loss": sum(losses) / len(losses) if losses else None,
        "largest_win": max(pnls) if trades else None,
        "largest_loss": min(pnls) if trades else None,
        "avg_duration_days": sum(t["duration_days"] for t in trades) / len(trades) if trades else None,
        "best_hour": None,  # daily bars: no intraday hour to compare
    }
    by_day: dict[str, float] = {}
    per_symbol: dict[str, dict] = {}
    for t in trades:
        day = WEEKDAYS[pd.Timestamp(t["closed"]).weekday()]
        by_day[day] = by_day.get(day, 0.0) + t["pnl"]
        s = per_symbol.setdefault(t["symbol"], {"trades": 0, "pnl": 0.0, "wins": 0})
        s["trades"] += 1
        s["pnl"] += t["pnl"]
        s["wins"] += int(t["pnl"] > 0)
    report["best_weekday"] = max(by_day, key=by_day.get) if by_day else None
    report["pnl_by_weekday"] = by_day
    report["per_symbol"] = {k: {**v, "win_rate": v["wins"] / v["trades"]} for k, v in sorted(per_symbol.items())}
    patterns = []
    for winning, kind, advice in ((True, "winning_streak", "Consider increasing position size during streaks"),
                                  (False, "losing_streak", "Consider reducing position size or pausing")):
        streaks = _streaks(pnls, winning)
        if streaks:
            patterns.append({"type": kind, "frequency": len(streaks), "avg_length": sum(streaks) / len(streaks),
                             "recommendation": advice})
    report["patterns"] = patterns
    report["market_correlation"] = None
    if equity is not None and market is not None and len(equity) > 2:
        joined = pd.concat([equity.pct_change(), market], axis=1, join="inner").dropna()
        if len(joined) > 2 and joined.std().min() > 0:
            corr = float(joined.corr().iloc[0, 1])
            report["market_correlation"] = corr if math.isfinite(corr) else None
    return report
