"""Graph wiring. ``graph`` (compiled without a checkpointer) is what LangGraph Studio loads
via ``langgraph.json``; ``graph.run`` compiles :func:`build_graph` with ``SqliteSaver``.

Cycle graph::

    START -> prepare_cycle -> learning_agent -> gather_alt_data -> rl_controller -> macro_agent(*)
          -(Send per candidate)-> analyze_candidate -> execution_agent -> portfolio_manager
          -> learning_recorder -> agent_improver -> END

Candidate subgraph (one per symbol, in parallel): its route follows the symbol's action
chain (``config/chains.toml``, validated by :mod:`graph.chains`, chosen per symbol in
``nodes.fan_out``): every step node is in the graph once and each routes to the next step of
the chain in the candidate's state. The default entry chain is today's graph::

    market_agent(*) -> sentiment_agent(*) -> forex_agent(*) -> strategy_agent(*)
    -> consensus -HOLD-> finalize
    consensus -strategist disagrees, first time-> reconsider -> strategy_agent
    consensus -strategist still disagrees-> finalize (HOLD, reason recorded)
    consensus -trade-> risk_agent(*) -blocked-> finalize
    risk_agent -> auditor_agent(*) -> history_reviewer -> peer_review
    peer_review -approved/caution-> finalize
    peer_review -rejected, first time-> request_correction -> strategy_agent
    peer_review -rejected again-> finalize

A held symbol runs the exit-review chain instead (by default)::

    market_agent(*) -> sentiment_agent(*) -> forex_agent(*) -> strategy_agent(*) -> consensus
    -> position_risk -> exit_review -> finalize (HOLD, or an approved REDUCE/EXIT SELL)

(*) an LLM node whose conditional self-edge retries with the next model in the chain and
ends with the quantitative prior. Sentiment and forex abstain without a model call when
they have no data (replay), and the consensus leaves them out.

Checkpoints: Studio's export checkpoints every candidate step (inspect any of them there).
``graph.run`` builds with ``checkpoint_candidates=False``: it checkpoints the cycle's steps
and each finished candidate, not the steps inside one, so a killed cycle re-analyses only
the candidates that were in flight. Per-step saves from 10-15 parallel branches through one
SQLite connection cost a third of a replayed cycle's time.
"""

from __future__ import annotations

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from graph.chains import STEPS, default_entry_chain
from graph.context import StudioContext, VoltContext
from graph.state import CandidateOutput, CandidateState, CycleInput, CycleState
from nodes.agent_improver import agent_improver
from nodes.alt_data_ingestion import gather_alt_data
from nodes.auditor_agent import auditor_agent
from nodes.consensus import consensus, route_after_consensus
from nodes.decision import finalize_decision
from nodes.execution_agent import execution_agent
from nodes.exit_review import exit_decision, exit_review, position_risk
from nodes.fan_out import route_after_macro
from nodes.forex_agent import forex_agent
from nodes.history_reviewer import history_reviewer
from nodes.learning_agent import learning_agent
from nodes.learning_recorder import learning_recorder
from nodes.macro_agent import macro_agent
from nodes.market_agent import market_agent
from nodes.peer_review import peer_review, request_correction, route_after_review
from nodes.portfolio_manager import portfolio_manager
from nodes.prepare_cycle import prepare_cycle
from nodes.risk_agent import risk_agent, route_after_risk
from nodes.rl_controller import rl_controller
from nodes.sentiment_agent import sentiment_agent
from nodes.strategy_agent import reconsider, strategy_agent

_DEFAULT_CHAIN = default_entry_chain()


_LLM_STEPS = (market_agent, sentiment_agent, forex_agent, strategy_agent, auditor_agent)
_TARGETS = [*STEPS, "reconsider", "request_correction", "finalize"]


def next_step(state: CandidateState, step: str) -> str:
    """The step after ``step`` in the candidate's chain, or ``finalize`` after the last."""
    steps = (state.get("chain") or _DEFAULT_CHAIN)["steps"]
    i = steps.index(step)
    return steps[i + 1] if i + 1 < len(steps) else "finalize"


def _first_step(state: CandidateState) -> str:
    return (state.get("chain") or _DEFAULT_CHAIN)["steps"][0]


def _after_agent(agent):
    def route(state: CandidateState) -> str:
        return agent.name if agent.route(state) == "retry" else next_step(state, agent.name)

    route.__name__ = f"after_{agent.name}"
    return route


def _after_consensus(state: CandidateState) -> str:
    where = route_after_consensus(state)
    return {"reconsider": "reconsider", "hold": "finalize"}.get(where) or next_step(state, "consensus")


def _after_risk(state: CandidateState) -> str:
    if risk_agent.route(state) == "retry":
        return "risk_agent"
    return "finalize" if route_after_risk(state) == "blocked" else next_step(state, "risk_agent")


def finalize(state: CandidateState) -> dict:
    """finalize_decision's record, plus the chain's part: the exit review's verdict and order
    for a held symbol; a HOLD with the reason when the strategist disagrees with the side."""
    decision = finalize_decision(state)["decisions"][0]
    chain = state.get("chain") or _DEFAULT_CHAIN
    check = state.get("coherence") or {}
    decision = {**decision, "chain": chain["name"], "coherence": state.get("coherence")}
    if chain.get("held"):
        decision = exit_decision(decision, state)
    elif check.get("status") == "disagree":
        decision.update(outcome="HOLD", reason=check["reason"], order=None)
    elif (order := decision.get("order")) and order["side"] != ((state.get("strategy") or {}).get("output") or {}).get("action"):
        # never an entry order against the strategist's own call (coherence guards this earlier)
        said = ((state.get("strategy") or {}).get("output") or {}).get("action")
        decision.update(outcome="HOLD", reason=f"order {order['side']} against the strategist's {said}", order=None)
    return {"decisions": [decision]}


def build_candidate_graph() -> StateGraph:
    g = StateGraph(CandidateState, context_schema=VoltContext, output_schema=CandidateOutput)
    for agent in (*_LLM_STEPS, risk_agent):
        g.add_node(agent.name, agent)
    g.add_node("consensus", consensus)
    g.add_node("reconsider", reconsider)
    g.add_node("history_reviewer", history_reviewer)
    g.add_node("peer_review", peer_review)
    g.add_node("request_correction", request_correction)
    g.add_node("position_risk", position_risk)
    g.add_node("exit_review", exit_review)
    g.add_node("finalize", finalize)

    g.add_conditional_edges(START, _first_step, _TARGETS)
    for agent in _LLM_STEPS:
        g.add_conditional_edges(agent.name, _after_agent(agent), _TARGETS)
    g.add_conditional_edges("consensus", _after_consensus, _TARGETS)
    g.add_edge("reconsider", "strategy_agent")
    g.add_conditional_edges("risk_agent", _after_risk, _TARGETS)
    g.add_conditional_edges("history_reviewer", lambda s: next_step(s, "history_reviewer"), _TARGETS)
    g.add_conditional_edges(
        "peer_review", route_after_review,
        {"approved": "finalize", "revise": "request_correction", "rejected": "finalize"},
    )
    g.add_edge("request_correction", "strategy_agent")
    g.add_conditional_edges("position_risk", lambda s: next_step(s, "position_risk"), _TARGETS)
    g.add_edge("exit_review", "finalize")
    g.add_edge("finalize", END)
    return g


def unsaved_candidate_node(subgraph: CompiledStateGraph):
    """The candidate subgraph as a node that runs without checkpoints.

    The subgraph runs as its own thread (``<cycle_id>:<symbol>``) with the parent's tracing
    callbacks, tags, metadata and recursion limit. Its own thread id is what keeps the
    parent's checkpoint settings out: under the parent's ``durability="sync"``, LangGraph 1.2
    fails a subgraph compiled with ``checkpointer=False`` (it waits for a save never made)."""

    def analyze_candidate(state: CandidateState, runtime: Runtime[VoltContext], config: RunnableConfig) -> dict:
        own: RunnableConfig = {key: config[key] for key in ("callbacks", "tags", "metadata", "recursion_limit")
                               if key in config}
        own["configurable"] = {"thread_id": f"{state['cycle_id']}:{state['symbol']}"}
        return subgraph.invoke(state, own, context=runtime.context)

    return analyze_candidate


def build_graph(*, checkpoint_candidates: bool = True) -> StateGraph:
    """The cycle graph; ``checkpoint_candidates=False`` for runs (see the module docstring)."""
    g = StateGraph(CycleState, context_schema=VoltContext, input_schema=CycleInput)
    g.add_node("prepare_cycle", prepare_cycle)
    g.add_node("learning_agent", learning_agent)
    g.add_node("gather_alt_data", gather_alt_data)
    g.add_node("rl_controller", rl_controller)
    # an LLMAgent's __call__ is annotated with CandidateState; this one reads the cycle state
    g.add_node("macro_agent", macro_agent, input_schema=CycleState)
    if checkpoint_candidates:
        g.add_node("analyze_candidate", build_candidate_graph().compile())
    else:
        subgraph = build_candidate_graph().compile(checkpointer=False, name="analyze_candidate")
        g.add_node("analyze_candidate", unsaved_candidate_node(subgraph), input_schema=CandidateState)
    g.add_node("execution_agent", execution_agent)
    g.add_node("portfolio_manager", portfolio_manager)
    g.add_node("learning_recorder", learning_recorder)
    g.add_node("agent_improver", agent_improver)
    g.add_edge(START, "prepare_cycle")
    g.add_edge("prepare_cycle", "learning_agent")
    g.add_edge("learning_agent", "gather_alt_data")
    g.add_edge("gather_alt_data", "rl_controller")
    g.add_edge("rl_controller", "macro_agent")
    g.add_conditional_edges("macro_agent", route_after_macro, ["macro_agent", "analyze_candidate", "execution_agent"])
    g.add_edge("analyze_candidate", "execution_agent")
    g.add_edge("execution_agent", "portfolio_manager")
    g.add_edge("portfolio_manager", "learning_recorder")
    g.add_edge("learning_recorder", "agent_improver")
    g.add_edge("agent_improver", END)
    return g


# For LangGraph Studio (`langgraph dev`): no checkpointer here, the server provides one. Its
# context defaults to Studio's own portfolio and home (graph.context.StudioContext), so a run
# with `{}` never trades the CLI's `main` portfolio in ./.volt.
_studio = build_graph()
_studio.context_schema = StudioContext
graph = _studio.compile(name="volt")
