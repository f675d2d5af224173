"""The RL controller's observation: a few cycle-level numbers, the same live and in replay.

Pure functions. :func:`cycle_observation` is the one both paths call with the same inputs:
the portfolio as the graph values it before the cycle of D (at D's last close), the market
context of ``nodes.alt_data_ingestion.market_context`` at D, the previous completed cycle and
its mean calibrated signal; live from the cycle state and the ledger, in replay from the
decision simulator (``portfolio_before()``, ``previous_cycle()``) and the recorded
predictions. Fixed order, names and bounds (:data:`FEATURES`); every value is finite and
clipped to its bounds, so a bad input (NaN, a zero equity) never reaches a policy.

=================  ===========================================================  ===========
name               value                                                        bounds
=================  ===========================================================  ===========
drawdown           1 - equity / peak equity (fraction below the peak)           [0, 1]
gross_exposure     gross exposure / equity                                      [0, 2]
cash               cash / equity                                                [-1, 2]
market_vol         annualized 20-day realized volatility of the equal-weight    [0, 2]
                   index, as a fraction (0.25 = 25 %, the VIX stand-in)
market_trend       10 x (index / its 50-day mean - 1)                            [-1, 1]
mean_signal        the previous cycle's mean agent signal, calibrated when the   [-1, 1]
                   agents have a resolved history (2 P(up) - 1), else raw
recent_reward      10 x the previous cycle's return of equity (0.01 = 1 % -> 0.1) [-1, 1]
=================  ===========================================================  ===========
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping

import numpy as np

from tools.learning.calibration import prob_up

FEATURES: tuple[tuple[str, float, float], ...] = (
    ("drawdown", 0.0, 1.0),
    ("gross_exposure", 0.0, 2.0),
    ("cash", -1.0, 2.0),
    ("market_vol", 0.0, 2.0),
    ("market_trend", -1.0, 1.0),
    ("mean_signal", -1.0, 1.0),
    ("recent_reward", -1.0, 1.0),
)
FEATURE_NAMES: tuple[str, ...] = tuple(name for name, _, _ in FEATURES)
LOW = np.array([lo for _, lo, _ in FEATURES], dtype=np.float32)
HIGH = np.array([hi for _, _, hi in FEATURES], dtype=np.float32)


def _finite(value: object, default: float = 0.0) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


def observation(*, equity: float, peak_equity: float, gross_exposure: float, cash: float,
                market_context: Mapping | None, mean_signal: float, recent_return: float) -> dict[str, float]:
    """The features by name (see the module table), finite and clipped. Money in USD.

    ``market_context``: ``realized_vol_pct`` (annualized %) and ``index_vs_sma50`` (fraction);
    when it is missing or says ``available: False`` (too little history), both are 0.
    ``recent_return``: the previous cycle's equity return as a fraction (0 for the first)."""
    equity, peak = _finite(equity), _finite(peak_equity)
    ctx = market_context or {}
    usable = bool(ctx.get("available", True)) and "realized_vol_pct" in ctx
    raw = {
        "drawdown": 1.0 - equity / peak if peak > 0 and equity > 0 else (1.0 if peak > 0 else 0.0),
        "gross_exposure": _finite(gross_exposure) / equity if equity > 0 else 0.0,
        "cash": _finite(cash) / equity if equity > 0 else 0.0,
        "market_vol": _finite(ctx.get("realized_vol_pct")) / 100.0 if usable else 0.0,
        "market_trend": 10.0 * _finite(ctx.get("index_vs_sma50")) if usable else 0.0,
        "mean_signal": _finite(mean_signal),
        "recent_reward": 10.0 * _finite(recent_return),
    }
    return {name: float(min(hi, max(lo, _finite(raw[name])))) for name, lo, hi in FEATURES}


def previous_return(previous_cycle: Mapping | None) -> float:
    """The return of the previous cycle (a ledger ``cycles`` row: ``equity`` after it and its
    ``reward``, both USD) as a fraction of the equity before it; 0 for none or a zero base."""
    if previous_cycle is None:
        return 0.0
    equity, reward = _finite(previous_cycle.get("equity")), _finite(previous_cycle.get("reward"))
    base = equity - reward
    return reward / base if base > 0 else 0.0


def cycle_observation(*, portfolio_before: Mapping, market_context: Mapping | None,
                      previous_cycle: Mapping | None, previous_signal: float) -> dict[str, float]:
    """The observation of the cycle deciding on day D: the one function both the live node
    (``nodes.rl_controller``) and the training replay (``tools.learning.rl_env``) call, with
    the same inputs, so a policy is served exactly what it was trained on.

    - ``portfolio_before``: the portfolio as the graph values it before D's cycle
      (``prepare_cycle``'s ``portfolio_before``; the simulator's ``portfolio_before()``):
      ``equity``, ``cash``, ``gross_exposure`` in USD with held positions at D's last close,
      and ``peak_equity``, the drawdown halt's peak.
    - ``market_context``: ``nodes.alt_data_ingestion.market_context(dataset, D)`` (data up to
      D's close, nothing after).
    - ``previous_cycle``: the last completed cycle before D (``equity``, ``reward``; see
      :func:`previous_return`), None for the first.
    - ``previous_signal``: that cycle's mean calibrated signal (:func:`mean_calibrated_signal`
      of its predictions, calibrated from outcomes resolved before its day); 0 without."""
    return observation(equity=portfolio_before.get("equity", 0.0), peak_equity=portfolio_before.get("peak_equity", 0.0),
                       gross_exposure=portfolio_before.get("gross_exposure", 0.0),
                       cash=portfolio_before.get("cash", 0.0), market_context=market_context,
                       mean_signal=previous_signal, recent_return=previous_return(previous_cycle))


def as_vector(features: Mapping[str, float]) -> np.ndarray:
    """The features in :data:`FEATURE_NAMES` order as float32, clipped (a missing one is 0)."""
    vec = np.array([_finite(features.get(n)) for n in FEATURE_NAMES], dtype=np.float32)
    return np.clip(vec, LOW, HIGH)


def mean_calibrated_signal(rows: Iterable[Mapping], history: Iterable[Mapping], day: str) -> float:
    """Mean over ``rows`` (one cycle's predictions: ``agent``, ``signal``) of each call's
    calibrated direction ``2 P(up) - 1`` (:func:`tools.learning.calibration.prob_up`), from the
    agent's own ``history`` (``agent``, ``signal``, ``hit``, ``resolved_as_of``) resolved
    strictly before ``day`` (YYYY-MM-DD): point in time. 0 when there are no rows."""
    return signals_by_day([{**r, "as_of": day} for r in rows], history).get(day, 0.0)


def signals_by_day(rows: Iterable[Mapping], history: Iterable[Mapping]) -> dict[str, float]:
    """For every decision day D in ``rows`` (predictions with ``as_of``, ``agent``,
    ``signal``), the mean calibrated signal of D's cycle, each call calibrated from its agent's
    ``history`` resolved strictly before D (one pass over the history in date order)."""
    by_day: dict[str, list[Mapping]] = defaultdict(list)
    for r in rows:
        by_day[str(r["as_of"])].append(r)
    hist = sorted((h for h in history if h.get("resolved_as_of") is not None and h.get("hit") is not None),
                  key=lambda h: str(h["resolved_as_of"]))
    past: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    out, i = {}, 0
    for day in sorted(by_day):
        while i < len(hist) and str(hist[i]["resolved_as_of"]) < day:
            sig, hit = past[hist[i]["agent"]]
            sig.append(_finite(hist[i].get("signal")))
            hit.append(_finite(hist[i].get("hit")))
            i += 1
        values = [2.0 * prob_up(_finite(r.get("signal")), *past[r["agent"]]) - 1.0 for r in by_day[day]]
        out[day] = float(np.mean(values)) if values else 0.0
    return out
