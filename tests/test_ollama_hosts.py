"""Several Ollama hosts (VOLT_OLLAMA_HOSTS): load spread, one breaker per (host, model).

Two local Ollama stand-ins (tests/fake_ollama.py) on 127.0.0.1: calls alternate between
them; a host that dies mid-cycle has its breaker opened and every call goes to the other
with no failed decision; with both gone, the agents answer with their priors (degraded).
"""

from __future__ import annotations

import json
import threading

from conftest import AGENTS, default_answer
from fake_ollama import FakeOllama

from graph.models import breaker_target, hosts_for, in_flight
from graph.run import run_cycle
from graph.settings import VoltSettings
from memory.breakers import open_breakers

AGENT_KEYS = ("market", "strategy", "risk", "audit")


def answer(model: str, body: dict) -> str:
    system, user = body["messages"][0]["content"], body["messages"][1]["content"]
    agent = next(name for prefix, name in AGENTS.items() if system.startswith(prefix))
    evidence = json.loads(user.split("\n", 1)[1])
    return default_answer(agent, evidence["symbol"], evidence)


def chats(server: FakeOllama) -> int:
    return sum(1 for r in server.requests if "messages" in r)


def answers(state: dict) -> list[dict]:
    """Every agent answer in the cycle's decisions (entries, exit reviews)."""
    return [v for d in state["decisions"] for v in d.values() if isinstance(v, dict) and "degraded" in v]


def degraded(state: dict) -> list[str]:
    """The agents of the cycle's decisions that answered with their prior."""
    return [v["agent"] for v in answers(state) if v["degraded"]]


def stop(server: FakeOllama) -> None:
    """The server goes away: its port refuses connections from now on."""
    server.server.shutdown()
    server.server.server_close()


def test_hosts_alternate_and_the_least_busy_goes_first(clean_env, monkeypatch):
    monkeypatch.setenv("VOLT_OLLAMA_HOSTS", "127.0.0.1:1001, http://127.0.0.1:1002/")
    settings = VoltSettings()
    a, b = "http://127.0.0.1:1001", "http://127.0.0.1:1002"
    assert settings.model_hosts == [a, b]
    firsts = [hosts_for(settings, "alternating:7b")[0] for _ in range(6)]
    assert firsts in ([a, b] * 3, [b, a] * 3)  # round-robin
    with in_flight(a):  # a call under way at a: b first, every time
        assert [hosts_for(settings, "alternating:7b")[0] for _ in range(3)] == [b, b, b]
    assert breaker_target(settings, "m:7b", a) == f"m:7b@{a}"
    # OLLAMA_HOST alone: one host, the model's breaker as before
    monkeypatch.delenv("VOLT_OLLAMA_HOSTS")
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:1003")
    single = VoltSettings()
    assert single.model_hosts == ["http://127.0.0.1:1003"] and hosts_for(single, "m:7b") == single.model_hosts
    assert breaker_target(single, "m:7b", single.model_hosts[0]) == "m:7b"


def test_a_cycle_spreads_its_calls_over_both_hosts(market_csv, settings_for, monkeypatch):
    with FakeOllama(["tiny:latest"], answer) as first, FakeOllama(["tiny:latest"], answer) as second:
        monkeypatch.setenv("VOLT_OLLAMA_HOSTS", f"{first.host},{second.host}")
        settings = settings_for(market_csv, watchlist=["AAA", "BBB"], top_k=2, models=["tiny"], learning=False)
        state = run_cycle(settings).state
    status = state["model_status"]
    assert status["usable"] == ["tiny"] and set(status["hosts"]) == {f"http://{first.host}", f"http://{second.host}"}
    assert state["errors"] == []
    assert all(d[k]["source"] == "model" for d in state["decisions"] for k in AGENT_KEYS)
    total = chats(first) + chats(second)
    assert total >= 9 and min(chats(first), chats(second)) >= total // 2 - 2, (chats(first), chats(second))


def test_a_host_that_dies_opens_its_breaker_and_the_other_takes_every_call(market_csv, settings_for, monkeypatch):
    killed = threading.Event()

    def answer_then_kill_the_other(model, body):  # the other host dies once the cycle's calls have begun
        if not killed.is_set():
            killed.set()
            stop(doomed)
        return answer(model, body)

    with FakeOllama(["tiny:latest"], answer_then_kill_the_other) as survivor, \
            FakeOllama(["tiny:latest"], answer_then_kill_the_other) as other:
        doomed = other
        monkeypatch.setenv("VOLT_OLLAMA_HOSTS", f"{survivor.host},{other.host}")
        settings = settings_for(market_csv, watchlist=["AAA", "BBB"], top_k=2, models=["tiny"], learning=False,
                                breaker_fail_max=2)
        state = run_cycle(settings).state
        assert killed.is_set()
        # no failed decision: each call the dead host refused was retried at the survivor
        assert state["errors"] == []
        assert all(d[k]["source"] == "model" and d[k]["model"] == "tiny" for d in state["decisions"] for k in AGENT_KEYS)
        (broken,) = open_breakers(settings.home)
        assert broken["name"] == f"model:tiny@http://{other.host}" and broken["failures"] == 2
        served_before = chats(survivor)

        # the next cycle: the dead host is left out at the probe, every call goes to the survivor
        state = run_cycle(settings).state
        assert state["errors"] == [] and state["model_status"]["usable"] == ["tiny"]
        assert f"not reachable: http://{other.host}" in state["model_status"]["note"]
        assert chats(survivor) > served_before and state["decisions"]
        assert not degraded(state)

    # both gone: the agents' quantitative priors, marked degraded; the cycle still completes
    state = run_cycle(settings).state
    assert state["model_status"]["usable"] == [] and "degraded" in state["model_status"]["note"]
    assert degraded(state) and all(v["source"] != "model" for v in answers(state))
    assert all(v["degraded"] for v in answers(state) if v["source"] == "prior")


def test_when_every_host_breaker_opens_the_agents_use_their_priors(market_csv, settings_for, monkeypatch):
    started = threading.Event()

    def answer_then_kill_both(model, body):
        if not started.is_set():
            started.set()
            stop(hosts[0])
            stop(hosts[1])
        return answer(model, body)

    with FakeOllama(["tiny:latest"], answer_then_kill_both) as one, FakeOllama(["tiny:latest"], answer_then_kill_both) as two:
        hosts = [one, two]
        monkeypatch.setenv("VOLT_OLLAMA_HOSTS", f"{one.host},{two.host}")
        settings = settings_for(market_csv, watchlist=["AAA"], top_k=1, models=["tiny"], learning=False,
                                breaker_fail_max=1)
        state = run_cycle(settings).state
    assert sorted(b["name"] for b in open_breakers(settings.home)) == sorted(
        f"model:{breaker_target(settings, 'tiny', h)}" for h in settings.model_hosts)
    # one agent saw both hosts refuse (one error, recovery: its prior); the others skipped them at no cost
    assert [e["recovery"] for e in state["errors"]] == ["quantitative prior"]
    sources = [v["source"] for v in answers(state)]
    assert sources.count("prior") >= 2 and "model" not in sources  # the first call (MacroAgent's) answered
    assert all(v["degraded"] == (v["source"] == "prior") for v in answers(state))
