"""AgentImprover: after each cycle, adjusts agent profiles from their track record.

Rules (each change is a new profile version plus a ``parameter_changes`` row, and takes
effect in the next cycle; one change at a time: none while the agent has an open,
unevaluated change, and at most one per agent per window):

- A threshold change is proposed on significant evidence: when the agent's calls since its
  last change are significantly worse than the base rate (:func:`tools.learning.gate.worse_than_base`:
  one call per week, at least ``gate_min_blocks`` weeks, one-sided binomial p < ``gate_alpha``),
  the candidate is its confidence threshold raised by 10%, up to ``max_confidence_threshold``.
  Below its threshold an agent's vote counts as no vote (MarketAgent, StrategyAgent).
- It is ADOPTED only when a paired replay favours it: the decision simulator
  (:mod:`tools.learning.simulator`) replays the recorded past days (up to ``REPLAY_DAYS``) of
  this portfolio's ledger with the current value and with the candidate, same costs and
  limits; the candidate's mean daily return difference must be > 0 and so must its
  one-sided 95% block-bootstrap lower bound (:func:`tools.learning.sim_stats.paired_verdict`),
  over at least ``max(MIN_REPLAY_DAYS, 5 * gate_min_blocks)`` days. The replay's figures go
  into the change's reason and the agent's message; a proposal not adopted is a message only.
  A threshold the simulator cannot re-decide (RiskAgent's, which acts in the peer review) is
  never adopted.
- ``timeout_limit`` or more timeouts of one model for an agent in the window move that
  model to the end of the agent's chain; if it is already last (or alone), the agent's
  timeout is halved (not below 10 s).
- A threshold change is judged once the same minimum of days has passed since it: a paired
  replay of those days with the old value against the new one; when it favours the old
  value, the change is rolled back (another change, with the replay in its reason).

Off with ``learning`` or ``learn_improver`` off.
"""

from __future__ import annotations

import pandas as pd
from langgraph.runtime import Runtime

from graph.context import VoltContext
from graph.state import CycleState
from memory.learning_store import IMPROVABLE_AGENTS, LearningStore
from memory.message_log import MessageLog, MessageType, message
from memory.replay_source import read_history
from nodes.learning_agent import default_profiles
from tools.data_source import market_dataset
from tools.learning.gate import base_up_rate, worse_than_base
from tools.learning.sim_history import ReplayHistory
from tools.learning.sim_stats import PairedVerdict, paired_verdict
from tools.learning.sim_variants import VOTERS, Variant
from tools.learning.simulator import DecisionSimulator, SimSettings

THRESHOLD_AGENTS = ("market_agent", "strategy_agent", "risk_agent")
MIN_TIMEOUT_S = 10.0
EVIDENCE_HISTORY = 2000  # newest resolved calls read for the test and its base rate
MIN_REPLAY_DAYS = 20  # trading days a paired replay needs at the least
REPLAY_DAYS = 250  # the newest recorded days replayed (about a year)


def _accuracy(rows: list[dict]) -> float:
    return sum(r["hit"] for r in rows) / len(rows)


def min_replay_days(settings) -> int:
    return max(MIN_REPLAY_DAYS, 5 * settings.gate_min_blocks)


class PairedReplay:
    """Paired replays of this portfolio's recorded days, current value against candidate.
    The ledger is read once, on first use (most cycles propose nothing)."""

    def __init__(self, settings, portfolio: str):
        self.settings, self.portfolio, self._sim = settings, portfolio, None

    def _simulator(self) -> DecisionSimulator:
        if self._sim is None:
            try:
                history = read_history(self.settings.ledger_path, self.portfolio)
            except KeyError:  # no cycle recorded yet: nothing to replay
                history = ReplayHistory(self.portfolio, self.settings.starting_cash, [])
            self._sim = DecisionSimulator(history, market_dataset(self.settings), SimSettings.from_settings(self.settings))
        return self._sim

    def compare(self, agent: str, candidate: float, current: float, *, since: str = "", label: str) -> PairedVerdict:
        """Candidate threshold vs current over the recorded days on or after ``since``."""
        need = min_replay_days(self.settings)
        if agent not in VOTERS:
            return PairedVerdict(False, 0, None, None, 0.95, f"paired replay ({label}): {agent}'s threshold "
                                 "acts in the peer review, which the simulator cannot re-decide")
        sim = self._simulator()
        days = sim.days
        start = next((i for i, d in enumerate(days) if d >= since), len(days))
        start = max(start, len(days) - REPLAY_DAYS)
        if len(days) - start < need:
            return PairedVerdict(False, len(days) - start, None, None, 0.95,
                                 f"paired replay ({label}): {len(days) - start} recorded days, fewer than the {need} needed")
        cand = sim.run(variant=Variant(thresholds={agent: candidate}), start=start)
        base = sim.run(variant=Variant(thresholds={agent: current}), start=start)
        verdict = paired_verdict(cand.daily_returns, base.daily_returns, min_days=need, label=label)
        return PairedVerdict(verdict.favoured, verdict.n, verdict.mean, verdict.low, verdict.level,
                             f"{verdict.reason}; equity {cand.equity[-1]:.2f} vs {base.equity[-1]:.2f} "
                             f"({cand.dates[0]}..{cand.dates[-1]})")


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

    replay = PairedReplay(settings, portfolio)
    proposals: list[dict] = []  # threshold proposals the replay did not favour (messages only)

    def change(agent: str, target: str, new, reason: str, accuracy_before: float | None,
               verdict: PairedVerdict | None = None) -> None:
        profile = profiles[agent]
        old = getattr(profile, target)
        profiles[agent] = store.change_parameter(portfolio, profile, target=target, old=old, new=new, reason=reason,
                                                 as_of=day, accuracy_before=accuracy_before)
        made.append({"agent": agent, "target": target, "old": old, "new": new, "reason": reason,
                     "profile_version": profiles[agent].version,
                     **({"replay": verdict.as_dict()} if verdict is not None else {})})

    # 1. judge earlier threshold changes: a paired replay of the days since, old vs new value
    calendar_days = [f"{d:%Y-%m-%d}" for d in calendar[: idx + 1]]
    for ch in store.parameter_changes(portfolio, open_only=True):
        if ch["target"] != "confidence_threshold":
            store.close_change(ch["change_id"], rolled_back=False)
            continue
        if sum(1 for d in calendar_days if d >= ch["as_of"]) < min_replay_days(settings):
            continue
        old_value, new_value = float(ch["old_value"]), float(ch["new_value"])
        verdict = replay.compare(ch["agent"], old_value, new_value, since=ch["as_of"],
                                 label=f"old {old_value:g} vs new {new_value:g}")
        if verdict.n < min_replay_days(settings) and ch["agent"] in VOTERS:
            continue  # the days since are not all recorded yet
        if verdict.favoured:
            change(ch["agent"], ch["target"], old_value,
                   f"rollback of change #{ch['change_id']}: {verdict.reason}", None, verdict)
        store.close_change(ch["change_id"], rolled_back=verdict.favoured)

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
            verdict = replay.compare(agent, new, old, label=f"threshold {new:g} vs {old:g}")
            if verdict.favoured:
                change(agent, "confidence_threshold", new, f"{evidence.reason}; {verdict.reason}", _accuracy(recent),
                       verdict)
            else:
                proposals.append({"agent": agent, "target": "confidence_threshold", "old": old, "new": new,
                                  "adopted": False, "reason": f"{evidence.reason}; not adopted: {verdict.reason}",
                                  "replay": verdict.as_dict()})

    msgs = [message("agent_improver", m["agent"], MessageType.STATUS_UPDATE, {"parameter_change": m}) for m in made]
    msgs += [message("agent_improver", p["agent"], MessageType.STATUS_UPDATE, {"parameter_proposal": p})
             for p in proposals]
    for i, m in enumerate(msgs):  # stable ids: a resumed cycle stores them once
        m["message_id"] = f"{state['cycle_id']}:improver:{i}"
    MessageLog(settings.ledger_path).write(state["cycle_id"], msgs)
    return {"improvements": made, "agent_messages": msgs}
