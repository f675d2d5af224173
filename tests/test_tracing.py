"""graph/tracing.py: opt-in LangSmith, one warning for an unreachable endpoint, run names."""

from __future__ import annotations

import logging
import socket

import pytest

from graph import tracing


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    for flag in (*tracing._FLAGS, "LANGSMITH_ENDPOINT", "LANGCHAIN_ENDPOINT", "LANGSMITH_PROJECT"):
        monkeypatch.delenv(flag, raising=False)
    tracing.reset_check()
    yield
    tracing.reset_check()
    from langsmith import utils

    utils.get_env_var.cache_clear()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_endpoint_gives_one_warning_and_turns_tracing_off(monkeypatch, caplog):
    from langsmith import utils

    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    monkeypatch.setenv("LANGSMITH_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    utils.get_env_var.cache_clear()
    assert utils.tracing_is_enabled() is True
    caplog.set_level(logging.WARNING)
    for _ in range(5):  # every cycle asks; the probe runs once
        assert tracing.check_langsmith(timeout_s=0.5) is False
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "unreachable" in lines[0].getMessage()
    assert utils.tracing_is_enabled() is False  # langsmith itself sees tracing off now
    client_log = logging.getLogger("langsmith.client")  # a later client failure: first line only
    for _ in range(10):
        client_log.warning("Failed to batch ingest runs")
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 2


def test_reachable_endpoint_keeps_tracing(monkeypatch, caplog):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("LANGSMITH_TRACING", "true")
        monkeypatch.setenv("LANGSMITH_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert tracing.check_langsmith(timeout_s=1.0) is True
    assert not [r for r in caplog.records if r.name == "volt.tracing"]


def test_not_requested_probes_nothing(monkeypatch):
    monkeypatch.setenv("LANGSMITH_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")  # never contacted
    assert tracing.check_langsmith(timeout_s=0.01) is False


def test_run_names_tags_and_metadata(monkeypatch):
    monkeypatch.setenv("LANGSMITH_PROJECT", "volt-paper")
    cfg = tracing.cycle_config("main", "replay", "2024-01-02")
    assert cfg["run_name"] == "volt-cycle" and cfg["tags"] == ["portfolio:main", "source:replay"]
    assert cfg["metadata"] == {"portfolio": "main", "source": "replay", "as_of": "2024-01-02",
                               "langsmith_project": "volt-paper"}
    agent = tracing.agent_config("market_agent", "AAPL", "qwen", portfolio="main", as_of=None)
    assert agent["run_name"] == "market_agent:AAPL" and "symbol:AAPL" in agent["tags"]
    assert agent["metadata"] == {"agent": "market_agent", "symbol": "AAPL", "model": "qwen", "portfolio": "main"}
