"""The production model path (ollama client + ChatOllama) against a local Ollama stand-in."""

from __future__ import annotations

import json

from conftest import AGENTS, default_answer
from fake_ollama import FakeOllama

from graph.run import run_cycle


def answer_from_request(model: str, body: dict) -> str:
    system, user = body["messages"][0]["content"], body["messages"][1]["content"]
    agent = next(name for prefix, name in AGENTS.items() if system.startswith(prefix))
    evidence = json.loads(user.split("\n", 1)[1])
    return "```json\n" + default_answer(agent, evidence["symbol"], evidence) + "\n```"  # fenced, as models do


def test_cycle_through_a_local_ollama(market_csv, settings_for, monkeypatch):
    with FakeOllama(["tiny:latest"], answer_from_request) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        settings = settings_for(market_csv, watchlist=["AAA"], top_k=1, models=["not-pulled:7b", "tiny"])
        state = run_cycle(settings).state
    status = state["model_status"]
    assert status["reachable"] is True and status["usable"] == ["tiny"] and status["missing"] == ["not-pulled:7b"]
    d = state["decisions"][0]
    assert state["errors"] == []
    for key in ("market", "strategy", "risk", "audit"):
        assert d[key]["source"] == "model" and d[key]["model"] == "tiny", key
    chats = [r for r in server.requests if "messages" in r]
    assert len(chats) == 5 and all(r["model"] == "tiny" for r in chats), state["errors"]  # 4 agents + MacroAgent
    # the agents are offered the indicator and portfolio tools
    tool_names = {t["function"]["name"] for t in chats[0].get("tools", [])}
    assert {"get_indicators", "get_price_history", "get_portfolio", "get_recent_trades"} <= tool_names
    assert state["fills"] and state["fills"][0]["symbol"] == "AAA"


def test_server_error_falls_back_to_next_model(market_csv, settings_for, monkeypatch):
    def respond(model, body):
        return "not json at all" if model == "first" else answer_from_request(model, body)

    with FakeOllama(["first", "second"], respond) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        settings = settings_for(market_csv, watchlist=["AAA"], top_k=1, models=["first", "second"])
        state = run_cycle(settings).state
    d = state["decisions"][0]
    assert d["market"]["model"] == "second"
    assert {e["model"] for e in state["errors"]} == {"first"}
    assert all(e["recovery"] == "fallback to second" for e in state["errors"])
