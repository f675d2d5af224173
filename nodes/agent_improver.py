"""AgentImprover: after each cycle, adjusts agent profiles from their track record.

Rules (each change is a new profile version plus a ``parameter_changes`` row, and takes
effect in the next cycle; one change at a time: none while the agent has an open,
unevaluated change, and at most one per agent per window):

- Only on significant evidence: when the agent's calls since its last change are
  significantly worse than the base rate (:func:`tools.learning.gate.worse_than_base`:
  one call per week, at least ``gate_min_blocks`` weeks, one-sided binomial p <
  ``gate_alpha``), its confidence threshold rises by 10%, up to ``max_confidence_threshold``. Below its threshold an agent's vote counts as no vote
  (MarketAgent, StrategyAgent); RiskAgent's approval needs ``risk_score < 1 - threshold``.
- ``timeout_limit`` or more timeouts of one model for an agent in the window move that
  model to the end of the agent's chain; if it is already last (or alone), the agent's
  timeout is halved (not below 10 s).
- A threshold change is judged once ``min_resolved`` predictions made after it have
  resolved: if accuracy fell, it is rolled back (another change, with the reason).

Off with ``learning`` or ``learn_improver`` off.
"""

from __future__ import annotations

import pandas as pd
from langgraph.runtime import Runtime

from graph.context import VoltContext
from graph.state import CycleState
from memory.learning_store import IMPROVABLE_AGENTS, LearningStore
from memory.message_log import MessageLog, MessageType, message
from nodes.learning_agent import default_profiles
from tools.data_source import market_dataset
from tools.learning.gate import base_up_rate, worse_than_base

THRESHOLD_AGENTS = ("market_agent", "strategy_agent", "risk_agent")
MIN_TIMEOUT_S = 10.0
EVIDENCE_HISTORY = 2000  # newest resolved calls read for the test and its base rate


def _accuracy(rows: list[dict]) -> float:
    return sum(r["hit"] for r in rows) / len(rows)


def agent_improver(state: CycleState, runtime: Runtime[VoltContext]) -> dict:
    settings = runtime.context.settings
    if not (settings.learning and settings.learn_improver):
        return {"improvements": []}
    portfolio, day = state["portfolio_id"], state["as_of"]
    store = LearningStore(settings.ledger_path)
    profiles = store.profiles(portfolio, default_profiles(settings))
    calendar = market_dataset(settings).calendar
    idx = calendar.searchsorted(pd.Timestamp(day))
    window_start = f"{calendar[max(0, idx - settings.accuracy_window)]:%Y-%m-%d}"
    made: list[dict] = []

    def change(agent: str, target: str, new, reason: str, accuracy_before: float | None) -> None:
        profile = profiles[agent]
        old = getattr(profile, target)
        profiles[agent] = store.change_parameter(portfolio, profile, target=target, old=old, new=new, reason=reason,
                                                 as_of=day, accuracy_before=accuracy_before)
        made.append({"agent": agent, "target": target, "old": old, "new": new, "reason": reason,
                     "profile_version": profiles[agent].version})

    # 1. judge earlier threshold changes; roll back the ones that made things worse
    for ch in store.parameter_changes(portfolio, open_only=True):
        after = store.resolved(portfolio, ch["agent"], limit=settings.accuracy_window, since=ch["as_of"])
        if len(after) < settings.min_resolved:
            continue
        acc_after = _accuracy(after)
        worse = acc_after < ch["accuracy_before"]
        if worse:
            change(ch["agent"], ch["target"], ch["old_value"],
                   f"rollback of change #{ch['change_id']}: accuracy {ch['accuracy_before']:.0%} -> {acc_after:.0%}", None)
        store.close_change(ch["change_id"], rolled_back=worse)

    all_changes = store.parameter_changes(portfolio)
    recent_changes = {c["agent"] for c in all_changes if c["as_of"] >= window_start}
    open_changes = {c["agent"] for c in all_changes if not c["evaluated"]}
    last_change = {c["agent"]: c["as_of"] for c in all_changes}
    outcomes = [r for r in store.outcomes(portfolio, limit=EVIDENCE_HISTORY) if (r["resolved_as_of"] or "") <= day]
    base_up = base_up_rate(outcomes)
    for agent in IMPROVABLE_AGENTS:
        if agent in recent_changes or agent in open_changes or any(m["agent"] == agent for m in made):
            continue
        # 2. too many timeouts: demote the model, or shorten the timeout
        slow = {m: n for m, n in store.timeouts(portfolio, agent, window_start).items() if n >= settings.timeout_limit}
        if slow:
            model, n = max(slow.items(), key=lambda kv: kv[1])
            chain = profiles[agent].model_chain
            if model in chain and len(chain) > 1 and chain[-1] != model:
                change(agent, "model_chain", [m for m in chain if m != model] + [model],
                       f"{n} timeouts of {model} since {window_start}: moved to the end of the chain", None)
            else:
                new_timeout = max(MIN_TIMEOUT_S, profiles[agent].timeout_s / 2)
                if new_timeout < profiles[agent].timeout_s:
                    change(agent, "timeout_s", new_timeout, f"{n} timeouts of {model} since {window_start}: timeout halved", None)
            continue
        # 3. low accuracy: demand more conviction before the agent's vote counts
        if agent not in THRESHOLD_AGENTS:
            continue
        since = last_change.get(agent, "")
        evidence = worse_than_base([r for r in outcomes if r["agent"] == agent and r["as_of"] >= since], base_up,
                                   min_blocks=settings.gate_min_blocks, alpha=settings.gate_alpha)
        recent = store.resolved(portfolio, agent, limit=settings.accuracy_window)
        old = profiles[agent].confidence_threshold
        new = round(min(settings.max_confidence_threshold, max(old, 0.05) * 1.1), 6)
        if evidence.significant and recent and new > old:
            change(agent, "confidence_threshold", new, evidence.reason, _accuracy(recent))

    msgs = [message("agent_improver", m["agent"], MessageType.STATUS_UPDATE, {"parameter_change": m}) for m in made]
    for i, m in enumerate(msgs):  # stable ids: a resumed cycle stores them once
        m["message_id"] = f"{state['cycle_id']}:improver:{i}"
    MessageLog(settings.ledger_path).write(state["cycle_id"], msgs)
    return {"improvements": made, "agent_messages": msgs}
