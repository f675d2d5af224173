"""Performance metrics of a daily equity curve and its fills. Pure functions, no I/O.

Conventions (the same for the agent graph and every baseline):

- ``equity`` is indexed by decision day D and is the value after D's orders filled,
  marked at the next bar's open (the broker's marks); ``starting_cash`` comes first, so
  the first return is the first day's.
- Daily simple returns; 252 trading days a year. The risk-free rate is annual
  (``risk_free=0.02`` = 2%) and is turned into a daily rate ``(1 + rf) ** (1/252) - 1``.
- Sharpe = mean(excess) / std(excess, ddof=1) * sqrt(252); Sortino uses the downside
  deviation sqrt(mean(min(0, excess)^2)) instead of the std.
- Annualized return = (final / start) ** (252 / days) - 1; Calmar = annualized / |max DD|.
- Max drawdown: the deepest fall from a running peak, with the peak, trough and recovery
  days (``None`` when not recovered by the end).
- Win rate and profit factor count fills that close (part of) a position: realized P&L
  net of fees; profit factor = gross wins / gross losses.
- Turnover = traded notional / mean equity (1.0 = the portfolio's value traded once).
- Exposure = mean over days of gross exposure / equity.
- Slippage paid = sum(|fill price - reference open| * qty) in cash.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

TRADING_DAYS = 252


def daily_returns(equity: pd.Series, starting_cash: float) -> pd.Series:
    values = np.concatenate([[float(starting_cash)], equity.to_numpy(dtype=float)])
    returns = values[1:] / values[:-1] - 1.0
    return pd.Series(returns, index=equity.index)


def max_drawdown(equity: pd.Series, starting_cash: float) -> dict:
    """Deepest peak-to-trough fall, as a negative fraction, with its days."""
    if equity.empty:
        return {"max_drawdown": 0.0, "peak": None, "trough": None, "recovery": None, "duration_days": 0}
    curve = pd.concat([pd.Series([float(starting_cash)], index=[None]), equity.astype(float)])
    values = curve.to_numpy()
    peaks = np.maximum.accumulate(values)
    dd = values / peaks - 1.0
    trough_i = int(np.argmin(dd))
    depth = float(dd[trough_i])
    if depth >= 0:
        return {"max_drawdown": 0.0, "peak": None, "trough": None, "recovery": None, "duration_days": 0}
    peak_i = int(np.argmax(values[: trough_i + 1] == peaks[trough_i]))
    after = np.nonzero(values[trough_i:] >= peaks[trough_i])[0]
    recovery_i = trough_i + int(after[0]) if len(after) else None
    labels = list(curve.index)
    end_i = recovery_i if recovery_i is not None else len(values) - 1
    return {
        "max_drawdown": depth,
        "peak": _day(labels[peak_i]) if peak_i > 0 else "start",
        "trough": _day(labels[trough_i]),
        "recovery": _day(labels[recovery_i]) if recovery_i is not None else None,
        "duration_days": end_i - peak_i,  # trading days from peak to recovery (or the end)
    }


def drawdown_curve(equity: pd.Series, starting_cash: float) -> pd.Series:
    values = np.concatenate([[float(starting_cash)], equity.to_numpy(dtype=float)])
    peaks = np.maximum.accumulate(values)
    return pd.Series((values / peaks - 1.0)[1:], index=equity.index)


def _day(label) -> str | None:
    if label is None:
        return None
    return f"{pd.Timestamp(label):%Y-%m-%d}"


def _finite(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(x)


def trade_stats(fills: Iterable[dict]) -> dict:
    """Costs, notional and the closing fills' win rate and profit factor."""
    fills = list(fills)
    # a fill closes (part of) a position when it says so, else: a sell, or any realized P&L
    closing = [f for f in fills if f.get("closes", f["side"] == "SELL" or f.get("realized_pnl", 0.0) != 0)]
    wins = [f["realized_pnl"] for f in closing if f["realized_pnl"] > 0]
    losses = [f["realized_pnl"] for f in closing if f["realized_pnl"] <= 0]
    gross_win, gross_loss = sum(wins), -sum(losses)
    if not closing:
        profit_factor = None
    elif gross_loss == 0:
        profit_factor = math.inf
    else:
        profit_factor = gross_win / gross_loss
    return {
        "fills": len(fills),
        "buys": sum(1 for f in fills if f["side"] == "BUY"),
        "sells": sum(1 for f in fills if f["side"] == "SELL"),
        "closing_trades": len(closing),
        "win_rate": len(wins) / len(closing) if closing else None,
        "profit_factor": profit_factor,
        "realized_pnl": sum(f["realized_pnl"] for f in closing),
        "traded_notional": sum(abs(f["qty"] * f["price"]) for f in fills),
        "fees_paid": sum(f["fee"] for f in fills),
        "slippage_paid": sum(abs(f["price"] - f["reference_price"]) * abs(f["qty"]) for f in fills),
    }


def compute_metrics(
    equity: pd.Series,
    *,
    starting_cash: float,
    fills: Iterable[dict] = (),
    exposure: pd.Series | None = None,
    risk_free: float = 0.0,
) -> dict:
    """Every headline metric of one strategy (see the module docstring for definitions)."""
    equity = equity.astype(float)
    n = len(equity)
    final = float(equity.iloc[-1]) if n else float(starting_cash)
    total = final / starting_cash - 1.0
    rets = daily_returns(equity, starting_cash)
    rf_daily = (1.0 + risk_free) ** (1.0 / TRADING_DAYS) - 1.0
    excess = rets - rf_daily
    std = float(excess.std(ddof=1)) if n > 1 else float("nan")
    downside = float(np.sqrt(np.mean(np.minimum(0.0, excess.to_numpy()) ** 2))) if n else float("nan")
    mean = float(excess.mean()) if n else float("nan")
    sharpe = mean / std * math.sqrt(TRADING_DAYS) if n > 1 and std > 0 else None
    sortino = mean / downside * math.sqrt(TRADING_DAYS) if n and downside > 0 else None
    annualized = (final / starting_cash) ** (TRADING_DAYS / n) - 1.0 if n and final > 0 else None
    dd = max_drawdown(equity, starting_cash)
    calmar = annualized / abs(dd["max_drawdown"]) if annualized is not None and dd["max_drawdown"] < 0 else None
    trades = trade_stats(fills)
    mean_equity = float(equity.mean()) if n else float(starting_cash)
    turnover = trades["traded_notional"] / mean_equity if mean_equity > 0 else None
    return {
        "days": n,
        "start_equity": float(starting_cash),
        "final_equity": final,
        "total_return": total,
        "annualized_return": _finite(annualized),
        "volatility": _finite(float(rets.std(ddof=1)) * math.sqrt(TRADING_DAYS)) if n > 1 else None,
        "sharpe": _finite(sharpe),
        "sortino": _finite(sortino),
        "risk_free": risk_free,
        "max_drawdown": dd["max_drawdown"],
        "max_drawdown_peak": dd["peak"],
        "max_drawdown_trough": dd["trough"],
        "max_drawdown_recovery": dd["recovery"],
        "max_drawdown_days": dd["duration_days"],
        "calmar": _finite(calmar),
        "win_rate": trades["win_rate"],
        "profit_factor": trades["profit_factor"] if trades["profit_factor"] != math.inf else "inf",
        "closing_trades": trades["closing_trades"],
        "fills": trades["fills"],
        "turnover": _finite(turnover),
        "turnover_annualized": _finite(turnover * TRADING_DAYS / n) if turnover is not None and n else None,
        "exposure": _finite(float(exposure.mean())) if exposure is not None and len(exposure) else None,
        "fees_paid": trades["fees_paid"],
        "slippage_paid": trades["slippage_paid"],
        "realized_pnl": trades["realized_pnl"],
    }
