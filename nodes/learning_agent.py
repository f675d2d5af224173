"""LearningAgent: turns past outcomes into this cycle's weights, memory and agent profiles.

Runs after ``prepare_cycle`` fixed the day D, before any agent decides:

1. Outcome tracking: every pending prediction whose horizon has passed by D is resolved
   (point-in-time: only bars up to D are read), scored, and its trade P&L marked.
2. Learned weights: each resolved prediction moves its agent's weight by
   multiplicative weights on the Brier score (:mod:`tools.outcomes`); weights are
   persisted, versioned, and logged per day.
3. Situation memory: resolved situations go to Chroma; a confidently wrong call gets a
   lesson (LLM reflection, or a template when no model answers).
4. Recall: for each candidate, the k most similar past situations and their lessons.
5. Profiles: each agent's current model chain, threshold and timeout (AgentImprover's
   changes from earlier cycles take effect here).

With ``learning`` off the weights stay equal and frozen, nothing is recalled or changed;
predictions are still resolved so accuracy stays visible.
"""

from __future__ import annotations

import sys

import pandas as pd
from langgraph.runtime import Runtime

from graph.context import VoltContext
from graph.schemas import Lesson
from graph.settings import VoltSettings
from graph.state import CycleState
from memory.db import open_db
from memory.learning_store import ALL_PREDICTORS, IMPROVABLE_AGENTS, AgentProfile, LearningStore
from memory.message_log import MessageType, message
from memory.weights import read_weights, write_weight
from nodes.agent_node import chat_model
from nodes.llm_call import ModelAttemptError, call_structured
from prompts import load_prompt
from tools.data_source import market_dataset
from tools.outcomes import brier_loss, first_unresolvable_day, is_hit, resolve, update_weight
from tools.situation_features import situation_features


def default_profiles(settings: VoltSettings) -> dict[str, AgentProfile]:
    return {a: AgentProfile(a, 0, list(settings.models), settings.confidence_threshold, settings.model_timeout_s)
            for a in IMPROVABLE_AGENTS}


def template_lesson(p: dict, realized: float, horizon: int) -> str:
    f = p["features"]
    trend = "uptrend" if f["trend_flag"] > 0 else "downtrend"
    rsi = 50 + 50 * f["rsi"]
    return (f"{p['action']} at confidence {p['confidence']:.2f} in a {trend} with RSI {rsi:.0f} was wrong: "
            f"{realized:+.1%} in {horizon} days. In similar setups wait for confirmation or size down.")[:240]


def _reflect(p: dict, realized: float, state: CycleState, runtime: Runtime[VoltContext]) -> tuple[str, str, int, list[dict]]:
    """(lesson, source, llm_calls, errors): the first usable model, else the template."""
    template = template_lesson(p, realized, p["horizon"])
    evidence = {"symbol": p["symbol"], "as_of": p["as_of"], "prediction": {k: p[k] for k in ("agent", "action", "confidence")},
                "situation_features": p["features"], "realized_return": round(realized, 6), "horizon_days": p["horizon"],
                "quantitative_prior": {"symbol": p["symbol"], "lesson": template}}
    calls, errors = 0, []
    for spec in state["model_status"]["usable"][:1]:
        try:
            answer, calls = call_structured(
                chat_model(spec, runtime), system=load_prompt("learning_agent").text, evidence=evidence, schema=Lesson,
                tools=[], tool_args={}, max_tool_rounds=0, context={"symbol": p["symbol"]},
            )
            return answer.lesson, f"model {spec}", calls, errors
        except ModelAttemptError as exc:
            calls = exc.calls
            errors.append({"agent": "learning_agent", "symbol": p["symbol"], "model": spec, "category": exc.category.value,
                           "message": str(exc), "recovery": "template lesson"})
    return template, "template", calls, errors


def learning_agent(state: CycleState, runtime: Runtime[VoltContext]) -> dict:
    settings = runtime.context.settings
    portfolio, day = state["portfolio_id"], state["as_of"]
    now = pd.Timestamp(day)
    store = LearningStore(settings.ledger_path)
    dataset = market_dataset(settings)

    # 1. outcome tracking
    updates: list[dict] = []
    for p in store.pending(portfolio, before=day, made_before=lambda h: first_unresolvable_day(dataset, now, h)):
        r = resolve(dataset, p["symbol"], p["as_of"], p["horizon"], now)
        if r is None:
            continue
        trade_pnl = p["filled_qty"] * (r.exit_price - p["fill_price"]) if p["filled_qty"] and p["fill_price"] else None
        updates.append({**p, "resolved_as_of": day, "entry_price": r.entry_price, "exit_price": r.exit_price,
                        "realized_return": r.realized_return, "hit": int(is_hit(p["signal"], r.realized_return)),
                        "loss": brier_loss(p["signal"], r.realized_return), "trade_pnl": trade_pnl, "lesson": None})

    # 2. lessons for confidently wrong strategy calls, then the situation memory
    #    (an upsert by prediction id: repeating it after a crash changes nothing)
    errors: list[dict] = []
    llm_calls = lessons = stored = 0
    memory = None
    memory_note = None
    if settings.learning:
        # deferred: Chroma import is heavy
        from memory.situation_memory import MEMORY_AGENT, open_memory, situation_from_prediction

        # a damaged or missing memory is rebuilt from the learning store, with one warning line
        memory, memory_note = open_memory(settings.home, portfolio, store)
        if memory_note:
            print(f"warning: {memory_note}", file=sys.stderr, flush=True)
        situations = []
        for u in updates:
            if u["agent"] != MEMORY_AGENT:
                continue
            wrong_by = -u["realized_return"] if u["signal"] > 0 else u["realized_return"] if u["signal"] < 0 else 0.0
            if (u["confidence"] >= 0.5 and not u["hit"] and wrong_by >= settings.lesson_min_error
                    and lessons < settings.max_lessons_per_cycle):
                u["lesson"], _source, calls, errs = _reflect(u, u["realized_return"], state, runtime)
                llm_calls += calls
                errors += errs
                lessons += 1
            situations.append(situation_from_prediction(u))
        stored = memory.add(situations)

    # 3. learned weights (multiplicative weights on the Brier loss), committed in ONE
    #    transaction with the resolutions so a resumed cycle never counts an outcome twice
    weights = read_weights(settings.ledger_path, portfolio, list(ALL_PREDICTORS))
    if settings.learning:
        for u in updates:
            weights[u["agent"]] = update_weight(weights[u["agent"]], u["loss"], eta=settings.weight_eta,
                                                floor=settings.weight_floor, cap=settings.weight_cap)
    with open_db(settings.ledger_path) as conn:
        conn.execute("BEGIN IMMEDIATE")
        store.resolve(updates, conn=conn)
        if settings.learning and updates:
            for agent in {u["agent"] for u in updates}:
                write_weight(settings.ledger_path, portfolio, agent, round(weights[agent], 8), conn=conn)
            counts = {a: sum(1 for u in updates if u["agent"] == a) for a in weights}
            store.record_weight_history(portfolio, day, weights, counts, conn=conn)
        conn.execute("COMMIT")
    if not settings.learning:
        weights = {a: 1.0 for a in weights}  # frozen equal weights

    # 4. recall similar past situations for each candidate
    from memory.situation_memory import summarize

    symbols = state["candidates"]
    found = memory.similar_many([situation_features(state["snapshots"][s]) for s in symbols], before=day,
                                k=settings.memory_k, max_distance=settings.memory_max_distance) if memory else []
    memories = {s: summarize(near, settings.horizon_days)
                for s, near in zip(symbols, found or [[]] * len(symbols), strict=True)}

    # 5. agent profiles in force this cycle
    profiles = (store.profiles(portfolio, default_profiles(settings)) if settings.learning
                else default_profiles(settings))
    usable = state["model_status"]["usable"]
    agent_models = {a: [m for m in p.model_chain if m in usable] + [m for m in usable if m not in p.model_chain]
                    for a, p in profiles.items()}
    summary = {"resolved": len(updates), "stored_situations": stored, "lessons": lessons, "llm_calls": llm_calls,
               "memory_size": memory.count() if memory else 0, "enabled": settings.learning,
               **({"memory_note": memory_note} if memory_note else {})}
    msg = message("learning_agent", "broadcast", MessageType.STATUS_UPDATE,
                  {"as_of": day, "weights": weights, **summary})
    return {
        "weights": weights,
        "learning": summary,
        "memories": memories,
        "profiles": {a: p.as_dict() for a, p in profiles.items()},
        "agent_models": agent_models,
        "errors": errors,
        "agent_messages": [msg],
    }
