"""Alternatives the decision simulator replays (tools/learning/simulator.py), pure.

- :class:`Variant`: what differs from the recorded run. ``take``: recorded proposals the
  graph did not trade, as if taken (by result: HOLD, BLOCKED, REJECTED; optionally only some
  (day, symbol) pairs); ``thresholds``: a candidate confidence threshold per voting agent
  (AgentImprover's kind of change), each recorded consensus re-decided from the agents' raw
  calls and the recorded weights under the chain's consensus model
  (:mod:`tools.trading.consensus`).
- :func:`redecide`: one proposal's action under other thresholds.
- :func:`proposal_levels`: the stop and target of an order taken by the simulator, by the
  RiskAgent's rule (:func:`tools.trading.plans.plan_levels`: the strategist's own levels
  when it called that side, else 2 ATR / 3 ATR).

Assumptions, stated because a replay cannot ask the agents again: a proposal taken or
re-decided into a trade passes the peer review (its reviewers' answers to a trade they
never saw are unknown) but not the hard limits, which size it
(:func:`tools.risk_limits.size_order`) with the simulated account; it needs the strategist
to have called the same side (the graph's coherence rule). Re-deciding applies to entry
proposals (symbols not held); the exit reviews of held positions are replayed as recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tools.trading.consensus import CONSENSUS_MODELS
from tools.trading.plans import plan_levels

# voting agents whose threshold zeroes their vote in the consensus (nodes/consensus.py)
VOTERS = ("market_agent", "strategy_agent", "sentiment_agent", "forex_agent")


@dataclass(frozen=True)
class Variant:
    """An alternative to replay. Empty: no change (apart from the size multiplier)."""

    take: tuple[str, ...] = ()  # proposal results taken as if traded: "HOLD", "BLOCKED", "REJECTED"
    only: frozenset[tuple[str, str]] | None = None  # restrict ``take`` to these (day, symbol)
    thresholds: Mapping[str, float] = field(default_factory=dict)  # agent -> confidence threshold

    def changes_decisions(self) -> bool:
        return bool(self.take) or bool(self.thresholds)

    def takes(self, day: str, symbol: str, result: str) -> bool:
        return result in self.take and (self.only is None or (day, symbol) in self.only)


def redecide(proposal: Mapping, thresholds: Mapping[str, float], default_model: str,
             default_threshold: float) -> tuple[str, float] | None:
    """(action, score) of a recorded consensus with the voters' thresholds replaced by
    ``thresholds`` (agents not named keep their recorded threshold). The raw call of each
    voter that voted (``proposal["calls"]``: signed signal, conviction) is re-thresholded; the
    recorded weights and the chain's model and threshold decide. None when a voter's raw call
    is missing (the record cannot be re-decided)."""
    votes_in, calls = proposal.get("votes") or {}, proposal.get("calls") or {}
    votes, weights = {}, {}
    for agent, v in votes_in.items():
        call = calls.get(agent)
        if call is None:
            return None
        threshold = thresholds.get(agent, v.get("threshold", 0.0))
        votes[agent] = float(call["signal"]) if float(call["confidence"]) >= threshold else 0.0
        weights[agent] = float(v.get("weight", 1.0))
    model = proposal.get("model") or default_model
    threshold = proposal.get("threshold") or default_threshold
    return CONSENSUS_MODELS[model](votes, weights, threshold)


def strategist_side(proposal: Mapping) -> str | None:
    """The strategist's own action (BUY, SELL, HOLD) on this proposal, if recorded."""
    call = (proposal.get("calls") or {}).get("strategy_agent")
    return None if call is None else call.get("action")


def proposal_levels(proposal: Mapping, side: str, close: float, atr: float) -> tuple[float, float | None]:
    """Stop and target (USD per share of D) for an order on ``side``: the strategist's
    (``stop_loss``, ``exit``) when it called that side, else the ATR rule's."""
    stop, target, _ = plan_levels(side, strategist_side(proposal), proposal.get("stop_loss"), proposal.get("exit"),
                                  close, atr)
    return stop, target
