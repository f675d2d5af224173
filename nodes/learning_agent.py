"""LearningAgent: turns past outcomes into this cycle's weights, memory and agent profiles.

Runs after ``prepare_cycle`` fixed the day D, before any agent decides:

1. Outcome tracking: every pending prediction whose horizon has passed by D is resolved
   (point-in-time: only bars up to D are read) against its EXCESS return over the
   universe (:mod:`tools.outcomes`), and its trade P&L marked.
2. Skill weights (:func:`score_round`): each call's conviction is calibrated on the
   agent's own earlier resolved calls (:mod:`tools.learning.calibration`), scored by
   Brier, and the cycle's resolutions make ONE Hedge round per pool (voters, reviewers;
   :mod:`tools.learning.weights`); weights are persisted, versioned, and logged per day.
3. Situation memory: resolved situations go to Chroma; a confidently wrong call gets a
   lesson (LLM reflection, or a template when no model answers).
4. Recall: for each candidate, the k most similar past situations and their lessons.
5. Profiles: each agent's current model chain, threshold and timeout (AgentImprover's
   changes from earlier cycles take effect here).

With ``learning`` off the weights stay equal and frozen, nothing is recalled or changed;
predictions are still resolved so accuracy stays visible. The switches ``learn_weights``,
``learn_memory`` and ``learn_improver`` turn off one part each (3 = memory and recall,
5 = profiles).
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
from tools.learning.calibration import out_of_sample_probs
from tools.learning.weights import brier, hedge_round, learning_rate
from tools.outcomes import first_unresolvable_day, is_hit, resolve
from tools.situation_features import situation_features

# Hedge pools: the consensus voters, and the peer reviewers (their weights weigh the review
# votes, nodes/peer_review.py). "consensus" is scored for the report but weighs nothing.
VOTER_POOL = ("market_agent", "sentiment_agent", "forex_agent", "strategy_agent")
REVIEWER_POOL = ("risk_agent", "auditor_agent", "history_reviewer")
CALIBRATION_HISTORY = 500  # an agent's newest resolved calls its calibration is fitted on


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


def score_round(updates: list[dict], history: dict[str, list[dict]], weights: dict[str, float], *,
                rounds: int, delay: int, learn: bool = True) -> tuple[dict[str, float], dict[str, float]]:
    """Score one cycle's resolutions and make ONE Hedge round per pool.

    ``updates``: this cycle's resolved predictions (``agent``, ``as_of``, ``signal``,
    ``excess_return``); each gets ``hit``, ``prob_up`` (calibrated on ``history[agent]``,
    the agent's resolved calls with ``as_of``/``signal``/``hit``, only those dated strictly
    before it) and ``loss`` (Brier of ``prob_up`` against excess return > 0), in place.
    Returns (new weights, each agent's mean loss this round). ``delay``: bars until a
    prediction resolves; ``rounds``: T in ``eta = sqrt(8 ln N / ((delay + 1) T))``.
    With ``learn`` False the weights are returned unchanged."""
    by_agent: dict[str, list[dict]] = {}
    for u in updates:
        by_agent.setdefault(u["agent"], []).append(u)
    losses: dict[str, float] = {}
    for agent, rows in by_agent.items():
        past = history.get(agent, [])
        probs = out_of_sample_probs([u["signal"] for u in rows], [u["as_of"] for u in rows],
                                    [h["signal"] for h in past], [h["hit"] for h in past], [h["as_of"] for h in past])
        for u, p in zip(rows, probs, strict=True):
            u["hit"] = int(is_hit(u["signal"], u["excess_return"]))
            u["prob_up"] = p
            u["loss"] = brier(p, int(u["excess_return"] > 0))
        losses[agent] = sum(u["loss"] for u in rows) / len(rows)
    new = dict(weights)
    if learn:
        for pool in (VOTER_POOL, REVIEWER_POOL):
            present = [a for a in pool if a in weights]
            if not any(a in losses for a in present):
                continue  # no round for this pool: stored (or hand-set) weights stand as they are
            eta = learning_rate(len(present), rounds, delay)
            new.update(hedge_round({a: weights[a] for a in present},
                                   {a: losses[a] for a in present if a in losses}, eta))
    return new, losses


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
                        "realized_return": r.realized_return, "excess_return": r.excess_return,
                        "trade_pnl": trade_pnl, "lesson": None})

    # scores (calibrated, out of sample) and this cycle's ONE weight round
    learn_weights = settings.learning and settings.learn_weights
    history = {a: store.outcomes(portfolio, [a], limit=CALIBRATION_HISTORY)
               for a in {u["agent"] for u in updates}}
    weights = read_weights(settings.ledger_path, portfolio, list(ALL_PREDICTORS))
    weights, round_losses = score_round(updates, history, weights, rounds=settings.weight_rounds,
                                        delay=settings.horizon_days, learn=learn_weights)

    # 2. lessons for confidently wrong strategy calls, then the situation memory
    #    (an upsert by prediction id: repeating it after a crash changes nothing)
    errors: list[dict] = []
    llm_calls = lessons = stored = 0
    memory = None
    memory_note = None
    if settings.learning and settings.learn_memory:
        # deferred: Chroma import is heavy
        from memory.situation_memory import MEMORY_AGENT, open_memory, situation_from_prediction

        # a damaged or missing memory is rebuilt from the learning store, with one warning line
        memory, memory_note = open_memory(settings.home, portfolio, store, settings.chroma_url)
        if memory_note:
            print(f"warning: {memory_note}", file=sys.stderr, flush=True)
        situations = []
        for u in updates:
            if u["agent"] != MEMORY_AGENT:
                continue
            x = u["excess_return"]  # wrong against the universe, as it was scored
            wrong_by = -x if u["signal"] > 0 else x if u["signal"] < 0 else 0.0
            if (u["confidence"] >= 0.5 and not u["hit"] and wrong_by >= settings.lesson_min_error
                    and lessons < settings.max_lessons_per_cycle):
                u["lesson"], _source, calls, errs = _reflect(u, u["realized_return"], state, runtime)
                llm_calls += calls
                errors += errs
                lessons += 1
            situations.append(situation_from_prediction(u))
        stored = memory.add(situations)

    # 3. the weight round, committed in ONE transaction with the resolutions so a resumed
    #    cycle never counts an outcome twice (resolved rows are no longer pending)
    with open_db(settings.ledger_path) as conn:
        conn.execute("BEGIN IMMEDIATE")
        store.resolve(updates, conn=conn)
        if learn_weights and updates:
            for agent in (*VOTER_POOL, *REVIEWER_POOL):
                if agent in weights:
                    write_weight(settings.ledger_path, portfolio, agent, round(weights[agent], 8), conn=conn)
            counts = {a: sum(1 for u in updates if u["agent"] == a) for a in weights}
            store.record_weight_history(portfolio, day, weights, counts, conn=conn)
        conn.execute("COMMIT")
    if not learn_weights:
        weights = {a: 1.0 for a in weights}  # frozen equal weights

    # 4. recall similar past situations for each candidate
    from memory.situation_memory import summarize

    symbols = state["candidates"]
    found = memory.similar_many([situation_features(state["snapshots"][s]) for s in symbols], before=day,
                                k=settings.memory_k, max_distance=settings.memory_max_distance) if memory else []
    memories = {s: summarize(near, settings.horizon_days)
                for s, near in zip(symbols, found or [[]] * len(symbols), strict=True)}

    # 5. agent profiles in force this cycle
    profiles = (store.profiles(portfolio, default_profiles(settings))
                if settings.learning and settings.learn_improver else default_profiles(settings))
    usable = state["model_status"]["usable"]
    agent_models = {a: [m for m in p.model_chain if m in usable] + [m for m in usable if m not in p.model_chain]
                    for a, p in profiles.items()}
    summary = {"resolved": len(updates), "round_losses": {a: round(v, 6) for a, v in round_losses.items()},
               "stored_situations": stored, "lessons": lessons, "llm_calls": llm_calls,
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
