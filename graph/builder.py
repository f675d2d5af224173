"""Graph wiring. ``graph`` (compiled without a checkpointer) is what LangGraph Studio loads
via ``langgraph.json``; ``graph.run`` compiles :func:`build_graph` with ``SqliteSaver``.

Cycle graph::

    START -> prepare_cycle -> learning_agent -> gather_alt_data -> macro_agent(*)
          -(Send per candidate)-> analyze_candidate -> execution_agent -> portfolio_manager
          -> learning_recorder -> agent_improver -> END

Candidate subgraph (one per symbol, in parallel)::

    market_agent(*) -> sentiment_agent(*) -> forex_agent(*) -> strategy_agent(*)
    -> consensus -HOLD-> finalize
    consensus -trade-> risk_agent(*) -blocked-> finalize
    risk_agent -> auditor_agent(*) -> history_reviewer -> peer_review
    peer_review -approved/caution-> finalize
    peer_review -rejected, first time-> request_correction -> strategy_agent
    peer_review -rejected again-> finalize

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

from graph.context import VoltContext
from graph.state import CandidateOutput, CandidateState, CycleInput, CycleState
from nodes.agent_improver import agent_improver
from nodes.alt_data_ingestion import gather_alt_data
from nodes.auditor_agent import auditor_agent
from nodes.consensus import consensus, route_after_consensus
from nodes.decision import finalize_decision
from nodes.execution_agent import execution_agent
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
from nodes.sentiment_agent import sentiment_agent
from nodes.strategy_agent import strategy_agent


def build_candidate_graph() -> StateGraph:
    g = StateGraph(CandidateState, context_schema=VoltContext, output_schema=CandidateOutput)
    for agent in (market_agent, sentiment_agent, forex_agent, strategy_agent, risk_agent, auditor_agent):
        g.add_node(agent.name, agent)
    g.add_node("consensus", consensus)
    g.add_node("history_reviewer", history_reviewer)
    g.add_node("peer_review", peer_review)
    g.add_node("request_correction", request_correction)
    g.add_node("finalize", finalize_decision)

    g.add_edge(START, "market_agent")
    g.add_conditional_edges("market_agent", market_agent.route, {"retry": "market_agent", "done": "sentiment_agent"})
    g.add_conditional_edges("sentiment_agent", sentiment_agent.route, {"retry": "sentiment_agent", "done": "forex_agent"})
    g.add_conditional_edges("forex_agent", forex_agent.route, {"retry": "forex_agent", "done": "strategy_agent"})
    g.add_conditional_edges("strategy_agent", strategy_agent.route, {"retry": "strategy_agent", "done": "consensus"})
    g.add_conditional_edges("consensus", route_after_consensus, {"hold": "finalize", "review": "risk_agent"})
    g.add_conditional_edges("risk_agent", _route_risk, {"retry": "risk_agent", "blocked": "finalize", "review": "auditor_agent"})
    g.add_conditional_edges("auditor_agent", auditor_agent.route, {"retry": "auditor_agent", "done": "history_reviewer"})
    g.add_edge("history_reviewer", "peer_review")
    g.add_conditional_edges(
        "peer_review", route_after_review,
        {"approved": "finalize", "revise": "request_correction", "rejected": "finalize"},
    )
    g.add_edge("request_correction", "strategy_agent")
    g.add_edge("finalize", END)
    return g


def _route_risk(state: CandidateState) -> str:
    return "retry" if risk_agent.route(state) == "retry" else route_after_risk(state)


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
    g.add_edge("gather_alt_data", "macro_agent")
    g.add_conditional_edges("macro_agent", route_after_macro, ["macro_agent", "analyze_candidate", "execution_agent"])
    g.add_edge("analyze_candidate", "execution_agent")
    g.add_edge("execution_agent", "portfolio_manager")
    g.add_edge("portfolio_manager", "learning_recorder")
    g.add_edge("learning_recorder", "agent_improver")
    g.add_edge("agent_improver", END)
    return g


# For LangGraph Studio (`langgraph dev`): no checkpointer here, the server provides one.
graph = build_graph().compile(name="volt")
