"""Exit review: every held position, every cycle, answers HOLD, REDUCE or EXIT with reasons.

A held symbol runs the exit-review chain (``config/chains.toml``, ``when.held = true``):
analysts, consensus, then two deterministic steps here:

- ``position_risk``: the position's risk flags at the decision day's close (D's bar, nothing
  later): weight of equity against the (regime-scaled) position cap, the loss from average
  cost in ATRs, and whether the position's plan stop (``position["plan"]["stop"]``) is hit.
- ``exit_review``: the verdict. For a long (a short mirrors it):

  - EXIT when the consensus is SELL (and the strategist agrees, after being asked again if
    needed: see :func:`nodes.strategy_agent.coherence`; if it still disagrees the SELL
    consensus is noted, not followed), or the position is at least ``EXIT_LOSS_ATR`` ATRs
    under its average cost (a protection, whatever the strategist says). A plan stop hit at
    D's close is noted only: the plan's own exit sells on the fill day's bar;
  - REDUCE when the strategist says SELL (confidence >= ``STRATEGIST_REDUCE_CONFIDENCE``)
    without a SELL consensus, the market view is
    BEARISH with strength >= ``BEARISH_STRENGTH``, or the position is over its cap;
  - HOLD otherwise.

  EXIT sells the whole held quantity, REDUCE ``settings.reduce_fraction`` of it, at the
  decision day's close as the reference (the broker fills on the next bar). While not exiting,
  and only with ``settings.review_trail_atr`` > 0 (off by default: a trailing stop is optional),
  a trailing stop ``close - review_trail_atr * ATR`` is proposed in ``plan_update`` when it is
  above the current stop (or, with none, above the average cost); the ledger keeps a plan from
  ever loosening.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from graph.context import VoltContext
from graph.state import CandidateState
from memory.message_log import MessageType, message
from tools.trading.plans import review_qty

EXIT_LOSS_ATR = 3.0  # a loss this many ATRs from average cost exits (a stop when no plan has one)
BEARISH_STRENGTH = 0.5
STRATEGIST_REDUCE_CONFIDENCE = 0.5  # a weaker SELL from the strategist alone does not trim
TRAIL_ATR = 2.0
OVER_CAP_TOLERANCE = 1.1  # marks drift: reduce only past 110% of the cap


def plan_stop(position: dict) -> float | None:
    """The position's recorded stop (a plan's), if any: a top-level ``stop`` or ``plan.stop``."""
    stop = position.get("stop", (position.get("plan") or {}).get("stop"))
    return float(stop) if isinstance(stop, int | float) and stop > 0 else None


def assess_position(position: dict, snapshot: dict, equity: float, cap_pct: float) -> dict:
    """Risk flags of one held position at the snapshot's close (pure; units: USD, fractions)."""
    qty, close = float(position["qty"]), float(snapshot["close"])
    sign = 1.0 if qty > 0 else -1.0
    avg = float(position.get("avg_cost") or close)
    atr = max(float(snapshot.get("atr14") or 0.0), 1e-9)
    weight = abs(qty) * close / equity if equity > 0 else 0.0
    stop = plan_stop(position)
    loss_atr = max(0.0, sign * (avg - close) / atr)
    return {
        "qty": qty, "avg_cost": avg, "close": close, "atr": atr,
        "unrealized_pct": round(sign * (close / avg - 1.0), 6) if avg > 0 else 0.0,
        "weight": round(weight, 6), "cap": round(cap_pct, 6),
        "over_cap": weight > cap_pct * OVER_CAP_TOLERANCE,
        "loss_atr": round(loss_atr, 4),
        "stop": stop, "stop_hit": stop is not None and sign * (close - stop) <= 0,
    }


def position_risk(state: CandidateState, runtime: Runtime[VoltContext]) -> dict:
    settings = runtime.context.settings
    p = state["portfolio"]
    position = p["positions"].get(state["symbol"]) or {"qty": 0.0}
    scale = (state.get("regime") or {}).get("position_scale", 1.0)
    flags = assess_position(position, state["snapshot"], p["equity"], settings.max_position_pct * min(1.0, scale))
    result = {"agent": "position_risk", "symbol": state["symbol"], "source": "rule", **flags}
    return {"position_risk": result}


def review_verdict(*, market: dict | None, strategy: dict, consensus: dict, coherence: dict | None,
                   risk: dict) -> tuple[str, list[str]]:
    """(HOLD | REDUCE | EXIT, reasons) for a held position (pure). ``market``/``strategy`` are
    the agents' outputs; the reasons that decided come first."""
    long = risk["qty"] > 0
    out_side = "SELL" if long else "BUY"
    against = "BEARISH" if long else "BULLISH"
    exits, reduces, notes = [], [], []
    if consensus["action"] == out_side:
        if (coherence or {}).get("status") == "disagree":  # no order against the strategist's call
            notes.append(f"consensus {out_side} not followed: {coherence.get('reason')}")
        else:
            exits.append(f"consensus {out_side} (score {consensus['score']:+.2f}, {consensus.get('model', 'weighted')})")
    if risk["stop_hit"]:  # the plan's own exit sells it on the fill day (nodes/execution_agent.py)
        notes.append(f"close {risk['close']:.2f} through the plan stop {risk['stop']:.2f}: the plan exits it")
    if risk["loss_atr"] >= EXIT_LOSS_ATR:
        exits.append(f"{risk['loss_atr']:.1f} ATR against the average cost {risk['avg_cost']:.2f}")
    if (strategy["action"] == out_side and consensus["action"] != out_side
            and strategy["confidence"] >= STRATEGIST_REDUCE_CONFIDENCE):
        reduces.append(f"strategist says {out_side} ({strategy['confidence']:.2f}) without a {out_side} consensus")
    if market and market["direction"] == against and market["strength"] >= BEARISH_STRENGTH:
        reduces.append(f"market view {against} at strength {market['strength']:.2f}")
    if risk["over_cap"]:
        reduces.append(f"position {risk['weight']:.1%} of equity over its {risk['cap']:.1%} cap")
    context = [f"consensus {consensus['action']} (score {consensus['score']:+.2f})",
               f"strategist {strategy['action']} ({strategy['confidence']:.2f})"]
    if market:
        context.append(f"market {market['direction']} ({market['strength']:.2f})")
    context.append(f"unrealized {risk['unrealized_pct']:+.1%}")
    if exits:
        return "EXIT", exits + reduces + notes
    if reduces:
        return "REDUCE", reduces + notes
    return "HOLD", ["no exit or reduce signal: " + ", ".join(context), *notes]


def exit_order(symbol: str, verdict: str, risk: dict, reduce_fraction: float) -> dict | None:
    """The order a verdict implies: all of the position for EXIT, ``reduce_fraction`` of it for
    REDUCE, None for HOLD. Quantities in shares of the decision day; price = its close."""
    qty = review_qty(verdict, risk["qty"], reduce_fraction)
    if qty is None:
        return None
    return {"symbol": symbol, "side": "SELL" if risk["qty"] > 0 else "BUY", "qty": qty,
            "kind": "exit_review" if verdict == "EXIT" else "reduce_review", "price": risk["close"],
            "notional": round(qty * risk["close"], 6), "capped_by": [], "blocked": None}


def trailing_stop(risk: dict, atrs: float = TRAIL_ATR) -> float | None:
    """A tighter stop to propose (long: ``close - atrs * ATR``), or None when it would not
    tighten the current stop (or, with none, not protect the average cost)."""
    sign = 1.0 if risk["qty"] > 0 else -1.0
    stop = risk["close"] - sign * atrs * risk["atr"]
    floor = risk["stop"] if risk["stop"] is not None else risk["avg_cost"]
    if stop <= 0 or sign * (stop - floor) <= 0:
        return None
    return round(stop, 6)


def exit_review(state: CandidateState, runtime: Runtime[VoltContext]) -> dict:
    settings = runtime.context.settings
    risk = state["position_risk"]
    verdict, reasons = review_verdict(
        market=(state.get("market") or {}).get("output"), strategy=state["strategy"]["output"],
        consensus=state["consensus"], coherence=state.get("coherence"), risk=risk)
    order = exit_order(state["symbol"], verdict, risk, settings.reduce_fraction)
    if order is None and verdict != "HOLD":  # nothing held after all (e.g. a zero position)
        verdict, reasons = "HOLD", ["nothing held to sell", *reasons]
    result = {"verdict": verdict, "reasons": reasons, "order": order}
    # an optional trailing stop from the review (VOLT_REVIEW_TRAIL_ATR; 0 = off, the default)
    trail = settings.review_trail_atr
    if verdict != "EXIT" and trail > 0 and (stop := trailing_stop(risk, trail)) is not None:
        result["plan_update"] = {"stop": stop}
    msg = message("exit_review", "execution_agent" if order else "broadcast", MessageType.RISK_APPROVAL,
                  {"symbol": state["symbol"], **result})
    return {"exit_review": result, "agent_messages": [msg]}


def exit_decision(decision: dict, state: CandidateState) -> dict:
    """Turn finalize's decision for a held symbol into the exit review's: APPROVED with the
    SELL (EXIT/REDUCE) or HOLD without an order; keeps every other key reports read."""
    review = state.get("exit_review")
    if review is None:  # the chain ended before its review (cannot pass validation): hold
        return {**decision, "outcome": "HOLD", "reason": "exit review did not run", "order": None}
    verdict = review["verdict"]
    decision = {**decision, "outcome": "APPROVED" if review["order"] else "HOLD",
                "reason": f"exit review {verdict}: {review['reasons'][0]}", "order": review["order"],
                "exit_review": {"verdict": verdict, "reasons": review["reasons"]}}
    if "plan_update" in review:
        decision["plan_update"] = review["plan_update"]
    return decision
