"""Circuit breakers: the state machine, persistence in ops.db, the model chain against the
local Ollama stand-in (request counts prove what was called), and the Finnhub endpoint
breaker with the cycle deadline against the local Finnhub stand-in."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from conftest import AGENTS, default_answer
from fake_finnhub import FakeFinnhub
from fake_ollama import FakeOllama

from graph.run import run_cycle
from memory import alerts as alerts_mod
from memory.alerts import list_alerts
from memory.breakers import (
    breaker_states,
    endpoint_breakers,
    forget_process_breakers,
    get_breaker,
    open_breakers,
    reset_breaker,
)
from memory.ops_db import close_all, ops_path
from tools.circuit import Breaker, BreakerOpen
from tools.finnhub.errors import FinnhubBreakerOpen, FinnhubTemporaryError
from tools.finnhub.gateway import FinnhubGateway

KEY = "sk-TEST-KEY-123"


@pytest.fixture(autouse=True)
def _fresh_process_state(monkeypatch):
    monkeypatch.delenv("VOLT_ALERT_WEBHOOK", raising=False)
    forget_process_breakers()
    yield
    forget_process_breakers()
    close_all()


# ---- the state machine --------------------------------------------------------------------------


def test_opens_after_fail_max_then_one_probe_after_the_cooldown():
    b = Breaker("x", fail_max=3, reset_s=0.2)
    calls = []

    def boom():
        calls.append(1)
        raise ConnectionError("down")

    for _ in range(3):
        with pytest.raises(ConnectionError):
            b.guard(boom)
    assert b.current_state == "open" and len(calls) == 3
    for _ in range(5):  # skipped at no cost
        with pytest.raises(BreakerOpen):
            b.guard(boom)
    assert len(calls) == 3
    time.sleep(0.25)
    assert b.admit() is True  # this caller is the probe ...
    assert b.admit() is False and b.current_state == "half-open"  # ... and nobody else meanwhile
    b.succeeded()
    assert b.current_state == "closed" and b.fail_counter == 0 and b.admit() is True


def test_a_failed_probe_reopens_and_a_success_resets_the_count():
    b = Breaker("x", fail_max=2, reset_s=0.1)
    b.failed(ValueError())
    b.succeeded()  # not in a row: counting starts again
    b.failed(ValueError())
    assert b.current_state == "closed"
    b.failed(ValueError())
    assert b.current_state == "open"
    time.sleep(0.12)
    assert b.admit()
    b.failed(ValueError())
    assert b.current_state == "open" and not b.admit()


def test_concurrent_callers_get_exactly_one_probe():
    b = Breaker("x", fail_max=1, reset_s=0.05)
    b.failed(RuntimeError())
    time.sleep(0.06)
    admitted = []
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        admitted.append(b.admit())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sorted(admitted) == [False] * 7 + [True]


def test_exceptions_that_do_not_count_are_successes():
    b = Breaker("x", fail_max=1, reset_s=60, counts=lambda e: not isinstance(e, KeyError))
    with pytest.raises(KeyError):
        b.guard(lambda: {}["nope"])
    assert b.current_state == "closed"


# ---- persistence and alerts -------------------------------------------------------------------------


def test_state_survives_a_restart_and_opening_alerts_once(tmp_path):
    home = tmp_path / "home"
    b = get_breaker(home, "model", "m1", fail_max=2, reset_s=300)
    b.failed(ConnectionError("refused"))
    b.failed(ConnectionError("refused"))
    assert [a["kind"] for a in list_alerts(home)] == ["breaker_open"]
    forget_process_breakers()
    close_all()  # a new process: nothing in memory
    again = get_breaker(home, "model", "m1", fail_max=2, reset_s=300)
    assert again is not b and again.current_state == "open" and not again.admit()
    (state,) = open_breakers(home)
    assert state["name"] == "model:m1" and state["failures"] == 2 and "refused" in state["last_error"]
    # the probe fails: open again, a WARNING line, not a second alert
    with sqlite3.connect(ops_path(home)) as conn:
        conn.execute("UPDATE breakers SET opened_at = opened_at - 301")
    assert again.admit()
    again.failed(ConnectionError("still refused"))
    assert len(list_alerts(home)) == 1 and again.current_state == "open"
    assert reset_breaker(home, "model:m1") and again.current_state == "closed" and again.admit()
    assert [b["state"] for b in breaker_states(home)] == ["closed"]


def test_unusable_ops_db_falls_back_to_memory(tmp_path, caplog):
    home = tmp_path / "home"
    home.mkdir()
    (home / "ops.db").write_text("this is not a database" * 100)
    b = get_breaker(home, "model", "m1", fail_max=1, reset_s=300)
    b.failed(ConnectionError())
    assert b.current_state == "open" and not b.admit()
    assert any("memory only" in r.getMessage() for r in caplog.records)


# ---- the model chain against the local Ollama stand-in -----------------------------------------------


def _answer(model: str, body: dict) -> str:
    import json

    system, user = body["messages"][0]["content"], body["messages"][1]["content"]
    agent = next(name for prefix, name in AGENTS.items() if system.startswith(prefix))
    evidence = json.loads(user.split("\n", 1)[1])
    return default_answer(agent, evidence["symbol"], evidence)


def test_a_hung_model_stops_being_called_and_is_probed_after_the_cooldown(market_csv, settings_for, monkeypatch):
    healthy = threading.Event()

    def respond(model, body):
        if model == "bad:latest" and not healthy.is_set():
            time.sleep(1.5)  # hangs past the model timeout
        return _answer(model, body)

    with FakeOllama(["bad:latest", "good:latest"], respond) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        settings = settings_for(market_csv, watchlist=["AAA"], top_k=1, models=["bad", "good"],
                                model_timeout_s=0.4, breaker_fail_max=3, breaker_reset_s=300, learning=False)

        def bad_calls() -> int:
            return sum(1 for r in server.requests if r.get("model") == "bad" and "messages" in r)

        first = run_cycle(settings).state
        assert bad_calls() == 3  # then the breaker opened: skipped for the rest of the cycle
        assert all(d[k]["model"] == "good" for d in first["decisions"] for k in ("market", "strategy", "risk"))
        (alert,) = list_alerts(settings.home)
        assert alert["kind"] == "breaker_open" and alert["details"]["breaker"] == "model:bad"

        second = run_cycle(settings).state
        assert bad_calls() == 3 and second["model_status"]["breaker_open"] == ["bad"]
        assert second["errors"] == []  # skipped, not failed

        forget_process_breakers()  # a restart keeps it open
        close_all()
        run_cycle(settings)
        assert bad_calls() == 3

        with sqlite3.connect(ops_path(settings.home)) as conn:  # the cool-down has passed
            conn.execute("UPDATE breakers SET opened_at = opened_at - 301 WHERE name = 'model:bad'")
        run_cycle(settings)
        assert bad_calls() == 4  # exactly one probe; it failed, so open again
        assert [b["name"] for b in open_breakers(settings.home)] == ["model:bad"]

        with sqlite3.connect(ops_path(settings.home)) as conn:
            conn.execute("UPDATE breakers SET opened_at = opened_at - 301 WHERE name = 'model:bad'")
        healthy.set()
        before = len(server.requests)
        last = run_cycle(settings).state
        chats = [r for r in server.requests[before:] if "messages" in r]
        # the probe answered: closed, and first in the chain for every agent again
        assert len(chats) >= 2 and {r["model"] for r in chats} == {"bad"} and bad_calls() == 4 + len(chats)
        assert last["decisions"][0]["market"]["model"] == "bad"
        assert open_breakers(settings.home) == [] and len(list_alerts(settings.home)) == 1


# ---- the Finnhub endpoint breaker and the cycle deadline -------------------------------------------------


def test_a_429_storm_ends_within_the_deadline_and_opens_the_endpoint_breaker(tmp_path):
    symbols = [f"S{i}" for i in range(10)]
    with FakeFinnhub(token=KEY) as fake:
        fake.throttle("quote", 1000, retry_after="30")
        breakers = endpoint_breakers(_settings(tmp_path))
        gw = FinnhubGateway(KEY, tmp_path / "cache.db", client=fake.client(KEY), breaker_for=breakers)
        started = time.monotonic()
        failures = []
        with gw, gw.deadline_in(3.0):
            for symbol in symbols:
                with pytest.raises(FinnhubTemporaryError) as exc:
                    gw.quote(symbol)
                failures.append(exc.value)
        elapsed = time.monotonic() - started
        assert elapsed < 3.0
        assert fake.count("quote") == 3  # then the breaker opened: no more requests
        assert all(isinstance(f, FinnhubBreakerOpen) for f in failures[3:])
        assert [b["name"] for b in open_breakers(tmp_path / "home")] == ["endpoint:quote"]
        assert [a["kind"] for a in list_alerts(tmp_path / "home")] == ["breaker_open"]


def test_deadline_bounds_backoff_and_rate_limit_waits(tmp_path):
    with FakeFinnhub(token=KEY) as fake:
        fake.throttle("quote", 2, retry_after="1")
        with FinnhubGateway(KEY, tmp_path / "a.db", client=fake.client(KEY), backoff_base_s=0.1) as gw:
            started = time.monotonic()
            with gw.deadline_in(5.0):
                assert gw.quote("AAPL")["c"] > 0  # two 1 s Retry-Afters fit in 5 s
            assert 1.9 < time.monotonic() - started < 5.0 and gw.backoffs == [1.0, 1.0]
            assert gw.deadline is None  # the context restores "no deadline"
        with FinnhubGateway(KEY, tmp_path / "b.db", client=fake.client(KEY), calls_per_minute=1) as gw:
            gw.quote("MSFT")
            started = time.monotonic()
            with gw.deadline_in(0.5), pytest.raises(FinnhubTemporaryError, match="deadline"):
                gw.quote("IBM")  # the per-minute budget is spent: a 60 s wait would pass the deadline
            assert time.monotonic() - started < 0.5
            with gw.deadline_in(0.0), pytest.raises(FinnhubTemporaryError, match="deadline has passed"):
                gw.quote("ORCL")
        assert fake.count("quote") == 4  # AAPL twice throttled then answered, MSFT; never IBM nor ORCL


def _settings(tmp_path):
    from graph.settings import VoltSettings

    return VoltSettings(home=tmp_path / "home", breaker_fail_max=3, breaker_reset_s=300)


def test_alerts_module_is_quiet_without_a_webhook(tmp_path):
    assert alerts_mod._webhook(None) is None


# ---- the cycle deadline on the model path -------------------------------------------------------------


def test_no_model_call_starts_after_the_cycle_deadline(tmp_path):
    from types import SimpleNamespace

    from graph.schemas import MacroView
    from graph.settings import VoltSettings
    from memory.message_log import MessageType
    from nodes.agent_node import LLMAgent

    prior = MacroView(symbol="MARKET", regime="SIDEWAYS", risk_appetite=0.0, confidence=0.5)
    agent = LLMAgent(name="macro_agent", key="macro", schema=MacroView, evidence=lambda s, st: {},
                     prior=lambda s, st: prior, to_agent="risk_agent", message_type=MessageType.MARKET_VIEW,
                     cycle_level=True)
    with FakeOllama(["m1:latest"], lambda m, b: "{}") as server:
        settings = VoltSettings(home=tmp_path / "home", models=["m1"], ollama_host=server.host)
        context = SimpleNamespace(settings=settings, chat_model_factory=None, deadline=time.monotonic() - 1)
        state = {"agent_models": {"macro_agent": ["m1"]}, "attempts": {}, "portfolio_id": "main",
                 "as_of": "2024-01-02"}
        started = time.monotonic()
        out = agent(state, SimpleNamespace(context=context))
        assert time.monotonic() - started < 0.5
    assert out["macro"]["source"] == "prior" and out["macro"]["degraded"] is True
    assert server.requests == [] and breaker_states(settings.home) == []  # no call, no probe taken
