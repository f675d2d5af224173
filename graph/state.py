"""Graph state. Plain JSON-able dicts inside, so checkpoints and Studio show them as-is.

Keys written by parallel branches (the per-candidate fan-out) have reducers; the cycle's
first node resets them with ``Overwrite`` because one thread holds a portfolio's cycles.
"""

import operator
from typing import Annotated, Any, TypedDict


def merge_dicts(left: dict | None, right: dict | None) -> dict:
    return {**(left or {}), **(right or {})}


class CycleInput(TypedDict, total=False):
    portfolio_id: str
    as_of: str | None  # YYYY-MM-DD; None = the day after the last completed cycle


class CycleState(TypedDict, total=False):
    portfolio_id: str
    as_of: str | None
    cycle_id: str
    data_source: str
    candidates: list[str]
    scores: dict[str, float]
    snapshots: dict[str, dict]
    data_errors: list[dict]
    data_notes: list[dict]  # not errors: symbols with too little history yet (tools.error_handler)
    model_status: dict[str, Any]
    weights: dict[str, float]  # vote weights used this cycle (learned, or equal when frozen)
    learning: dict[str, Any]  # what the LearningAgent did this cycle
    memories: dict[str, dict]  # per candidate: similar past situations and lessons
    profiles: dict[str, dict]  # per agent: the profile version in force
    agent_models: dict[str, list[str]]  # per agent: model chain this cycle
    improvements: list[dict]  # AgentImprover's parameter changes after this cycle
    alt_data: dict[str, dict]  # per candidate: news, sentiment, insider, analysts, forex
    market_context: dict[str, Any]  # index proxy, realized volatility, crypto; unavailable endpoints
    macro: dict | None  # MacroAgent's regime view
    rl_multiplier: float  # the RL controller's entry size multiplier, clipped (1.0 when off)
    attempts: Annotated[dict[str, int], merge_dicts]  # cycle-level agents: next model index
    llm_calls: Annotated[int, operator.add]  # cycle-level agents' model calls
    portfolio_before: dict[str, Any]
    protections: dict[str, Any]  # drawdown halt, trading and market breakers (tools/trading/protections.py)
    plans: dict[str, dict]  # per held symbol: its plan and days in trade (nodes/trading_plans.py)
    exits: list[dict]  # the broker's plan exits this cycle (stop, trailing, target, time)
    # written by the parallel per-candidate branches
    decisions: Annotated[list[dict], operator.add]
    agent_messages: Annotated[list[dict], operator.add]
    errors: Annotated[list[dict], operator.add]
    # execution and accounting
    orders: list[dict]
    fills: list[dict]
    portfolio_after: dict[str, Any]
    reward: float


class CandidateState(TypedDict, total=False):
    """One candidate symbol flowing through analysts, consensus and peer review."""

    portfolio_id: str
    as_of: str
    cycle_id: str
    symbol: str
    snapshot: dict[str, Any]
    portfolio: dict[str, Any]  # valuation as of the decision day, plus peak equity
    models: dict[str, list[str]]  # per agent: usable model chain this cycle (may be empty)
    timeouts: dict[str, float]  # per agent: model timeout in seconds
    thresholds: dict[str, float]  # per agent: confidence below this is no vote
    weights: dict[str, float]  # vote weights, fixed for the cycle
    memory: dict[str, Any]  # similar past situations for this symbol
    alt: dict[str, Any]  # this symbol's alternative data (may be empty)
    regime: dict[str, Any]  # MacroAgent's regime and the position-cap scale it implies
    rl_multiplier: float  # scales the requested size of entries and adds (nodes/rl_controller.py)
    sentiment: dict | None
    forex: dict | None
    attempts: Annotated[dict[str, int], merge_dicts]  # per agent: next model index
    market: dict | None
    strategy: dict | None
    consensus: dict | None
    risk: dict | None
    audit: dict | None
    history: dict | None
    review: dict | None
    revision: int
    objections: list[str]
    # action chains (graph/chains.py, nodes/exit_review.py): the chain this symbol runs
    chain: dict[str, Any]  # name, held, steps, consensus model, threshold
    coherence: dict | None  # strategist vs consensus side (nodes/strategy_agent.coherence)
    reconsider: dict | None  # set when the strategist is asked again for the consensus side
    position_risk: dict | None  # held symbols: the position's risk flags
    exit_review: dict | None  # held symbols: HOLD, REDUCE or EXIT with reasons
    llm_calls: Annotated[int, operator.add]
    decisions: Annotated[list[dict], operator.add]
    agent_messages: Annotated[list[dict], operator.add]
    errors: Annotated[list[dict], operator.add]


class CandidateOutput(TypedDict, total=False):
    """What a candidate branch hands back to the cycle (everything else stays inside)."""

    decisions: Annotated[list[dict], operator.add]
    agent_messages: Annotated[list[dict], operator.add]
    errors: Annotated[list[dict], operator.add]
