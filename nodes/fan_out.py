"""Routing after the cycle-level agents: one ``Send`` per candidate (parallel branches)."""

from __future__ import annotations

from langgraph.types import Send

from graph.state import CycleState
from nodes.macro_agent import macro_agent


def candidate_payload(state: CycleState, symbol: str) -> dict:
    macro = state.get("macro") or {}
    return {
        "portfolio_id": state["portfolio_id"],
        "as_of": state["as_of"],
        "cycle_id": state["cycle_id"],
        "symbol": symbol,
        "snapshot": state["snapshots"][symbol],
        "portfolio": state["portfolio_before"],
        "models": state["agent_models"],
        "timeouts": {a: p["timeout_s"] for a, p in state["profiles"].items()},
        "thresholds": {a: p["confidence_threshold"] for a, p in state["profiles"].items()},
        "weights": state["weights"],
        "memory": state["memories"][symbol],
        "alt": (state.get("alt_data") or {}).get(symbol, {}),
        "regime": {"regime": (macro.get("output") or {}).get("regime"), "prior_regime": macro.get("prior_regime"),
                   "position_scale": macro.get("position_scale", 1.0)},
        "attempts": {},
        "revision": 0,
        "objections": [],
        "llm_calls": 0,
    }


def route_after_macro(state: CycleState) -> list[Send] | str:
    """Retry MacroAgent with the next model, then fan out (or go straight to execution)."""
    if macro_agent.route(state) == "retry":
        return "macro_agent"
    if not state["candidates"]:
        return "execution_agent"
    return [Send("analyze_candidate", candidate_payload(state, s)) for s in state["candidates"]]
