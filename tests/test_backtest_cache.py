"""The LLM response cache: what its key covers, and a re-run backtest that makes no model call."""

from __future__ import annotations

import threading

import pytest
from conftest import scripted
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, PrivateAttr

from graph.backtest import BacktestConfig, run_backtest
from memory.response_cache import (
    ResponseCache,
    close_store,
    model_identity,
    open_store,
    with_response_cache,
)

pytestmark = pytest.mark.usefixtures("clean_env")


class CountingModel(BaseChatModel):
    """Answers 'answer N' (N = its call count) and reports token usage; binds tools for real."""

    model_name: str = "counting"
    temperature: float = 0.0
    _n: list = PrivateAttr(default_factory=lambda: [0])  # shared with the cached copy
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "counting-fake"

    @property
    def calls(self) -> int:
        return self._n[0]

    def bind_tools(self, tools, **kwargs):
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        with self._lock:
            self._n[0] += 1
            n = self._n[0]
        msg = AIMessage(content=f"answer {n}", usage_metadata={"input_tokens": 10, "output_tokens": 3, "total_tokens": 13})
        return ChatResult(generations=[ChatGeneration(message=msg)])


@tool
def tool_a(symbol: str) -> str:
    """Tool A."""
    return symbol


@tool
def tool_b(symbol: str) -> str:
    """Tool B."""
    return symbol


class SchemaA(BaseModel):
    symbol: str


class SchemaB(BaseModel):
    symbol: str
    score: float


class Settings:
    def __init__(self, path, database_url=None):
        from memory.db import DatabaseURL

        self.llm_cache = path
        self.database_url = database_url  # set: the cache lives in that database (memory/response_cache.py)
        self.ledger_path = DatabaseURL(database_url) if database_url else None


MESSAGES = [SystemMessage("You are a test."), HumanMessage("Evidence: {}")]


def test_key_covers_model_prompt_tools_and_schema(tmp_path, backend):
    from memory.response_cache import cache_target

    settings = Settings(tmp_path / "cache.sqlite", backend.url)
    model = CountingModel()
    cached = with_response_cache(model, "m1", settings)
    variants = [
        cached,
        cached.bind_tools([tool_a]),
        cached.bind_tools([tool_b]),
        cached.bind(format=SchemaA.model_json_schema()),
        cached.bind(format=SchemaB.model_json_schema()),
    ]
    first = [v.invoke(MESSAGES).content for v in variants]
    assert model.calls == 5 and len(set(first)) == 5  # every variant is its own entry
    again = [v.invoke(MESSAGES).content for v in variants]
    assert again == first and model.calls == 5  # all hits
    assert cached.invoke([*MESSAGES, HumanMessage("more")]).content == "answer 6"  # the prompt is in the key

    other_spec = with_response_cache(model, "m2", settings)  # another spec never shares answers
    assert other_spec.invoke(MESSAGES).content == "answer 7"
    other_model = with_response_cache(CountingModel(model_name="other"), "m1", settings)
    assert other_model.invoke(MESSAGES).content == "answer 1"

    stats = open_store(cache_target(settings)).snapshot()
    assert (stats.hits, stats.misses, stats.stored) == (5, 8, 8)
    assert (stats.input_tokens, stats.output_tokens, stats.tokens_known) == (80, 24, 8)
    assert open_store(cache_target(settings)).count() == 8
    close_store(cache_target(settings))
    assert (tmp_path / "cache.sqlite").exists() == (backend.url is None)


def test_ollama_llm_string_lacks_the_model_so_the_namespace_adds_it(tmp_path):
    from langchain_ollama import ChatOllama

    a = ChatOllama(model="qwen2.5-coder:7b", temperature=0.0)
    b = ChatOllama(model="gemma3:latest", temperature=0.0)
    # LangChain's own key material would collide for two Ollama models ...
    assert a._get_llm_string() == b._get_llm_string()
    # ... so each model's cache carries its identity, and the keys differ
    store = open_store(tmp_path / "c.sqlite")
    ka = ResponseCache(store, model_identity("qwen2.5-coder:7b", a)).key("p", a._get_llm_string())
    kb = ResponseCache(store, model_identity("gemma3:latest", b)).key("p", b._get_llm_string())
    assert ka != kb
    assert '"model": "qwen2.5-coder:7b"' in model_identity("qwen2.5-coder:7b", a)
    # transport settings (host, timeout) do not split the cache
    c = ChatOllama(model="qwen2.5-coder:7b", temperature=0.0, base_url="http://elsewhere:1", client_kwargs={"timeout": 5})
    assert model_identity("qwen2.5-coder:7b", c) == model_identity("qwen2.5-coder:7b", a)
    close_store(tmp_path / "c.sqlite")


def test_cache_off_returns_the_model_itself(tmp_path):
    model = CountingModel()
    assert with_response_cache(model, "m1", Settings(None)) is model
    assert with_response_cache(model, "m1", object()) is model  # settings without the field


def _no_latency(trades):
    return [{k: v for k, v in t.items() if k != "latency_ms"} for t in trades]  # wall-clock telemetry


def _backtest(csv, out, model, cache_path, cache=True):
    cfg = BacktestConfig(data_csv=str(csv), models=["m1"], top_k=2, cache=cache, cache_path=str(cache_path),
                         frozen_baseline=False, end="2020-03-16")
    return run_backtest(cfg, out, chat_model_factory=lambda spec: model, reports=False)


def test_rerun_makes_no_model_call_and_gives_identical_results(market_csv, tmp_path):
    cache_path = tmp_path / "shared-cache.sqlite"
    first_model = scripted()
    first = _backtest(market_csv, tmp_path / "first", first_model, cache_path)
    assert len(first_model.calls) > 0
    agents = first["strategies"]["agents"]
    assert agents["llm"]["model_calls"] == len(first_model.calls)
    assert agents["fills"] > 0

    second_model = scripted()
    second = _backtest(market_csv, tmp_path / "second", second_model, cache_path)
    assert second_model.calls == []  # zero LLM calls
    llm = second["strategies"]["agents"]["llm"]
    assert llm["model_calls"] == 0 and llm["cache_hits"] == agents["llm"]["model_calls"]
    assert second["cache"]["hits"] == llm["cache_hits"]
    assert second["series"]["equity"] == first["series"]["equity"]
    assert _no_latency(second["trades"]) == _no_latency(first["trades"])
    for key in ("final_equity", "sharpe", "max_drawdown", "fees_paid", "slippage_paid"):
        assert second["strategies"]["agents"][key] == agents[key]

    third_model = scripted()  # --no-cache: every call goes to the model again
    third = _backtest(market_csv, tmp_path / "third", third_model, cache_path, cache=False)
    assert len(third_model.calls) == len(first_model.calls)
    assert third["strategies"]["agents"]["llm"]["cache_hits"] == 0
    assert third["series"]["equity"] == first["series"]["equity"]
    close_store(cache_path)


def test_production_ollama_path_is_cached(market_csv, tmp_path, monkeypatch):
    """ChatOllama (no injected factory) against the local stand-in: the re-run sends no chat request."""
    import json as _json

    from conftest import AGENTS, default_answer
    from fake_ollama import FakeOllama

    def answer(model, body):
        system, user = body["messages"][0]["content"], body["messages"][1]["content"]
        agent = next(name for prefix, name in AGENTS.items() if system.startswith(prefix))
        evidence = _json.loads(user.split("\n", 1)[1])
        return default_answer(agent, evidence["symbol"], evidence)

    cache_path = tmp_path / "cache.sqlite"
    results = []
    with FakeOllama(["tiny:latest"], answer) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        for name in ("first", "second"):
            before = len([r for r in server.requests if "messages" in r])
            cfg = BacktestConfig(data_csv=str(market_csv), symbols=["AAA"], models=["tiny"], top_k=1,
                                 cache_path=str(cache_path), frozen_baseline=False, end="2020-03-11")
            summary = run_backtest(cfg, tmp_path / name, reports=False)
            results.append((summary, len([r for r in server.requests if "messages" in r]) - before))
    (first, first_chats), (second, second_chats) = results
    assert first_chats > 0 and first["strategies"]["agents"]["llm"]["model_calls"] == first_chats
    assert second_chats == 0 and second["strategies"]["agents"]["llm"]["cache_hits"] == first_chats
    assert second["series"]["equity"] == first["series"]["equity"]
    close_store(cache_path)
