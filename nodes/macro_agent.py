"""MacroAgent / GlobalMarketAnalyzer: the market regime and risk appetite, once per cycle.

Prior, with the seed's rules (section 5.2) and a realized-volatility stand-in for VIX
(annualized 20-day volatility of an equal-weight index of the data set's symbols); the
"risk-asset trend" is BTC's where crypto data exists, else the index's (vs its SMA50)::

    vol > 30                      HIGH_VOLATILITY
    vol < 15 and trend bullish    BULL_MARKET
    trend bearish                 BEAR_MARKET
    BTC dominance > 50            BTC_DOMINANCE
    otherwise                     SIDEWAYS

Risk appetite = clip(10 x index vs SMA50 - (vol - 20) / 20, -1, 1). The regime tightens
RiskAgent's position cap (:data:`REGIME_POSITION_SCALE`); the stricter of the model's and
the prior's regime applies, so a model can never loosen it. It is stored with every
prediction for the learning loop.
"""

from __future__ import annotations

from graph.schemas import MacroView
from graph.settings import VoltSettings
from graph.state import CycleState
from memory.message_log import MessageType
from nodes.agent_node import LLMAgent

REGIME_POSITION_SCALE = {"HIGH_VOLATILITY": 0.5, "BEAR_MARKET": 0.75, "BTC_DOMINANCE": 1.0,
                         "BULL_MARKET": 1.0, "SIDEWAYS": 1.0}
TREND_BAND = 0.005


def macro_prior(state: CycleState, settings: VoltSettings) -> MacroView:
    ctx = state.get("market_context") or {}
    if not ctx.get("available"):
        return MacroView(symbol="MARKET", regime="SIDEWAYS", risk_appetite=0.0, confidence=0.2,
                         rationale="not enough market history for a regime")
    vol, trend = ctx["realized_vol_pct"], ctx["index_vs_sma50"]
    crypto = ctx.get("crypto") or {}
    risk_trend = crypto.get("btc_trend_vs_sma50", trend)
    bullish, bearish = risk_trend > TREND_BAND, risk_trend < -TREND_BAND
    if vol > 30:
        regime = "HIGH_VOLATILITY"
    elif vol < 15 and bullish:
        regime = "BULL_MARKET"
    elif bearish:
        regime = "BEAR_MARKET"
    elif crypto.get("btc_dominance_pct", 0) > 50:
        regime = "BTC_DOMINANCE"
    else:
        regime = "SIDEWAYS"
    appetite = max(-1.0, min(1.0, 10 * trend - (vol - 20) / 20))
    return MacroView(symbol="MARKET", regime=regime, risk_appetite=round(appetite, 4), confidence=0.6,
                     rationale=f"realized vol {vol:.1f}% (VIX stand-in), index {trend:+.1%} vs SMA50"
                               + ("" if crypto else ", no crypto data: index trend as the risk-asset trend"))


def macro_evidence(state: CycleState, settings: VoltSettings) -> dict:
    return {"symbol": "MARKET", "as_of": state["as_of"], "market_context": state.get("market_context")}


def _finish(state: CycleState, settings: VoltSettings, view: MacroView) -> dict:
    prior = macro_prior(state, settings)
    scale = min(REGIME_POSITION_SCALE[view.regime], REGIME_POSITION_SCALE[prior.regime])
    return {"prior_regime": prior.regime, "position_scale": scale}


macro_agent = LLMAgent(
    name="macro_agent", key="macro", schema=MacroView, evidence=macro_evidence, prior=macro_prior,
    to_agent="risk_agent", message_type=MessageType.MARKET_VIEW, finish=_finish, cycle_level=True,
)
