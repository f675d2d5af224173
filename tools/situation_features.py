"""A market situation as a fixed vector of normalized features (for similarity search).

Every feature is squashed to about [-1, 1] with a documented scale, so no single one
dominates the distance: returns over 1, 5 and 20 days, RSI, distance to SMA20 and SMA50,
ATR %, volume z-score, Bollinger %b, MACD histogram (relative to price), ADX, stochastic
%K, and two regime flags (SMA trend, high volatility).
"""

from __future__ import annotations

import math

FEATURES: tuple[str, ...] = (
    "ret_1d", "ret_5d", "ret_20d", "rsi", "dist_sma20", "dist_sma50", "atr", "volume_z",
    "bb_pband", "macd_hist", "adx", "stoch", "trend_flag", "high_vol_flag",
)
HIGH_VOLATILITY_ATR_PCT = 0.03


def situation_features(snapshot: dict) -> dict[str, float]:
    """Features of an indicator snapshot (``tools.indicators.indicator_snapshot``)."""
    s = snapshot
    close = s["close"]
    features = {
        "ret_1d": math.tanh(s["change_pct"] / 0.02),
        "ret_5d": math.tanh(s.get("return_5d", 0.0) / 0.05),
        "ret_20d": math.tanh(s["return_20d"] / 0.10),
        "rsi": (s["rsi14"] - 50.0) / 50.0,
        "dist_sma20": math.tanh((close / s["sma20"] - 1.0) / 0.05),
        "dist_sma50": math.tanh((close / s["sma50"] - 1.0) / 0.10),
        "atr": math.tanh(s["atr_pct"] / HIGH_VOLATILITY_ATR_PCT),
        "volume_z": math.tanh(s.get("volume_z20", 0.0) / 2.0),
        "bb_pband": min(1.5, max(-0.5, s["bb_pband"])) - 0.5,
        "macd_hist": math.tanh(s["macd_hist"] / close / 0.005),
        "adx": min(1.0, s["adx14"] / 50.0),
        "stoch": (s["stoch_k"] - 50.0) / 50.0,
        "trend_flag": 0.5 if s["sma20"] > s["sma50"] else -0.5,
        "high_vol_flag": 0.5 if s["atr_pct"] > HIGH_VOLATILITY_ATR_PCT else 0.0,
    }
    return {k: round(float(features[k]), 6) for k in FEATURES}


def market_condition(snapshot: dict) -> str:
    """A short regime label: trend and volatility."""
    trend = "uptrend" if snapshot["sma20"] > snapshot["sma50"] else "downtrend"
    vol = "high-vol" if snapshot["atr_pct"] > HIGH_VOLATILITY_ATR_PCT else "calm"
    return f"{trend}/{vol}"


def as_vector(features: dict[str, float]) -> list[float]:
    return [float(features[k]) for k in FEATURES]
