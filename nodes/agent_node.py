"""The shared shape of every LLM agent node: model fallback over the chain, then the prior.

An :class:`LLMAgent` node makes ONE attempt per visit: it asks model number
``attempts[key]`` of the cycle's usable chain. On failure it records the error and bumps
the counter; the conditional edge from :meth:`LLMAgent.route` sends the graph back to the
same node for the next model. When the chain is exhausted (or empty), the node answers
with its deterministic quantitative prior, marked ``degraded``.

Production models (no injected factory) each have a circuit breaker (``memory.breakers``):
a model whose breaker is open is skipped at no cost, with no request and no timeout, and the
node moves on to the next model in the same visit; after the cool-down one call is the probe.
With several Ollama hosts the breaker is per (host, model): the call goes to the least busy
host whose breaker admits it (:func:`graph.models.hosts_for`), and a host that fails is
replaced by the next one for the same model in the same visit (only when every host has
failed or is skipped does the node fall back to the next model, then to the prior).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pandas as pd
from langgraph.runtime import Runtime
from pydantic import BaseModel

from graph.context import VoltContext
from graph.errors import ErrorCategory
from graph.models import breaker_target, hosts_for, in_flight, make_chat_model
from graph.settings import VoltSettings
from graph.state import CandidateState
from graph.tracing import agent_config
from memory.breakers import model_breaker
from memory.ledger import Ledger
from memory.message_log import MessageType, message
from memory.response_cache import with_response_cache
from nodes.llm_call import ModelAttemptError, call_structured
from prompts import load_prompt
from tools.data_source import market_dataset
from tools.indicator_tools import INDICATOR_TOOLS
from tools.portfolio_tools import PORTFOLIO_TOOLS
from tools.tool_view import ToolView

AGENT_TOOLS = [*INDICATOR_TOOLS, *PORTFOLIO_TOOLS]
log = logging.getLogger("volt.agents")

Evidence = Callable[[CandidateState, VoltSettings], dict[str, Any]]
Prior = Callable[[CandidateState, VoltSettings], BaseModel]
Shortcut = Callable[[CandidateState, VoltSettings], dict[str, Any] | None]
Finish = Callable[[CandidateState, VoltSettings, BaseModel], dict[str, Any]]


@lru_cache(maxsize=64)
def _cached_model(spec: str, host: str, timeout_s: float):
    return make_chat_model(spec, host=host, timeout_s=timeout_s)


def chat_model(spec: str, runtime: Runtime[VoltContext], timeout_s: float | None = None, host: str | None = None):
    """The (cached) chat model of ``spec`` on Ollama ``host`` (default: the least busy host
    serving it), behind the response cache when one is configured."""
    ctx = runtime.context
    if ctx.chat_model_factory is not None:
        return with_response_cache(ctx.chat_model_factory(spec), spec, ctx.settings)
    try:
        model = _cached_model(spec, host or hosts_for(ctx.settings, spec)[0],
                              timeout_s or ctx.settings.model_timeout_s)
    except Exception as exc:  # e.g. a GGUF file llama.cpp cannot load: a failed attempt, not a crash
        raise ModelAttemptError(ErrorCategory.MODEL, f"failed to load: {type(exc).__name__}: {str(exc)[:200]}", 0) from exc
    return with_response_cache(model, spec, ctx.settings)  # off unless settings.llm_cache is set


def tool_view(state: CandidateState, settings: VoltSettings) -> ToolView:
    return ToolView(
        dataset=market_dataset(settings),
        as_of=pd.Timestamp(state["as_of"]),
        ledger=Ledger(settings.ledger_path),
        portfolio=state["portfolio_id"],
        min_history=settings.min_history,
    )


@dataclass(frozen=True)
class LLMAgent:
    name: str  # node name, e.g. "market_agent"
    key: str  # state key the result goes to, e.g. "market"
    schema: type[BaseModel]
    evidence: Evidence
    prior: Prior
    to_agent: str
    message_type: MessageType
    shortcut: Shortcut | None = None  # a decision that needs no model (e.g. a hard block)
    finish: Finish | None = None  # extra fields derived from the final answer
    # A cycle-level agent (MacroAgent) reads the cycle state: no symbol, chains in "agent_models".
    cycle_level: bool = False

    def symbol_of(self, state) -> str:
        return "MARKET" if self.cycle_level else state["symbol"]

    def _result(self, state, settings, output: BaseModel, *, source: str, model: str | None, version: str) -> dict:
        result = {
            "agent": self.name,
            "symbol": self.symbol_of(state),
            "source": source,
            "model": model,
            "degraded": source == "prior",
            "prompt_version": version,
            "output": output.model_dump(mode="json"),
        }
        if self.finish is not None:
            result.update(self.finish(state, settings, output))
        return result

    def _done(self, state, result: dict, calls: int = 0) -> dict:
        msg = message(self.name, self.to_agent, self.message_type, {"symbol": self.symbol_of(state), **result})
        return {self.key: result, "llm_calls": calls, "agent_messages": [msg]}

    def __call__(self, state: CandidateState, runtime: Runtime[VoltContext]) -> dict:
        settings = runtime.context.settings
        if self.shortcut is not None and (early := self.shortcut(state, settings)) is not None:
            return self._done(state, early)
        prompt = load_prompt(self.name)
        prior = self.prior(state, settings)
        models = (state.get("agent_models" if self.cycle_level else "models") or {}).get(self.name, [])
        timeout_s = (state.get("timeouts") or {}).get(self.name)
        index = (state.get("attempts") or {}).get(self.key, 0)
        # The cycle deadline (``time.monotonic()`` seconds, when the runner puts one on the
        # context): no model call starts within a second of it, and none is allowed past it.
        deadline = getattr(runtime.context, "deadline", None)
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 1.0:
                index = len(models)  # out of time: the prior, at once
            else:
                timeout_s = min(timeout_s or settings.model_timeout_s, float(math.ceil(left)))
        # Injected models (tests, embedding callers) are not the operator's servers: no breakers.
        guarded = runtime.context.chat_model_factory is None
        breaker = host = None
        while index < len(models) and guarded:
            host, breaker = _admitted_host(settings, models[index])
            if breaker is not None:  # closed, or this call is the one probe after the cool-down
                break
            index = index + 1  # open on every host: skipped at no cost
        if index >= len(models):
            return self._done(state, self._result(state, settings, prior, source="prior", model=None, version=prompt.version))
        spec = models[index]
        evidence = {**self.evidence(state, settings), "quantitative_prior": prior.model_dump(mode="json")}
        tried, calls_before = [], 0
        while True:
            try:
                with in_flight(host or "-"):
                    answer, calls = self._ask(state, runtime, spec, host, timeout_s, prompt, evidence)
            except ModelAttemptError as exc:
                failure = exc
                if breaker is not None:
                    breaker.record(exc if exc.counts_against_model else None)
                if breaker is None or not exc.counts_against_model:
                    break
                # this host failed: the same model on the next host that admits it, if any
                tried.append(host)
                next_host, next_breaker = _admitted_host(settings, spec, exclude=tried)
                if next_breaker is None:
                    break
                calls_before += exc.calls
                log.warning("%s: model %s at %s failed (%s); retried at %s", self.name, spec, host, exc, next_host)
                host, breaker = next_host, next_breaker
                continue
            except BaseException:  # a bug or an interrupt, not the model's failure: free the probe lease
                if breaker is not None:
                    breaker.release()
                raise
            if breaker is not None:
                breaker.succeeded()
            return self._done(state, self._result(state, settings, answer, source="model", model=spec,
                                                  version=prompt.version), calls_before + calls)
        last = index + 1 >= len(models)
        error = {
            "agent": self.name,
            "symbol": self.symbol_of(state),
            "model": spec,
            "category": failure.category.value,
            "message": str(failure),
            "recovery": "quantitative prior" if last else f"fallback to {models[index + 1]}",
        }
        return {"attempts": {self.key: index + 1}, "llm_calls": calls_before + failure.calls, "errors": [error]}

    def _ask(self, state, runtime: Runtime[VoltContext], spec: str, host: str | None, timeout_s: float | None,
             prompt, evidence: dict) -> tuple[BaseModel, int]:
        """One model attempt (:func:`call_structured`) of ``spec`` on ``host``: (answer, calls)."""
        settings = runtime.context.settings
        return call_structured(
            chat_model(spec, runtime, timeout_s, host),
            system=prompt.text,
            evidence=evidence,
            schema=self.schema,
            tools=AGENT_TOOLS,
            tool_args={"view": tool_view(state, settings)},
            max_tool_rounds=settings.max_tool_rounds,
            context={"symbol": self.symbol_of(state)},
            run_config=agent_config(self.name, self.symbol_of(state), spec,
                                    portfolio=state.get("portfolio_id"), as_of=state.get("as_of")),
        )

    def route(self, state: CandidateState) -> str:
        """Conditional edge: ``retry`` this node with the next model, or ``done``."""
        return "done" if state.get(self.key) else "retry"


def _admitted_host(settings: VoltSettings, spec: str, exclude: list[str | None] = ()) -> tuple[str | None, object]:
    """(host, its admitted breaker) for one call of ``spec``: the best host of
    :func:`graph.models.hosts_for` (leaving out ``exclude``) whose (host, model) breaker admits
    the call; (None, None) when every one is open (or already tried)."""
    for host in hosts_for(settings, spec):
        if host in exclude:
            continue
        breaker = model_breaker(settings, breaker_target(settings, spec, host))
        if breaker.admit():
            return host, breaker
    return None, None
