"""Shared fixtures: synthetic market CSVs and scripted fake chat models.

Fake models drive the real graph. :class:`ScriptedChatModel` answers by agent and symbol
(the graph runs candidates in parallel threads, so a single ordered script would race);
:class:`FakeToolChatModel` is ``GenericFakeChatModel`` plus ``bind_tools`` for ordered scripts.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

from graph.settings import VoltSettings

AGENTS = {
    "You are MarketAgent": "market",
    "You are StrategyAgent": "strategy",
    "You are RiskAgent": "risk",
    "You are AuditorAgent": "auditor",
    "You are LearningAgent": "learning",
    "You are MacroAgent": "macro",
    "You are SentimentAgent": "sentiment",
    "You are ForexAgent": "forex",
}


def agent_of(messages: list[BaseMessage]) -> str:
    system = str(messages[0].content)
    for prefix, name in AGENTS.items():
        if system.startswith(prefix):
            return name
    raise AssertionError(f"unknown agent prompt: {system[:60]!r}")


def evidence_of(messages: list[BaseMessage]) -> dict:
    return json.loads(str(messages[1].content).split("\n", 1)[1])


Reply = str | AIMessage | BaseException
Responder = Callable[[str, str, dict, list[BaseMessage]], Reply]


class ScriptedChatModel(BaseChatModel):
    """Answers with ``respond(agent, symbol, evidence, messages)``; records every call."""

    respond: Any
    model_name: str = "scripted"
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _calls: list = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted-fake"

    @property
    def calls(self) -> list[tuple[str, str, dict, list[BaseMessage]]]:
        return self._calls

    def bind_tools(self, tools, **kwargs):  # tools are visible to the script via messages
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        agent, evidence = agent_of(messages), evidence_of(messages)
        with self._lock:
            self._calls.append((agent, evidence["symbol"], evidence, list(messages)))
        reply = self.respond(agent, evidence["symbol"], evidence, messages)
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, str):
            reply = AIMessage(content=reply)
        return ChatResult(generations=[ChatGeneration(message=reply)])


class FakeToolChatModel(GenericFakeChatModel):
    """GenericFakeChatModel that accepts ``bind_tools`` (for strictly ordered scripts)."""

    def bind_tools(self, tools, **kwargs):
        return self


def default_answer(agent: str, symbol: str, evidence: dict, **overrides) -> str:
    """A valid answer for each agent: a confident, approved BUY."""
    ind = evidence.get("indicators", {})
    close = ind.get("close", 100.0)
    if agent == "market":
        body = {"symbol": symbol, "direction": "BULLISH", "strength": 0.8, "support": ind.get("low20", close * 0.9),
                "resistance": ind.get("high20", close * 1.1), "volume_pattern": "NORMAL", "rationale": "scripted"}
    elif agent == "strategy":
        body = {"symbol": symbol, "action": "BUY", "confidence": 0.9, "entry": close, "exit": close * 1.1,
                "stop_loss": close * 0.95, "size_pct": 0.1, "rationale": "scripted"}
    elif agent == "macro":
        body = {"symbol": "MARKET", "regime": "SIDEWAYS", "risk_appetite": 0.1, "confidence": 0.6, "rationale": "scripted"}
    elif agent == "sentiment":
        body = {"symbol": symbol, "sentiment": "NEUTRAL", "score": 0.0, "confidence": 0.5, "drivers": ["scripted"]}
    elif agent == "forex":
        body = {"symbol": symbol, "direction": "NEUTRAL", "strength": 0.2, "rate": 1.1, "rationale": "scripted"}
    elif agent == "learning":
        body = {"symbol": symbol, "lesson": f"scripted lesson about {symbol}: wait for confirmation"}
    elif agent == "risk":
        body = {"symbol": symbol, "verdict": "APPROVED", "risk_score": 0.2, "max_position_pct": None, "reasons": ["ok"]}
    else:
        body = {"symbol": symbol, "verdict": "APPROVED", "objections": []}
    body.update(overrides.get(agent, {}))
    return json.dumps(body)


def scripted(overrides: dict | None = None, respond: Responder | None = None) -> ScriptedChatModel:
    """A scripted model: ``default_answer`` with per-agent field overrides, or ``respond``."""
    overrides = overrides or {}
    return ScriptedChatModel(respond=respond or (lambda a, s, e, m: default_answer(a, s, e, **overrides)))


def held_reduces(agent: str, symbol: str, evidence: dict, messages) -> str:
    """A Responder: ``default_answer`` (a confident BUY), except that a held symbol's
    strategist says SELL, so its exit review REDUCEs it every cycle (fills on every day)."""
    if agent == "strategy" and evidence.get("position"):
        return default_answer(agent, symbol, evidence, strategy={"action": "SELL"})
    return default_answer(agent, symbol, evidence)


def synthetic_frame(symbols: dict[str, float], days: int = 80, start: str = "2020-01-01") -> pd.DataFrame:
    """Deterministic daily bars: a gentle trend (per-symbol drift per day) with a wave."""
    dates = pd.bdate_range(start, periods=days)
    rows = []
    for i, (symbol, drift) in enumerate(sorted(symbols.items())):
        t = np.arange(days)
        close = 50.0 + 10 * i + drift * t + 1.5 * np.sin(t / 3.0 + i)
        open_ = close - 0.3 * np.cos(t / 2.0 + i)
        high = np.maximum(open_, close) + 0.6
        low = np.minimum(open_, close) - 0.6
        volume = 100_000 + 20_000 * np.sin(t / 5.0 + i) + 3_000 * i
        for d, o, h, lo, c, v in zip(dates, open_, high, low, close, volume, strict=True):
            rows.append({"Date": f"{d:%Y%m%d}", "Symbol": symbol, "Open": round(o, 4), "High": round(h, 4),
                         "Low": round(lo, 4), "Close": round(c, 4), "Volume": int(v)})
    return pd.DataFrame(rows)


@pytest.fixture
def market_csv(tmp_path: Path) -> Path:
    path = tmp_path / "market.csv"
    synthetic_frame({"AAA": 0.25, "BBB": 0.15, "CCC": -0.05}).to_csv(path, index=False)
    return path


@pytest.fixture
def clean_env(monkeypatch):
    """No VOLT_* or OLLAMA_HOST variable of the machine running the tests leaks in."""
    for key in list(__import__("os").environ):
        if key.startswith("VOLT_") or key == "OLLAMA_HOST":
            monkeypatch.delenv(key, raising=False)


@pytest.fixture
def settings_for(tmp_path: Path, clean_env):
    """Settings on a private data directory; environment variables cannot leak in."""

    def make(csv: Path, **kw) -> VoltSettings:
        base = {"home": tmp_path / "home", "data_csv": csv, "models": ["m1"], "top_k": 3}
        return VoltSettings(**{**base, **kw})

    return make


def eventually(predicate, timeout: float = 5.0) -> bool:
    """Poll ``predicate`` every 10 ms until it holds or ``timeout`` seconds pass (background
    threads: streams, servers); its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# --------------------------------------------------------------------- storage backends
# Storage tests run on SQLite and on PostgreSQL (tests/pg_server.py: VOLT_TEST_POSTGRES_URL, or
# a throwaway cluster from Debian's binaries). Without a server the postgres cases skip,
# unless VOLT_TEST_REQUIRE_POSTGRES=1, which makes that a failure.


@pytest.fixture(scope="session")
def pg_server():
    import pg_server as pg

    server, reason = pg.server_or_reason()
    if server is None:
        if pg.REQUIRED:
            pytest.fail(f"{pg.REQUIRE_ENV}=1 but {reason}")
        pytest.skip(reason)
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server) -> str:
    """The URL (with its password) of a fresh database, dropped after the test."""
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path: Path):
    """The storage target of a test: ``backend.target`` is ``tmp_path/"volt.db"`` or a
    :class:`memory.db.DatabaseURL` of a fresh database; ``backend.url`` is None or that URL
    (for ``VoltSettings(database_url=...)`` and ``VOLT_DATABASE_URL``)."""
    from types import SimpleNamespace

    if request.param == "sqlite":
        return SimpleNamespace(name="sqlite", url=None, target=tmp_path / "volt.db")
    from memory.db import DatabaseURL

    url = request.getfixturevalue("pg_url")
    return SimpleNamespace(name="postgres", url=url, target=DatabaseURL(url))
