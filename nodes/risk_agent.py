"""RiskAgent: an LLM opinion on top of hard limits enforced in code.

The order is sized by :func:`tools.risk_limits.size_order` before any model is asked;
a hard block (no short selling, a protection, an incoherent plan, no room) ends the review
without a model. An order that opens or adds carries its plan (``order["plan"]``): the
StrategyAgent's stop and exit when it called the side traded, else 2 ATR / 3 ATR levels on
that side (never the other side's stop), the horizon ``max_holding_days`` and the trailing
stop ``trailing_stop_pct``; the broker enforces it (see nodes/execution_agent.py).
The model's ``max_position_pct`` is applied with ``min`` against the configured cap, so
it can only tighten. Prior: ``risk_score = 0.5 * min(1, ATR% / 5%) + 0.3 * position
use + 0.2 * exposure use`` (post-trade, as fractions of their caps), plus 0.1 when at least
three similar past setups moved against the trade on average; APPROVED below 0.7.
"""

from __future__ import annotations

from graph.schemas import RiskOpinion
from graph.settings import VoltSettings
from graph.state import CandidateState
from memory.message_log import MessageType
from nodes.agent_node import LLMAgent
from tools.learning.rl_policy import clip_multiplier
from tools.risk_limits import Limits, SizedOrder, size_order
from tools.trading import fills
from tools.trading.plans import plan_levels as levels_for

APPROVE_BELOW = 0.7
MEMORY_PENALTY = 0.1


def limits_from(settings: VoltSettings) -> Limits:
    return Limits(
        max_position_pct=settings.max_position_pct,
        max_gross_exposure_pct=settings.max_gross_exposure_pct,
        allow_short=settings.allow_short,
        max_drawdown_pct=settings.max_drawdown_pct,
        fee_rate=settings.fee_rate,
        risk_per_trade_pct=settings.risk_per_trade_pct,
        min_order_notional=settings.min_order_notional,
    )


def plan_levels(state: CandidateState, side: str) -> dict:
    """Stop and target for an order on ``side`` (:func:`tools.trading.plans.plan_levels`, the
    rule the decision simulator uses too): the StrategyAgent's when it called that side,
    else the ATR rule's on that side. ``source`` says which."""
    snap = state["snapshot"]
    strategy = (state.get("strategy") or {}).get("output") or {}
    stop, target, source = levels_for(side, strategy.get("action"), strategy.get("stop_loss"), strategy.get("exit"),
                                      float(snap["close"]), float(snap.get("atr14") or 0.0))
    return {"stop": stop, "target": target, "source": source}


def opens_position(state: CandidateState, side: str, settings: VoltSettings) -> bool:
    held = state["portfolio"]["positions"].get(state["symbol"], {}).get("qty", 0.0)
    return fills.opens_position(side, held, settings.allow_short)


def hard_sized_order(state: CandidateState, settings: VoltSettings, model_cap: float | None = None) -> SizedOrder:
    p, c, symbol = state["portfolio"], state["consensus"], state["symbol"]
    scale = (state.get("regime") or {}).get("position_scale", 1.0)
    if scale < 1.0:  # the market regime only tightens the cap
        regime_cap = settings.max_position_pct * scale
        model_cap = regime_cap if model_cap is None else min(model_cap, regime_cap)
    held = p["positions"].get(symbol, {}).get("qty", 0.0)
    opening = opens_position(state, c["action"], settings)
    levels = plan_levels(state, c["action"]) if opening else {}
    # the RL controller scales only entries and adds, never exits; size_order's limits clip the result
    multiplier = clip_multiplier(state.get("rl_multiplier", 1.0)) if opening else 1.0
    protections = p.get("protections") or {}
    return size_order(
        symbol=symbol,
        side=c["action"],
        size_pct=c["size_pct"] * multiplier,
        price=state["snapshot"]["close"],
        equity=p["equity"],
        cash=p["cash"],
        position_qty=held,
        gross_exposure=p["gross_exposure"],
        peak_equity=p["peak_equity"],
        limits=limits_from(settings),
        model_max_position_pct=model_cap,
        stop=levels.get("stop"),
        target=levels.get("target"),
        blocks_orders=protections.get("blocks_orders"),
        blocks_buys=protections.get("blocks_buys"),
    )


def with_plan(order: dict, state: CandidateState, settings: VoltSettings) -> dict:
    """The order dict with ``kind`` and, for an order that opens or adds, its ``plan``
    (the thesis is added when the decision is final, nodes/decision.py)."""
    side = order["side"]
    if not opens_position(state, side, settings):
        return {**order, "kind": "exit_review"}
    levels = plan_levels(state, side)
    plan = {"direction": 1 if side == "BUY" else -1, "entry": order["price"],
            "stop": round(levels["stop"], 6), "target": None if levels["target"] is None else round(float(levels["target"]), 6),
            "levels_from": levels["source"], "horizon_days": settings.max_holding_days,
            "trailing_pct": settings.trailing_stop_pct or None}
    return {**order, "kind": "entry", "plan": plan}


def _blocked(state: CandidateState, settings: VoltSettings) -> dict | None:
    order = hard_sized_order(state, settings)
    if order.blocked is None:
        return None
    opinion = RiskOpinion(symbol=state["symbol"], verdict="REJECTED", risk_score=1.0, reasons=[order.blocked])
    return {"agent": "risk_agent", "symbol": state["symbol"], "source": "limits", "model": None,
            "degraded": False, "prompt_version": None, "output": opinion.model_dump(mode="json"),
            "order": order.as_dict(), "blocked": True}


def risk_prior(state: CandidateState, settings: VoltSettings) -> RiskOpinion:
    order = hard_sized_order(state, settings)
    p, s = state["portfolio"], state["snapshot"]
    equity = max(p["equity"], 1e-9)
    held_value = p["positions"].get(state["symbol"], {}).get("market_value", 0.0)
    sign = 1.0 if order.side == "BUY" else -1.0
    position_use = abs(held_value + sign * order.notional) / (settings.max_position_pct * equity)
    exposure_use = (p["gross_exposure"] + sign * order.notional) / (settings.max_gross_exposure_pct * equity)
    vol = min(1.0, s["atr_pct"] / 0.05)
    memory = state.get("memory") or {}
    # similar past setups that moved against this trade add risk
    against = memory.get("n", 0) >= 3 and sign * memory["mean_return"] < 0
    score = min(1.0, max(0.0, 0.5 * vol + 0.3 * min(1.0, position_use) + 0.2 * min(1.0, max(0.0, exposure_use))
                           + (MEMORY_PENALTY if against else 0.0)))
    reasons = [f"ATR {s['atr_pct']:.2%} of price", f"position {position_use:.0%} of cap",
               f"exposure {max(0.0, exposure_use):.0%} of cap"] + [f"capped by {c}" for c in order.capped_by]
    if against:
        reasons.append(f"similar setups moved against it: {memory['summary']}")
    return RiskOpinion(symbol=state["symbol"], verdict="APPROVED" if score < APPROVE_BELOW else "REJECTED",
                       risk_score=round(score, 4), reasons=reasons)


def risk_evidence(state: CandidateState, settings: VoltSettings) -> dict:
    return {
        "symbol": state["symbol"],
        "as_of": state["as_of"],
        "proposal": state["consensus"],
        "sized_order": hard_sized_order(state, settings).as_dict(),
        "portfolio": state["portfolio"],
        "limits": limits_from(settings).__dict__,
        "market_regime": state.get("regime"),
        "indicators": {k: state["snapshot"][k] for k in ("close", "atr14", "atr_pct", "adx14", "rsi14", "bb_pband")},
        "similar_situations": {k: (state.get("memory") or {}).get(k) for k in ("summary", "mean_return", "lessons")},
    }


def _final_order(state: CandidateState, settings: VoltSettings, opinion: RiskOpinion) -> dict:
    order = hard_sized_order(state, settings, opinion.max_position_pct).as_dict()
    return {"order": with_plan(order, state, settings), "blocked": False}


risk_agent = LLMAgent(
    name="risk_agent",
    key="risk",
    schema=RiskOpinion,
    evidence=risk_evidence,
    prior=risk_prior,
    to_agent="peer_review",
    message_type=MessageType.RISK_APPROVAL,
    shortcut=_blocked,
    finish=_final_order,
)


def route_after_risk(state: CandidateState) -> str:
    return "blocked" if state["risk"].get("blocked") else "review"
