"""Routing after the cycle-level agents: one ``Send`` per candidate (parallel branches).

Each candidate carries the action chain it runs (``config/chains.toml``, chosen by
:meth:`graph.chains.ChainSet.select`): a symbol the portfolio holds runs the exit-review
chain, a new one the entry chain, or the chain configured for this cycle's regime (e.g.
HIGH_VOLATILITY) when there is one.
"""

from __future__ import annotations

from langgraph.runtime import get_runtime
from langgraph.types import Send

from graph.chains import ChainSet, load_chains
from graph.context import VoltContext
from graph.state import CycleState
from memory.ledger import Ledger, order_id
from nodes.macro_agent import macro_agent


def held_symbols(state: CycleState, ledger: Ledger) -> set[str]:
    """Candidates the portfolio held before this cycle. A cycle restarted after a crash may find
    its own fill (order id ``portfolio:as_of:symbol``) already in the ledger: that quantity is
    this cycle's entry, not a holding, so the symbol runs the entry chain again (and the
    ledger returns the fill it already made instead of filling twice)."""
    positions = (state.get("portfolio_before") or {}).get("positions") or {}
    held = {s: float(positions[s].get("qty", 0.0)) for s in state["candidates"]
            if abs(float((positions.get(s) or {}).get("qty", 0.0))) > 1e-9}
    if not held:
        return set()
    # this cycle's fills are the newest (fill day F, or D live): one query, never per symbol
    own = {f["symbol"]: f for f in ledger.recent_fills(state["portfolio_id"], limit=3 * len(state["candidates"]) + 10)
           if f["order_id"] == order_id(state["portfolio_id"], state["as_of"], f["symbol"])}
    for symbol, f in own.items():
        if symbol in held:
            held[symbol] -= f["qty"] if f["side"] == "BUY" else -f["qty"]
    return {s for s, qty in held.items() if abs(qty) > 1e-9}


def candidate_payload(state: CycleState, symbol: str, chains: ChainSet | None = None,
                      held: bool = False) -> dict:
    """The candidate state for ``symbol``; without ``chains``, no chain (the subgraph's route
    then follows today's entry chain)."""
    macro = state.get("macro") or {}
    regime = (macro.get("output") or {}).get("regime")
    payload = {
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
        "regime": {"regime": regime, "prior_regime": macro.get("prior_regime"),
                   "position_scale": macro.get("position_scale", 1.0)},
        "rl_multiplier": state.get("rl_multiplier", 1.0),
        "attempts": {},
        "revision": 0,
        "objections": [],
        "llm_calls": 0,
    }
    if chains is not None:
        payload["chain"] = chains.select(held=held, regime=regime)
    return payload


def route_after_macro(state: CycleState) -> list[Send] | str:
    """Retry MacroAgent with the next model, then fan out (or go straight to execution)."""
    if macro_agent.route(state) == "retry":
        return "macro_agent"
    if not state["candidates"]:
        return "execution_agent"
    settings = get_runtime(VoltContext).context.settings
    chains = load_chains(settings.chains_file)  # cached; an edit applies from the next cycle
    held = held_symbols(state, Ledger(settings.ledger_path))
    return [Send("analyze_candidate", candidate_payload(state, s, chains, s in held)) for s in state["candidates"]]
